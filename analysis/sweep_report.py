"""`l4stb summary --sweep` and `l4stb report --sweep`: one row per combination of a sweep, and each metric against each
swept parameter with its 95 % interval across repeats."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table

from l4stb.analysis import metrics as M, plots as P
from l4stb.analysis.figure_data import interval_rows
from l4stb.analysis.report_frame import ReportSection, ReportTable, write_report
from l4stb.analysis.summary import RunSummary, summarize
from l4stb.errors import L4stbError
from l4stb.sweep import SweepRecord, load_sweep
from l4stb.workspace import Workspace, atomic_write_text, staged_folder


@dataclass(frozen=True)
class SweepMetric:
    key: str
    label: str
    scale: float
    digits: int
    get: Callable[[RunSummary], M.Interval]


def _none() -> M.Interval:
    return M.Interval(float("nan"), None, None, 0)


SWEEP_METRICS: tuple[SweepMetric, ...] = (
    SweepMetric("c_p95_ms", "C queue delay p95 (ms)", 1, 2, lambda s: s.metrics.delay_ci["C"][95]),
    SweepMetric("l_p95_ms", "L queue delay p95 (ms)", 1, 2, lambda s: s.metrics.delay_ci["L"][95]),
    SweepMetric("utilization_pct", "utilisation (%)", 100, 1, lambda s: s.metrics.utilization),
    SweepMetric("jain", "Jain index (bulk flows)", 1, 3, lambda s: s.metrics.jain),
    SweepMetric("scalable_classic_ratio", "scalable/classic throughput per flow", 1, 2,
                lambda s: s.coexistence.per_flow if s.coexistence else _none()),
    SweepMetric("c_drop_pct", "C drop rate (%)", 100, 2, lambda s: s.rates["C"].drop),
    SweepMetric("c_mark_pct", "C mark rate (%)", 100, 2, lambda s: s.rates["C"].mark),
    SweepMetric("l_mark_pct", "L mark rate (%)", 100, 2, lambda s: s.rates["L"].mark),
    SweepMetric("l_drop_pct", "L drop rate (%)", 100, 2, lambda s: s.rates["L"].drop),
    SweepMetric("overload_pct", "DualPI2 overload (% of PI updates)", 100, 1,
                lambda s: s.overload.interval if s.overload else _none()),
)


@dataclass
class SweepTable:
    """The sweep's combinations with their runs and each metric's mean of repeats, interval and n."""

    record: SweepRecord
    rows: list[dict]
    testbed: str = ""
    """Per combination: the swept values under their keys, ``run_id``, and per metric a :class:`M.Interval`."""

    @property
    def axes(self) -> list[str]:
        return list(self.record.axes)

    def to_json(self) -> dict:
        return {"sweep_id": self.record.sweep_id, "scenario": self.record.scenario,
                "base_overrides": self.record.base_overrides, "axes": self.record.axes,
                "metrics": {m.key: m.label for m in SWEEP_METRICS},
                "rows": [{**{a: r[a] for a in self.axes}, "run_id": r["run_id"],
                          **{m.key: _scaled_json(r[m.key], m.scale) for m in SWEEP_METRICS}} for r in self.rows]}

    def frame(self) -> pd.DataFrame:
        """Flat: the swept values, the run id, and per metric ``<key>``, ``<key>_low``, ``<key>_high``, ``<key>_n``."""
        out = []
        for r in self.rows:
            row = {**{a: r[a] for a in self.axes}, "run_id": r["run_id"]}
            for m in SWEEP_METRICS:
                iv: M.Interval = r[m.key]
                row[m.key] = M._num(iv.mean * m.scale) if iv.n else None
                row[f"{m.key}_low"] = M._num(iv.low * m.scale) if iv.has_ci else None
                row[f"{m.key}_high"] = M._num(iv.high * m.scale) if iv.has_ci else None
                row[f"{m.key}_n"] = iv.n
            out.append(row)
        return pd.DataFrame(out)

    def to_csv(self) -> str:
        buf = io.StringIO()
        self.frame().to_csv(buf, index=False, quoting=csv.QUOTE_MINIMAL)
        return buf.getvalue()


def _scaled_json(iv: M.Interval, scale: float) -> dict:
    return {"mean": M._num(iv.mean * scale) if iv.n else None, "low": M._num(iv.low * scale) if iv.has_ci else None,
            "high": M._num(iv.high * scale) if iv.has_ci else None, "n": iv.n}


def sweep_table(ws: Workspace, sweep_id: str | None) -> SweepTable:
    record = load_sweep(ws, sweep_id)
    missing = [c.run_id for c in record.combinations if not c.run_id]
    if missing or not record.combinations:
        raise L4stbError(f"sweep {record.sweep_id} has combinations that never ran; finish it with `l4stb run "
                         f"--resume --scenario {record.scenario} --sweep ...`.")
    unfetched = [c.run_id for c in record.combinations
                 if not ws.packets_file(c.run_id).is_file() and not _has_raw(ws, c.run_id)]
    if unfetched:
        raise L4stbError(f"{len(unfetched)} run(s) of sweep {record.sweep_id} are not fetched yet ({', '.join(unfetched[:3])}"
                         f"{', ...' if len(unfetched) > 3 else ''}): run `l4stb fetch-logs --sweep {record.sweep_id}` first.")
    rows, testbeds = [], set()
    for combo in record.combinations:
        s = summarize(ws, combo.run_id)
        testbeds.add(s.testbed)
        rows.append({**combo.values, "run_id": combo.run_id, **{m.key: m.get(s) for m in SWEEP_METRICS}})
    return SweepTable(record, rows, "; ".join(sorted(testbeds)))


def _has_raw(ws: Workspace, run_id: str) -> bool:
    raw = ws.raw_dir(run_id)
    return raw.is_dir() and any(p.is_file() for p in raw.rglob("*"))


def _cell(iv: M.Interval, m: SweepMetric) -> str:
    return iv.format(m.digits, scale=m.scale)


def print_sweep_table(table: SweepTable, console: Console) -> None:
    console.print(f"[bold]sweep {table.record.sweep_id}[/]: scenario {table.record.scenario}, "
                  f"{len(table.rows)} combinations; mean of repeats ± 95% t-interval (n = repeats)")
    t = Table(box=box.SIMPLE_HEAD)
    for a in table.axes:
        t.add_column(a, no_wrap=True)
    shown = SWEEP_METRICS[:6]
    for m in shown:
        t.add_column(m.label, justify="right")
    for r in table.rows:
        t.add_row(*[str(r[a]) for a in table.axes], *[_cell(r[m.key], m) for m in shown])
    console.print(t)
    console.print("All metrics and the run of each row: `l4stb summary --sweep ID --json`, or the CSV beside "
                  "`l4stb report --sweep ID`.")


OTHER_VALUES = "other swept values"
"""The line label column of a figure when more than one other key was swept (one line per combination of them)."""


def _other_axes(table: SweepTable, param: str) -> list[str]:
    """The swept keys that vary independently of ``param`` (keys zipped with it step with it, so they are not)."""
    joint = next((g for g in getattr(table.record, "joint", []) if param in g), [param])
    return [a for a in table.axes if a not in joint]


def render_sweep_report(ws: Workspace, sweep_id: str | None) -> Path:
    """workdir/sweeps/<id>/report/: index.html, summary.md, sweep.csv, sweep.json and the figures."""
    table = sweep_table(ws, sweep_id)
    out = ws.root / "sweeps" / table.record.sweep_id / "report"
    with staged_folder(out) as stage:  # one output set, swapped in whole (as a run's report is)
        fig_dir = stage / "figures"
        fig_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(stage / "sweep.csv", table.to_csv())
        atomic_write_text(stage / "sweep.json", json.dumps(table.to_json(), indent=2) + "\n")
        rows = [[*[r[a] for a in table.axes], *[_cell(r[m.key], m) for m in SWEEP_METRICS], r["run_id"]]
                for r in table.rows]
        sections = [ReportSection(
            "Sweep", markdown=(f"Sweep `{table.record.sweep_id}` of scenario `{table.record.scenario}` over "
                               + ", ".join(f"{a} ∈ {{{', '.join(v)}}}" for a, v in table.record.axes.items())
                               + (f" (other overrides: {', '.join(table.record.base_overrides)})"
                                  if table.record.base_overrides else "")
                               + ". Each cell is the mean of the run's repeats with its 95% t-interval and n. The same "
                               "numbers are in sweep.csv and sweep.json beside this page."),
            tables=[ReportTable([*table.axes, *[m.label for m in SWEEP_METRICS], "run"], rows,
                                caption="One row per combination")])]
        for param in table.axes:
            others = _other_axes(table, param)
            group = others[0] if len(others) == 1 else OTHER_VALUES if others else None
            figs = []
            for m in SWEEP_METRICS:
                data_rows = []
                for r in table.rows:
                    iv: M.Interval = r[m.key]
                    scaled = M.Interval(iv.mean * m.scale, iv.low * m.scale if iv.has_ci else None,
                                        iv.high * m.scale if iv.has_ci else None, iv.n)
                    gval = (r[others[0]] if len(others) == 1 else ", ".join(f"{a}={r[a]}" for a in others)) \
                        if others else None
                    data_rows.append({**interval_rows(f"{group} = {gval}" if group else "", m.label, r[param], scaled),
                                      param: r[param], **({group: gval} if group else {})})
                frame = pd.DataFrame(data_rows)
                if frame["y"].isna().all():
                    continue
                frame["y_low"] = frame["y_low"].astype(float)
                frame["y_high"] = frame["y_high"].astype(float)
                fig = P.metric_vs_parameter_figure(frame, parameter=param, metric_label=m.label, group_by=group)
                data = P.FigureData("errorbar", frame[["panel", "series", "x", "y", "y_low", "y_high", "n"]], param, m.label,
                                    categorical_x=True)
                stem = f"{m.key}_vs_{param.replace('.', '_')}"
                figs.append((f"{m.label} against {param}" + (f", one line per {group}" if group else "")
                             + "; mean of repeats with 95% intervals.", P.save_figure(fig, fig_dir / stem, data).png))
            sections.append(ReportSection(f"Against {param}", figures=figs))
        write_report(stage, f"l4stb sweep report: {table.record.sweep_id}", sections,
                      footer=f"sweep {table.record.sweep_id}", testbed=table.testbed)
    return out / "index.html"
