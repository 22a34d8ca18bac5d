"""Wrap a backbone with LoRA adapters (peft) on the right attention layers of its family, or unfreeze it for full fine-tuning.

Targets per family: GPT-2 ``c_attn`` (a ``Conv1D``, so ``fan_in_fan_out=True``), OPT and Llama
``q_proj``/``v_proj``, T5 ``q``/``v``. The original L4S-LLM asked for ``q_proj``/``v_proj`` on GPT-2,
which does not exist there; this module fixes that. ``rank == 0`` means full fine-tuning: no adapter,
every backbone weight trains. Paper preset: rank 128, alpha 32, dropout 0.05.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from torch import nn

from l4stb.errors import L4stbError

LORA_TARGETS: dict[str, tuple[list[str], bool]] = {
    "gpt2": (["c_attn"], True),
    "opt": (["q_proj", "v_proj"], False),
    "llama": (["q_proj", "v_proj"], False),
    "t5": (["q", "v"], False),
}


@dataclass(frozen=True)
class LoraSettings:
    """LoRA hyper-parameters; ``rank == 0`` means full fine-tuning."""

    rank: int = 8
    alpha: int = 32
    dropout: float = 0.05

    @classmethod
    def paper(cls) -> "LoraSettings":
        return cls(rank=128, alpha=32, dropout=0.05)


def lora_config(family: str, settings: LoraSettings):
    """The peft ``LoraConfig`` for a backbone family."""
    # lazy: peft is slow to import
    from peft import LoraConfig

    if family not in LORA_TARGETS:
        raise L4stbError(f"no LoRA target modules known for backbone family {family!r}; use --lora-rank 0 (full fine-tuning).")
    targets, fan_in_fan_out = LORA_TARGETS[family]
    return LoraConfig(
        r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
        target_modules=list(targets), fan_in_fan_out=fan_in_fan_out, bias="none",
    )


def apply_lora(module: nn.Module, family: str, settings: LoraSettings) -> nn.Module:
    """Return the module to train: a peft model with frozen base weights, or the module itself fully trainable."""
    if settings.rank < 0:
        raise L4stbError(f"--lora-rank must be 0 (full fine-tuning) or positive, got {settings.rank}.")
    if settings.rank == 0:
        for p in module.parameters():
            p.requires_grad_(True)
        return module

    # lazy: peft is slow to import
    from peft import get_peft_model

    for p in module.parameters():
        p.requires_grad_(False)
    with warnings.catch_warnings():  # peft still calls transformers' deprecated is_gradient_checkpointing
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(module, lora_config(family, settings))


def load_lora(module: nn.Module, adapter_dir) -> nn.Module:
    """Attach a saved adapter (``save_pretrained`` folder) to a freshly loaded base module."""
    # lazy: peft is slow to import
    from peft import PeftModel

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return PeftModel.from_pretrained(module, str(adapter_dir), is_trainable=False)


def is_peft(module: nn.Module) -> bool:
    try:
        # lazy: peft is slow to import
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(module, PeftModel)


def base_weights(module: nn.Module) -> dict:
    """The backbone's own weights without LoRA tensors, under the unwrapped module's key names."""
    if not is_peft(module):
        return dict(module.state_dict().items())
    base = module.get_base_model()
    out = {}
    for k, v in base.state_dict().items():
        if "lora_" in k:
            continue
        out[k.replace(".base_layer.", ".")] = v
    return out


def lora_modules(module: nn.Module) -> list[str]:
    """Names of layers that carry a LoRA adapter (for tests and reports)."""
    # lazy: peft is slow to import
    from peft.tuners.lora import LoraLayer

    return [name for name, m in module.named_modules() if isinstance(m, LoraLayer)]
