"""`l4stb compare RUN RUN...`: one report that overlays runs, with a table of differences against the first run.

A difference is the mean of the other run's per-repeat values minus the first run's, with the 95 % Welch
interval (unequal variances, Welch-Satterthwaite degrees of freedom) and the n of each side. No interval
is given when either side has fewer than two repeats.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from rich import box
from rich.table import Table

from l4stb.analysis import metrics as M
from l4stb.analysis.report_frame import ReportSection, ReportTable, write_report
from l4stb.analysis.summary import RunSummary, load_run, summarize_data
from l4stb.console import safe
from l4stb.errors import L4stbError
from l4stb.workspace import Workspace, staged_folder


@dataclass(frozen=True)
class Difference:
    mean: float
    low: float | None
    high: float | None
    n_a: int
    n_b: int

    def format(self, digits: int, scale: float = 1.0) -> str:
        if not math.isfinite(self.mean):
            return "—"
        text = f"{self.mean * scale:+.{digits}f}"
        if self.low is not None and self.high is not None:
            text += f" [{self.low * scale:+.{digits}f}, {self.high * scale:+.{digits}f}]"
        return text + f" (n={self.n_b} vs {self.n_a})"

    @property
    def significant(self) -> bool:
        """The 95 % interval excludes 0."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def difference(a: Sequence[float], b: Sequence[float], level: float = M.CI_LEVEL) -> Difference:
    """mean(b) - mean(a) with its Welch t-interval (None when either side has fewer than
    :data:`~l4stb.analysis.metrics.MIN_CI_REPEATS` repeats)."""
    x = np.asarray([v for v in a if v is not None], dtype=float)
    y = np.asarray([v for v in b if v is not None], dtype=float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if not len(x) or not len(y):
        return Difference(float("nan"), None, None, len(x), len(y))
    d = float(y.mean() - x.mean())
    if len(x) < M.MIN_CI_REPEATS or len(y) < M.MIN_CI_REPEATS:
        return Difference(d, None, None, len(x), len(y))
    # lazy: scipy is slow to import
    from scipy import stats

    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(d, d, d, len(x), len(y))
    df = (va + vb) ** 2 / ((va ** 2 / (len(x) - 1) if va else 0) + (vb ** 2 / (len(y) - 1) if vb else 0) or 1e-300)
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return Difference(d, d - half, d + half, len(x), len(y))


@dataclass(frozen=True)
class PerRepeatMetric:
    """A metric with one value per repeat, so two runs can be differenced."""

    label: str
    scale: float
    digits: int
    values: Callable[[RunSummary], list[float]]


def _cc_values(cc: str) -> Callable[[RunSummary], list[float]]:
    return lambda s: [rm.cc[cc].mean_per_flow_mbps for rm in s.metrics.repeats if cc in rm.cc]


def per_repeat_metrics(summaries: Sequence[RunSummary]) -> list[PerRepeatMetric]:
    """Queue delay p50/p95/p99 per queue, drop and mark rates per queue, utilisation, Jain, the L/C ratio,
    overload share and the throughput of each CC that every run has."""
    out = []
    for q in M.QUEUES:
        for p in (50, 95, 99):
            out.append(PerRepeatMetric(f"{q} delay p{p} (ms)", 1, 2,
                                       lambda s, q=q, p=p: [rm.queues[q].delay.get(p) for rm in s.metrics.repeats]))
        for what in ("drop", "mark"):
            out.append(PerRepeatMetric(f"{q} {what} rate (%)", 100, 2, lambda s, q=q, w=what: [
                getattr(rm.queues[q], f"{w}_fraction") for rm in s.metrics.repeats if rm.queues[q].packets]))
    out.append(PerRepeatMetric("utilisation (%)", 100, 1, lambda s: [rm.utilization for rm in s.metrics.repeats]))
    out.append(PerRepeatMetric("Jain index", 1, 3, lambda s: [rm.jain for rm in s.metrics.repeats]))
    out.append(PerRepeatMetric("scalable/classic ratio", 1, 2,
                               lambda s: list(s.coexistence.per_repeat.values()) if s.coexistence else []))
    out.append(PerRepeatMetric("overload (% of PI updates)", 100, 1,
                               lambda s: list(s.overload.per_repeat.values()) if s.overload else []))
    ccs = set.intersection(*[set(s.metrics.cc) for s in summaries]) if summaries else set()
    for cc in sorted(ccs):
        out.append(PerRepeatMetric(f"{cc} throughput per flow (Mbit/s)", 1, 2, _cc_values(cc)))
    return out


def differences_table(summaries: Sequence[RunSummary], labels: Sequence[str]):
    """Rows: metric, the first run's mean, then per other run its mean and its difference with the first."""
    metrics = per_repeat_metrics(summaries)
    base = summaries[0]
    rows = []
    for pm in metrics:
        a = pm.values(base)
        row = [pm.label, M.confidence_interval(a).format(pm.digits, scale=pm.scale)]
        for s in summaries[1:]:
            b = pm.values(s)
            d = difference(a, b)
            row += [M.confidence_interval(b).format(pm.digits, scale=pm.scale),
                    d.format(pm.digits, pm.scale) + (" *" if d.significant else "")]
        rows.append(row)
    cols = ["metric", f"{labels[0]} (mean ± CI)"]
    for lab in labels[1:]:
        cols += [f"{lab} (mean ± CI)", f"{lab} − {labels[0]} [95% CI]"]
    return ReportTable(cols, rows, caption=f"Differences against {labels[0]}: mean of per-repeat values, Welch 95% "
                                           "interval, n repeats on each side; * marks an interval that excludes 0")


def print_table(table, console) -> None:
    """A report table (:class:`~l4stb.analysis.report.ReportTable`) on the terminal, with the same columns and cells."""
    t = Table(title=safe(table.caption) if table.caption else None, box=box.SIMPLE_HEAD)
    for i, col in enumerate(table.columns):
        t.add_column(safe(str(col)), justify="left" if i == 0 else "right", overflow="fold")
    for row in table.rows:
        t.add_row(*[safe(str(v)) for v in row])
    console.print(t)


def _default_out(ws: Workspace, run_ids: Sequence[str]) -> Path:
    name = "-vs-".join(run_ids)
    if len(name) > 100:
        name = f"{run_ids[0]}-vs-{len(run_ids) - 1}-runs"
    return ws.root / "compare" / re.sub(r"[^A-Za-z0-9._-]", "-", name)


def render_compare_report(ws: Workspace, run_ids: Sequence[str], *, labels: Sequence[str] = (),
                          out: Path | None = None, console=None) -> Path:
    """workdir/compare/<a>-vs-<b>/index.html (and summary.md, figures with their data); with a rich ``console``,
    the differences table is printed there too."""
    # lazy: loads matplotlib, slow to import
    from l4stb.analysis.report import SeriesData, comparison_section

    if len(run_ids) < 2:
        raise L4stbError("`l4stb compare` needs at least two runs: `l4stb compare RUN_A RUN_B [--label A --label B]`.")
    if len(set(run_ids)) != len(run_ids):
        raise L4stbError("`l4stb compare` got the same run twice; give distinct runs.")
    if labels and len(labels) != len(run_ids):
        raise L4stbError(f"--label given {len(labels)} times for {len(run_ids)} runs: give one label per run, in order.")
    labels = list(labels) or list(run_ids)
    if len(set(labels)) != len(labels):
        raise L4stbError("the --label values must differ from each other.")
    datas = [load_run(ws, r) for r in run_ids]
    summaries = [summarize_data(d) for d in datas]
    rates = {d.rate_bps for d in datas}
    rate = datas[0].capacity
    out = Path(out) if out else _default_out(ws, run_ids)
    with staged_folder(out) as stage:  # one output set, swapped in whole (as a run's report is)
        series = {lab: SeriesData(d.packets, d.flows, d.log_sample_every) for lab, d in zip(labels, datas)}
        overlay = comparison_section("Overlay", series, stage / "figures", rate_bps=rate, name="compare",
                                     metrics={lab: s.metrics for lab, s in zip(labels, summaries)},
                                     intro=("Every run on the same figures; a run keeps one line style and marker across "
                                            "figures, a queue or a CC keeps one colour."
                                            + ("" if len(rates) == 1 else " The runs have different bottleneck rates; "
                                               "the utilisation figure uses the first run's.")))
        runs_table = ReportTable(["label", "run", "scenario", "AQM", "testbed", "repeats", "overrides"],
                                 [[lab, s.run_id, s.scenario_name, s.aqm, s.testbed, s.metrics.n_repeats,
                                   ", ".join(s.overrides) or "—"] for lab, s in zip(labels, summaries)], caption="Runs")
        sections = [
            ReportSection("Runs", markdown="The runs compared, in order; differences are against the first.",
                          tables=[runs_table]),
            ReportSection("Differences", markdown=_differences_md(summaries, labels),
                          tables=[differences_table(summaries, labels)]),
            overlay,
        ]
        if console is not None:
            print_table(sections[1].tables[0], console)
        testbeds = sorted({s.testbed for s in summaries})
        write_report(stage, f"l4stb comparison: {' vs '.join(labels)}", sections, footer=f"runs {', '.join(run_ids)}",
                      testbed="; ".join(testbeds))
    return out / "index.html"


def _differences_md(summaries: Sequence[RunSummary], labels: Sequence[str]) -> str:
    n = [s.metrics.n_repeats for s in summaries]
    text = (f"Each metric is computed per repeat; the table gives each run's mean with its 95% t-interval and the "
            f"difference from {labels[0]} with a Welch 95% interval. Repeats: "
            + ", ".join(f"{lab} {k}" for lab, k in zip(labels, n)) + ".")
    if min(n) < M.MIN_CI_REPEATS:
        text += (f" A run with fewer than {M.MIN_CI_REPEATS} repeats has no interval, so no difference here can be "
                 "called significant.")
    return text
