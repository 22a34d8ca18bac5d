"""TrainConfig: every knob of a training run, its CPU-friendly defaults, the paper preset and validation of user values."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import torch

from l4stb.errors import L4stbError
from l4stb.model.encoder import ENCODER_KINDS

CLASS_WEIGHTINGS = ("balanced", "sqrt", "sampler", "none")
SCHEDULES = ("cosine", "linear", "constant")


@dataclass
class TrainConfig:
    """Defaults train tiny-gpt2 for 2 epochs on ~100k rows in a few CPU minutes; ``paper()`` is the original setup."""

    backbone: str = "tiny-gpt2"
    layers: int | None = None  # keep the first N transformer blocks
    epochs: int = 2
    window: int = 20  # timesteps per sequence (the paper's w)
    # Rows between training window starts; None = the window (no overlap, as the paper's preset). Measured on the
    # main job's pool: half-overlapping windows (capped at 15,000) gave test macro-F1 0.681 in 1,876 steps, these
    # 0.691 in 1,508 (docs/figures-of-merit.md).
    stride: int | None = None
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3  # tiny-gpt2 from scratch; the paper preset uses 1e-4 for pretrained LLMs
    weight_decay: float = 1e-4
    warmup_steps: int | None = None  # optimizer steps; None = 5% of all optimizer steps
    schedule: str = "cosine"  # decay after warm-up, in optimizer steps
    min_lr_ratio: float = 0.1
    max_grad_norm: float = 1.0
    lora_rank: int = 8  # 0 = full fine-tuning
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    encoder: str = "mlp"  # "mlp" (original) or "conv" (MLP + causal multi-kernel Conv1d over the window)
    state_dim: int = 128
    gamma: float | None = None  # None = the pool's gamma
    return_scale: float | None = None  # None = max |return-to-go| on the train split
    eval_returns: str = "target"  # return token in val/test: "target" (deployable, no future rewards) or "realized"
    class_weighting: str = "balanced"  # balanced | sqrt | sampler | none
    patience: int = 3  # epochs without a better validation macro-F1 before stopping
    seed: int = 100003
    max_train_windows: int | None = 15000  # random subset of training windows per run (CPU budget)
    max_eval_rows: int | None = None  # cap on val/test rows evaluated (first rows of each split)
    eval_batch_size: int = 64
    device: str | None = None  # None/"auto" = accelerate's choice (GPU when there is one); "cpu" forces CPU
    mixed_precision: str | None = None  # None = bf16 on a GPU that supports it, else no
    gradient_checkpointing: bool = False
    num_workers: int = 0
    baselines: bool = True
    latency_decisions: int = 300  # batch-1 decisions timed for p50/p99
    compare_full_finetune: bool = True  # probe a few full fine-tuning steps for the LoRA-vs-full cost table
    probe_steps: int = 3

    @classmethod
    def paper(cls, **overrides) -> "TrainConfig":
        """The original L4S-LLM hyper-parameters (LoRA rank 128, alpha 32, dropout 0.05, 80 epochs, accum 32...)."""
        base = cls(lr=1e-4, weight_decay=1e-4, warmup_steps=2000, epochs=80, grad_accum=32, window=20,
                   lora_rank=128, lora_alpha=32, lora_dropout=0.05, state_dim=256, gamma=1.0, seed=100003,
                   max_grad_norm=0.25, stride=20, max_train_windows=None, patience=80)
        return replace(base, **overrides)

    @property
    def effective_stride(self) -> int:
        return self.stride or self.window

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise L4stbError(f"unknown training option(s): {', '.join(unknown)}. Known: {', '.join(sorted(names))}.")
        return cls(**d).validated()

    def validated(self) -> "TrainConfig":
        """Check user-facing values; raise L4stbError naming the option and what to do."""
        def bad(opt: str, msg: str):
            raise L4stbError(f"training option {opt}: {msg}")

        if self.epochs < 1:
            bad("epochs", f"must be at least 1, got {self.epochs}.")
        if self.window < 1:
            bad("window", f"must be at least 1 timestep, got {self.window}.")
        if self.stride is not None and self.stride < 1:
            bad("stride", f"must be at least 1 row, got {self.stride}.")
        if self.batch_size < 1 or self.grad_accum < 1 or self.eval_batch_size < 1:
            bad("batch_size/grad_accum", "must be at least 1.")
        if not self.lr > 0:
            bad("lr", f"must be positive, got {self.lr}.")
        if self.lora_rank < 0:
            bad("lora_rank", f"must be 0 (full fine-tuning) or positive, got {self.lora_rank}.")
        if not 0 <= self.lora_dropout < 1:
            bad("lora_dropout", f"must be in [0, 1), got {self.lora_dropout}.")
        if self.encoder not in ENCODER_KINDS:
            bad("encoder", f"unknown encoder {self.encoder!r}; use one of {', '.join(ENCODER_KINDS)}.")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            bad("class_weighting", f"unknown value {self.class_weighting!r}; use one of {', '.join(CLASS_WEIGHTINGS)}.")
        if self.eval_returns not in ("target", "realized"):
            bad("eval_returns", f"use target or realized, got {self.eval_returns!r}.")
        if self.schedule not in SCHEDULES:
            bad("schedule", f"unknown value {self.schedule!r}; use one of {', '.join(SCHEDULES)}.")
        if self.gamma is not None and not 0 < self.gamma <= 1:
            bad("gamma", f"must be in (0, 1], got {self.gamma}.")
        if self.patience < 1:
            bad("patience", f"must be at least 1 epoch, got {self.patience}.")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            bad("warmup_steps", f"must be 0 or more, got {self.warmup_steps}.")
        if self.device not in (None, "auto", "cpu", "cuda"):
            bad("device", f"use cpu, cuda or auto (accelerate picks; use CUDA_VISIBLE_DEVICES or `accelerate launch` "
                          f"to choose GPUs), got {self.device!r}.")
        if self.device == "cuda":
            if not torch.cuda.is_available():
                bad("device", "cuda was asked for but torch sees no GPU here; use --device cpu.")
        if self.mixed_precision not in (None, "no", "bf16", "fp16"):
            bad("mixed_precision", f"use no, bf16 or fp16, got {self.mixed_precision!r}.")
        if self.max_train_windows is not None and self.max_train_windows < 1:
            bad("max_train_windows", f"must be at least 1, got {self.max_train_windows}.")
        return self
