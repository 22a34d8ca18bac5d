"""What the AQM itself was doing, read from the router log: overload share, per-queue drop/mark rates, and its state over time.

* **Overload share** (:func:`overload_share`): the router logs DualPI2's ``flags`` on every decision; bit1
  is set while the PI controller is in overload (``p_CL >= 1`` or ``p_C >= p_Cmax``, RFC 9332 A.2). The flag
  only changes at a PI update, and every line carries the time of the last update
  (``measurement_start_time``), so one PI update is one distinct ``measurement_start_time`` of a repeat.
  The share is the fraction of those updates whose decisions carry bit1. Updates with no packet decided
  before the next one are not in the log and so not counted. The bit means overload only under DualPI2;
  other AQMs log their own flags there, and the share is left out for them.
* **Drop and mark rates per queue** (:func:`queue_rates`): each queue's drops (marks) over its decisions, per
  repeat, with the 95 % t-interval over repeats. A pooled rate over both queues hides a worse C rate behind
  a busy L queue, so every verdict reads these per queue.
* **State over time** (:func:`aqm_timeseries`): per time bin of one repeat, each queue's mean sojourn and
  queue length, and the probabilities p' (base PI probability), p_C = p'^2 and p_CL = min(1, k p') that
  DualPI2 derives from it (RFC 9332 section 2.4; k = the scenario's coupling factor).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from l4stb.analysis import metrics as M

OVERLOAD_BIT = 0x2
"""``flags`` bit1: DualPI2 overload (testbed/logformat.py, FIELDS['flags'])."""


@dataclass(frozen=True)
class OverloadShare:
    """Share of PI updates in overload, per repeat and over the run (CI of the per-repeat shares)."""

    per_repeat: dict[int, float]
    updates: dict[int, int]
    """PI updates seen in each repeat's log."""
    interval: M.Interval

    @classmethod
    def merge(cls, parts: "list[OverloadShare]") -> "OverloadShare":
        """One share over several parts' repeats (a run read one repeat at a time)."""
        per = {r: v for p in parts for r, v in p.per_repeat.items()}
        updates = {r: n for p in parts for r, n in p.updates.items()}
        return cls(per, updates, _interval(per))

    def to_json(self) -> dict:
        return {"mean": M._num(self.interval.mean), "ci95": self.interval.to_json(),
                "per_repeat": {str(r): M._num(v) for r, v in self.per_repeat.items()},
                "pi_updates": {str(r): n for r, n in self.updates.items()}}


def overload_share(packets: pd.DataFrame) -> OverloadShare:
    """Fraction of logged PI updates with the overload bit set, per repeat (NaN when the log has no flags, or
    when the logger could not see them: a real-Linux capture, whose flags are missing)."""
    per: dict[int, float] = {}
    counts: dict[int, int] = {}
    if not packets.empty and {"flags", "measurement_start_time"} <= set(packets.columns):
        for repeat, g in packets.groupby("repeat", sort=True, observed=True):
            updates = g.dropna(subset=["flags", "measurement_start_time"]).drop_duplicates("measurement_start_time")
            counts[int(repeat)] = len(updates)
            flags = updates["flags"].to_numpy(dtype=np.int64)
            per[int(repeat)] = float(((flags & OVERLOAD_BIT) != 0).mean()) if len(flags) else float("nan")
    return OverloadShare(per, counts, _interval(per))


def _interval(per_repeat: dict[int, float]) -> M.Interval:
    return M.confidence_interval(per_repeat.values(), bounds=M.UNIT_RANGE)


@dataclass(frozen=True)
class QueueRates:
    """One queue's drop and mark rates: the pooled share of its decisions and the CI of per-repeat shares."""

    queue: str
    drop: M.Interval
    mark: M.Interval
    drop_pooled: float
    mark_pooled: float

    def to_json(self) -> dict:
        return {"drop_rate": M._num(self.drop_pooled), "mark_rate": M._num(self.mark_pooled),
                "drop_rate_ci95": self.drop.to_json(), "mark_rate_ci95": self.mark.to_json()}


def queue_rates(metrics: M.RunMetrics) -> dict[str, QueueRates]:
    """Drop and mark rates of each queue (per repeat: a repeat where the queue saw no packet is left out)."""
    out = {}
    for q in M.QUEUES:
        reps = [rm.queues[q] for rm in metrics.repeats if rm.queues[q].packets]
        pooled = metrics.queues[q]
        out[q] = QueueRates(q, M.confidence_interval([s.drop_fraction for s in reps], bounds=M.UNIT_RANGE),
                            M.confidence_interval([s.mark_fraction for s in reps], bounds=M.UNIT_RANGE),
                            pooled.drop_fraction, pooled.mark_fraction)
    return out


TIMESERIES_COLUMNS = ("repeat", "queue", "t_s", "current_queue_delay", "queue_length", "accumulated_probability",
                      "drop_probability", "action")


@dataclass(frozen=True)
class AqmTimeseries:
    """The AQM's state in ``bin_s`` bins over a window of one repeat (NaN where a queue had no decision)."""

    repeat: int
    t_s: np.ndarray
    sojourn_ms: dict[str, np.ndarray]
    queue_length: dict[str, np.ndarray]
    p_prime: np.ndarray
    p_c: np.ndarray
    p_cl: np.ndarray
    coupling: float

    def frame(self) -> pd.DataFrame:
        cols = {"t_s": self.t_s, "p_prime": self.p_prime, "p_C": self.p_c, "p_CL": self.p_cl}
        for q in M.QUEUES:
            cols[f"{q}_sojourn_ms"] = self.sojourn_ms[q]
            cols[f"{q}_queue_length_pkts"] = self.queue_length[q]
        return pd.DataFrame(cols)


def aqm_timeseries(packets: pd.DataFrame, repeat: int, *, coupling: float = 2.0, window: tuple[float, float] | None = None,
                   bin_s: float = 0.01) -> AqmTimeseries:
    """Bin one repeat's decisions: mean sojourn and queue length per queue, mean p' (and p_C, p_CL from it)."""
    g = packets[packets["repeat"] == repeat] if not packets.empty else packets
    t = g["t_s"].to_numpy(dtype=float) if not g.empty else np.empty(0)
    keep = np.isfinite(t)
    if window is not None:
        keep &= (t >= window[0]) & (t < window[1])
    g, t = g[keep], t[keep]
    start = window[0] if window is not None else 0.0
    end = window[1] if window is not None else (float(t.max()) if len(t) else 0.0)
    nbins = max(1, int(np.ceil((end - start) / bin_s)))
    idx = np.clip(((t - start) / bin_s).astype(np.int64), 0, nbins - 1) if len(t) else np.empty(0, dtype=np.int64)
    centres = start + (np.arange(nbins) + 0.5) * bin_s

    def mean_of(values: np.ndarray, sel: np.ndarray) -> np.ndarray:
        n = np.bincount(idx[sel], minlength=nbins).astype(float)
        s = np.bincount(idx[sel], weights=values[sel], minlength=nbins)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, s / np.maximum(n, 1), np.nan)

    everything = np.ones(len(t), dtype=bool)
    sojourn, qlen = {}, {}
    for q in M.QUEUES:
        sel = (g["queue"] == q).to_numpy(dtype=bool) if len(t) else everything
        sel_sent = sel & (g["action"].to_numpy() != M.ACTION_DROP) if len(t) else sel
        sojourn[q] = mean_of(g["current_queue_delay"].to_numpy(dtype=float) / 1000.0, sel_sent) if len(t) else np.full(nbins, np.nan)
        qlen[q] = mean_of(g["queue_length"].to_numpy(dtype=float), sel) if len(t) and "queue_length" in g else np.full(nbins, np.nan)
    p = mean_of(g["accumulated_probability"].to_numpy(dtype=float), everything) if len(t) else np.full(nbins, np.nan)
    return AqmTimeseries(int(repeat), centres, sojourn, qlen, p, p * p, np.minimum(1.0, coupling * p), coupling)
