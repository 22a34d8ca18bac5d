"""The report's figures, drawn with matplotlib's Agg canvas and saved as PNG + SVG.

Every figure function takes a mapping *series label -> data* so that one figure can compare several
series (DualPI2, a learned policy, baselines, other AQMs); a single run is the one-entry mapping
``{aqm: data}``. Functions named ``*_figure`` return a :class:`matplotlib.figure.Figure` (no pyplot, no
global state); :func:`save_figure` writes it atomically as ``<base>.png`` and ``<base>.svg``.

Rules every figure keeps: each axis is labelled with its unit (categorical axes with what the categories
are), every figure has a legend, and colours come from :mod:`l4stb.analysis.palette` only: a CC or a
queue has one colour everywhere; series differ by line style, marker or hatch.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from l4stb.analysis import metrics as M
from l4stb.analysis.palette import (
    ACTION_COLORS,
    QUEUE_LABELS,
    action_color,
    cc_color,
    queue_color,
    series_color,
    series_hatch,
    series_linestyle,
    series_marker,
)
from l4stb.analysis.senders import cc_label_column
from l4stb.analysis.timebase import TIME_LABEL, interval_times_s
from l4stb.workspace import atomic_path

NEUTRAL = "#333333"
WARMUP_SHADE = "#EEEEEE"
RATE_CHANGE_COLOR = "#B22222"
"""Dotted vertical lines where the bottleneck rate changes (the colour of the capacity line)."""
DPI = 110
ZOOM_BELOW_PCT = 25.0
"""The action-mix figure adds a zoom panel on drops and marks only when they are below this share everywhere."""


@dataclass(frozen=True)
class FigureFiles:
    """A saved figure: its PNG (embedded in the HTML), SVG and PDF beside it, and its data (CSV + spec) if any."""

    png: Path
    svg: Path
    pdf: Path
    data: Path | None = None

    @classmethod
    def planned(cls, base: Path, with_data: bool) -> "FigureFiles":
        """The files :func:`save_figure` writes for ``base``."""
        return cls(base.with_suffix(".png"), base.with_suffix(".svg"), base.with_suffix(".pdf"),
                   base.with_suffix(".csv") if with_data else None)


@dataclass
class FigureData:
    """The numbers a figure draws, in long form, so `l4stb plot` can redraw it (see :mod:`l4stb.analysis.replot`).

    ``frame`` has columns ``panel``, ``series``, ``x``, ``y`` and, where drawn, ``y_low``/``y_high`` (an
    interval) or, for ``kind == "box"``, ``whislo, q1, med, q3, whishi, mean`` instead of ``y``. ``kind`` is
    one of step, line, scatter, errorbar, bar, box.
    """

    kind: str
    frame: pd.DataFrame
    xlabel: str
    ylabel: str
    title: str = ""
    categorical_x: bool = False
    panel_ylabels: dict | None = None
    """Panel -> its own y-axis label, for a figure whose panels are stacked over one time axis with different
    units (the over-time figure: ms, packets, probability, Mbit/s); None: every panel shares ``ylabel``."""

    def spec(self) -> dict:
        return {"kind": self.kind, "xlabel": self.xlabel, "ylabel": self.ylabel, "title": self.title,
                "categorical_x": self.categorical_x,
                **({"panel_ylabels": self.panel_ylabels} if self.panel_ylabels else {})}


def save_figure(fig: Figure, base: Path, data: FigureData | None = None) -> FigureFiles:
    """Write ``base.png``, ``base.svg`` (text kept as text) and ``base.pdf`` (TrueType fonts embedded) atomically,
    with no timestamps or URLs in their metadata; with ``data``, also ``base.csv`` and ``base.json`` (the spec)."""
    base = Path(base)
    FigureCanvasAgg(fig)
    out = FigureFiles.planned(base, data is not None)
    with matplotlib.rc_context({"svg.hashsalt": "l4stb", "svg.fonttype": "none", "pdf.fonttype": 42}):
        with atomic_path(out.png) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
        # The PNG's draw placed every axes; keep those positions for the SVG and PDF rather than solving the
        # constrained layout twice more (a third of each figure's save time, measured).
        fig.set_layout_engine("none")
        with atomic_path(out.svg) as tmp:
            fig.savefig(tmp, format="svg", metadata={"Date": None, "Creator": None})
        with atomic_path(out.pdf) as tmp:
            fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "Creator": None, "Producer": None})
    if data is not None:
        with atomic_path(out.data) as tmp:
            data.frame.to_csv(tmp, index=False)
        with atomic_path(base.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(data.spec(), indent=2) + "\n")
    return out


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes, color="#888888")
    ax.plot([], [], color="#888888", label=f"no {what}")
    ax.legend(loc="upper right", fontsize="small")


def _handle_label(handle) -> str:
    return (handle[0] if isinstance(handle, tuple) else handle).get_label()


# ---------------------------------------------------------------------------------------------
# queue delay
# ---------------------------------------------------------------------------------------------


def delay_ecdf_figure(series: Mapping[str, M.DelaySamples],
                      reference_ms: Mapping[str, Sequence[tuple[str, float]]] | None = None) -> Figure:
    """One panel per queue: the true ECDF of the queue delay of each series (x cut at the largest p99.9)."""
    queues = [q for q in M.QUEUES if any(len(s.by_queue.get(q, ())) for s in series.values())] or ["C"]
    n_series = len(series)
    # Many series: the legend goes under the panel so it never hides the curves.
    fig = _figure(5.2 * len(queues), 3.8 + (0.28 * n_series if n_series > 2 else 0))
    axes = fig.subplots(1, len(queues), squeeze=False)[0]
    for ax, q in zip(axes, queues):
        xmax = 0.0
        for i, (label, s) in enumerate(series.items()):
            x = s.by_queue.get(q, np.empty(0))
            if not len(x):
                continue
            e = M.ecdf(x)
            t = e.thinned()
            p99 = float(np.percentile(e.x, 99))
            xmax = max(xmax, float(np.percentile(e.x, 99.9)))
            name = f"{label}: " if n_series > 1 else ""
            color = queue_color(q) if n_series == 1 else series_color(i)  # the panel names the queue
            ax.step(np.r_[0.0, t.x], np.r_[0.0, t.y], where="post", color=color,
                    linestyle=series_linestyle(i), linewidth=1.8,
                    label=f"{name}{'' if n_series > 2 else f'{q} queue, '}n={e.n:,}, p50 "
                          f"{np.percentile(e.x, 50):.2f} ms, p99 {p99:.2f} ms")
        for name, value in (reference_ms or {}).get(q, ()):
            ax.axvline(value, color="#777777", linestyle=":", linewidth=1.2, label=f"{name} ({value:g} ms)")
            xmax = max(xmax, value)
        if xmax == 0.0 and not ax.lines:
            _no_data(ax, "packets")
        ax.set_xlim(0, xmax * 1.05 if xmax > 0 else 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{QUEUE_LABELS.get(q, q)}  (x axis up to p99.9)", fontsize="medium")
        ax.set_xlabel("queue delay (ms)")
        ax.set_ylabel("ECDF (fraction of packets ≤ delay)")
        ax.grid(True, alpha=0.3)
        if n_series > 2:
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize="small")
        else:
            ax.legend(loc="lower right", fontsize="small")
    return fig


def _box_stats(x: np.ndarray, label: str) -> dict:
    p1, q1, med, q3, p99 = np.percentile(x, [1, 25, 50, 75, 99])
    return {"label": label, "whislo": p1, "q1": q1, "med": med, "q3": q3, "whishi": p99, "mean": float(x.mean()),
            "fliers": []}


def delay_box_figure(series: Mapping[str, M.DelaySamples]) -> Figure:
    """One panel per queue, one box per series: p25–p75 box, median line, p1–p99 whiskers, mean marker."""
    queues = [q for q in M.QUEUES if any(len(s.by_queue.get(q, ())) for s in series.values())] or ["C"]
    labels = list(series)
    fig = _figure(max(4.0, 1.2 + 1.3 * len(labels)) * len(queues), 3.8)
    axes = fig.subplots(1, len(queues), squeeze=False)[0]
    box_handles: list = []
    for ax, q in zip(axes, queues):
        stats, pos = [], []
        for i, label in enumerate(labels):
            x = series[label].by_queue.get(q, np.empty(0))
            x = x[np.isfinite(x)]
            if len(x):
                stats.append(_box_stats(x, label))
                pos.append(i)
        if stats:
            art = ax.bxp(stats, positions=pos, widths=0.55, showmeans=True, showfliers=False, patch_artist=True,
                         meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": NEUTRAL},
                         medianprops={"color": NEUTRAL, "linewidth": 1.5})
            for j, box in zip(pos, art["boxes"]):
                box.set_facecolor(queue_color(q))
                box.set_hatch(series_hatch(j))
                box.set_edgecolor(NEUTRAL)
            for j in set(range(len(labels))) - set(pos):
                ax.text(j, 0.02, "no packets", ha="center", va="bottom", color="#888888", fontsize="small",
                        transform=ax.get_xaxis_transform())
            box_handles.append(Patch(facecolor=queue_color(q), edgecolor=NEUTRAL, label=f"{q} queue: box p25–p75"))
            ax.set_ylim(bottom=0)
        else:
            _no_data(ax, "packets")
        # series names such as "logistic regression every 1" are wrapped and, when many, slanted: never overlapping
        wrapped = [textwrap.fill(str(label), 14) for label in labels]
        slant = len(labels) > 3
        ax.set_xticks(range(len(labels)), wrapped, rotation=30 if slant else 0, ha="right" if slant else "center",
                      rotation_mode="anchor", fontsize="small")
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_title(QUEUE_LABELS.get(q, q), fontsize="medium")
        ax.set_xlabel("series (AQM / policy)")
        ax.set_ylabel("queue delay (ms)")
        ax.grid(True, axis="y", alpha=0.3)
    if box_handles:
        if len(labels) > 1:
            box_handles += [Patch(facecolor="white", edgecolor=NEUTRAL, hatch=series_hatch(i), label=label)
                            for i, label in enumerate(labels)]
        box_handles += [Line2D([], [], color=NEUTRAL, label="median"),
                        Line2D([], [], color=NEUTRAL, marker="_", markersize=10, linestyle="-", label="whiskers p1–p99"),
                        Line2D([], [], color=NEUTRAL, marker="D", markerfacecolor="white", linestyle="", label="mean")]
        fig.legend(handles=box_handles, loc="outside lower center", fontsize="small", ncols=min(6, len(box_handles)))
    return fig


# ---------------------------------------------------------------------------------------------
# throughput
# ---------------------------------------------------------------------------------------------


def _mark_rate_changes(ax, rate_changes: Sequence[tuple[float, float]]) -> None:
    """A dotted vertical line at every change of the bottleneck's rate (schedule or trace)."""
    for t, _rate in rate_changes:
        ax.axvline(t, color=RATE_CHANGE_COLOR, linestyle=":", linewidth=1.0, zorder=1)


def _rate_change_handle(rate_changes: Sequence[tuple[float, float]]) -> list:
    if not rate_changes:
        return []
    if len(rate_changes) <= 4:
        what = ", ".join(f"{r / 1e6:g} Mbit/s at {t:g} s" for t, r in rate_changes)
    else:
        what = f"{len(rate_changes)} changes"
    return [Line2D([], [], color=RATE_CHANGE_COLOR, linestyle=":", label=f"bottleneck rate change ({what})")]


def throughput_timeseries_figure(flows: pd.DataFrame, *, fair_share_mbps: float | None = None,
                                 warmup_s: float = M.WARMUP_S, max_repeats: int = 4,
                                 equal_share: tuple[np.ndarray, np.ndarray] | None = None,
                                 rate_changes: Sequence[tuple[float, float]] = ()) -> Figure:
    """Per-flow iperf3 throughput over time, one panel per repeat (the first ``max_repeats``), coloured by CC.

    Each flow is drawn from its real start (``flow_start_s``, seconds after the repeat's start: the one time origin
    of :mod:`l4stb.analysis.timebase`), coloured by its CC and sender stack (``cc_label``). The equal share
    is either a constant (``fair_share_mbps``) or a step line ``equal_share = (times, Mbit/s)`` that follows the
    capacity offered; ``rate_changes`` are marked with dotted lines."""
    repeats = sorted(int(r) for r in pd.unique(flows["repeat"]))[:max_repeats] if not flows.empty else []
    fig = _figure(9.0, 1.2 + 2.3 * max(1, len(repeats)))
    axes = fig.subplots(max(1, len(repeats)), 1, squeeze=False, sharex=True)[:, 0]
    if not repeats:
        _no_data(axes[0], "iperf3 intervals")
    flows = flows.assign(_cc=cc_label_column(flows)) if not flows.empty else flows.assign(_cc=[])
    keys = [k for k in ("host", "_cc", "file", "group", "connection", "stream") if k in flows]
    seen: set[str] = set()
    for ax, r in zip(axes, repeats):
        g = flows[flows["repeat"] == r]
        for _key, s in g.groupby(keys, sort=True, observed=True):
            cc = str(s["_cc"].iloc[0])
            seen.add(cc)
            s = s.sort_values("start_s")
            y = s["throughput_mbps"].to_numpy(dtype=float)
            start, end = interval_times_s(s)
            x = np.r_[start, end[-1:]]
            ax.step(x, np.r_[y, y[-1:]], where="post", color=cc_color(cc), linewidth=1.0, alpha=0.85)
        ax.axvspan(0, warmup_s, color=WARMUP_SHADE, zorder=0)
        if equal_share is not None:
            ax.step(equal_share[0], equal_share[1], where="post", color=NEUTRAL, linestyle="--", linewidth=1)
        elif fair_share_mbps:
            ax.axhline(fair_share_mbps, color=NEUTRAL, linestyle="--", linewidth=1)
        _mark_rate_changes(ax, rate_changes)
        ax.set_title(f"repeat {r}", fontsize="medium", loc="left")
        ax.set_ylabel("throughput (Mbit/s)")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    first = flows[flows["repeat"] == repeats[0]] if repeats else flows
    counts = first.groupby(keys, observed=True)["_cc"].first().astype(str).value_counts() if repeats else {}
    handles = [Line2D([], [], color=cc_color(cc), label=f"{cc} ({counts.get(cc, 0)} flow{'s' if counts.get(cc, 0) != 1 else ''})")
               for cc in sorted(seen)]
    handles.append(Patch(color=WARMUP_SHADE, label=f"warm-up, left out of means ({warmup_s:g} s)"))
    if equal_share is not None:
        handles.append(Line2D([], [], color=NEUTRAL, linestyle="--", label="equal share of the capacity offered"))
    elif fair_share_mbps:
        handles.append(Line2D([], [], color=NEUTRAL, linestyle="--", label=f"equal share ({fair_share_mbps:.2f} Mbit/s)"))
    handles += _rate_change_handle(rate_changes)
    if repeats:  # three columns: a CC's label names its stack and transport ("prague (Linux, TCP Prague)")
        fig.legend(handles=handles, loc="outside upper center", fontsize="small", ncols=min(3, len(handles)))
    axes[-1].set_xlabel(TIME_LABEL)
    return fig


def throughput_box_figure(series: Mapping[str, Sequence[M.FlowThroughput]], *,
                          fair_share_mbps: float | None = None) -> Figure:
    """Per CC, one box per series over per-flow steady-state throughputs (one dot per flow per repeat)."""
    labels = list(series)
    ccs = sorted({f.cc_name for fl in series.values() for f in fl})
    n = len(labels)
    fig = _figure(max(6.0, 2.0 + 1.3 * len(ccs) * max(1, n) ** 0.7), 4.6)
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    width = 0.7 / max(n, 1)
    handles: list = []
    for ci, cc in enumerate(ccs):
        for si, label in enumerate(labels):
            x = np.array([f.throughput_mbps for f in series[label] if f.cc_name == cc], dtype=float)
            x = x[np.isfinite(x)]
            if not len(x):
                continue
            pos = ci + (si - (n - 1) / 2) * width
            q1, med, q3 = np.percentile(x, [25, 50, 75])
            stats = {"label": "", "whislo": x.min(), "q1": q1, "med": med, "q3": q3, "whishi": x.max(),
                     "fliers": []}
            art = ax.bxp([stats], positions=[pos], widths=width * 0.8, patch_artist=True, showfliers=False,
                         medianprops={"color": NEUTRAL, "linewidth": 1.5})
            art["boxes"][0].set_facecolor(matplotlib.colors.to_rgba(cc_color(cc), 0.35))
            art["boxes"][0].set_edgecolor(cc_color(cc))
            art["boxes"][0].set_hatch(series_hatch(si))
            jitter = rng.uniform(-width * 0.25, width * 0.25, len(x))
            ax.scatter(pos + jitter, x, s=14, color=cc_color(cc), edgecolor="white", linewidth=0.4, zorder=3,
                       marker=series_marker(si))
    handles += [Patch(facecolor=matplotlib.colors.to_rgba(cc_color(cc), 0.35), edgecolor=cc_color(cc), label=cc)
                for cc in ccs]
    if n > 1:
        handles += [(Patch(facecolor="white", edgecolor=NEUTRAL, hatch=series_hatch(i), label=label),
                     Line2D([], [], color=NEUTRAL, marker=series_marker(i), linestyle="", markersize=4))
                    for i, label in enumerate(labels)]
    handles.append(Line2D([], [], color=NEUTRAL, marker="o", linestyle="", markersize=4,
                          label="one flow in one repeat (box p25–p75, whiskers min–max)"))
    if fair_share_mbps:
        ax.axhline(fair_share_mbps, color=NEUTRAL, linestyle="--", linewidth=1)
        handles.append(Line2D([], [], color=NEUTRAL, linestyle="--", label=f"equal share ({fair_share_mbps:.2f} Mbit/s)"))
    if not ccs:
        _no_data(ax, "iperf3 flows")
    else:
        fig.legend(handles=handles, labels=[_handle_label(h) for h in handles], loc="outside lower center",
                   fontsize="small", ncols=2, handler_map={tuple: HandlerTuple(ndivide=None)})
    ax.set_xticks(range(len(ccs)), ccs)
    ax.set_xlabel("congestion control")
    ax.set_ylabel("steady-state throughput per flow (Mbit/s)")
    ax.set_ylim(bottom=0)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def utilization_figure(series: Mapping[str, Sequence[M.UtilizationSeries]], *, rate_label: str = "",
                       warmup_s: float = M.WARMUP_S, time_label: str = TIME_LABEL,
                       rate_changes: Sequence[tuple[float, float]] = ()) -> Figure:
    """Bytes carried per time bin over the capacity offered in that bin, per series: each repeat thin, their mean
    bold; ``rate_changes`` (a schedule's or trace's steps) are marked with dotted lines.

    A series is any source of :class:`~l4stb.analysis.metrics.UtilizationSeries`: the router log
    (forwarded bytes), iperf3 (sender bytes), or one per AQM / policy.
    """
    fig = _figure(9.0, 3.6)
    ax = fig.subplots()
    handles = []
    any_data = False
    top = 115.0
    for i, (label, reps) in enumerate(series.items()):
        ls = series_linestyle(i)
        for r in reps:
            ax.plot(r.t_s, 100 * r.utilization, color=NEUTRAL, alpha=0.25, linewidth=0.8, linestyle=ls)
            if len(r.utilization):
                top = max(top, 105 * float(np.nanmax(r.utilization)))
        if reps:
            any_data = True
            n = max(len(r.t_s) for r in reps)
            grid = np.full((len(reps), n), np.nan)
            for j, r in enumerate(reps):
                grid[j, : len(r.t_s)] = r.utilization
            t = next(r.t_s for r in reps if len(r.t_s) == n)
            mean = np.nanmean(grid, axis=0)
            ax.plot(t, 100 * mean, color=NEUTRAL, linewidth=2.0, linestyle=ls, zorder=3)
            handles.append(Line2D([], [], color=NEUTRAL, linewidth=2.0, linestyle=ls,
                                  label=f"{label}: mean of {len(reps)} repeat(s)"))
    if any_data:
        handles.append(Line2D([], [], color=NEUTRAL, alpha=0.25, linewidth=0.8, label="one repeat"))
    ax.axhline(100, color="#B22222", linestyle="--", linewidth=1, alpha=0.7, zorder=1)
    handles.append(Line2D([], [], color="#B22222", linestyle="--",
                          label=f"capacity offered{f' ({rate_label})' if rate_label else ''}"))
    ax.axvspan(0, warmup_s, color=WARMUP_SHADE, zorder=0)
    handles.append(Patch(color=WARMUP_SHADE, label="warm-up"))
    _mark_rate_changes(ax, rate_changes)
    handles += _rate_change_handle(rate_changes)
    if not any_data:
        ax.text(0.5, 0.5, "no iperf3 intervals", ha="center", va="center", transform=ax.transAxes, color="#888888")
    ax.legend(handles=handles, loc="lower right", fontsize="small", ncols=2)
    ax.set_ylim(0, top)
    ax.set_xlabel(time_label)
    ax.set_ylabel("utilisation (% of capacity offered)")
    ax.grid(True, alpha=0.3)
    return fig


def tradeoff_figure(series: Mapping[str, Sequence[M.TradeoffPoint]]) -> Figure:
    """Throughput vs p95 queue delay: small marks per repeat and CC, large marks their mean (± 95% CI if n ≥ 2)."""
    fig = _figure(7.5, 4.6)
    ax = fig.subplots()
    handles: list = []
    ccs_seen: dict[str, str] = {}
    for si, (label, pts) in enumerate(series.items()):
        marker = series_marker(si)
        by_cc: dict[str, list[M.TradeoffPoint]] = {}
        for p in pts:
            if np.isfinite(p.p95_delay_ms) and np.isfinite(p.mean_per_flow_mbps):
                by_cc.setdefault(p.cc, []).append(p)
        for cc, ps in sorted(by_cc.items()):
            x = np.array([p.p95_delay_ms for p in ps])
            y = np.array([p.mean_per_flow_mbps for p in ps])
            ax.scatter(x, y, s=22, color=cc_color(cc), marker=marker, alpha=0.45, edgecolor="none")
            cx, cy = M.confidence_interval(x), M.confidence_interval(y)
            ax.errorbar(cx.mean, cy.mean, xerr=cx.half_width if cx.has_ci else None,
                        yerr=cy.half_width if cy.has_ci else None, fmt=marker, markersize=9, color=cc_color(cc),
                        markeredgecolor="black", ecolor=cc_color(cc), capsize=3, zorder=3)
            ccs_seen.setdefault(cc, ps[0].queue)
        if len(series) > 1:
            handles.append(Line2D([], [], color=NEUTRAL, marker=marker, linestyle="", label=label))
    handles = [Line2D([], [], color=cc_color(cc), marker="o", linestyle="", markersize=8,
                      label=f"{cc} ({q} queue)") for cc, q in ccs_seen.items()] + handles
    if ccs_seen:
        handles.append(Line2D([], [], color=NEUTRAL, marker="o", linestyle="", markersize=4, alpha=0.45,
                              label="one repeat"))
        handles.append(Line2D([], [], color=NEUTRAL, marker="o", linestyle="", markersize=9,
                              markeredgecolor="black", label="mean ± 95% CI"))
        handles.append(Line2D([], [], color="none", label="better: up and to the left"))
        ax.legend(handles=handles, loc="upper left", fontsize="small", bbox_to_anchor=(1.01, 1.0))
    else:
        _no_data(ax, "repeats with both delay and throughput")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("p95 queue delay of the flow's queue (ms)")
    ax.set_ylabel("mean throughput per flow (Mbit/s)")
    ax.grid(True, alpha=0.3)
    return fig


# ---------------------------------------------------------------------------------------------
# actions
# ---------------------------------------------------------------------------------------------


def action_mix_figure(series: Mapping[str, Mapping[str, M.QueueStats]]) -> Figure:
    """Per series and queue: the share of forward/drop/mark decisions (left) and a zoom on drop + mark (right)."""
    rows: list[tuple[str, str, M.QueueStats]] = []
    for label, queues in series.items():
        for q in M.QUEUES:
            s = queues.get(q)
            if s is not None and s.packets > 0:
                rows.append((label, q, s))
    multi = len(series) > 1
    eventful = max((100 * (s.drops + s.marks) / s.packets for _, _, s in rows), default=0.0)
    zoom = eventful < ZOOM_BELOW_PCT  # a zoom panel only where it zooms in
    fig = _figure(11.0 if zoom else 7.0, 1.9 + 0.7 * max(1, len(rows)))
    if zoom:
        ax_all, ax_zoom = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.2]})
    else:
        ax_all, ax_zoom = fig.subplots(), None
    names = [f"{label} · {q}" if multi else QUEUE_LABELS.get(q, q) for label, q, _ in rows]
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for action in M.ACTION_NAMES:
        share = np.array([100 * s.count(action) / s.packets for _, _, s in rows])
        ax_all.barh(y, share, left=left, color=action_color(action), edgecolor=NEUTRAL, linewidth=0.5,
                    label=action)
        left += share
    ax_all.set_yticks(y, names)
    ax_all.set_ylabel("queue" if not multi else "series · queue")
    for yt, (_, q, _) in zip(ax_all.get_yticklabels(), rows):
        yt.set_color(queue_color(q))
    ax_all.set_xlim(0, 100)
    ax_all.set_xlabel("share of the queue's decisions (%)")
    ax_all.set_title("all decisions", fontsize="medium")
    axes = [ax_all]
    if ax_zoom is not None:
        left = np.zeros(len(rows))
        for action in ("drop", "mark"):
            share = np.array([100 * s.count(action) / s.packets for _, _, s in rows])
            ax_zoom.barh(y, share, left=left, color=action_color(action), edgecolor=NEUTRAL, linewidth=0.5,
                         label=action)
            left += share
        ax_zoom.set_yticks(y, [f"{s.drops:,} drops\n{s.marks:,} marks\nof {s.packets:,}" for _, _, s in rows],
                           fontsize="small")
        ax_zoom.set_ylabel("counts (same rows as left)")
        zmax = float(left.max()) if len(left) else 0.0
        ax_zoom.set_xlim(0, min(max(zmax * 1.15, 0.1), 100.0))
        ax_zoom.set_xlabel("drops + marks (% of the queue's decisions)")
        ax_zoom.set_title("zoom on drops and marks", fontsize="medium")
        axes.append(ax_zoom)
    for ax in axes:
        ax.invert_yaxis()
        ax.grid(True, axis="x", alpha=0.3)
    if rows:
        fig.legend(handles=[Patch(facecolor=action_color(a), edgecolor=NEUTRAL, label=a) for a in M.ACTION_NAMES],
                   loc="outside lower center", fontsize="small", ncols=3)
    else:
        for ax in axes:
            _no_data(ax, "packet decisions")
    return fig


__all__ = [
    "ACTION_COLORS",
    "FigureFiles",
    "action_mix_figure",
    "delay_box_figure",
    "delay_ecdf_figure",
    "save_figure",
    "throughput_box_figure",
    "throughput_timeseries_figure",
    "tradeoff_figure",
    "utilization_figure",
]


# ---------------------------------------------------------------------------------------------
# time series, per-flow views, sweeps
# ---------------------------------------------------------------------------------------------


def aqm_timeseries_figure(ts, flow_rates: pd.DataFrame, flows: pd.DataFrame, *, repeat: int,
                          window: tuple[float, float] | None, bin_ms: float) -> Figure:
    """One repeat over time: sojourn and queue length per queue, p'/p_C/p_CL, router-side per-flow throughput,
    and each flow's iperf3 cwnd and RTT (iperf3 reports those once per interval). ``ts`` and ``flow_rates`` come
    from router-log rows on the scenario's clock (:func:`l4stb.analysis.timebase.on_repeat_clock`); the iperf3
    samples are put there by their flows' starts, so every panel shares one time axis."""
    g = flows[flows["repeat"] == repeat] if not flows.empty else flows
    has_tcp = not g.empty and "snd_cwnd" in g and (g["snd_cwnd"] > 0).any()
    n_panels = 4 + (2 if has_tcp else 0)
    fig = _figure(9.0, 1.0 + 1.9 * n_panels)
    axes = fig.subplots(n_panels, 1, sharex=True, squeeze=False)[:, 0]
    ax_soj, ax_len, ax_p, ax_rate = axes[:4]
    for i, q in enumerate(M.QUEUES):
        ax_soj.plot(ts.t_s, ts.sojourn_ms[q], color=queue_color(q), linestyle=series_linestyle(i), linewidth=1.0,
                    label=QUEUE_LABELS[q])
        ax_len.plot(ts.t_s, ts.queue_length[q], color=queue_color(q), linestyle=series_linestyle(i), linewidth=1.0,
                    label=QUEUE_LABELS[q])
    ax_soj.set_ylabel("sojourn (ms)")
    ax_len.set_ylabel("queue length (pkts)")
    for i, (name, y) in enumerate((("p' (base PI probability)", ts.p_prime), ("p_C = p'²", ts.p_c),
                                   (f"p_CL = min(1, {ts.coupling:g}·p')", ts.p_cl))):
        ax_p.plot(ts.t_s, y, color=("#333333", "#0072B2", "#D55E00")[i], linestyle=series_linestyle(i),
                  linewidth=1.0, label=name)
    ax_p.set_ylabel("probability")
    ax_p.set_ylim(bottom=0)
    for j, (label, f) in enumerate(flow_rates.groupby("label", sort=True)):
        cc = str(f["cc"].iloc[0])
        ax_rate.plot(f["t_s"], f["mbps"], color=cc_color(cc), linestyle=series_linestyle(j), linewidth=0.9,
                     label=label)
    ax_rate.set_ylabel(f"router-side Mbit/s\nper {bin_ms:g} ms bin")
    if flow_rates.empty:
        _no_data(ax_rate, "flow ids in the log")
    if has_tcp:
        ax_cwnd, ax_rtt = axes[4:6]
        g = g.assign(_cc=cc_label_column(g))
        for j, (key, s) in enumerate(g.groupby(["host", "_cc", "group", "connection", "stream"], sort=True,
                                                observed=True)):
            cc = str(key[1])
            start, end = interval_times_s(s)
            mid = (start + end) / 2
            ax_cwnd.plot(mid, s["snd_cwnd"] / 1000, color=cc_color(cc), linestyle=series_linestyle(j), marker=series_marker(j),
                         markersize=3, linewidth=0.9)
            ax_rtt.plot(mid, s["rtt_us"] / 1000, color=cc_color(cc), linestyle=series_linestyle(j), marker=series_marker(j),
                        markersize=3, linewidth=0.9)
        ax_cwnd.set_ylabel("cwnd (kB, iperf3)")
        ax_rtt.set_ylabel("RTT (ms, iperf3)")
        ccs = sorted(set(g["_cc"].astype(str)))
        ax_cwnd.legend(handles=[Line2D([], [], color=cc_color(c), label=c) for c in ccs], fontsize="x-small",
                       loc="upper right")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        if ax.get_legend() is None and ax.get_legend_handles_labels()[0]:
            handles = ax.get_legend_handles_labels()
            ax.legend(*handles, fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      ncols=1 if len(handles[0]) <= 6 else 2)
    if window is not None:
        axes[-1].set_xlim(*window)
    axes[-1].set_xlabel(TIME_LABEL)
    fig.suptitle(f"repeat {repeat}" + (f", {window[0]:g}–{window[1]:g} s" if window else ""), fontsize="medium")
    return fig


def flow_points_figure(series: Mapping[str, Sequence]) -> Figure:
    """Pantheon's view per flow: each flow's mean router-side throughput against the p95 of its own queue delay."""
    fig = _figure(7.5, 4.6)
    ax = fig.subplots()
    handles: list = []
    ccs: dict[str, str] = {}
    xmax = ymax = 0.0
    for si, (label, pts) in enumerate(series.items()):
        marker = series_marker(si)
        for p in pts:
            if np.isfinite(p.p95_delay_ms) and np.isfinite(p.throughput_mbps):
                ax.scatter([p.p95_delay_ms], [p.throughput_mbps], s=26, color=cc_color(p.cc), marker=marker,
                           edgecolor="black", linewidth=0.3, alpha=0.8)
                ccs.setdefault(p.cc, p.queue)
                xmax, ymax = max(xmax, p.p95_delay_ms), max(ymax, p.throughput_mbps)
        if len(series) > 1:
            handles.append(Line2D([], [], color=NEUTRAL, marker=marker, linestyle="", label=label))
    handles = [Line2D([], [], color=cc_color(cc), marker="o", linestyle="", label=f"{cc} ({q} queue)")
               for cc, q in sorted(ccs.items())] + handles
    if ccs:
        handles.append(Line2D([], [], color="none", label="one mark = one flow in one repeat"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    else:
        _no_data(ax, "flow ids in the router log")
    ax.set_xlim(0, xmax * 1.08 if xmax > 0 else 1)
    ax.set_ylim(0, ymax * 1.08 if ymax > 0 else 1)
    ax.set_xlabel("p95 queue delay of the flow's own packets (ms)")
    ax.set_ylabel("flow throughput, router-side (Mbit/s)")
    ax.grid(True, alpha=0.3)
    return fig


def metric_vs_parameter_figure(rows: pd.DataFrame, *, parameter: str, metric_label: str,
                               group_by: str | None) -> Figure:
    """One metric against one swept parameter: mean of repeats with its 95 % interval; one line per value of
    ``group_by`` (another swept parameter) when there is one. x keeps the sweep's value order."""
    fig = _figure(6.4, 3.8)
    ax = fig.subplots()
    xs = list(dict.fromkeys(rows[parameter]))
    groups = list(dict.fromkeys(rows[group_by])) if group_by else [None]
    ymax = 0.0
    for i, gval in enumerate(groups):
        part = rows if gval is None else rows[rows[group_by] == gval]
        part = part.set_index(parameter).reindex(xs)
        y = part["y"].to_numpy(dtype=float)
        low, high = part["y_low"].to_numpy(dtype=float), part["y_high"].to_numpy(dtype=float)
        err = np.vstack([np.nan_to_num(y - low), np.nan_to_num(high - y)])
        offset = (i - (len(groups) - 1) / 2) * 0.06
        color = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")[i % 7]
        ax.errorbar(np.arange(len(xs)) + offset, y, yerr=err, marker=series_marker(i), linestyle=series_linestyle(i),
                    color=color, capsize=3, label=f"{group_by} = {gval}" if gval is not None else metric_label)
        finite = np.r_[y, high][np.isfinite(np.r_[y, high])]
        if len(finite):
            ymax = max(ymax, float(finite.max()))
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set_xlim(-0.5, len(xs) - 0.5)
    ax.set_ylim(bottom=min(0.0, float(np.nanmin(rows["y_low"].fillna(rows["y"]))) if len(rows) else 0.0),
                top=ymax * 1.1 if ymax > 0 else 1.0)
    ax.set_xlabel(parameter)
    ax.set_ylabel(metric_label)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best", title="mean of repeats ± 95% CI", title_fontsize="small")
    return fig
