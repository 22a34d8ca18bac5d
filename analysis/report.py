"""`l4stb report`: a run's network sections, and the run's report rendered into runs/<id>/report/.

The report is built from :class:`~l4stb.analysis.report_frame.ReportSection` records: the network sections come
from this module, and later stages (the model stage: training curves, confusion matrix, baselines,
latency/memory, the closed-loop comparison) pass their own sections to :func:`render_report`. How sections become
``index.html`` and ``summary.md`` is the frame's job (:mod:`l4stb.analysis.report_frame`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from l4stb import aqm_catalogue
from l4stb.analysis import figure_data as D, metrics as M, plots as P
from l4stb.analysis.aqm_state import aqm_timeseries
from l4stb.analysis.capacity import Capacity
from l4stb.analysis.figure_saver import figure_batch
from l4stb.analysis.flowview import DEFAULT_BIN_S, flow_rates
from l4stb.analysis.report_frame import (FIGURES_DIR, ReportSection, ReportTable, cell_text, md_code, md_plain,
                                        write_report)
from l4stb.analysis.report_packets import RunPacketViews, summarize_for_report
from l4stb.analysis.summary import RunData, RunSummary, load_run, na_text, sampled_log_text
from l4stb.analysis.timebase import interval_times_s, on_repeat_clock, router_offsets_s
from l4stb.analysis.traffic import bulk_streams
from l4stb.config import SCALABLE_CCS
from l4stb.errors import L4stbError
from l4stb.manifest import Manifest, update_manifest
from l4stb.units import format_duration
from l4stb.workspace import Workspace, sha256_file, staged_folder, utc_iso

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimeseriesView:
    """What the time-series figures show: one repeat (None = the first), a window of it, the per-flow bin."""

    repeat: int | None = None
    window: tuple[float, float] | None = None
    bin_s: float = DEFAULT_BIN_S

    @classmethod
    def from_options(cls, repeat: int | None, window: str | None, bin_ms: float = DEFAULT_BIN_S * 1000) -> "TimeseriesView":
        """From `--repeat N --window START:END --bin MS`; a bad value is a user error naming the option."""
        span = None
        if window:
            try:
                a, b = (float(x) for x in window.split(":"))
            except ValueError:
                raise L4stbError(f"--window '{window}' is not START:END in seconds, e.g. --window 10:12.") from None
            if not 0 <= a < b:
                raise L4stbError(f"--window {window}: START must be at least 0 and below END.")
            span = (a, b)
        if not 1 <= bin_ms <= 10_000:
            raise L4stbError(f"--bin {bin_ms:g} ms is out of range: use 1 to 10000 ms.")
        if repeat is not None and repeat < 1:
            raise L4stbError(f"--repeat {repeat}: repeats are numbered from 1.")
        return cls(repeat, span, bin_ms / 1000)


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------


def render_report(ws: Workspace, run_id: str, sections: Sequence[ReportSection] = (), progress=None,
                  view: TimeseriesView = TimeseriesView(), extra_files: Mapping[str, str] | None = None) -> Path:
    """Render runs/<id>/report/{index.html, summary.md, figures/*} and record ``manifest.steps["report"]``.

    ``sections`` are appended after the network sections and before the parse statistics and
    provenance; each appears in both index.html and summary.md.
    """
    data = load_run(ws, run_id, progress=progress, with_packets=False)
    # one pass over the packets, one repeat at a time: the summary and every per-packet view the figures draw
    summary, packets = summarize_for_report(ws, data, view.repeat, utilization_bin_s(data))
    # the report folder is one output set: built in a staging folder and swapped in whole (so no figure of
    # an earlier render outlives it, and no reader sees old and new files mixed)
    with staged_folder(ws.report_dir(run_id)) as stage:
        network = network_sections(data, summary, packets, stage / FIGURES_DIR, view)
        tail = [parse_section(summary), provenance_section(data.manifest)]
        all_sections = [network[0], *network[1:], *sections, *tail]
        _, rendered = write_report(stage, f"l4stb report: {run_id}", all_sections, footer=f"run {run_id}",
                                    scenario=data.scenario, testbed=summary.testbed, extra_files=extra_files)
    out = ws.report_dir(run_id)
    index = out / "index.html"
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
    aqm = data.resolved_aqm
    lines: dict[str, list[tuple[str, float]]] = {}
    rec = aqm_catalogue.record(aqm)
    for queue, label in rec.reference_lines:
        lines.setdefault(queue, []).append((label, rec.reference_ms(aqm, label)))
    return lines


def fair_share_mbps(data: RunData) -> float | None:
    """The mean capacity offered over the run, shared equally by its bulk streams."""
    if not data.scenario or not data.rate_bps or not bulk_streams(data.scenario):
        return None
    cap = data.capacity
    return cap.mean_bps(0.0, data.scenario.duration / 1e6) / bulk_streams(data.scenario) / 1e6


def equal_share_line(data: RunData) -> tuple[np.ndarray, np.ndarray] | None:
    """The equal share over time, (times s, Mbit/s) as steps: the capacity offered at each moment over the number
    of bulk streams; None without a scenario or bulk streams."""
    if not data.scenario or not data.rate_bps or not bulk_streams(data.scenario):
        return None
    cap, n = data.capacity, bulk_streams(data.scenario)
    end = data.scenario.duration / 1e6 + max((g.start for g in data.scenario.flows), default=0) / 1e6
    times = np.r_[np.asarray(cap.times_s, dtype=float), end]
    rates = np.r_[np.asarray(cap.rates_bps, dtype=float), cap.rates_bps[-1]]
    keep = times <= end
    return times[keep], rates[keep] / n / 1e6


def network_sections(data: RunData, summary: RunSummary, packets: RunPacketViews, fig_dir: Path,
                     view: TimeseriesView = TimeseriesView()) -> list[ReportSection]:
    """Overview, queue delay, throughput, utilisation, throughput vs delay, coexistence, fairness, actions and the
    AQM over time of one run (``packets``: its per-packet views, :func:`summarize_for_report`)."""
    m = summary.metrics
    figs: dict[str, Path] = {}
    with figure_batch() as batch:

        def save(name: str, fig, fdata=None) -> Path:
            figs[name] = batch.save(fig, fig_dir / name, fdata).png
            return figs[name]

        changes, util, bin_s = _network_figures(data, packets, m, save)
        own_delay = _flow_delay_section(data, packets, m, save, figs)
        over_time = _timeseries_section(data, packets, view, save, figs)
    ci_note = _ci_note(m.n_repeats)
    return [
        ReportSection("Overview", markdown=_overview_md(data, summary), tables=[_scenario_table(data),
                                                                              _headline_table(summary)]),
        _queue_delay_section(summary, figs, ci_note),
        _throughput_section(summary, figs, changes),
        _utilisation_section(data, m, figs, util, bin_s),
        _tradeoff_section(figs),
        _fairness_section(summary, ci_note),
        _coexistence_section(summary),
        *_class_sections(summary),
        _actions_section(summary, figs),
        *[sec for sec in (own_delay, over_time) if sec is not None],
    ]


def utilization_bin_s(data: RunData) -> float:
    """The bin of the utilisation figure: the iperf3 interval (1 s without a scenario)."""
    return (data.scenario.iperf3.interval / 1e6) if data.scenario else 1.0


def _network_figures(data: RunData, packets: RunPacketViews, m: M.RunMetrics, save) -> tuple[list, dict, float]:
    """Draw the run's delay, throughput, utilisation, trade-off and action figures through ``save``; return the
    capacity changes, the utilisation series and their bin (seconds), which the sections' text describes."""
    label = data.label
    delays = {label: packets.delays}
    save("queue_delay_ecdf", P.delay_ecdf_figure(delays, reference_lines_ms(data)), D.ecdf_data(delays))
    save("queue_delay_box", P.delay_box_figure(delays), D.box_data(delays))
    changes = data.capacity.changes() if data.capacity.varies else []
    save("throughput_timeseries", P.throughput_timeseries_figure(data.flows, fair_share_mbps=fair_share_mbps(data),
                                                                  warmup_s=m.warmup_s, equal_share=equal_share_line(data),
                                                                  rate_changes=changes),
         D.throughput_timeseries_data(data.flows))
    all_flows = [f for rm in m.repeats for f in rm.bulk_flows]
    save("throughput_box", P.throughput_box_figure({label: all_flows}, fair_share_mbps=fair_share_mbps(data)),
         D.throughput_box_data({label: all_flows}))
    bin_s = utilization_bin_s(data)
    util = {"router log (forwarded bytes)": packets.link_utilization,
            "iperf3 (sender bytes)": M.utilization_timeseries(data.flows, data.capacity, bin_s)}
    util = {k: v for k, v in util.items() if v}
    save("utilization", P.utilization_figure(util, rate_label=_rate_label(data), warmup_s=m.warmup_s,
                                             rate_changes=changes),
         D.utilization_data(util))
    tradeoff = {label: M.tradeoff_points(m, SCALABLE_CCS)}
    save("throughput_vs_p95_delay", P.tradeoff_figure(tradeoff), D.tradeoff_data(tradeoff))
    save("action_mix", P.action_mix_figure({label: m.queues}), D.action_mix_data({label: m.queues}))
    return changes, util, bin_s


def _rate_label(data: RunData) -> str:
    return _capacity_text(data) if data.rate_bps else ""


def _ci_note(n: int) -> str:
    return ("± is the 95% Student-t interval of the per-repeat values, clipped to the metric's range (then shown "
            "as [low, high])." if n >= M.MIN_CI_REPEATS else
            f"{n} repeat(s) only: no confidence intervals (they need at least {M.MIN_CI_REPEATS} repeats).")


def _queue_delay_section(summary: RunSummary, figs: dict[str, Path], ci_note: str) -> ReportSection:
    return ReportSection(
        "Queue delay",
        markdown=(
            "Queue delay is the router's logged `current_queue_delay` of every packet it forwarded or "
            "CE-marked (dropped packets never leave the queue), per queue. Under DualPI2 it is the "
            "packet's sojourn time, so each packet is one sample. The ECDF is a true empirical CDF "
            "(y = i/n at the i-th smallest sample), not the cumulative sum of sorted delays the original "
            f"plots drew. Percentiles pool the packets of all {summary.metrics.n_repeats} repeat(s); {ci_note}"
        ),
        tables=[_delay_table(summary)],
        figures=[("Queue delay ECDF per queue; dotted lines are the AQM's own targets.", figs["queue_delay_ecdf"]),
                 ("Queue delay per queue: box p25–p75, median line, whiskers p1–p99, ◆ mean.",
                  figs["queue_delay_box"])],
    )


def _throughput_section(summary: RunSummary, figs: dict[str, Path], changes: list) -> ReportSection:
    m = summary.metrics
    n = m.n_repeats
    return ReportSection(
        "Throughput",
        markdown=(
            "Throughput comes from the iperf3 senders' interval reports. Flows are in three classes: bulk "
            "(long-running), short (a `size` each) and unresponsive (`cc: udp`); throughput per CC, Jain's "
            "index and the scalable/classic ratio are over bulk flows only. A bulk flow's steady-state "
            f"throughput is its bytes over its interval time after the first {m.warmup_s:g} s (the handshake "
            "and slow start come before the AQM controls the queue); a flow that lasts under twice that, and "
            "every short or unresponsive flow, is measured over its own lifetime instead. Each flow is drawn "
            "from its real start. The dashed line is the equal share: the capacity offered at each moment "
            "divided by the number of bulk streams" + (" (dotted lines: the bottleneck rate changes)."
                                                      if changes else ".")
        ),
        tables=[_cc_table(summary)],
        figures=[(f"Per-flow throughput over time, coloured by congestion control (first "
                  f"{min(4, n)} of {n} repeats).", figs["throughput_timeseries"]),
                 ("Steady-state throughput per bulk flow, per congestion control (one dot per flow per repeat).",
                  figs["throughput_box"])],
    )


def _utilisation_section(data: RunData, m: M.RunMetrics, figs: dict[str, Path], util: dict,
                         bin_s: float) -> ReportSection:
    return ReportSection(
        "Utilisation",
        markdown=(
            "Utilisation (the headline) is the bytes every iperf3 sender reported (all flow classes) in the "
            f"intervals after the first {m.warmup_s:g} s, over the capacity the bottleneck offered in the same "
            f"time ({_rate_label(data) or 'unknown'}), clipped to 100 %: iperf3 counts the bytes the senders wrote, "
            "so a saturated link can read slightly above. With a rate schedule or trace, each time bin is "
            "measured against the capacity offered in that bin, and the rate changes are marked. iperf3 counts "
            "bytes in whole socket writes (128 KiB, about 1 Mbit), so per-second values of slow flows are "
            "coarse. The router-side utilisation counts the bytes of every packet the router forwarded or "
            "marked over the logged time span; it needs timestamped log lines (l4stb's own format)."
        ),
        tables=[ReportTable(["repeat", "capacity offered (Mbit/s)", "utilisation (iperf3)", "unclipped",
                             "router-side"],
                            [[rm.repeat, _fmt(rm.capacity_bps / 1e6, 2), _pct(rm.utilization),
                              _fmt(rm.utilization_unclipped, 3), _pct(rm.link_utilization)] for rm in m.repeats]
                            + [["mean", "", m.utilization.format(1, scale=100, unit="%"), "",
                                M.confidence_interval([rm.link_utilization for rm in m.repeats],
                                                      bounds=M.NON_NEGATIVE).format(1, scale=100, unit="%")]])],
        figures=[(f"Utilisation over time per {bin_s:g}-s bin, against the capacity offered in each bin: each "
                  "repeat thin, their mean bold"
                  + ("; solid from the router log, dashed from iperf3." if len(util) == 2 else "."),
                  figs["utilization"])],
    )


def _tradeoff_section(figs: dict[str, Path]) -> ReportSection:
    return ReportSection(
        "Throughput vs delay",
        markdown=(
            "One small mark per repeat per congestion control: its mean per-flow steady-state throughput "
            "against the p95 queue delay of the queue its packets use (L for scalable CCs, C otherwise), "
            "as in Pantheon's summary plot. Large marks are the means over repeats with 95% intervals. "
            "Up and to the left is better."
        ),
        figures=[("Throughput vs p95 queue delay, one point per repeat per flow class.",
                  figs["throughput_vs_p95_delay"])],
    )


def _fairness_section(summary: RunSummary, ci_note: str) -> ReportSection:
    m = summary.metrics
    return ReportSection(
        "Fairness",
        markdown=(
            "Jain's index (Σx)²/(n·Σx²) over the bulk flows' steady-state throughputs in a repeat: 1 when every "
            "bulk flow gets the same rate, 1/n when one flow takes everything. Short and unresponsive flows are "
            "left out. When the bulk flows together carry next to nothing (under "
            f"{100 * M.NEAR_ZERO_SHARE:g} % of the capacity offered) there is nothing to share and the index is "
            "n/a, not 1. Flows of different congestion controls are expected to differ under DualPI2's "
            f"window-fair coupling (scalable flows see a shorter queue). {ci_note}"
        ),
        tables=[ReportTable(["repeat", "Jain index (bulk flows)", "bulk flows"],
                            [[rm.repeat, na_text(rm.bulk_na) if rm.bulk_na else _fmt(rm.jain, 3),
                              len(rm.bulk_flows)] for rm in m.repeats]
                            + [["mean", _jain_text(summary), ""]], caption="Jain fairness per repeat"),
                _flow_table(summary)],
    )


def _actions_section(summary: RunSummary, figs: dict[str, Path]) -> ReportSection:
    return ReportSection(
        "Actions",
        markdown=_actions_md(summary),
        tables=[_action_table(summary)],
        figures=[("Action mix per queue" + (", with a zoom on drops and marks." if _zoomed(summary.metrics) else "."),
                  figs["action_mix"])],
    )


def _zoomed(m: M.RunMetrics) -> bool:
    shares = [100 * (q.drops + q.marks) / q.packets for q in m.queues.values() if q.packets]
    return bool(shares) and max(shares) < P.ZOOM_BELOW_PCT


def _actions_md(summary: RunSummary) -> str:
    """What the router did per queue, in sentences computed from this run's counts."""
    parts = []
    for q in M.QUEUES:
        s = summary.metrics.queues[q]
        if s.packets:
            parts.append(f"the {q} queue dropped {_pct(s.drop_fraction)} and CE-marked {_pct(s.mark_fraction)} of its "
                         f"{s.packets:,} decisions")
    text = "What the router did with each packet, per queue: forwarded, dropped or CE-marked. In this run " + \
        ("; ".join(parts) if parts else "no decision was logged") + "."
    if summary.overload is not None and summary.overload.interval.n:
        text += (f" DualPI2 was in overload (flags bit1: p_CL ≥ 1 or p_C ≥ p_Cmax) in "
                 f"{summary.overload.interval.format(1, scale=100, unit='%')} of its logged PI updates; in overload it "
                 "drops Classic packets it would otherwise mark.")
    return text


def _coexistence_section(summary: RunSummary) -> ReportSection:
    co = summary.coexistence
    rows = []
    if co is not None and co.defined:
        rows.append(["scalable / classic, per flow", co.per_flow.format(2),
                     "mean throughput of one scalable flow over that of one classic flow, per repeat"])
        for (sc, cl), iv in co.pairs.items():
            rows.append([f"{sc} / {cl}", iv.format(2), f"mean {sc} flow over mean {cl} flow, per repeat"])
    rows.append(["Jain index, bulk flows", _jain_text(summary), "per repeat, (Σx)²/(n·Σx²)"])
    if co is not None and co.defined:
        ratio = co.per_flow.mean
        reading = ("equal shares per flow" if abs(ratio - 1) < 0.05 else
                   f"a scalable flow gets {ratio:.2f}× the throughput of a classic flow" if ratio > 1 else
                   f"a scalable flow gets {ratio:.2f}× (less than) the throughput of a classic flow")
        md = (f"The coexistence metric of L4S studies: the ratio of steady-state throughputs of scalable (L4S) and "
              f"classic bulk flows (never short or UDP flows), computed in each repeat and averaged with its 95% interval. In this run, {reading} "
              f"(n = {co.per_flow.n} repeats). 1 is an equal share per flow.")
    else:
        why = co.na if co is not None and co.na else "no scalable and classic bulk flows side by side"
        rows.insert(0, ["scalable / classic, per flow", na_text(why), "mean throughput of one scalable bulk flow "
                        "over that of one classic bulk flow, per repeat"])
        md = f"The coexistence ratio is not defined in this run: {why}."
    return ReportSection("Coexistence", markdown=md,
                         tables=[ReportTable(["ratio", "mean of repeats ± 95% CI", "what it is"], rows,
                                             caption="Throughput ratios and fairness")])


def _flow_delay_section(data: RunData, packets: RunPacketViews, m: M.RunMetrics, save, figs) -> ReportSection | None:
    if packets.flow_points is None:
        return None
    pts = packets.flow_points
    fdata = D.FigureData("scatter", D._frame([{"panel": "", "series": p.cc, "x": p.p95_delay_ms, "y": p.throughput_mbps,
                                               "repeat": p.repeat, "flow": p.label} for p in pts],
                                             ["panel", "series", "x", "y", "repeat", "flow"]),
                         "p95 queue delay of the flow's own packets (ms)", "flow throughput, router-side (Mbit/s)")
    save("flow_throughput_vs_own_delay", P.flow_points_figure({data.label: pts}), fdata)
    return ReportSection(
        "Per-flow throughput vs own delay",
        markdown=("Pantheon's view, per flow: each flow's throughput against the p95 queue delay of its own packets, "
                  "both from the router log (flow ids), one mark per flow per repeat. Throughput here is router-side: "
                  "the bytes of the flow's forwarded or marked packets after its first "
                  f"{m.warmup_s:g} s, over that time."),
        figures=[("Per-flow router-side throughput vs the p95 of the flow's own queue delay.",
                  figs["flow_throughput_vs_own_delay"])])


def _timeseries_section(data: RunData, views: RunPacketViews, view: TimeseriesView, save, figs) -> ReportSection | None:
    if not views.timed:
        return None
    repeats = views.repeats
    repeat = view.repeat if view.repeat is not None else repeats[0]
    if repeat not in repeats:
        raise L4stbError(f"--repeat {repeat}: run {data.run_id} has repeats {', '.join(map(str, repeats))}.")
    coupling = data.scenario.aqm.coupling_factor if data.scenario else 2.0
    # the router log's times on the scenario's clock, the one time origin of every figure (timebase)
    packets = on_repeat_clock(views.shown, router_offsets_s(data.flows))
    span = float(np.nanmax(packets["t_s"]))
    window = view.window
    if window is not None and window[0] >= span:
        raise L4stbError(f"--window {window[0]:g}:{window[1]:g} starts after repeat {repeat} ends ({span:.1f} s).")
    length = (window[1] - window[0]) if window else span
    ts = aqm_timeseries(packets, repeat, coupling=coupling, window=window, bin_s=max(0.001, length / 1500))
    rates = flow_rates(packets, data.scenario, repeat=repeat, bin_s=view.bin_s, window=window, senders=data.senders)
    flows = data.flows
    if window is not None and not flows.empty:
        start, end = interval_times_s(flows)
        flows = flows[(end > window[0]) & (start < window[1])]
    fdata = D.over_time_data(ts, rates, flows, repeat=repeat, bin_ms=view.bin_s * 1000)
    save("aqm_timeseries", P.aqm_timeseries_figure(ts, rates, flows, repeat=repeat, window=window,
                                                    bin_ms=view.bin_s * 1000), fdata)
    where = f"{window[0]:g}–{window[1]:g} s of repeat {repeat}" if window else f"all of repeat {repeat}"
    return ReportSection(
        "Over time",
        markdown=(f"The AQM and the flows over time, {where} (`l4stb report --repeat N --window START:END` picks "
                  "another). Sojourn and queue length are means per bin over each queue's decisions; p' is DualPI2's "
                  "base probability from the log, p_C = p'² and p_CL = min(1, k·p'). Per-flow throughput is "
                  f"router-side: the bytes of each flow's forwarded or marked packets per {view.bin_s * 1000:g} ms bin "
                  "(not iperf3's intervals, which count whole 128 KiB writes). cwnd and RTT are iperf3's once-per-"
                  "interval samples."),
        figures=[(f"Repeat {repeat}: sojourn, queue length, probabilities, router-side per-flow throughput"
                  + (", cwnd and RTT" if "snd_cwnd" in flows else "") + ".", figs["aqm_timeseries"])])


def _overview_md(data: RunData, summary: RunSummary) -> str:
    m = summary.metrics
    s = data.scenario
    lines = [f"Testbed: **{summary.testbed}**.", "", f"Run **{data.run_id}**"]
    if s:
        flows = ", ".join(f"{f.host}: {data.senders.label(f.host, f.cc)} × {f.streams}" for f in s.flows)
        lines[-1] += (f": scenario `{s.name}` ({md_plain(s.description) or 'no description'}), AQM **{s.aqm.name}** at "
                     f"{_rate_text(s.bottleneck.rate)}, {format_duration(s.bottleneck.delay)} one-way delay, flows {flows}, "
                     f"{m.n_repeats} repeat(s) of {format_duration(s.duration)}.")
    else:
        lines[-1] += f" ({data.manifest.kind}); the manifest carries no complete scenario, so the bottleneck rate " \
                    "and targets are unknown."
    c, l_ = m.queues["C"], m.queues["L"]
    lines.append("")
    lines.append(
        f"Headline: C-queue p95 delay {_fmt(c.delay.p95_ms)} ms, L-queue p95 delay {_fmt(l_.delay.p95_ms)} ms, "
        f"utilisation {m.utilization.format(1, scale=100, unit='%')} of the capacity offered, Jain (bulk flows) "
        f"{_jain_text(summary)}"
        + (f", scalable/classic throughput per flow {summary.coexistence.per_flow.format(2)}"
           if summary.coexistence and summary.coexistence.defined else
           f", scalable/classic ratio {na_text(summary.coexistence.na)}"
           if summary.coexistence and summary.coexistence.na != "no scalable and classic bulk flows side by side"
           else "")
        + (f", DualPI2 in overload in {summary.overload.interval.format(1, scale=100, unit='%')} of PI updates"
           if summary.overload and summary.overload.interval.n else "")
        + ". The table below says what each number measures."
    )
    if summary.log_sample_every > 1:
        lines += ["", f"**{sampled_log_text(summary.log_sample_every)}**"]
    applied = summary.capacity_json()["repeats_applied"]
    if applied:
        lines += ["", f"Utilisation of {applied} of {m.n_repeats} repeat(s) is measured against the rate schedule as "
                  "the router applied it (its helper's record of each step), not as planned."]
    if summary.overrides:
        lines += ["", "Overrides of the scenario: " + ", ".join(f"`{o}`" for o in summary.overrides) + "."]
    if summary.sweep:
        lines += ["", f"Point of sweep `{summary.sweep.get('sweep_id')}`: "
                  + ", ".join(f"{k} = {v}" for k, v in (summary.sweep.get("values") or {}).items()) + "."]
    return "\n".join(lines)


def _scenario_table(data: RunData) -> ReportTable:
    s = data.scenario
    if not s:
        return ReportTable(["field", "value"], [[k, _short(v)] for k, v in data.manifest.scenario.items()],
                           caption="Scenario (as recorded)")
    a = data.resolved_aqm
    rows = [
        ["scenario", s.name], ["description", s.description], ["topology", s.topology],
        ["bottleneck", f"{_rate_text(s.bottleneck.rate)}, {format_duration(s.bottleneck.delay)} one way, "
                       f"limit {s.bottleneck.limit_packets} packets"
                       + (f", htb shaper (burst {s.bottleneck.burst_bytes} bytes)" if s.bottleneck.shaper == "htb"
                          else "")],
        *([["rate schedule", ", ".join(f"{_rate_text(st.rate)} from {format_duration(st.at)}"
                                       for st in s.bottleneck.rate_schedule)]] if s.bottleneck.rate_schedule else []),
        *([["rate trace", f"{s.bottleneck.rate_trace} (mahimahi, one rate per {format_duration(s.bottleneck.trace_bin)}; "
                          f"{_capacity_text(data)})"]] if s.bottleneck.rate_trace else []),
        ["AQM", f"{a.name} (ECN {'on' if a.ecn else 'off'}): target {format_duration(a.target or 0)}, tupdate "
                f"{format_duration(a.tupdate or 0)}, alpha {a.alpha}, beta {a.beta}, coupling k {a.coupling_factor}, "
                f"L step {format_duration(a.step_threshold)}"
                + (f", L classifier {a.l4s_classifier}" if a.engine == "dualpi2" else "")],
        ["flows", "; ".join(_group_text(s, i) for i in range(len(s.flows)))],
        ["sender stacks", "; ".join(_host_text(s, h) for h in sorted({f.host for f in s.flows}))],
        ["duration × repeats", f"{format_duration(s.duration)} × {s.repeats}"],
        ["seed", s.seed],
    ]
    return ReportTable(["field", "value"], rows, caption="Scenario")


def _group_text(s: Any, i: int) -> str:
    """One flow group of a scenario in words: host, CC, how many, and its class's own settings."""
    f = s.flows[i]
    text = f"{f.host}: {f.cc}, {f.connections} connection(s) × {f.parallel} stream(s)"
    if f.cc == "udp":
        text += f", UDP at {_rate_text(f.rate or 0)}, ECN {f.ecn}"
        if f.on_time:
            text += f", on {format_duration(f.on_time)} / off {format_duration(f.off_time)}"
    if f.short:
        text += f", short flows of {f.size:,} bytes, mean gap {format_duration(f.mean_gap)}"
    if f.start:
        text += f", start {format_duration(f.start)}"
    if f.extra_delay:
        text += f", extra delay {format_duration(f.extra_delay)}"
    return text


def _host_text(s: Any, host: str) -> str:
    h = s.host(host)
    text = f"{host}: {h.stack}"
    if any(f.cc == "prague" for f in s.flows if f.host == host):
        text += f", Prague over {'udp_prague' if h.prague == 'udp' else 'TCP Prague'}"
    if h.extra_delay:
        text += f", extra delay {format_duration(h.extra_delay)}"
    return text


def _headline_table(summary: RunSummary) -> ReportTable:
    m = summary.metrics
    rows = []
    for q in M.QUEUES:
        s = m.queues[q]
        for p in (50, 95, 99):
            rows.append([f"{q} queue delay p{p} (ms)", _fmt(s.delay.get(p)), m.delay_ci[q][p].format(2),
                         f"p{p} of the logged queue delay of the {q} queue's forwarded and marked packets"])
        r = summary.rates.get(q)
        rows.append([f"{q} drop rate", f"{s.drops:,} of {s.packets:,} ({_pct(s.drop_fraction)})",
                     r.drop.format(2, scale=100, unit="%") if r else "—", f"{q}-queue decisions that dropped the packet"])
        rows.append([f"{q} mark rate", f"{s.marks:,} of {s.packets:,} ({_pct(s.mark_fraction)})",
                     r.mark.format(2, scale=100, unit="%") if r else "—", f"{q}-queue decisions that CE-marked it"])
    rows.append(["utilisation", "", m.utilization.format(1, scale=100, unit="%"),
                 "bytes the iperf3 senders reported after the warm-up / capacity offered in that time (%)"])
    rows.append(["Jain fairness", "", _jain_text(summary), "Jain's index over the bulk flows' throughputs in a repeat"])
    if summary.coexistence and summary.coexistence.defined:
        rows.append(["scalable/classic ratio", "", summary.coexistence.per_flow.format(2),
                     "throughput of one scalable bulk flow over one classic bulk flow"])
    elif summary.coexistence and summary.coexistence.na:
        rows.append(["scalable/classic ratio", "", na_text(summary.coexistence.na),
                     "throughput of one scalable bulk flow over one classic bulk flow"])
    if summary.overload is not None:
        rows.append(["DualPI2 overload", "", summary.overload.interval.format(1, scale=100, unit="%"),
                     "share of logged PI updates with the overload flag (flags bit1)"])
    for name, iv in m.cc.items():
        rows.append([f"{name} throughput (Mbit/s)", "", iv.format(2),
                     f"mean steady-state throughput of one bulk {name} flow"])
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
    for name, iv in m.cc.items():
        per = [rm.cc[name] for rm in m.repeats if name in rm.cc]
        flows = per[0].flows if per else 0
        total = M.confidence_interval([c.total_mbps for c in per], bounds=M.NON_NEGATIVE)
        rows.append([name, flows, iv.format(2), total.format(2)])
    return ReportTable(["CC (sender stack)", "flows", "per flow (Mbit/s)", "all flows of the CC (Mbit/s)"], rows,
                       caption="Steady-state throughput per congestion control and sender stack "
                               "(mean of repeats ± 95% CI)")


def _flow_table(summary: RunSummary) -> ReportTable:
    rows = [[f.key.host, f.key.cc_name, f.key.group, f.key.connection, f.key.stream, f.throughput.format(2)]
            for f in summary.metrics.flows if f.flow_class == "bulk"]
    return ReportTable(["host", "CC", "group", "connection", "stream", "Mbit/s (mean of repeats ± CI)"], rows,
                       caption="Per-flow steady-state throughput, bulk flows")


def _jain_text(summary: RunSummary) -> str:
    na = summary.na
    return na_text(na["jain"]) if "jain" in na else summary.metrics.jain.format(3)


def _class_sections(summary: RunSummary) -> list[ReportSection]:
    """The short-flow and unresponsive-flow sections, when the run has such flows."""
    out = []
    if summary.short_flows:
        rows = []
        for sf in summary.short_flows:
            rows.append([sf.group, sf.host, sf.cc_name, f"{sf.size_bytes:,}", format_duration(int(sf.mean_gap_s * 1e6)),
                         sf.started, sf.finished, sf.unfinished,
                         *(_fmt(sf.quantile(p), 1) for p in (50, 95, 99)),
                         _fmt(float(sf.fct_ms.mean()) if sf.finished else float("nan"), 1)])
        out.append(ReportSection(
            "Short flows",
            markdown=("Short flows are judged by their completion time (FCT), not by a throughput: the end of each "
                      "connection's last iperf3 interval, counted from its own start, over every connection of every "
                      "repeat. A connection whose sender reported fewer bytes than its size was still sending when "
                      "the test stopped: it is counted as unfinished and given no completion time. On the simulator "
                      "a flow ends when its last byte is acked; a real `iperf3 -n` client ends when its last byte is "
                      "written (the sender's view)."),
            tables=[ReportTable(["group", "host", "CC", "size (bytes)", "mean gap", "started", "finished",
                                 "unfinished", "FCT p50 (ms)", "FCT p95 (ms)", "FCT p99 (ms)", "FCT mean (ms)"], rows,
                                caption="Flow completion times by size")]))
    if summary.udp:
        rows = [[u.group, u.host, u.ecn, _fmt(u.configured_mbps), _fmt(u.offered_mbps),
                 "n/a" if u.router_na else _fmt(u.delivered_mbps), "n/a" if u.router_na else _pct(u.loss),
                 "n/a" if u.router_na else _pct(u.marks), u.repeats] for u in summary.udp]
        notes = " ".join(f"Group {u.group}: delivered, loss and marks are n/a: {u.router_na}." for u in summary.udp
                         if u.router_na)
        out.append(ReportSection(
            "Unresponsive flows",
            markdown=("UDP senders (`cc: udp`) do not react to drops or marks, so they are not part of Jain's index or "
                      "the scalable/classic ratio. Configured is the scenario's `rate`; offered is the bytes the "
                      "iperf3 sender reported over its lifetime; loss and marks are the shares of its packets the "
                      "router dropped and CE-marked (router log, by flow id); delivered is the offered rate times the "
                      "share the router let through. Means over repeats. " + notes).strip(),
            tables=[ReportTable(["group", "host", "ECN", "configured (Mbit/s)", "offered (Mbit/s)",
                                 "delivered (Mbit/s)", "loss", "marks", "repeats"], rows,
                                caption="Unresponsive (UDP) flows")]))
    return out


def _capacity_text(data: RunData) -> str:
    """The bottleneck capacity in words: the fixed rate, or the schedule/trace with its range."""
    cap = data.capacity
    if not cap.varies:
        return _rate_text(cap.nominal_bps)
    lo, hi = min(cap.rates_bps), max(cap.rates_bps)
    return f"{cap.source}, {_rate_text(lo)} to {_rate_text(hi)}"


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
    sample_every: int = 1  # the router logged every N-th decision (logging.sample_every): counts scale by N


def series_metrics(series: Mapping[str, SeriesData], rate_bps: "float | Capacity") -> dict[str, M.RunMetrics]:
    """Run metrics of every series (pass them to :func:`comparison_section` when the caller needs them too);
    ``rate_bps`` may be the :class:`~l4stb.analysis.capacity.Capacity` the scenario offered."""
    return {label: M.run_metrics(s.packets, s.flows if s.flows is not None else M.empty_flows(), rate_bps,
                                 sample_every=s.sample_every)
            for label, s in series.items()}


def comparison_section(title: str, series: Mapping[str, SeriesData], fig_dir: Path, *, rate_bps: "float | Capacity",
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
    queues = {k: m.queues for k, m in metrics.items()}
    figures = [
        ("Queue delay ECDF per queue and series.", P.delay_ecdf_figure(delays), "delay_ecdf", D.ecdf_data(delays)),
        ("Queue delay per queue and series: box p25–p75, whiskers p1–p99, ◆ mean.", P.delay_box_figure(delays),
         "delay_box", D.box_data(delays)),
        ("Action mix per series and queue.", P.action_mix_figure(queues), "action_mix", D.action_mix_data(queues)),
    ]
    if any(m.repeats and m.repeats[0].flows for m in metrics.values()):
        flows = {k: [f for rm in m.repeats for f in rm.bulk_flows] for k, m in metrics.items()}
        util = {k: M.utilization_timeseries(s.flows, rate_bps) for k, s in series.items() if s.flows is not None}
        trade = {k: M.tradeoff_points(m, scalable_ccs) for k, m in metrics.items()}
        figures += [
            ("Steady-state throughput per flow, per congestion control and series.", P.throughput_box_figure(flows),
             "throughput_box", D.throughput_box_data(flows)),
            ("Utilisation over time per series, against the capacity offered.",
             P.utilization_figure(util, rate_label=_rate_text(M.as_capacity(rate_bps).nominal_bps),
                                  rate_changes=M.as_capacity(rate_bps).changes()),
             "utilization", D.utilization_data(util)),
            ("Throughput vs p95 queue delay per series, one point per repeat per flow class.", P.tradeoff_figure(trade),
             "tradeoff", D.tradeoff_data(trade)),
        ]
    with figure_batch() as batch:
        saved = [(caption, batch.save(fig, fig_dir / f"{name}_{stem}", data).png) for caption, fig, stem, data in figures]
    rows = []
    for label, m in metrics.items():
        c, l_ = m.queues["C"], m.queues["L"]
        rows.append([label, _fmt(c.delay.p50_ms), _fmt(c.delay.p99_ms), _fmt(l_.delay.p50_ms), _fmt(l_.delay.p99_ms),
                     _pct(c.drop_fraction), _pct(c.mark_fraction), _pct(l_.mark_fraction),
                     m.utilization.format(1, scale=100, unit="%"),
                     na_text(m.bulk_na) if m.bulk_na else m.jain.format(3)])
    table = ReportTable(["series", "C p50 (ms)", "C p99 (ms)", "L p50 (ms)", "L p99 (ms)", "C drop", "C mark",
                         "L mark", "utilisation", "Jain (bulk flows)"], rows, caption="Headline numbers per series")
    return ReportSection(title, markdown=intro, tables=[table], figures=saved)


def parse_section(summary: RunSummary) -> ReportSection:
    p = summary.parse
    rows = [["lines read", f"{p.lines_read:,}"], ["packet decisions parsed", f"{p.parsed:,}"],
            ["lines skipped", f"{p.skipped_total:,}"]]
    if summary.log_sample_every > 1:
        rows.append(["decisions per logged line (logging.sample_every)", f"{summary.log_sample_every:,}"])
    rows += [[f"skipped: {reason}", f"{n:,}"] for reason, n in sorted(p.skipped.items())]
    md = ("What the log parser read. Skipped lines are unrelated kernel messages or truncated/garbled log lines; "
          "a well-formed line is never skipped.")
    if p.examples:
        md += "\n\nExamples of skipped lines:\n\n" + "\n".join(
            f"- {reason}: `{md_code(ex)}`" for reason, exs in sorted(p.examples.items()) for ex in exs[:3])
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
        ReportTable(["step", "field", "value"], [[k, f, _short(v)] for k, rec in manifest.steps.items() if k != "report"
                                                 for f, v in _flatten(rec)], caption="Pipeline steps"),
        ReportTable(["field", "value"], [[k, v] for k, v in (("command", manifest.command),
                                                             ("overrides", ", ".join(manifest.overrides)),
                                                             ("sweep", _sweep_text(manifest.sweep))) if v],
                    caption="How the run was made"),
        ReportTable(["file", "host", "bytes", "sha256"],
                    [[name, f.host, f"{f.size:,}", f.sha256] for name, f in sorted(manifest.files.items())],
                    caption="Fetched files"),
    ]
    return ReportSection("Provenance", markdown="From the run's manifest.json.", tables=[t for t in tables if t.rows])


def _sweep_text(sweep: dict | None) -> str:
    if not sweep:
        return ""
    return f"{sweep.get('sweep_id')}: " + ", ".join(f"{k} = {v}" for k, v in (sweep.get("values") or {}).items())


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(obj, Mapping):
        out = []
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [(prefix or "value", obj)]


def _short(v: Any, limit: int = 200) -> str:
    """A value as a reader sees it: lists joined with commas, no Python or JSON braces, no 'nan'."""
    if isinstance(v, str):
        text = v
    elif isinstance(v, dict):
        text = "; ".join(f"{k}: {_short(x, limit)}" for k, x in v.items())
    elif isinstance(v, (list, tuple)):
        text = ", ".join(_short(x, limit) for x in v)
    elif v is None:
        text = "—"
    elif isinstance(v, float):
        text = cell_text(v)
    else:
        text = str(v)
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["SeriesData", "TimeseriesView", "comparison_section", "network_sections", "parse_section",
           "provenance_section", "render_report", "series_metrics"]
