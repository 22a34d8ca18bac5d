"""Evaluation: classification metrics on a split, state-only baselines, and cost (params, memory, latency, throughput).

All metrics are plain JSON-able dicts of floats/ints/lists; class order is (forward, drop, mark).
"""

from __future__ import annotations

import ctypes
import logging
import resource
import threading
import time
from contextlib import contextmanager

import numpy as np
import psutil
import torch
from torch.utils.data import DataLoader

from l4stb.analysis.pool import ACTION_NAMES, ExperiencePool, NormStats
from l4stb.model.dataset import IGNORE, WindowDataset

log = logging.getLogger(__name__)
LABELS = [0, 1, 2]


# -- classification -------------------------------------------------------------------------------------


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Accuracy, balanced accuracy, macro-F1 (over the classes present in y_true or y_pred), per-class P/R/F1, confusion."""
    # lazy: sklearn is slow to import
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if len(y_true) == 0:
        return {"n": 0, "accuracy": 0.0, "balanced_accuracy": 0.0, "macro_f1": 0.0, "per_class": {},
                "confusion": [[0] * 3 for _ in range(3)]}
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=LABELS, zero_division=0)
    present = [c for c in LABELS if (y_true == c).any() or (y_pred == c).any()]
    true_present = [c for c in LABELS if (y_true == c).any()]
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_true == y_pred).mean()),
        "balanced_accuracy": float(np.mean([r[c] for c in true_present])),
        "macro_f1": float(np.mean([f[c] for c in present])),
        "per_class": {
            ACTION_NAMES[c]: {"precision": float(p[c]), "recall": float(r[c]), "f1": float(f[c]), "support": int(s[c])}
            for c in LABELS
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=LABELS).tolist(),
    }


@torch.no_grad()
def predict(model, dataset: WindowDataset, batch_size: int = 64, device: torch.device | str | None = None,
            loader: DataLoader | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """(labels, predictions, mean unweighted cross-entropy) over every real position of ``dataset``."""
    was_training = model.training
    model.eval()
    if device is None:
        device = next(model.parameters()).device
    loader = loader or DataLoader(dataset, batch_size=batch_size, shuffle=False)
    ys, ps, loss_sum, n = [], [], 0.0, 0
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(batch["returns"], batch["states"], batch["actions"]).float()
        labels = batch["labels"]
        mask = labels != IGNORE
        sel = logits[mask]
        loss_sum += float(torch.nn.functional.cross_entropy(sel, labels[mask], reduction="sum"))
        n += int(mask.sum())
        ys.append(labels[mask].cpu().numpy())
        ps.append(sel.argmax(-1).cpu().numpy())
    model.train(was_training)
    if not ys:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0.0
    return np.concatenate(ys), np.concatenate(ps), loss_sum / max(n, 1)


# -- baselines ------------------------------------------------------------------------------------------


def fit_baselines(train: ExperiencePool, norm: NormStats, seed: int = 0, max_fit_rows: int = 200_000) -> dict:
    """The learned state-only baselines, fit on the (normalised) train split: ``{name: sklearn classifier}``.

    Logistic regression and a depth-6 decision tree, both with balanced class weights; they see only the
    current state row (no history). Empty when the train split has a single action class.
    """
    # lazy: sklearn is slow to import
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    x, y = norm.apply(train.states), train.actions
    if len(y) > max_fit_rows:
        idx = np.random.default_rng(seed).choice(len(y), max_fit_rows, replace=False)
        x, y = x[idx], y[idx]
    if len(np.unique(y)) < 2:
        log.warning("train split has a single action class; learned baselines skipped")
        return {}
    models = {
        "logistic_regression": LogisticRegression(max_iter=500, class_weight="balanced"),
        "decision_tree": DecisionTreeClassifier(max_depth=6, class_weight="balanced", random_state=seed),
    }
    for clf in models.values():
        clf.fit(x, y)
    return models


def baseline_metrics(train: ExperiencePool, test: ExperiencePool, norm: NormStats, seed: int = 0,
                     max_fit_rows: int = 200_000) -> dict[str, dict]:
    """Test metrics of always-forward and of :func:`fit_baselines`' classifiers (fit on train)."""
    out = {"always_forward": classification_metrics(test.actions, np.zeros(len(test), np.int64))}
    xt = norm.apply(test.states)
    t0 = time.perf_counter()
    models = fit_baselines(train, norm, seed, max_fit_rows)
    fit_s = time.perf_counter() - t0
    for name, clf in models.items():
        out[name] = {**classification_metrics(test.actions, clf.predict(xt)), "fit_seconds": round(fit_s, 3)}
    return out


# -- cost -----------------------------------------------------------------------------------------------


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


class PeakMemory:
    """Peak memory during a block: CUDA max allocated on a GPU, else RSS sampled with psutil every 20 ms."""

    def __init__(self, device: torch.device | str = "cpu", interval_s: float = 0.02):
        self.device = torch.device(device)
        self.interval_s = interval_s
        self.start_mb = 0.0
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def kind(self) -> str:
        return "cuda_max_allocated" if self.device.type == "cuda" else "rss"

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_mb = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            _trim_malloc()
            self.start_mb = self.peak_mb = rss_mb()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_mb = max(self.peak_mb, rss_mb())

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            if self._thread:
                self._thread.join()
            self.peak_mb = max(self.peak_mb, rss_mb())

    def as_dict(self) -> dict:
        return {"kind": self.kind, "peak_mb": round(self.peak_mb, 1), "start_mb": round(self.start_mb, 1),
                "delta_mb": round(self.peak_mb - self.start_mb, 1)}


def _trim_malloc() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def process_peak_rss_mb() -> float:
    """Lifetime peak RSS of this process (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def torch_threads(threads: int | None):
    """torch's intra-op threads set to ``threads`` inside the block (None: left as they are), restored after."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def decision_latency(policy, states: np.ndarray, n: int = 300, warmup: int = 20, threads: int | None = 1) -> dict:
    """p50/p99/mean latency (ms) of ``policy.decide`` at batch 1 over consecutive raw state rows.

    Measured with ``threads`` intra-op threads (default 1: a batch of one gains nothing from more, and on
    a busy machine extra threads only add waiting); the previous setting is restored afterwards.
    """
    policy.reset()
    rows = states[: n + warmup]
    if len(rows) == 0:
        return {"p50": 0.0, "p99": 0.0, "mean": 0.0, "n": 0, "threads": threads}
    before = torch.get_num_threads()
    times = []
    try:
        with torch_threads(threads):
            for i, row in enumerate(rows):
                t0 = time.perf_counter()
                policy.decide(row)
                if i >= warmup or len(rows) <= warmup:
                    times.append((time.perf_counter() - t0) * 1000)
    finally:
        policy.reset()
    t = np.asarray(times)
    return {"p50": float(np.percentile(t, 50)), "p99": float(np.percentile(t, 99)), "mean": float(t.mean()),
            "n": int(len(t)), "threads": threads or before}
