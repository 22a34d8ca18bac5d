"""Adapters that let a trained classifier act as the simulator's router AQM: log fields in, action out.

The simulator calls ``decide(fields)`` with the 24 fields the router is about to log for the packet
(``dequeue_action`` not yet known). The adapter picks the pool preset's features from those fields in
the pool's order -- converting the two probabilities from the log's 2^31-1 scale to [0, 1], as the
parser does -- and asks the wrapped model. So the policy sees exactly what the log records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

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

    def latency_ms(self) -> dict[str, float]:
        if not self.latencies_s:
            return {"p50": float("nan"), "p99": float("nan"), "n": 0}
        arr = np.asarray(self.latencies_s) * 1e3
        return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "n": int(arr.size)}
