"""The one entry point the CLI calls: train the L4S-LLM on a pool's splits, evaluate it and its baselines, write metrics.json.

``train_and_evaluate(splits, out_dir, cfg)`` writes, atomically:

* ``out_dir/metrics.jsonl`` – one line per epoch (train loss, val loss/accuracy/macro-F1, lr, seconds)
* ``out_dir/checkpoint/``  – the best epoch (see :mod:`l4stb.model.checkpoint`)
* ``out_dir/metrics.json`` – nested: ``test.{accuracy,balanced_accuracy,macro_f1,per_class,confusion}``
  (return token as deployed: target minus observed rewards, see ``TrainConfig.eval_returns``),
  ``test_by_returns.{target,realized}.{accuracy,balanced_accuracy,macro_f1}`` (the realised
  return-to-go sums future rewards: that is how the original scored, and it leaks),
  ``baselines.<name>.<same keys>``, ``latency_ms.{p50,p99,mean}``, ``decisions_per_s``,
  ``params.{trainable,total}``, ``memory.{peak_mb,...}``, ``train_seconds``, ``backbone``, ``config``,
  ``cost.{lora,full_finetune}``, ``best_epoch``, ``epochs_run``, ``data``.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from l4stb.analysis.pool import NormStats, PoolSplits
from l4stb.errors import L4stbError
from l4stb.model.checkpoint import load_checkpoint, rebuild_backbone
from l4stb.model.config import TrainConfig
from l4stb.model.dataset import WindowDataset, auto_return_scale, scaled_returns
from l4stb.model.evaluate import (PeakMemory, baseline_metrics, classification_metrics,
                                  decision_latency, predict, process_peak_rss_mb)
from l4stb.model.inference import Policy
from l4stb.model.policy import PolicyConfig, build_model, param_counts
from l4stb.model.train import EpochCallback, fit, make_accelerator, train_steps_probe
from l4stb.workspace import atomic_write_json

log = logging.getLogger(__name__)


@dataclass
class ModelReport:
    """What a training run produced: the metrics (as written to metrics.json) and where the files are."""

    out_dir: Path
    metrics: dict
    checkpoint_dir: Path
    metrics_path: Path
    epochs_path: Path
    history: list[dict] = field(default_factory=list)

    @property
    def test_macro_f1(self) -> float:
        return float(self.metrics["test"]["macro_f1"])


def _cap(pool, n: int | None):
    return pool if n is None or len(pool) <= n else pool.subset(np.arange(n))


def policy_config(splits: PoolSplits, cfg: TrainConfig, gamma: float, return_scale: float) -> PolicyConfig:
    train = splits.train
    target = float(scaled_returns(train, gamma, return_scale).mean()) if len(train) else 0.0
    return PolicyConfig(
        backbone=cfg.backbone, layers=cfg.layers, n_features=train.states.shape[1],
        feature_names=list(splits.meta.feature_names), window=cfg.window, encoder=cfg.encoder,
        state_dim=cfg.state_dim, lora_rank=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        gamma=gamma, return_scale=return_scale, target_return=target,
    )


def _check_splits(splits: PoolSplits) -> None:
    for name in ("train", "val", "test"):
        if len(splits.split(name)) == 0:
            raise L4stbError(f"the experience pool '{splits.meta.name}' has an empty {name} split; the model needs "
                             "rows in train, val and test. Rebuild the pool with more repeats or other split fractions.")
    if splits.train.states.shape[1] != len(splits.meta.feature_names):
        raise L4stbError(f"pool '{splits.meta.name}': meta.json lists {len(splits.meta.feature_names)} features but "
                         f"the states have {splits.train.states.shape[1]} columns; rebuild the pool.")


def train_and_evaluate(splits: PoolSplits, out_dir: Path, cfg: TrainConfig | None = None, progress=None,
                       on_epoch: EpochCallback | None = None) -> ModelReport:
    """Train, keep the best validation epoch, evaluate on test against baselines, measure cost; write metrics.json.

    ``progress`` may be a ``rich.progress.Progress`` (a task per stage is added); ``on_epoch(epoch, row)``
    is called after every epoch with the metrics.jsonl row.
    """
    cfg = (cfg or TrainConfig()).validated()
    _check_splits(splits)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # lazy: accelerate is slow to import
    from accelerate.utils import set_seed

    set_seed(cfg.seed)
    norm = splits.meta.norm or NormStats.fit(splits.train.states)
    gamma = cfg.gamma if cfg.gamma is not None else float(splits.meta.gamma or 1.0)
    return_scale = cfg.return_scale or auto_return_scale(splits.train, gamma)
    pcfg = policy_config(splits, cfg, gamma, return_scale)

    val_pool, test_pool = _cap(splits.val, cfg.max_eval_rows), _cap(splits.test, cfg.max_eval_rows)
    common = dict(window=cfg.window, gamma=gamma, return_scale=return_scale)
    train_ds = WindowDataset(splits.train, norm, layout="train", stride=cfg.effective_stride,
                             max_windows=cfg.max_train_windows, seed=cfg.seed, **common)
    ev = dict(layout="eval", returns=cfg.eval_returns, target_return=pcfg.target_return, **common)
    val_ds = WindowDataset(val_pool, norm, **ev)
    test_ds = WindowDataset(test_pool, norm, **ev)

    accelerator = make_accelerator(cfg)
    device = accelerator.device
    with PeakMemory(device) as mem:
        model = build_model(pcfg)
        params = param_counts(model)
        log.info("model: backbone %s (%s, %d layers, hidden %d), params %s", pcfg.backbone, pcfg.family,
                 pcfg.layers, pcfg.hidden_size, params)
        result = fit(model, train_ds, val_ds, cfg, out_dir, norm, accelerator, on_epoch=on_epoch, progress=progress,
                     checkpoint_meta={"train_config": cfg.to_dict(), "pool": splits.meta.name})
    train_seconds = result.train_seconds
    del model
    accelerator.free_memory()
    gc.collect()

    metrics: dict = {"backbone": {"name": pcfg.backbone, "family": pcfg.family, "layers": pcfg.layers,
                                  "hidden_size": pcfg.hidden_size},
                     "config": cfg.to_dict(), "params": params, "train_seconds": round(train_seconds, 3),
                     "best_epoch": result.best_epoch, "epochs_run": len(result.history),
                     "optimizer_steps": result.optimizer_steps, "warmup_steps": result.warmup_steps,
                     "best_val": result.best_val}
    if not accelerator.is_main_process:
        return ModelReport(out_dir, metrics, out_dir / "checkpoint", out_dir / "metrics.json",
                           out_dir / "metrics.jsonl", result.history)

    stage = _Stages(progress)
    stage("evaluating the best checkpoint on the test split")
    ckpt = load_checkpoint(out_dir / "checkpoint", device=str(device))
    model = ckpt.model
    metrics["test"], metrics["test_by_returns"], metrics["decisions_per_s"] = _test_metrics(
        model, test_ds, test_pool, norm, ev, cfg)
    if cfg.baselines:
        stage("fitting the baselines (logistic regression, decision tree)")
        metrics["baselines"] = baseline_metrics(splits.train, test_pool, norm, seed=cfg.seed)
    stage("timing decisions at batch 1 with the KV cache")
    policy = Policy(model, norm, device=device)
    # batch-1 latency single-threaded for small models (more threads only add waiting), all threads for big ones
    lat = decision_latency(policy, test_pool.states, n=cfg.latency_decisions,
                           threads=1 if pcfg.hidden_size <= 256 else None)
    metrics["latency_ms"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in lat.items()}
    metrics["memory"] = {**mem.as_dict(), "process_peak_rss_mb": round(process_peak_rss_mb(), 1),
                         "estimate_mb": round(_memory_estimate_mb(params), 1)}
    metrics["cost"] = _training_cost(result, pcfg, params, mem)
    del model, policy, ckpt
    gc.collect()
    if cfg.compare_full_finetune:
        stage("probing LoRA vs full fine-tuning cost")
        _add_probed_cost(metrics["cost"], _cost_probes(pcfg, train_ds, cfg, device), cfg.probe_steps)
    metrics["data"] = _data_record(splits, val_pool, test_pool, len(train_ds), gamma, return_scale)
    atomic_write_json(out_dir / "metrics.json", metrics)
    stage.done()
    return ModelReport(out_dir, metrics, out_dir / "checkpoint", out_dir / "metrics.json", out_dir / "metrics.jsonl",
                       result.history)


def _test_metrics(model, test_ds: WindowDataset, test_pool, norm: NormStats, ev: dict,
                  cfg: TrainConfig) -> tuple[dict, dict, float]:
    """The test split's classification metrics with the configured returns-to-go, the headline three under
    both kinds of returns (target and realized), and the batched decisions per second of the first pass.

    The throughput is timed on the test pass itself (every real position of every window is one decision)
    rather than on a separate sample of batches: the same forward, measured over the whole split, at no cost."""
    t0 = time.perf_counter()
    y, p, test_loss = predict(model, test_ds, cfg.eval_batch_size)
    decisions_per_s = round(len(y) / max(time.perf_counter() - t0, 1e-9), 1)
    test = {**classification_metrics(y, p), "loss": test_loss, "returns": cfg.eval_returns}
    other = "realized" if cfg.eval_returns == "target" else "target"
    y2, p2, _ = predict(model, WindowDataset(test_pool, norm, **{**ev, "returns": other}), cfg.eval_batch_size)
    m2 = classification_metrics(y2, p2)
    by_returns = {
        mode: {k: mm[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")}
        for mode, mm in ((cfg.eval_returns, test), (other, m2))}
    return test, by_returns, decisions_per_s


def _training_cost(result, pcfg, params: dict, mem: PeakMemory) -> dict:
    """The training run's own cost (time per epoch and step, memory), under ``lora`` or ``full_finetune``."""
    steps = max(result.optimizer_steps, 1)
    return {"lora" if pcfg.lora_rank > 0 else "full_finetune": {
        "source": "training run", "lora_rank": pcfg.lora_rank, **params,
        "train_seconds_per_epoch": _per_epoch(result.history),
        "seconds_per_step": round(sum(h["seconds"] for h in result.history) / steps, 4),
        "peak_mb": mem.as_dict()["peak_mb"], "delta_mb": mem.as_dict()["delta_mb"],
        "estimate_mb": round(_memory_estimate_mb(params), 1)}}


def _add_probed_cost(cost: dict, probes: dict, probe_steps: int) -> None:
    """Fill ``cost`` with the short probes of LoRA and full fine-tuning, where the training run has no number."""
    for mode, probe in probes.items():
        entry = cost.setdefault(mode, {"source": f"probe ({probe_steps} optimizer steps)"})
        for k, v in probe.items():
            entry.setdefault(k, v)  # the training run's own numbers win over the probe's
        entry.setdefault("seconds_per_step", probe.get("probe_seconds_per_step"))
        entry.setdefault("peak_mb", probe.get("probe_peak_mb"))
        entry.setdefault("delta_mb", probe.get("probe_delta_mb"))


def _data_record(splits: PoolSplits, val_pool, test_pool, train_windows: int, gamma: float,
                 return_scale: float) -> dict:
    """What the model was trained and tested on: the pool, its features, rows, windows and action counts."""
    return {"pool": splits.meta.name, "features": list(splits.meta.feature_names),
            "train_rows": len(splits.train), "val_rows": len(val_pool), "test_rows": len(test_pool),
            "train_windows": train_windows, "gamma": gamma, "return_scale": return_scale,
            "train_action_counts": splits.train.action_counts(),
            "test_action_counts": test_pool.action_counts()}


class _Stages:
    """One indeterminate task on a rich Progress whose description follows the evaluation stages."""

    def __init__(self, progress):
        self.progress, self.task = progress, None

    def __call__(self, text: str) -> None:
        log.info("%s", text)
        if self.progress is None:
            return
        if self.task is None:
            self.task = self.progress.add_task(text, total=None)
        else:
            self.progress.update(self.task, description=text)

    def done(self) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, description="evaluation done", total=1, completed=1)


def _per_epoch(history: list[dict]) -> float:
    return round(float(np.mean([h["seconds"] for h in history])), 3) if history else 0.0


def _memory_estimate_mb(params: dict) -> float:
    """fp32 weights + gradients and two AdamW moments for the trainable ones."""
    return (params["total"] * 4 + params["trainable"] * 4 * 3) / 2**20


def _cost_probes(pcfg: PolicyConfig, train_ds: WindowDataset, cfg: TrainConfig, device) -> dict:
    """A few optimizer steps of the other fine-tuning mode (and this one) on the same batches: seconds/step and memory."""
    out = {}
    modes = [("lora", pcfg.lora_rank or 8), ("full_finetune", 0)]
    for name, rank in modes:
        probe_cfg = PolicyConfig.from_dict({**pcfg.to_dict(), "lora_rank": rank})
        model = None
        try:
            with PeakMemory(device) as mem:
                model = build_model(probe_cfg, rebuild_backbone(probe_cfg))
                sec = train_steps_probe(model, train_ds, cfg, cfg.probe_steps, device)
                params = param_counts(model)
        except (torch.cuda.OutOfMemoryError, MemoryError) as exc:  # pragma: no cover - big models only
            out.setdefault(name, {})["error"] = f"out of memory: {exc}"
            continue
        finally:
            model = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        out[name] = {"lora_rank": rank, "trainable": params["trainable"], "total": params["total"],
                     "probe_steps": cfg.probe_steps, "probe_seconds_per_step": round(sec, 4),
                     "probe_peak_mb": mem.as_dict()["peak_mb"], "probe_delta_mb": mem.as_dict()["delta_mb"],
                     "estimate_mb": round(_memory_estimate_mb(params), 1)}
    return out
