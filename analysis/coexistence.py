"""The coexistence metric of L4S studies: how much a scalable flow gets next to a classic one, with intervals.

Per repeat, from the bulk flows' steady-state throughputs (:func:`l4stb.analysis.metrics.flow_throughputs`);
short flows and unresponsive (UDP) flows are never part of it (:mod:`l4stb.analysis.traffic`):

* **per-flow ratio** (``scalable/classic``): the mean throughput of one scalable flow (DCTCP, Prague) over
  the mean throughput of one classic flow (Cubic, NewReno). 1 is an equal share per flow; DualPI2's
  coupling aims near 1 for flows of the same RTT.
* **per CC pair** (``dctcp (FreeBSD)/cubic (FreeBSD)``, ...): the same ratio for each scalable CC against each
  classic CC, a CC on each sender stack being its own (:mod:`l4stb.analysis.senders`).

Each ratio is computed in every repeat that has both kinds of flows, and reported as the mean of those
per-repeat ratios with its 95 % t-interval and the n it rests on. A repeat whose bulk flows carried next to
nothing (:func:`l4stb.analysis.metrics.bulk_na_reason`) has no ratio: :attr:`Coexistence.na` says why. Jain's index per run sits beside it
(:attr:`l4stb.analysis.metrics.RunMetrics.jain`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from l4stb.analysis import metrics as M
from l4stb.config import SCALABLE_CCS


@dataclass(frozen=True)
class Coexistence:
    """Scalable/classic throughput ratios of a run: per flow over all CCs, and per (scalable, classic) CC pair."""

    per_flow: M.Interval
    pairs: dict[tuple[str, str], M.Interval]
    per_repeat: dict[int, float]
    """The per-flow ratio of each repeat (NaN where a repeat lacks one of the two kinds)."""
    na: str = ""
    """Why the ratio is undefined over the run ("" when it is defined)."""

    @property
    def defined(self) -> bool:
        return self.per_flow.n > 0

    def to_json(self) -> dict:
        return {"scalable_classic_ratio": self.per_flow.to_json(),
                "pairs": {f"{s}/{c}": iv.to_json() for (s, c), iv in self.pairs.items()}}


def _ratio(num: Sequence[float], den: Sequence[float]) -> float:
    a, b = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not len(a) or not len(b) or b.mean() <= 0:
        return float("nan")
    return float(a.mean() / b.mean())


def coexistence(metrics: M.RunMetrics, scalable_ccs: Sequence[str] = SCALABLE_CCS) -> Coexistence:
    per_flow: dict[int, float] = {}
    pairs: dict[tuple[str, str], list[float]] = {}
    for rm in metrics.repeats:
        scal = [f for f in rm.bulk_flows if f.cc in scalable_ccs]
        clas = [f for f in rm.bulk_flows if f.cc not in scalable_ccs]
        if rm.bulk_na:
            per_flow[rm.repeat] = float("nan")
            continue
        per_flow[rm.repeat] = _ratio([f.throughput_mbps for f in scal], [f.throughput_mbps for f in clas])
        for s in sorted({f.cc_name for f in scal}):
            for c in sorted({f.cc_name for f in clas}):
                pairs.setdefault((s, c), []).append(_ratio([f.throughput_mbps for f in scal if f.cc_name == s],
                                                           [f.throughput_mbps for f in clas if f.cc_name == c]))
    iv = M.confidence_interval(per_flow.values(), bounds=M.NON_NEGATIVE)
    na = "" if iv.n else (metrics.bulk_na or "no scalable and classic bulk flows side by side")
    return Coexistence(iv, {k: M.confidence_interval(v, bounds=M.NON_NEGATIVE) for k, v in pairs.items()}, per_flow, na)
