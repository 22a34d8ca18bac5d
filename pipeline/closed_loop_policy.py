"""Adapters that let a trained classifier act as the simulator's router AQM: log fields in, action out.

The simulator calls ``decide(fields)`` with the 24 fields the router is about to log for the packet
(``dequeue_action`` not yet known). The adapter picks the pool preset's features from those fields in
the pool's order -- converting the two probabilities from the log's 2^31-1 scale to [0, 1], as the
parser does -- and asks the wrapped model. So the policy sees exactly what the log records.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from l4stb.errors import L4stbError
from l4stb.logformat import FIELD_INDEX, PROB_SCALE, PROBABILITY_FIELDS


def feature_extractor(feature_names: Sequence[str]) -> Callable[[Sequence[int]], np.ndarray]:
    """A function mapping a log record to the feature vector of ``feature_names``."""
    missing = [n for n in feature_names if n not in FIELD_INDEX]
    if missing:
        raise L4stbError(
            f"the pool's features {missing} are not fields of the router log, so a closed-loop policy cannot see "
            "them; train on a pool built from l4stb runs (presets paper7, paper8 or dualpi2)."
        )
    index = np.array([FIELD_INDEX[n] for n in feature_names])
    scale = np.array([1.0 / PROB_SCALE if n in PROBABILITY_FIELDS else 1.0 for n in feature_names])

    def extract(fields: Sequence[int]) -> np.ndarray:
        return (np.asarray(fields, dtype=np.float64)[index] * scale).astype(np.float32)

    return extract


def tree_decider(clf) -> Callable[[np.ndarray], int]:
    """scikit-learn's ``DecisionTreeClassifier.predict`` for one float32 row, walked in plain Python.

    ``predict`` validates its input on every call, about 0.1 ms; the closed loop asks once per packet, so the
    tree baseline's three repeats spent some 40 s of the main job in that check. The walk is predict's own
    (sklearn/tree/_tree.pyx ``_apply_dense``: ``X[i, feature] <= threshold``, a float32 value against a double
    threshold; the class is ``classes_`` at the argmax of the leaf's value, as ``predict`` takes it), so the
    decisions are the same (``tests/test_closed_loop_policy.py`` holds them to predict's).
    """
    tree = clf.tree_
    left, right = tree.children_left.tolist(), tree.children_right.tolist()
    feature, threshold = tree.feature.tolist(), tree.threshold.tolist()
    leaf_class = [int(c) for c in clf.classes_.take(np.argmax(tree.value[:, 0, :], axis=1))]

    def decide(row: np.ndarray) -> int:
        values = row.tolist()  # float32 -> Python float (a double), as the Cython comparison promotes it
        node = 0
        while left[node] != -1:  # sklearn's TREE_LEAF
            node = left[node] if values[feature[node]] <= threshold[node] else right[node]
        return leaf_class[node]

    return decide


@dataclass
class TimedPolicy:
    """A policy for the simulator's ``policy`` AQM that also measures its own decision latency."""

    label: str
    decide_features: Callable[[np.ndarray], int]
    extract: Callable[[Sequence[int]], np.ndarray]
    every: int = 1
    latencies_s: list[float] = field(default_factory=list)
    reset_fn: Callable[[], None] | None = None

    def decide(self, fields: Sequence[int]) -> int:
        t0 = time.perf_counter()
        action = int(self.decide_features(self.extract(fields)))
        self.latencies_s.append(time.perf_counter() - t0)
        return action

    def reset(self) -> None:
        if self.reset_fn is not None:
            self.reset_fn()


def latency_summary(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50 and p99 in ms of a policy's decision times (NaN when it never decided), and their count."""
    if not latencies_s:
        return {"p50": float("nan"), "p99": float("nan"), "n": 0}
    arr = np.asarray(latencies_s) * 1e3
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "n": int(arr.size)}


@dataclass(frozen=True)
class PolicySpec:
    """What a closed-loop series' policy is, in a form a worker process rebuilds it from.

    A :class:`TimedPolicy` holds closures and a loaded model, which do not cross processes; the spec holds
    the checkpoint's folder (an L4S-LLM), a fitted scikit-learn baseline or a distilled tree, all picklable.
    Exactly one of ``checkpoint``, ``classifier`` and ``blob`` is set."""

    label: str
    every: int
    feature_names: tuple[str, ...] = ()
    checkpoint: str | None = None
    classifier: Any = None
    norm: Any = None  # the pool's NormStats, which the classifier was fitted behind
    blob: Any = None  # a l4stb.policyblob.PolicyBlob: it decides on the raw log record

    def build(self) -> TimedPolicy:
        if self.blob is not None:
            return TimedPolicy(self.label, self.blob.decide, _log_record, self.every)
        extract = feature_extractor(self.feature_names)
        if self.checkpoint is not None:
            # lazy: loads torch, slow to import
            from l4stb.model.inference import load_policy

            llm = load_policy(self.checkpoint)
            return TimedPolicy(self.label, llm.decide, extract, self.every, reset_fn=llm.reset)
        return TimedPolicy(self.label, classifier_decider(self.classifier, self.norm), extract, self.every)


def classifier_decider(clf, norm) -> Callable[[np.ndarray], int]:
    """One packet's action from a fitted baseline: a tree walked directly (:func:`tree_decider`), another model
    through its ``predict``."""
    if hasattr(clf, "tree_"):
        walk = tree_decider(clf)
        return lambda x: walk(norm.apply(x[None, :])[0])
    return lambda x: int(clf.predict(norm.apply(x[None, :]))[0])


def one_thread_here():
    """This process decides on one intra-op thread inside the block, as every worker does, so a series' decisions
    are the same arithmetic whether it runs here (``--jobs 1``) or in a worker."""
    # lazy: loads torch, slow to import (already loaded by the training that precedes every closed loop)
    from l4stb.model.evaluate import torch_threads

    return torch_threads(1)


def one_thread_per_worker() -> None:
    """Worker initializer: one intra-op thread each. A batch-1 decision of a small model is bound by dispatch, not
    arithmetic (``decision_latency`` times it on one thread for the same reason), and the workers already share
    the cores; set before torch is imported in the fresh worker, which reads it once."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"


def _log_record(fields):
    return fields
