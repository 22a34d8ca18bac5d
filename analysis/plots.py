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
    series_hatch,
    series_linestyle,
    series_marker,
)
from l4stb.workspace import atomic_path

NEUTRAL = "#333333"
WARMUP_SHADE = "#EEEEEE"
DPI = 110


@dataclass(frozen=True)
class FigureFiles:
    """A saved figure: its PNG (embedded in the HTML) and SVG (written alongside)."""

    png: Path
    svg: Path


def save_figure(fig: Figure, base: Path) -> FigureFiles:
    """Write ``base.png`` and ``base.svg`` atomically (no timestamps or URLs in the files' metadata)."""
    base = Path(base)
    FigureCanvasAgg(fig)
    out = FigureFiles(base.with_suffix(".png"), base.with_suffix(".svg"))
    with matplotlib.rc_context({"svg.hashsalt": "l4stb", "svg.fonttype": "none"}):
        with atomic_path(out.png) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
        with atomic_path(out.svg) as tmp:
            fig.savefig(tmp, format="svg", metadata={"Date": None, "Creator": None})
    return out


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _shade(color: str, index: int, count: int) -> tuple[float, float, float]:
    """Series ``index`` of ``count`` in the same hue: the first is the colour itself, later ones darker."""
    rgb = np.array(matplotlib.colors.to_rgb(color))
    if count <= 1:
        return tuple(rgb)  # type: ignore[return-value]
    f = 1.0 - 0.45 * index / (count - 1)
    return tuple(rgb * f)  # type: ignore[return-value]


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
            ax.step(np.r_[0.0, t.x], np.r_[0.0, t.y], where="post", color=_shade(queue_color(q), i, n_series),
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
        ax.set_xticks(range(len(labels)), labels)
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


def throughput_timeseries_figure(flows: pd.DataFrame, *, fair_share_mbps: float | None = None,
                                 warmup_s: float = M.WARMUP_S, max_repeats: int = 4) -> Figure:
    """Per-flow iperf3 throughput over time, one panel per repeat (the first ``max_repeats``), coloured by CC."""
    repeats = sorted(int(r) for r in pd.unique(flows["repeat"]))[:max_repeats] if not flows.empty else []
    fig = _figure(9.0, 1.2 + 2.3 * max(1, len(repeats)))
    axes = fig.subplots(max(1, len(repeats)), 1, squeeze=False, sharex=True)[:, 0]
    if not repeats:
        _no_data(axes[0], "iperf3 intervals")
    keys = [k for k in ("host", "cc", "file", "group", "connection", "stream") if k in flows]
    seen: set[str] = set()
    for ax, r in zip(axes, repeats):
        g = flows[flows["repeat"] == r]
        for _key, s in g.groupby(keys, sort=True, observed=True):
            cc = str(s["cc"].iloc[0])
            seen.add(cc)
            s = s.sort_values("start_s")
            y = s["throughput_mbps"].to_numpy(dtype=float)
            x = np.r_[s["start_s"].to_numpy(dtype=float), s["end_s"].to_numpy(dtype=float)[-1:]]
            ax.step(x, np.r_[y, y[-1:]], where="post", color=cc_color(cc), linewidth=1.0, alpha=0.85)
        ax.axvspan(0, warmup_s, color=WARMUP_SHADE, zorder=0)
        if fair_share_mbps:
            ax.axhline(fair_share_mbps, color=NEUTRAL, linestyle="--", linewidth=1)
        ax.set_title(f"repeat {r}", fontsize="medium", loc="left")
        ax.set_ylabel("throughput (Mbit/s)")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    first = flows[flows["repeat"] == repeats[0]] if repeats else flows
    counts = first.groupby(keys, observed=True)["cc"].first().astype(str).value_counts() if repeats else {}
    handles = [Line2D([], [], color=cc_color(cc), label=f"{cc} ({counts.get(cc, 0)} flow{'s' if counts.get(cc, 0) != 1 else ''})")
               for cc in sorted(seen)]
    handles.append(Patch(color=WARMUP_SHADE, label=f"warm-up, left out of means ({warmup_s:g} s)"))
    if fair_share_mbps:
        handles.append(Line2D([], [], color=NEUTRAL, linestyle="--", label=f"equal share ({fair_share_mbps:.2f} Mbit/s)"))
    if repeats:
        fig.legend(handles=handles, loc="outside upper center", fontsize="small", ncols=min(4, len(handles)))
    axes[-1].set_xlabel("time since the flow's iperf3 start (s)")
    return fig


def throughput_box_figure(series: Mapping[str, Sequence[M.FlowThroughput]], *,
                          fair_share_mbps: float | None = None) -> Figure:
    """Per CC, one box per series over per-flow steady-state throughputs (one dot per flow per repeat)."""
    labels = list(series)
    ccs = sorted({f.cc for fl in series.values() for f in fl})
    n = len(labels)
    fig = _figure(max(6.0, 2.0 + 1.3 * len(ccs) * max(1, n) ** 0.7), 4.6)
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    width = 0.7 / max(n, 1)
    handles: list = []
    for ci, cc in enumerate(ccs):
        for si, label in enumerate(labels):
            x = np.array([f.throughput_mbps for f in series[label] if f.cc == cc], dtype=float)
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
                       warmup_s: float = M.WARMUP_S, time_label: str = "time since the start of the repeat (s)") -> Figure:
    """Bytes carried per time bin over the bottleneck rate, per series: each repeat thin, their mean bold.

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
                          label=f"bottleneck rate{f' ({rate_label})' if rate_label else ''}"))
    ax.axvspan(0, warmup_s, color=WARMUP_SHADE, zorder=0)
    handles.append(Patch(color=WARMUP_SHADE, label="warm-up"))
    if not any_data:
        ax.text(0.5, 0.5, "no iperf3 intervals", ha="center", va="center", transform=ax.transAxes, color="#888888")
    ax.legend(handles=handles, loc="lower right", fontsize="small", ncols=2)
    ax.set_ylim(0, top)
    ax.set_xlabel(time_label)
    ax.set_ylabel("utilisation (% of bottleneck rate)")
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
    fig = _figure(11.0, 1.9 + 0.7 * max(1, len(rows)))
    ax_all, ax_zoom = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.2]})
    names = [f"{label} · {q}" if multi else QUEUE_LABELS.get(q, q) for label, q, _ in rows]
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for action in M.ACTION_NAMES:
        share = np.array([100 * s.count(action) / s.packets for _, _, s in rows])
        ax_all.barh(y, share, left=left, color=action_color(action), edgecolor=NEUTRAL, linewidth=0.5,
                    label=action)
        left += share
    left = np.zeros(len(rows))
    for action in ("drop", "mark"):
        share = np.array([100 * s.count(action) / s.packets for _, _, s in rows])
        ax_zoom.barh(y, share, left=left, color=action_color(action), edgecolor=NEUTRAL, linewidth=0.5,
                     label=action)
        left += share
    ax_all.set_yticks(y, names)
    ax_all.set_ylabel("queue" if not multi else "series · queue")
    ax_zoom.set_yticks(y, [f"{s.drops:,} drops\n{s.marks:,} marks\nof {s.packets:,}" for _, _, s in rows],
                       fontsize="small")
    ax_zoom.set_ylabel("counts (same rows as left)")
    for ax in (ax_all, ax_zoom):
        ax.invert_yaxis()
        ax.grid(True, axis="x", alpha=0.3)
    for yt, (_, q, _) in zip(ax_all.get_yticklabels(), rows):
        yt.set_color(queue_color(q))
    ax_all.set_xlim(0, 100)
    ax_all.set_xlabel("share of the queue's decisions (%)")
    ax_all.set_title("all decisions", fontsize="medium")
    zmax = float(left.max()) if len(left) else 0.0
    ax_zoom.set_xlim(0, min(max(zmax * 1.15, 0.1), 100.0))
    ax_zoom.set_xlabel("drops + marks (% of the queue's decisions)")
    ax_zoom.set_title("zoom on drops and marks", fontsize="medium")
    if rows:
        fig.legend(handles=[Patch(facecolor=action_color(a), edgecolor=NEUTRAL, label=a) for a in M.ACTION_NAMES],
                   loc="outside lower center", fontsize="small", ncols=3)
    else:
        _no_data(ax_all, "packet decisions")
        _no_data(ax_zoom, "packet decisions")
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
