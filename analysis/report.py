"""`l4stb report`: render a run's self-contained HTML report, its summary.md and the figures into runs/<id>/report/.

The report is built from :class:`ReportSection` records: the network sections come from this module, and
later stages (the model stage: training curves, confusion matrix, baselines, latency/memory, the
closed-loop comparison) pass their own sections to :func:`render_report`. A section's text, tables and
figures appear in both ``index.html`` (figures embedded as base64 PNG, inline CSS, no network
reference, so it opens offline) and ``summary.md`` (figures linked from ``figures/``; SVGs sit beside).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import shutil
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Mapping, Sequence

import jinja2
from markupsafe import Markup

from l4stb.analysis import metrics as M
from l4stb.analysis import plots as P
from l4stb.analysis.summary import RunData, RunSummary, load_run, summarize_data
from l4stb.config import SCALABLE_CCS
from l4stb.manifest import Manifest, update_manifest
from l4stb.units import format_duration
from l4stb.workspace import Workspace, atomic_write_text, sha256_file, utc_iso

log = logging.getLogger(__name__)

FIGURES_DIR = "figures"


# ---------------------------------------------------------------------------------------------
# the section API
# ---------------------------------------------------------------------------------------------


@dataclass
class ReportTable:
    """A table shown in both index.html and summary.md. Cells are rendered with ``str()`` (floats: 4 significant digits)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""


@dataclass
class ReportSection:
    """One section of the report.

    ``markdown`` is rendered to HTML for index.html and copied as is into summary.md; ``html`` is a
    trusted HTML fragment inserted as is into index.html (summary.md gets its text). ``figures`` are
    ``(caption, path)`` pairs: a PNG (or SVG) anywhere on disk, copied into ``report/figures/<anchor>/``
    (with an SVG of the same stem beside it, if there is one) unless it is already inside the report
    folder, and embedded in index.html.
    """

    title: str
    markdown: str = ""
    html: str = ""
    figures: Sequence[tuple[str, Path]] = ()
    tables: Sequence[ReportTable] = ()
    anchor: str = ""

    def __post_init__(self) -> None:
        if not self.anchor:
            self.anchor = re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "section"


@dataclass
class _Figure:
    caption: str
    png: str  # relative to the report dir
    svg: str | None
    data_uri: str


@dataclass
class _Rendered:
    section: ReportSection
    body_html: Markup
    body_md: str
    tables: list[ReportTable]
    figures: list[_Figure] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------


def render_report(ws: Workspace, run_id: str, sections: Sequence[ReportSection] = (), progress=None) -> Path:
    """Render runs/<id>/report/{index.html, summary.md, figures/*} and record ``manifest.steps["report"]``.

    ``sections`` are appended after the network sections and before the parse statistics and
    provenance; each appears in both index.html and summary.md.
    """
    data = load_run(ws, run_id, progress=progress)
    summary = summarize_data(data)
    out = ws.report_dir(run_id)
    fig_dir = out / FIGURES_DIR
    fig_dir.mkdir(parents=True, exist_ok=True)

    network = network_sections(data, summary, fig_dir)
    tail = [parse_section(summary), provenance_section(data.manifest)]
    all_sections = [network[0], *network[1:], *sections, *tail]
    index, rendered = _write_report(out, f"l4stb report: {run_id}", all_sections, footer=f"run {run_id}",
                                    scenario=data.scenario)
    figures = sorted({f.png for r in rendered for f in r.figures} | {f.svg for r in rendered for f in r.figures if f.svg})

    def record(m: Manifest) -> None:
        m.steps["report"] = {
            "finished": utc_iso(),
            "index": str(index.relative_to(ws.run_dir(run_id))),
            "summary_md": str((out / "summary.md").relative_to(ws.run_dir(run_id))),
            "sha256": {"index.html": sha256_file(index), "summary.md": sha256_file(out / "summary.md")},
            "figures": figures,
            "sections": [s.title for s in all_sections],
        }

    update_manifest(ws, run_id, record)
    return index


def render_model_report(out: Path, title: str, sections: Sequence[ReportSection]) -> Path:
    """A report of model sections only, for a model trained on a pool outside any run (no network data)."""
    index, _ = _write_report(Path(out), title, sections, footer=title)
    return index


def _write_report(out: Path, title: str, sections: Sequence[ReportSection], *, footer: str,
                  scenario: Any = None) -> tuple[Path, list[_Rendered]]:
    """Render ``sections`` into out/index.html and out/summary.md (atomically); return the index and the parts."""
    out.mkdir(parents=True, exist_ok=True)
    rendered = [_render_section(s, out) for s in sections]
    html_text = _environment().get_template("report.html.j2").render(
        title=title, run_id=footer, generated=utc_iso(), sections=rendered, scenario=scenario)
    index = out / "index.html"
    atomic_write_text(index, html_text)
    atomic_write_text(out / "summary.md", _markdown_report(title, rendered))
    return index, rendered


# ---------------------------------------------------------------------------------------------
# network sections
# ---------------------------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{digits}f}"


def _pct(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{100 * x:.1f} %"


def _rate_text(bps: float) -> str:
    return f"{bps / 1e6:g} Mbit/s" if bps >= 1e6 else f"{bps / 1e3:g} kbit/s"


def reference_lines_ms(data: RunData) -> dict[str, list[tuple[str, float]]]:
    """The AQM's own delay targets, drawn on the delay ECDFs for orientation."""
    if not data.scenario:
        return {}
    aqm = data.scenario.aqm.resolved()
    target = (aqm.target or 0) / 1000
    if aqm.engine == "dualpi2":
        return {"C": [("PI2 target", target)], "L": [("L step threshold", aqm.step_threshold / 1000)]}
    if aqm.name in ("l4s-pie", "pie"):
        return {"C": [("PIE target", target)], "L": [("PIE target", target)]}
    return {}


def fair_share_mbps(data: RunData) -> float | None:
    if not data.scenario or not data.rate_bps:
        return None
    return data.rate_bps / data.scenario.total_streams / 1e6


def network_sections(data: RunData, summary: RunSummary, fig_dir: Path) -> list[ReportSection]:
    """Overview, queue delay, throughput, utilisation, throughput vs delay, fairness and actions of one run."""
    m = summary.metrics
    label = data.label
    delays = {label: M.DelaySamples.from_packets(data.packets)}
    figs: dict[str, Path] = {}

    def save(name: str, fig) -> Path:
        figs[name] = P.save_figure(fig, fig_dir / name).png
        return figs[name]

    save("queue_delay_ecdf", P.delay_ecdf_figure(delays, reference_lines_ms(data)))
    save("queue_delay_box", P.delay_box_figure(delays))
    save("throughput_timeseries", P.throughput_timeseries_figure(data.flows, fair_share_mbps=fair_share_mbps(data),
                                                                  warmup_s=m.warmup_s))
    all_flows = [f for rm in m.repeats for f in rm.flows]
    save("throughput_box", P.throughput_box_figure({label: all_flows}, fair_share_mbps=fair_share_mbps(data)))
    bin_s = (data.scenario.iperf3.interval / 1e6) if data.scenario else 1.0
    util = {"router log (forwarded bytes)": M.link_utilization_timeseries(data.packets, data.rate_bps or 0.0, bin_s),
            "iperf3 (sender bytes)": M.utilization_timeseries(data.flows, data.rate_bps or 0.0, bin_s)}
    util = {k: v for k, v in util.items() if v}
    rate_label = _rate_text(data.rate_bps) if data.rate_bps else ""
    save("utilization", P.utilization_figure(util, rate_label=rate_label, warmup_s=m.warmup_s))
    save("throughput_vs_p95_delay", P.tradeoff_figure({label: M.tradeoff_points(m, SCALABLE_CCS)}))
    save("action_mix", P.action_mix_figure({label: m.queues}))

    n = m.n_repeats
    ci_note = ("± is the 95% Student-t interval of the per-repeat values." if n >= 2 else
               "One repeat only: no confidence intervals (they need at least two repeats).")
    sections = [
        ReportSection("Overview", markdown=_overview_md(data, summary), tables=[_scenario_table(data),
                                                                              _headline_table(summary)]),
        ReportSection(
            "Queue delay",
            markdown=(
                "Queue delay is the router's logged `current_queue_delay` of every packet it forwarded or "
                "CE-marked (dropped packets never leave the queue), per queue. Under DualPI2 it is the "
                "packet's sojourn time, so each packet is one sample. The ECDF is a true empirical CDF "
                "(y = i/n at the i-th smallest sample), not the cumulative sum of sorted delays the original "
                f"plots drew. Percentiles pool the packets of all {n} repeat(s); {ci_note}"
            ),
            tables=[_delay_table(summary)],
            figures=[("Queue delay ECDF per queue; dotted lines are the AQM's own targets.", figs["queue_delay_ecdf"]),
                     ("Queue delay per queue: box p25–p75, median line, whiskers p1–p99, ◆ mean.",
                      figs["queue_delay_box"])],
        ),
        ReportSection(
            "Throughput",
            markdown=(
                "Throughput comes from the iperf3 senders' interval reports. A flow's steady-state throughput is "
                f"its bytes over its interval time after the first {m.warmup_s:g} s (the handshake and slow start "
                "come before the AQM controls the queue). The dashed line is the equal share: the bottleneck "
                "rate divided by the number of streams."
            ),
            tables=[_cc_table(summary)],
            figures=[(f"Per-flow throughput over time, coloured by congestion control (first "
                      f"{min(4, n)} of {n} repeats).", figs["throughput_timeseries"]),
                     ("Steady-state throughput per flow, per congestion control (one dot per flow per repeat).",
                      figs["throughput_box"])],
        ),
        ReportSection(
            "Utilisation",
            markdown=(
                "Utilisation (the headline) is the sum of the flows' steady-state throughputs over the bottleneck "
                f"rate ({rate_label or 'unknown'}), clipped to 100 %: iperf3 counts the bytes the senders wrote, "
                "so a saturated link can read slightly above. iperf3 counts them in whole socket writes "
                "(128 KiB, about 1 Mbit), so per-second values of slow flows are coarse. The router-side "
                "utilisation counts the bytes of every packet the router forwarded or marked over the logged "
                "time span; it needs timestamped log lines (l4stb's own format)."
            ),
            tables=[ReportTable(["repeat", "utilisation (iperf3)", "unclipped", "router-side"],
                                [[rm.repeat, _pct(rm.utilization), _fmt(rm.utilization_unclipped, 3),
                                  _pct(rm.link_utilization)] for rm in m.repeats]
                                + [["mean", m.utilization.format(1, scale=100, unit="%"), "",
                                    M.confidence_interval([rm.link_utilization for rm in m.repeats])
                                    .format(1, scale=100, unit="%")]])],
            figures=[(f"Utilisation over time per {bin_s:g}-s bin: each repeat thin, their mean bold"
                      + ("; solid from the router log, dashed from iperf3." if len(util) == 2 else "."),
                      figs["utilization"])],
        ),
        ReportSection(
            "Throughput vs delay",
            markdown=(
                "One small mark per repeat per congestion control: its mean per-flow steady-state throughput "
                "against the p95 queue delay of the queue its packets use (L for scalable CCs, C otherwise), "
                "as in Pantheon's summary plot. Large marks are the means over repeats with 95% intervals. "
                "Up and to the left is better."
            ),
            figures=[("Throughput vs p95 queue delay, one point per repeat per flow class.",
                      figs["throughput_vs_p95_delay"])],
        ),
        ReportSection(
            "Fairness",
            markdown=(
                "Jain's index (Σx)²/(n·Σx²) over all flows' steady-state throughputs in a repeat: 1 when every "
                "flow gets the same rate, 1/n when one flow takes everything. Flows of different congestion "
                "controls are expected to differ under DualPI2's window-fair coupling (scalable flows see a "
                f"shorter queue). {ci_note}"
            ),
            tables=[ReportTable(["repeat", "Jain index", "flows"],
                                [[rm.repeat, _fmt(rm.jain, 3), len(rm.flows)] for rm in m.repeats]
                                + [["mean", m.jain.format(3), ""]], caption="Jain fairness per repeat"),
                    _flow_table(summary)],
        ),
        ReportSection(
            "Actions",
            markdown=(
                "What the router did with each packet, per queue: forwarded, dropped or CE-marked, as shares of "
                "the queue's decisions. The right panel zooms on drops and marks, which are rare."
            ),
            tables=[_action_table(summary)],
            figures=[("Action mix per queue.", figs["action_mix"])],
        ),
    ]
    return sections


def _overview_md(data: RunData, summary: RunSummary) -> str:
    m = summary.metrics
    s = data.scenario
    lines = [f"Run **{data.run_id}**"]
    if s:
        flows = ", ".join(f"{f.host}: {f.cc} × {f.streams}" for f in s.flows)
        lines[0] += (f": scenario `{s.name}` ({s.description or 'no description'}), AQM **{s.aqm.name}** at "
                     f"{_rate_text(s.bottleneck.rate)}, {format_duration(s.bottleneck.delay)} one-way delay, flows {flows}, "
                     f"{m.n_repeats} repeat(s) of {format_duration(s.duration)}.")
    else:
        lines[0] += f" ({data.manifest.kind}); the manifest carries no complete scenario, so the bottleneck rate " \
                    "and targets are unknown."
    c, l_ = m.queues["C"], m.queues["L"]
    lines.append("")
    lines.append(
        f"Headline: C-queue p95 delay {_fmt(c.delay.p95_ms)} ms, L-queue p95 delay {_fmt(l_.delay.p95_ms)} ms, "
        f"utilisation {m.utilization.format(1, scale=100, unit='%')}, Jain {m.jain.format(3)}. The table below says what "
        "each number measures."
    )
    return "\n".join(lines)


def _scenario_table(data: RunData) -> ReportTable:
    s = data.scenario
    if not s:
        return ReportTable(["field", "value"], [[k, _short(v)] for k, v in data.manifest.scenario.items()],
                           caption="Scenario (as recorded)")
    a = s.aqm.resolved()
    rows = [
        ["scenario", s.name], ["description", s.description], ["topology", s.topology],
        ["bottleneck", f"{_rate_text(s.bottleneck.rate)}, {format_duration(s.bottleneck.delay)} one way, "
                       f"limit {s.bottleneck.limit_packets} packets"],
        ["AQM", f"{a.name} (ECN {'on' if a.ecn else 'off'}): target {format_duration(a.target or 0)}, tupdate "
                f"{format_duration(a.tupdate or 0)}, alpha {a.alpha}, beta {a.beta}, coupling k {a.coupling_factor}, "
                f"L step {format_duration(a.step_threshold)}"],
        ["flows", "; ".join(f"{f.host}: {f.cc}, {f.connections} connection(s) × {f.parallel} stream(s)"
                            + (f", start {format_duration(f.start)}" if f.start else "") for f in s.flows)],
        ["duration × repeats", f"{format_duration(s.duration)} × {s.repeats}"],
        ["seed", s.seed],
    ]
    return ReportTable(["field", "value"], rows, caption="Scenario")


def _headline_table(summary: RunSummary) -> ReportTable:
    m = summary.metrics
    rows = []
    for q in M.QUEUES:
        s = m.queues[q]
        for p in (50, 95, 99):
            rows.append([f"{q} queue delay p{p} (ms)", _fmt(s.delay.get(p)), m.delay_ci[q][p].format(2),
                         f"p{p} of the logged queue delay of the {q} queue's forwarded and marked packets"])
        rows.append([f"{q} drops / marks", f"{s.drops:,} / {s.marks:,} of {s.packets:,}",
                     f"{_pct(s.drop_fraction)} / {_pct(s.mark_fraction)}",
                     f"{q}-queue decisions that dropped / CE-marked the packet"])
    rows.append(["utilisation", "", m.utilization.format(1, scale=100, unit="%"),
                 "sum of steady-state flow throughputs / bottleneck rate (%)"])
    rows.append(["Jain fairness", "", m.jain.format(3), "Jain's index over all flows' throughputs in a repeat"])
    for cc, iv in m.cc.items():
        rows.append([f"{cc} throughput (Mbit/s)", "", iv.format(2), f"mean steady-state throughput of one {cc} flow"])
    return ReportTable(["metric", "pooled", "mean of repeats ± 95% CI", "what it measures"], rows,
                       caption="Headline numbers")


def _delay_table(summary: RunSummary) -> ReportTable:
    m = summary.metrics
    rows = []
    for q in M.QUEUES:
        s = m.queues[q]
        rows.append([q, f"{s.delay.n:,}"] + [_fmt(s.delay.get(p)) for p in M.PERCENTILES]
                    + [m.delay_ci[q][95].format(2)])
    return ReportTable(["queue", "samples"] + [f"p{p} (ms)" for p in M.PERCENTILES] + ["p95 per repeat ± CI (ms)"],
                       rows, caption="Queue delay, pooled over repeats")


def _cc_table(summary: RunSummary) -> ReportTable:
    m = summary.metrics
    rows = []
    for cc, iv in m.cc.items():
        per = [rm.cc[cc] for rm in m.repeats if cc in rm.cc]
        flows = per[0].flows if per else 0
        total = M.confidence_interval([c.total_mbps for c in per])
        rows.append([cc, flows, iv.format(2), total.format(2)])
    return ReportTable(["CC", "flows", "per flow (Mbit/s)", "all flows of the CC (Mbit/s)"], rows,
                       caption="Steady-state throughput per congestion control (mean of repeats ± 95% CI)")


def _flow_table(summary: RunSummary) -> ReportTable:
    rows = [[f.key.host, f.key.cc, f.key.group, f.key.connection, f.key.stream, f.throughput.format(2)]
            for f in summary.metrics.flows]
    return ReportTable(["host", "CC", "group", "connection", "stream", "Mbit/s (mean of repeats ± CI)"], rows,
                       caption="Per-flow steady-state throughput")


def _action_table(summary: RunSummary) -> ReportTable:
    rows = []
    for q in M.QUEUES:
        s = summary.metrics.queues[q]
        rows.append([q, f"{s.packets:,}", f"{s.forwarded:,} ({_pct(s.forward_fraction)})",
                     f"{s.drops:,} ({_pct(s.drop_fraction)})", f"{s.marks:,} ({_pct(s.mark_fraction)})"])
    return ReportTable(["queue", "decisions", "forwarded", "dropped", "CE-marked"], rows,
                       caption="Decisions per queue and action, all repeats")


@dataclass
class SeriesData:
    """One series of a comparison (DualPI2, a learned policy, a baseline): its parsed tables, same schema as a run's."""

    packets: Any  # pandas.DataFrame, packets.parquet schema
    flows: Any = None  # pandas.DataFrame, flows.parquet schema (None: no iperf3 data)


def series_metrics(series: Mapping[str, SeriesData], rate_bps: float) -> dict[str, M.RunMetrics]:
    """Run metrics of every series (pass them to :func:`comparison_section` when the caller needs them too)."""
    return {label: M.run_metrics(s.packets, s.flows if s.flows is not None else M.empty_flows(), rate_bps)
            for label, s in series.items()}


def comparison_section(title: str, series: Mapping[str, SeriesData], fig_dir: Path, *, rate_bps: float,
                       intro: str = "", scalable_ccs: Sequence[str] = SCALABLE_CCS,
                       name: str = "compare", metrics: Mapping[str, M.RunMetrics] | None = None) -> ReportSection:
    """A section comparing several series on the same figures: delay ECDF and box, action mix, throughput box,
    utilisation and throughput vs p95 delay, plus a table of headline numbers per series.

    Used by the closed-loop comparison (learned policy vs DualPI2 on the same seeds) and by baselines.
    Figures are written to ``fig_dir/<name>_*.{png,svg}``.
    """
    metrics = dict(metrics) if metrics is not None else series_metrics(series, rate_bps)
    delays = {label: M.DelaySamples.from_packets(s.packets) for label, s in series.items()}
    fig_dir = Path(fig_dir)
    figures = [
        ("Queue delay ECDF per queue and series.", P.delay_ecdf_figure(delays), "delay_ecdf"),
        ("Queue delay per queue and series: box p25–p75, whiskers p1–p99, ◆ mean.", P.delay_box_figure(delays),
         "delay_box"),
        ("Action mix per series and queue.", P.action_mix_figure({k: m.queues for k, m in metrics.items()}),
         "action_mix"),
    ]
    if any(m.repeats and m.repeats[0].flows for m in metrics.values()):
        figures += [
            ("Steady-state throughput per flow, per congestion control and series.",
             P.throughput_box_figure({k: [f for rm in m.repeats for f in rm.flows] for k, m in metrics.items()}),
             "throughput_box"),
            ("Utilisation over time per series.",
             P.utilization_figure({k: M.utilization_timeseries(s.flows, rate_bps) for k, s in series.items()
                                   if s.flows is not None}, rate_label=_rate_text(rate_bps)), "utilization"),
            ("Throughput vs p95 queue delay per series, one point per repeat per flow class.",
             P.tradeoff_figure({k: M.tradeoff_points(m, scalable_ccs) for k, m in metrics.items()}), "tradeoff"),
        ]
    saved = [(caption, P.save_figure(fig, fig_dir / f"{name}_{stem}").png) for caption, fig, stem in figures]
    rows = []
    for label, m in metrics.items():
        c, l_ = m.queues["C"], m.queues["L"]
        rows.append([label, _fmt(c.delay.p50_ms), _fmt(c.delay.p99_ms), _fmt(l_.delay.p50_ms), _fmt(l_.delay.p99_ms),
                     _pct(c.drop_fraction), _pct(c.mark_fraction), _pct(l_.mark_fraction),
                     m.utilization.format(1, scale=100, unit="%"), m.jain.format(3)])
    table = ReportTable(["series", "C p50 (ms)", "C p99 (ms)", "L p50 (ms)", "L p99 (ms)", "C drop", "C mark",
                         "L mark", "utilisation", "Jain"], rows, caption="Headline numbers per series")
    return ReportSection(title, markdown=intro, tables=[table], figures=saved)


def parse_section(summary: RunSummary) -> ReportSection:
    p = summary.parse
    rows = [["lines read", f"{p.lines_read:,}"], ["packet decisions parsed", f"{p.parsed:,}"],
            ["lines skipped", f"{p.skipped_total:,}"]]
    rows += [[f"skipped: {reason}", f"{n:,}"] for reason, n in sorted(p.skipped.items())]
    md = ("What the log parser read. Skipped lines are unrelated kernel messages or truncated/garbled log lines; "
          "a well-formed line is never skipped.")
    if p.examples:
        md += "\n\nExamples of skipped lines:\n\n" + "\n".join(
            f"- {reason}: `{_md_code(ex)}`" for reason, exs in sorted(p.examples.items()) for ex in exs[:3])
    return ReportSection("Parse statistics", markdown=md, tables=[ReportTable(["", "count"], rows)])


def provenance_section(manifest: Manifest) -> ReportSection:
    """Versions, git sha, host facts, seeds, timings and file hashes: everything needed to tell runs apart."""
    tables = [
        ReportTable(["field", "value"], [["run id", manifest.run_id], ["kind", manifest.kind],
                                         ["status", manifest.status], ["provider", manifest.provider],
                                         ["created", manifest.created], ["seed", manifest.seed]], caption="Run"),
        ReportTable(["component", "version"], [[k, v] for k, v in manifest.versions.items()], caption="Versions"),
        ReportTable(["host", "fact", "value"], [[h, k, _short(v)] for h, facts in manifest.host_facts.items()
                                                for k, v in _flatten(facts)], caption="Host facts"),
        ReportTable(["repeat", "seed", "status", "wall (s)", "started", "detail"],
                    [[r.repeat, r.seed, r.status, _fmt(r.wall_s, 1) if r.wall_s is not None else "—",
                      r.started or "—", _short(r.detail)]
                     for _, r in sorted(manifest.repeats.items(), key=lambda kv: int(kv[0]))],
                    caption="Repeats and seeds"),
        ReportTable(["timing", "value"], [[k, _short(v)] for k, v in _flatten(manifest.timings)], caption="Timings"),
        ReportTable(["step", "record"], [[k, _short(v, 300)] for k, v in manifest.steps.items() if k != "report"],
                    caption="Pipeline steps"),
        ReportTable(["file", "host", "bytes", "sha256"],
                    [[name, f.host, f"{f.size:,}", f.sha256] for name, f in sorted(manifest.files.items())],
                    caption="Fetched files"),
    ]
    return ReportSection("Provenance", markdown="From the run's manifest.json.", tables=[t for t in tables if t.rows])


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(obj, Mapping):
        out = []
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [(prefix or "value", obj)]


def _short(v: Any, limit: int = 200) -> str:
    if isinstance(v, str):
        text = v
    elif isinstance(v, (dict, list, tuple)):
        text = json.dumps(v, default=str, separators=(", ", ": "))
    else:
        text = str(v)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _md_code(text: str) -> str:
    return text.replace("`", "'")[:200]


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("l4stb.analysis", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["cell"] = _cell
    return env


def _md_to_html(text: str) -> str:
    from markdown_it import MarkdownIt  # comes with rich

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag, attrs) -> None:
        if tag in ("p", "br", "li", "tr", "div", "h1", "h2", "h3", "h4"):
            self.parts.append("\n")


def _html_to_text(fragment: str) -> str:
    parser = _TextOnly()
    parser.feed(fragment)
    return re.sub(r"\n{3,}", "\n\n", "".join(parser.parts)).strip()


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "—" if not math.isfinite(v) else f"{v:.4g}"
    return str(v)


def _place_figure(path: Path, out: Path, anchor: str) -> tuple[str, str | None]:
    """The figure's path relative to the report dir; a figure from elsewhere is copied (with its SVG sibling)
    to ``figures/<section anchor>/``, so it never overwrites a figure of another section."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"report figure {path} does not exist")
    try:
        rel = path.resolve().relative_to(out.resolve())
    except ValueError:
        fig_dir = out / FIGURES_DIR / anchor
        fig_dir.mkdir(parents=True, exist_ok=True)
        target = fig_dir / path.name
        shutil.copyfile(path, target)
        svg = path.with_suffix(".svg")
        if path.suffix != ".svg" and svg.is_file():
            shutil.copyfile(svg, target.with_suffix(".svg"))
        rel = target.relative_to(out)
    svg_rel = rel.with_suffix(".svg")
    return rel.as_posix(), svg_rel.as_posix() if (out / svg_rel).is_file() else None


def _render_section(section: ReportSection, out: Path) -> _Rendered:
    parts = []
    if section.markdown:
        parts.append(_md_to_html(section.markdown))
    if section.html:
        parts.append(section.html)
    md = section.markdown or (_html_to_text(section.html) if section.html else "")
    r = _Rendered(section, Markup("\n".join(parts)), md, list(section.tables))
    for caption, path in section.figures:
        rel, svg = _place_figure(Path(path), out, section.anchor)
        mime = "image/svg+xml" if rel.endswith(".svg") else "image/png"
        data = base64.b64encode((out / rel).read_bytes()).decode("ascii")
        r.figures.append(_Figure(caption, rel, svg, f"data:{mime};base64,{data}"))
    return r


def _md_table(t: ReportTable) -> str:
    def esc(v: Any) -> str:
        return _cell(v).replace("|", "\\|").replace("\n", " ")

    lines = []
    if t.caption:
        lines += [f"*{t.caption}*", ""]
    lines.append("| " + " | ".join(esc(c) for c in t.columns) + " |")
    lines.append("|" + "|".join("---" for _ in t.columns) + "|")
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def _markdown_report(title: str, rendered: Sequence[_Rendered]) -> str:
    out = [f"# {title}", ""]
    out += [f"- [{r.section.title}](#{r.section.anchor})" for r in rendered]
    for r in rendered:
        out += ["", f"## {r.section.title}", ""]
        if r.body_md:
            out += [r.body_md, ""]
        for t in r.tables:
            out += [_md_table(t), ""]
        for f in r.figures:
            out += [f"![{f.caption}]({f.png})", "", f"*{f.caption}*" + (f" ([SVG]({f.svg}))" if f.svg else ""), ""]
    return "\n".join(out).rstrip() + "\n"


__all__ = ["ReportSection", "ReportTable", "SeriesData", "comparison_section", "network_sections", "parse_section",
           "provenance_section", "render_model_report", "render_report", "series_metrics"]
