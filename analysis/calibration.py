"""Compare the simulator's cells with the real kernel's, metric by metric, against stated agreement bands.

Per cell and metric, the real kernel's value is the mean over its repeats and its run-to-run spread is the
half-width of the 95 % t-interval of its per-repeat values. A simulated value agrees when it lies within the
metric's band of the real one, where the band is the larger of the floor the project promises (issue 20:
utilisation and throughput shares 10 % relative, mark and drop rates 0.05 absolute, delay percentiles
25 % relative or 0.5 ms) and the real kernel's own spread: a simulator cannot be asked to agree with the
kernel more closely than the kernel agrees with itself. A metric that is undefined on either side (no L
traffic, one repeat) is reported as such and judged on neither.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from l4stb.analysis import metrics as M
from l4stb.analysis.summary import summarize
from l4stb.workspace import Workspace, atomic_write_text


@dataclass(frozen=True)
class Band:
    relative: float = 0.0
    absolute: float = 0.0

    def width(self, real: float) -> float:
        return max(self.relative * abs(real), self.absolute)


BANDS: dict[str, Band] = {
    "utilisation": Band(relative=0.10),
    "throughput_share": Band(relative=0.10),
    "scalable_classic_ratio": Band(relative=0.10),
    "mark_rate": Band(absolute=0.05),
    "drop_rate": Band(absolute=0.05),
    "delay": Band(relative=0.25, absolute=0.5),
}
"""The floor of each metric's agreement band (issue 20)."""


@dataclass
class MetricComparison:
    cell: str
    metric: str
    sim: float
    real: float
    real_spread: float
    band: float
    verdict: str
    """"agrees", "differs" or "undefined" (with the reason in ``note``)."""
    note: str = ""


def _mean_ci(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    iv = M.confidence_interval(vals)
    half = (iv.high - iv.low) / 2 if iv.has_ci else 0.0
    return float(iv.mean), float(half)


def cell_metrics(summary_json: dict) -> dict[str, tuple[float, float, str]]:
    """metric -> (mean over repeats, 95 % half-width, band name) from one run's summary JSON."""
    out: dict[str, tuple[float, float, str]] = {}
    reps = summary_json["repeats"]["per_repeat"]
    out["utilisation"] = (*_mean_ci([r["utilization"] for r in reps]), "utilisation")
    ccs = sorted({f["cc"] for r in reps for f in r["flows"]})
    for cc in ccs:
        shares = []
        for r in reps:
            total = sum(f["throughput_mbps"] or 0.0 for f in r["flows"])
            mine = sum(f["throughput_mbps"] or 0.0 for f in r["flows"] if f["cc"] == cc)
            shares.append(mine / total if total > 0 else float("nan"))
        if len(ccs) > 1:
            out[f"share {cc}"] = (*_mean_ci(shares), "throughput_share")
    coex = summary_json.get("coexistence") or {}
    ratio = coex.get("scalable_classic_ratio") or {}
    if ratio.get("n"):
        low, high = ratio.get("low"), ratio.get("high")
        half = (high - low) / 2 if low is not None and high is not None else 0.0
        out["scalable/classic"] = (ratio["mean"], half, "scalable_classic_ratio")
    for q, qs in summary_json["queues"].items():
        if not qs.get("packets"):
            continue
        for p in ("p50", "p99"):
            per = [r["queues"][q]["delay_ms"].get(p) for r in reps if q in r["queues"]]
            out[f"{q} delay {p} (ms)"] = (*_mean_ci([v for v in per if v is not None]), "delay")
        for rate in ("mark_rate", "drop_rate"):
            if qs.get(rate) is not None:
                ci = qs.get(f"{rate}_ci95") or {}
                low, high = ci.get("low"), ci.get("high")
                half = (high - low) / 2 if low is not None and high is not None else 0.0
                out[f"{q} {rate.replace('_', ' ')}"] = (qs[rate], half, rate)
    return out


def compare_cell(cell: str, sim_json: dict, real_json: dict) -> list[MetricComparison]:
    sim, real = cell_metrics(sim_json), cell_metrics(real_json)
    rows = []
    for metric in sorted(set(sim) | set(real)):
        s = sim.get(metric, (float("nan"), float("nan"), ""))
        r = real.get(metric, (float("nan"), float("nan"), ""))
        band_name = r[2] or s[2]
        if not (math.isfinite(s[0]) and math.isfinite(r[0])):
            side = "the simulator" if not math.isfinite(s[0]) else "the real kernel"
            rows.append(MetricComparison(cell, metric, s[0], r[0], r[1], float("nan"), "undefined",
                                         f"no value from {side} (no such traffic, or too few repeats)"))
            continue
        spread = r[1] if math.isfinite(r[1]) else 0.0
        band = max(BANDS[band_name].width(r[0]), spread)
        verdict = "agrees" if abs(s[0] - r[0]) <= band else "differs"
        rows.append(MetricComparison(cell, metric, s[0], r[0], spread, band, verdict))
    return rows


def compare_runs(sim_ws: Workspace, qemu_ws: Workspace, pairs: list[tuple[str, str, str]]) -> list[MetricComparison]:
    """``pairs``: (cell name, sim run id, qemu run id)."""
    rows: list[MetricComparison] = []
    for cell, sim_run, real_run in pairs:
        rows += compare_cell(cell, summarize(sim_ws, sim_run).to_json(), summarize(qemu_ws, real_run).to_json())
    return rows


def _fmt(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"


SUMMARY_METRICS = ("utilisation", "share", "L delay p50 (ms)", "L delay p99 (ms)", "C delay p50 (ms)",
                   "C delay p99 (ms)", "L mark rate", "C drop rate")
"""The columns of the one-line-per-cell summary (``share`` = every CC's share in the cell)."""


def summary_markdown(rows: list[MetricComparison]) -> str:
    """One line per cell: each headline metric as simulator / real kernel, with * where they differ."""
    cells: dict[str, dict[str, list[MetricComparison]]] = {}
    for r in rows:
        if r.verdict == "undefined":
            continue
        col = "share" if r.metric.startswith("share ") else r.metric
        if col in SUMMARY_METRICS:
            cells.setdefault(r.cell, {}).setdefault(col, []).append(r)
    lines = ["| cell | " + " | ".join(SUMMARY_METRICS) + " |", "|---" * (len(SUMMARY_METRICS) + 1) + "|"]
    for cell, cols in cells.items():
        out = []
        for col in SUMMARY_METRICS:
            entries = cols.get(col, [])
            out.append("; ".join((f"{r.metric[6:]} " if col == "share" else "") + f"{_fmt(r.sim)} / {_fmt(r.real)}"
                                 + ("*" if r.verdict == "differs" else "") for r in entries) or "—")
        lines.append(f"| {cell} | " + " | ".join(out) + " |")
    return "\n".join(lines) + "\n"


def render_markdown(rows: list[MetricComparison], title: str, context: str) -> str:
    agree = sum(r.verdict == "agrees" for r in rows)
    judged = sum(r.verdict != "undefined" for r in rows)
    lines = [f"# {title}", "", context, "",
             f"{agree} of {judged} judged metrics agree within their band "
             f"({len(rows) - judged} undefined).", "",
             "Summary (simulator / real kernel; * differs beyond the band):", "", summary_markdown(rows),
             "All metrics:", "",
             "| cell | metric | simulator | real kernel | real ± (95 %) | band | verdict |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        verdict = r.verdict + (f" ({r.note})" if r.note else "")
        lines.append(f"| {r.cell} | {r.metric} | {_fmt(r.sim)} | {_fmt(r.real)} | {_fmt(r.real_spread)} | "
                     f"{_fmt(r.band)} | {verdict} |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, rows: list[MetricComparison], title: str, context: str, meta: dict) -> None:
    """calibration.md and calibration.json, written together (each atomically; the JSON last)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "calibration.md", render_markdown(rows, title, context))
    doc = {**meta, "bands": {k: asdict(v) for k, v in BANDS.items()},
           "rows": [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                     for k, v in asdict(r).items()} for r in rows]}
    atomic_write_text(out / "calibration.json", json.dumps(doc, indent=1) + "\n")
