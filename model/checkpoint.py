"""Save and reload a trained L4S-LLM checkpoint folder so that the reloaded network predicts identically.

Layout of ``checkpoint/``::

    config.json            PolicyConfig (backbone name, layers, window, encoder, LoRA settings, scales)
    norm.json              the pool's NormStats (mean/std per feature) the network was trained with
    meta.json              epoch, validation metrics, feature names, library versions
    modules.safetensors    every parameter outside the backbone (encoder, embeddings, LayerNorm, L4S head)
    adapter/               the LoRA adapter (peft ``save_pretrained``), when lora_rank > 0
    backbone.safetensors   the backbone's weights, when they cannot be re-created from the config's
                           ``backbone`` name (random init, e.g. tiny-gpt2) or were fine-tuned (rank 0)

The folder is written beside its target under a temporary name and swapped in whole
(:func:`l4stb.workspace.staged_folder`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from l4stb.analysis.pool import NormStats
from l4stb.errors import L4stbError
from l4stb.model.backbones import build_from_config, load_backbone
from l4stb.model.lora import base_weights, is_peft, load_lora
from l4stb.model.policy import L4SPolicyModel, PolicyConfig
from l4stb.workspace import atomic_write_json, staged_folder


@dataclass
class Checkpoint:
    model: L4SPolicyModel
    cfg: PolicyConfig
    norm: NormStats
    meta: dict


def _contiguous(sd: dict) -> dict:
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in sd.items()}


def save_checkpoint(model: L4SPolicyModel, norm: NormStats, folder: Path, meta: dict | None = None) -> Path:
    """Write the checkpoint folder as one set (:func:`l4stb.workspace.staged_folder`: staged beside it, swapped in
    whole; an interrupt leaves the old checkpoint or the new one, never a mix)."""
    # lazy: safetensors is slow to import
    from safetensors.torch import save_file

    folder = Path(folder)
    with staged_folder(folder) as tmp:
        cfg = model.cfg
        atomic_write_json(tmp / "config.json", cfg.to_dict())
        atomic_write_json(tmp / "norm.json", asdict(norm))
        atomic_write_json(tmp / "meta.json", {**(meta or {}), "versions": _versions()})
        save_file(_contiguous(model.own_state_dict()), str(tmp / "modules.safetensors"))
        bb = model.backbone
        if is_peft(bb):
            bb.save_pretrained(str(tmp / "adapter"))
        if cfg.lora_rank == 0 or cfg.backbone_config is not None:
            save_file(_contiguous(base_weights(bb)), str(tmp / "backbone.safetensors"))
    return folder


def load_checkpoint(folder: Path, device: str = "cpu") -> Checkpoint:
    """Rebuild the network from a checkpoint folder; a missing or partial folder is a user error."""
    # lazy: safetensors is slow to import
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in ("config.json", "norm.json", "modules.safetensors"):
        if not (folder / name).is_file():
            raise L4stbError(f"{folder} is not a complete l4stb model checkpoint: {name} is missing. "
                             "Point at the `checkpoint` folder written by training, or train again.")
    cfg = PolicyConfig.from_dict(json.loads((folder / "config.json").read_text()))
    norm = NormStats(**json.loads((folder / "norm.json").read_text()))
    meta = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").is_file() else {}
    backbone = rebuild_backbone(cfg)
    if (folder / "backbone.safetensors").is_file():
        try:
            backbone.module.load_state_dict(load_file(str(folder / "backbone.safetensors")))
        except RuntimeError as exc:
            raise L4stbError(f"{folder}/backbone.safetensors does not fit backbone '{cfg.backbone}' "
                             f"({str(exc).splitlines()[0]}). Retrain, or fix config.json.") from None
    module = backbone.module
    if cfg.lora_rank > 0:
        if not (folder / "adapter").is_dir():
            raise L4stbError(f"{folder} has lora_rank {cfg.lora_rank} but no adapter/ folder; the checkpoint is incomplete.")
        module = load_lora(module, folder / "adapter")
    model = L4SPolicyModel(cfg, module)
    model.load_own_state_dict(load_file(str(folder / "modules.safetensors")))
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return Checkpoint(model, cfg, norm, meta)


def rebuild_backbone(cfg: PolicyConfig):
    """A fresh backbone as named in ``cfg`` (from its saved config when it cannot be loaded by name)."""
    if cfg.backbone_config is not None and cfg.backbone != "tiny-gpt2":
        # lazy: transformers is slow to import
        from transformers import AutoConfig

        d = dict(cfg.backbone_config)
        model_type = d.pop("model_type")
        return build_from_config(AutoConfig.for_model(model_type, **d), cfg.backbone)
    return load_backbone(cfg.backbone, cfg.layers)


def _versions() -> dict:
    # lazy: transformers, peft are slow to import
    import peft
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}

