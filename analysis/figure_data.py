"""The data of each report figure in long form (:class:`~l4stb.analysis.plots.FigureData`), saved beside the figure.

One function per figure of :mod:`l4stb.analysis.plots`, taking the same inputs, so a figure and its CSV
always hold the same numbers, and `l4stb plot` can redraw the figure from the CSV alone.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from l4stb.analysis import metrics as M
from l4stb.analysis.plots import FigureData
from l4stb.analysis.senders import cc_label_column
from l4stb.analysis.timebase import TIME_LABEL, interval_times_s


def _frame(rows: list[dict], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns)) if rows else pd.DataFrame(columns=list(columns))


def ecdf_data(series: Mapping[str, M.DelaySamples]) -> FigureData:
    parts = []
    for label, s in series.items():
        for q, x in s.by_queue.items():
            if len(x):
                e = M.ecdf(x).thinned()
                parts.append(pd.DataFrame({"panel": f"{q} queue", "series": label, "x": e.x, "y": e.y}))
    frame = pd.concat(parts, ignore_index=True) if parts else _frame([], ["panel", "series", "x", "y"])
    return FigureData("step", frame, "queue delay (ms)", "ECDF (fraction of packets ≤ delay)")


def box_data(series: Mapping[str, M.DelaySamples]) -> FigureData:
    rows = []
    for label, s in series.items():
        for q, x in s.by_queue.items():
            x = x[np.isfinite(x)]
            if len(x):
                p1, q1, med, q3, p99 = np.percentile(x, [1, 25, 50, 75, 99])
                rows.append({"panel": f"{q} queue", "series": label, "x": label, "whislo": p1, "q1": q1, "med": med,
                             "q3": q3, "whishi": p99, "mean": float(x.mean())})
    return FigureData("box", _frame(rows, ["panel", "series", "x", "whislo", "q1", "med", "q3", "whishi", "mean"]),
                      "series", "queue delay (ms)", categorical_x=True)


def throughput_timeseries_data(flows: pd.DataFrame, max_repeats: int = 4) -> FigureData:
    rows = []
    if not flows.empty:
        for r in sorted(int(x) for x in pd.unique(flows["repeat"]))[:max_repeats]:
            g = flows[flows["repeat"] == r]
            g = g.assign(_cc=cc_label_column(g))
            for key, s in g.groupby(["host", "_cc", "group", "connection", "stream"], sort=True, observed=True):
                host, cc, group, conn, stream = key
                start, _end = interval_times_s(s)
                for x, mbps in zip(start, s["throughput_mbps"]):
                    rows.append({"panel": f"repeat {r}", "series": f"{host} {cc} g{group} c{conn}/s{stream}",
                                 "x": float(x), "y": float(mbps), "cc": cc})
    return FigureData("step", _frame(rows, ["panel", "series", "x", "y", "cc"]), TIME_LABEL, "throughput (Mbit/s)")


def throughput_box_data(series: Mapping[str, Sequence[M.FlowThroughput]]) -> FigureData:
    rows = [{"panel": "", "series": label, "x": f.cc_name, "y": f.throughput_mbps, "repeat": f.repeat, "flow": f.key.label}
            for label, fl in series.items() for f in fl]
    return FigureData("scatter", _frame(rows, ["panel", "series", "x", "y", "repeat", "flow"]), "congestion control",
                      "steady-state throughput per flow (Mbit/s)", categorical_x=True)


def utilization_data(series: Mapping[str, Sequence[M.UtilizationSeries]]) -> FigureData:
    rows = [{"panel": "", "series": f"{label}, repeat {r.repeat}", "x": float(t), "y": 100 * float(u)}
            for label, reps in series.items() for r in reps for t, u in zip(r.t_s, r.utilization)]
    return FigureData("line", _frame(rows, ["panel", "series", "x", "y"]), TIME_LABEL,
                      "utilisation (% of capacity offered)")


def tradeoff_data(series: Mapping[str, Sequence[M.TradeoffPoint]]) -> FigureData:
    rows = [{"panel": "", "series": f"{label}: {p.cc}" if len(series) > 1 else p.cc, "x": p.p95_delay_ms,
             "y": p.mean_per_flow_mbps, "repeat": p.repeat, "queue": p.queue}
            for label, pts in series.items() for p in pts]
    return FigureData("scatter", _frame(rows, ["panel", "series", "x", "y", "repeat", "queue"]),
                      "p95 queue delay of the flow's queue (ms)", "mean throughput per flow (Mbit/s)")


def action_mix_data(series: Mapping[str, Mapping[str, M.QueueStats]]) -> FigureData:
    rows = []
    for label, queues in series.items():
        for q, s in queues.items():
            if s.packets:
                for action in M.ACTION_NAMES:
                    rows.append({"panel": "", "series": action, "x": f"{label} · {q}" if len(series) > 1 else q,
                                 "y": 100 * s.count(action) / s.packets, "count": s.count(action)})
    return FigureData("bar", _frame(rows, ["panel", "series", "x", "y", "count"]), "series · queue",
                      "share of the queue's decisions (%)", categorical_x=True)


def interval_rows(panel: str, series: str, x, iv: M.Interval, **extra) -> dict:
    """One errorbar row: the mean and its 95 % interval (None where n < 2)."""
    return {"panel": panel, "series": series, "x": x, "y": iv.mean, "y_low": iv.low, "y_high": iv.high, "n": iv.n,
            **extra}


def over_time_data(ts, rates: pd.DataFrame, flows: pd.DataFrame, *, repeat: int, bin_ms: float) -> FigureData:
    """The over-time figure's numbers, one panel per quantity with its own unit (as the figure stacks them):
    sojourn (ms), queue length (packets), probabilities, router-side throughput (Mbit/s) and, where iperf3 reported
    them, each flow's cwnd (kB) and RTT (ms). ``ts`` and ``rates`` come from router-log rows already on the
    scenario's clock (:func:`l4stb.analysis.timebase.on_repeat_clock`); iperf3's samples are put there by their
    flows' starts."""
    t = ts.t_s
    rows = []
    for q in ("C", "L"):
        rows += [{"panel": "sojourn", "series": f"{q} queue", "x": float(x), "y": float(y)}
                 for x, y in zip(t, ts.sojourn_ms[q])]
        rows += [{"panel": "queue length", "series": f"{q} queue", "x": float(x), "y": float(y)}
                 for x, y in zip(t, ts.queue_length[q])]
    for name, y in (("p'", ts.p_prime), ("p_C", ts.p_c), ("p_CL", ts.p_cl)):
        rows += [{"panel": "probability", "series": name, "x": float(a), "y": float(b)} for a, b in zip(t, y)]
    rows += [{"panel": "router-side throughput", "series": str(r.label), "x": float(r.t_s), "y": float(r.mbps)}
             for r in rates.itertuples()]
    labels = {"sojourn": "sojourn (ms)", "queue length": "queue length (pkts)", "probability": "probability",
              "router-side throughput": f"router-side Mbit/s per {bin_ms:g} ms bin"}
    g = flows[flows["repeat"] == repeat] if not flows.empty else flows
    if not g.empty and "snd_cwnd" in g and (g["snd_cwnd"] > 0).any():
        g = g.assign(_cc=cc_label_column(g))
        for key, s in g.groupby(["host", "_cc", "group", "connection", "stream"], sort=True, observed=True):
            name = f"{key[0]} {key[1]} g{key[2]} c{key[3]}/s{key[4]}"
            start, end = interval_times_s(s)
            mid = (start + end) / 2
            rows += [{"panel": "cwnd", "series": name, "x": float(x), "y": float(y) / 1000}
                     for x, y in zip(mid, s["snd_cwnd"])]
            rows += [{"panel": "RTT", "series": name, "x": float(x), "y": float(y) / 1000}
                     for x, y in zip(mid, s["rtt_us"])]
        labels.update({"cwnd": "cwnd (kB, iperf3)", "RTT": "RTT (ms, iperf3)"})
    return FigureData("line", _frame(rows, ["panel", "series", "x", "y"]), TIME_LABEL, "see each panel",
                      panel_ylabels=labels)
