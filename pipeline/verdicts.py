"""Closed-loop verdicts: each learned series against DualPI2 on the same seeds, metric by metric, computed from the numbers.

Every metric is taken per repeat, and the series is compared with DualPI2 repeat by repeat (same seed,
so the difference of each pair is one sample): the mean paired difference with its 95 % t-interval.

* fewer than :data:`MIN_REPEATS` pairs: "too few repeats to tell", whatever the means say;
* an interval that holds 0: "no clear difference";
* otherwise "higher"/"lower", and "better"/"worse" where the metric has a direction: lower is better for
  delays and drop rates, higher for utilisation and Jain, closer to 1 for the scalable/classic ratio. Mark
  rates and per-CC throughputs have no direction of their own: they are reported as higher or lower.

Fairness (Jain's index, the scalable/classic ratio) is over bulk flows and undefined where they carried next to
nothing (:func:`l4stb.analysis.metrics.bulk_na_reason`): a series whose fairness is undefined in every repeat
reads "n/a (why)", never a number. And a series that is worse on utilisation is never called better on
fairness: equal shares of a link it leaves idle are no gain, so that verdict reads "no verdict: utilisation is
worse".

No sentence is fixed text: each is built from these comparisons, so none can contradict the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from l4stb.analysis import metrics as M
from l4stb.analysis.coexistence import coexistence

MIN_REPEATS = 3


@dataclass(frozen=True)
class VerdictMetric:
    key: str
    label: str
    unit: str
    scale: float
    better: str
    """"lower", "higher", "one" (closer to 1) or "" (no direction)."""
    values: Callable[[M.RunMetrics], dict[int, float]]


def _queue(q: str, what: str) -> Callable[[M.RunMetrics], dict[int, float]]:
    def get(m: M.RunMetrics) -> dict[int, float]:
        out = {}
        for rm in m.repeats:
            s = rm.queues[q]
            out[rm.repeat] = s.delay.p95_ms if what == "p95" else (
                s.drop_fraction if what == "drop" else s.mark_fraction) if s.packets else float("nan")
        return out
    return get


def _cc(cc: str) -> Callable[[M.RunMetrics], dict[int, float]]:
    return lambda m: {rm.repeat: rm.cc[cc].mean_per_flow_mbps for rm in m.repeats if cc in rm.cc}


def verdict_metrics(ccs: Sequence[str]) -> list[VerdictMetric]:
    out = [VerdictMetric("c_p95", "C-queue p95 delay", "ms", 1, "lower", _queue("C", "p95")),
           VerdictMetric("l_p95", "L-queue p95 delay", "ms", 1, "lower", _queue("L", "p95")),
           VerdictMetric("util", "utilisation", "%", 100, "higher", lambda m: {rm.repeat: rm.utilization for rm in m.repeats})]
    out += [VerdictMetric(f"cc_{cc}", f"{cc} throughput per flow", "Mbit/s", 1, "", _cc(cc)) for cc in ccs]
    out += [VerdictMetric("lc", "scalable/classic throughput ratio", "", 1, "one",
                          lambda m: dict(coexistence(m).per_repeat)),
            VerdictMetric("jain", "Jain index", "", 1, "higher", lambda m: {rm.repeat: rm.jain for rm in m.repeats}),
            VerdictMetric("c_drop", "C drop rate", "%", 100, "lower", _queue("C", "drop")),
            VerdictMetric("c_mark", "C mark rate", "%", 100, "", _queue("C", "mark")),
            VerdictMetric("l_drop", "L drop rate", "%", 100, "lower", _queue("L", "drop")),
            VerdictMetric("l_mark", "L mark rate", "%", 100, "", _queue("L", "mark"))]
    return out


@dataclass(frozen=True)
class Verdict:
    metric: VerdictMetric
    base: float
    value: float
    diff: M.Interval
    """Paired per-repeat difference (series minus DualPI2), scaled to the metric's unit."""
    word: str
    """"better", "worse", "higher", "lower", "no clear difference" or "too few repeats to tell"."""

    @property
    def decided(self) -> bool:
        return self.word in ("better", "worse")

    def numbers(self) -> str:
        """The metric and its numbers, series vs DualPI2, with the paired difference (no verdict word)."""
        m = self.metric
        u = f" {m.unit}" if m.unit and m.unit != "%" else ("%" if m.unit == "%" else "")
        digits = 3 if m.key in ("jain", "lc") else 2
        if not (math.isfinite(self.value) and math.isfinite(self.base)):
            return f"{m.label}: not measured in both"
        text = f"{m.label} {self.value:.{digits}f}{u} vs {self.base:.{digits}f}{u}"
        if self.diff.has_ci:
            text += (f" (paired difference {self.diff.mean:+.{digits}f} [{self.diff.low:+.{digits}f}, "
                     f"{self.diff.high:+.{digits}f}], n={self.diff.n})")
        else:
            text += f" (n={self.diff.n})"
        return text

    def sentence(self) -> str:
        if self.word.startswith("n/a"):
            return f"{self.metric.label}: {self.word}"
        if not (math.isfinite(self.value) and math.isfinite(self.base)):
            return self.numbers()
        return f"{self.numbers()}: {self.word}"


def _mean(values: dict[int, float], repeats: Sequence[int], scale: float) -> float:
    x = [values[r] * scale for r in repeats if r in values and math.isfinite(values[r])]
    return sum(x) / len(x) if x else float("nan")


FAIRNESS = ("jain", "lc")
"""The verdict metrics that judge sharing (bulk flows only), which a loss of utilisation overrules."""
NOT_BETTER_WHEN_UTIL_WORSE = "no verdict: utilisation is worse"


def metric_label(key: str) -> str:
    """The name the report gives a verdict metric's key (``c_p95`` -> "C-queue p95 delay")."""
    if key.startswith("cc_"):
        return f"{key[3:]} throughput per flow"
    return next((vm.label for vm in verdict_metrics(()) if vm.key == key), key)


def _na_word(vm: VerdictMetric, base: M.RunMetrics, other: M.RunMetrics) -> str:
    """"n/a (why)" when a fairness metric is undefined in every repeat of either side, else ""."""
    if vm.key not in FAIRNESS:
        return ""
    for side, m in (("series", other), ("DualPI2", base)):
        if m.bulk_na:
            return f"n/a ({side}: {m.bulk_na})"
    return ""


def compare_series(base: M.RunMetrics, other: M.RunMetrics, ccs: Sequence[str]) -> list[Verdict]:
    out = []
    for vm in verdict_metrics(ccs):
        a, b = vm.values(base), vm.values(other)
        pairs = [r for r in a if r in b and math.isfinite(a[r]) and math.isfinite(b[r])]
        if vm.better == "one":  # distance from an equal share: |ratio - 1|
            diffs = [abs(b[r] - 1) - abs(a[r] - 1) for r in pairs]
        else:
            diffs = [(b[r] - a[r]) * vm.scale for r in pairs]
        iv = M.confidence_interval(diffs)
        if len(pairs) < MIN_REPEATS:
            word = "too few repeats to tell"
        elif not iv.has_ci or (iv.low <= 0 <= iv.high):  # type: ignore[operator]
            word = "no clear difference"
        else:
            up = iv.mean > 0
            if vm.better == "lower":
                word = "worse" if up else "better"
            elif vm.better == "higher":
                word = "better" if up else "worse"
            elif vm.better == "one":
                word = "worse (further from 1)" if up else "better (closer to 1)"
            else:
                word = "higher" if up else "lower"
        word = _na_word(vm, base, other) or word
        out.append(Verdict(vm, _mean(a, pairs or list(a), vm.scale), _mean(b, pairs or list(b), vm.scale), iv, word))
    util_worse = any(v.metric.key == "util" and v.word == "worse" for v in out)
    if util_worse:
        out = [Verdict(v.metric, v.base, v.value, v.diff, NOT_BETTER_WHEN_UTIL_WORSE)
               if v.metric.key in FAIRNESS and v.word.startswith("better") else v for v in out]
    return out


def summary_sentence(label: str, verdicts: Sequence[Verdict]) -> str:
    """One line per series: what is better, what is worse, computed from the verdicts."""
    n = max((v.diff.n for v in verdicts), default=0)
    if n < MIN_REPEATS:
        return (f"**{label}**: too few repeats to tell ({n} paired repeat(s); a verdict needs at least "
                f"{MIN_REPEATS}). The numbers are in the table.")
    better = [v.metric.label for v in verdicts if v.word.startswith("better")]
    worse = [v.metric.label for v in verdicts if v.word.startswith("worse")]
    parts = [f"**{label}** against DualPI2 over {n} paired repeats:"]
    parts.append(f"better on {', '.join(better)};" if better else "better on nothing;")
    parts.append(f"worse on {', '.join(worse)}." if worse else "worse on nothing.")
    return " ".join(parts)
