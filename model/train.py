"""The training loop: AdamW, warm-up + decay in optimizer steps, class weighting, early stopping on validation macro-F1.

Device placement, mixed precision, gradient accumulation and multi-process data sharding go through
``accelerate`` (so ``accelerate launch -m l4stb.model.launch ...`` works). The schedule is counted in
*optimizer* steps (``ceil(batches / grad_accum)`` per epoch), so warm-up ends and the peak lr is reached.
The best epoch (highest validation macro-F1, first one on ties) is saved the moment it is seen; a later,
worse epoch never overwrites it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from l4stb.analysis.pool import NormStats
from l4stb.model.checkpoint import save_checkpoint
from l4stb.model.config import TrainConfig
from l4stb.model.dataset import IGNORE, WindowDataset
from l4stb.model.evaluate import classification_metrics, predict
from l4stb.workspace import atomic_write_text

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict], None]


def lr_factor(step: int, warmup: int, total: int, kind: str = "cosine", min_ratio: float = 0.1) -> float:
    """Multiplier of the peak lr for optimizer step ``step`` (0-based): linear warm-up to 1, then decay to min_ratio."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    span = max(1, total - warmup - 1)
    progress = min(1.0, max(0.0, (step - warmup) / span))
    if kind == "linear":
        return 1.0 - (1.0 - min_ratio) * progress
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer, warmup: int, total: int, kind: str = "cosine", min_ratio: float = 0.1):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, total, kind, min_ratio))


def default_warmup(total_steps: int) -> int:
    return max(1, int(round(0.05 * total_steps)))


def class_weights(labels: np.ndarray, mode: str) -> torch.Tensor | None:
    """Cross-entropy weights per class: balanced = N / (3 * count), sqrt = its square root; absent classes get 0."""
    if mode in ("none", "sampler"):
        return None
    counts = np.bincount(np.asarray(labels, np.int64), minlength=3).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (3 * np.maximum(counts, 1)), 0.0)
    if mode == "sqrt":
        w = np.sqrt(w)
    return torch.tensor(w, dtype=torch.float32)


def balanced_sampler(ds: WindowDataset, seed: int) -> WeightedRandomSampler:
    """Draw windows with probability proportional to the rarest action they contain (balanced class weight)."""
    labels = ds.window_labels()
    all_labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    cw = class_weights(all_labels, "balanced").numpy()
    weights = np.array([cw[lab].max() if len(lab) else 1.0 for lab in labels], dtype=np.float64)
    gen = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(weights.tolist(), num_samples=len(ds), replacement=True, generator=gen)


def validate(model, loader: DataLoader, device) -> dict:
    """Validation metrics of the current weights (a module-level function so tests can script it)."""
    y, p, loss = predict(model, loader.dataset, device=device, loader=loader)
    m = classification_metrics(y, p)
    return {"loss": loss, "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"],
            "macro_f1": m["macro_f1"]}


@dataclass
class FitResult:
    best_epoch: int
    best_val: dict
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    optimizer_steps: int = 0
    warmup_steps: int = 0
    total_steps: int = 0


def make_accelerator(cfg: TrainConfig):
    # lazy: accelerate is slow to import
    from accelerate import Accelerator

    cpu = cfg.device == "cpu"
    mp = cfg.mixed_precision
    if mp is None:
        mp = "bf16" if (not cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()) else "no"
    return Accelerator(cpu=cpu, mixed_precision=mp, gradient_accumulation_steps=cfg.grad_accum)


def fit(model, train_ds: WindowDataset, val_ds: WindowDataset, cfg: TrainConfig, out_dir: Path, norm: NormStats,
        accelerator, *, checkpoint_meta: dict | None = None, on_epoch: EpochCallback | None = None,
        progress=None) -> FitResult:
    """Train ``model``; write ``out_dir/metrics.jsonl`` and the best epoch's ``out_dir/checkpoint``."""
    out_dir = Path(out_dir)
    torch.manual_seed(cfg.seed)
    # weights from the labels the loss actually sees (overlapping windows count a row more than once)
    cw = class_weights(np.concatenate(train_ds.window_labels()) if len(train_ds) else train_ds.actions.numpy(),
                       cfg.class_weighting)
    loss_fn = torch.nn.CrossEntropyLoss(weight=cw, ignore_index=IGNORE)
    sampler = balanced_sampler(train_ds, cfg.seed) if cfg.class_weighting == "sampler" else None
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        generator=gen if sampler is None else None, num_workers=cfg.num_workers)
    val_loader = DataLoader(val_ds, batch_size=cfg.eval_batch_size, shuffle=False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.gradient_checkpointing and hasattr(model.backbone, "gradient_checkpointing_enable"):
        model.backbone.gradient_checkpointing_enable()
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    loss_fn = loss_fn.to(accelerator.device)
    steps_per_epoch = max(1, math.ceil(len(loader) / cfg.grad_accum))
    total = steps_per_epoch * cfg.epochs
    warmup = default_warmup(total) if cfg.warmup_steps is None else cfg.warmup_steps
    scheduler = make_scheduler(optimizer, warmup, total, cfg.schedule, cfg.min_lr_ratio)
    log.info("training: %d windows, %d batches/epoch, %d optimizer steps (warm-up %d), device %s",
             len(train_ds), len(loader), total, warmup, accelerator.device)

    task = None
    if progress is not None:
        task = progress.add_task(f"training {cfg.backbone}", total=cfg.epochs * len(loader))
    metrics_path = out_dir / "metrics.jsonl"
    lines: list[str] = []
    history: list[dict] = []
    best_f1, best_epoch, best_val, bad = -1.0, -1, {}, 0
    opt_steps = 0
    t_start = time.perf_counter()
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        epoch_run = _train_one_epoch(model, loader, loss_fn, optimizer, scheduler, accelerator, params, cfg,
                                     progress, task, f"epoch {epoch + 1}/{cfg.epochs}")
        opt_steps += epoch_run.optimizer_steps
        train_seconds = time.perf_counter() - t0
        val = validate(accelerator.unwrap_model(model), val_loader, accelerator.device)
        row = {
            "epoch": epoch, "train_loss": epoch_run.mean_loss, "train_accuracy": epoch_run.running["accuracy"],
            "train_macro_f1": epoch_run.running["macro_f1"], "val_loss": val["loss"],
            "val_accuracy": val["accuracy"], "val_balanced_accuracy": val["balanced_accuracy"],
            "val_macro_f1": val["macro_f1"], "lr": optimizer.param_groups[0]["lr"], "lr_max": epoch_run.lr_max,
            "optimizer_steps": opt_steps, "seconds": round(train_seconds, 3),
        }
        improved = val["macro_f1"] > best_f1
        row["best"] = improved
        if improved:
            best_f1, best_epoch, best_val, bad = val["macro_f1"], epoch, val, 0
            if accelerator.is_main_process:
                save_checkpoint(accelerator.unwrap_model(model), norm, out_dir / "checkpoint",
                                meta={**(checkpoint_meta or {}), "epoch": epoch, "val": val})
        else:
            bad += 1
        history.append(row)
        if accelerator.is_main_process:
            lines.append(json.dumps(row))
            atomic_write_text(metrics_path, "\n".join(lines) + "\n")
        accelerator.wait_for_everyone()
        log.info("epoch %d: train loss %.4f, val macro-F1 %.4f%s", epoch, row["train_loss"], val["macro_f1"],
                 " (best)" if improved else "")
        if on_epoch is not None:
            on_epoch(epoch, row)
        if bad >= cfg.patience:
            log.info("early stop after epoch %d: no better validation macro-F1 for %d epochs", epoch, bad)
            break
    if task is not None:
        progress.update(task, completed=cfg.epochs * len(loader))
    return FitResult(best_epoch, best_val, history, time.perf_counter() - t_start, opt_steps, warmup, total)


@dataclass
class _EpochRun:
    mean_loss: float
    running: dict
    """Accuracy and macro-F1 over the epoch's own batches, as they were trained (no extra pass)."""
    lr_max: float
    optimizer_steps: int


def _train_one_epoch(model, loader, loss_fn, optimizer, scheduler, accelerator, params: list, cfg: TrainConfig,
                     progress, task, label: str) -> _EpochRun:
    """One pass over ``loader`` with gradient accumulation and clipping; the progress task shows ``label`` and the
    running mean loss."""
    model.train()
    loss_sum, n_batches, lr_max, steps = 0.0, 0, 0.0, 0
    seen_labels, seen_preds = [], []
    for batch in loader:
        with accelerator.accumulate(model):
            logits = model(batch["returns"], batch["states"], batch["actions"])
            loss = loss_fn(logits.float().reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1))
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm:
                accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
            if accelerator.sync_gradients:
                lr_max = max(lr_max, optimizer.param_groups[0]["lr"])
                scheduler.step()
                steps += 1
        loss_sum += float(loss.detach())
        n_batches += 1
        keep = batch["labels"] != IGNORE
        seen_labels.append(batch["labels"][keep].cpu())
        seen_preds.append(logits.detach().argmax(-1)[keep].cpu())
        if task is not None:
            progress.update(task, advance=1, description=f"{label} loss {loss_sum / n_batches:.4f}")
    running = (classification_metrics(torch.cat(seen_labels).numpy(), torch.cat(seen_preds).numpy())
               if seen_labels else {"accuracy": float("nan"), "macro_f1": float("nan")})
    return _EpochRun(loss_sum / max(n_batches, 1), running, lr_max, steps)


def train_steps_probe(model, train_ds: WindowDataset, cfg: TrainConfig, steps: int, device) -> float:
    """Seconds per optimizer step of ``model`` over ``steps`` batches (for the LoRA vs full fine-tuning cost table)."""
    loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=IGNORE)
    model.to(device).train()
    times = []
    for i, batch in enumerate(loader):
        if i >= steps + 1:
            break
        batch = {k: v.to(device) for k, v in batch.items()}
        t0 = time.perf_counter()
        logits = model(batch["returns"], batch["states"], batch["actions"])
        loss = loss_fn(logits.float().reshape(-1, 3), batch["labels"].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        if i > 0:  # the first step pays for lazy initialisation
            times.append(time.perf_counter() - t0)
    return float(np.mean(times)) if times else 0.0
