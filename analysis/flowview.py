"""Per-flow views from the router log: each flow's throughput in fine time bins, and its own delay (Pantheon's axes).

iperf3 counts a sender's bytes in whole 128 KiB socket writes, so its per-second throughput of an 8 Mbit/s
share moves in ~1.05 Mbit/s steps. The router log has every packet with its flow id and time, so here:

* **router-side throughput** (:func:`flow_rates`): the bytes of a flow's packets the router forwarded or
  CE-marked, per ``bin_s`` bin (100 ms by default), over the bin length. That is the rate at which the
  flow's packets left the bottleneck queue (goodput plus retransmissions), not what iperf3 wrote.
* **own delay** (:func:`flow_points`): a flow's p95 queue delay over its own forwarded or marked packets,
  against its mean router-side throughput after the warm-up; one point per flow per repeat, so two
  Classic flows with different shares no longer share the queue's p95 as their x.

Flow ids name streams: the simulator logs the stream's index in the scenario
(:meth:`l4stb.config.Scenario.streams`); l4stb's FreeBSD module logs ``(source port << 16) | destination
port`` (``dualpi2_classify`` in freebsd_module/dn_sched_dualpi2.c), and the destination port names the
iperf3 connection (:meth:`l4stb.config.Scenario.connection_port`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from l4stb.analysis import metrics as M
from l4stb.analysis.senders import Senders, run_senders
from l4stb.config import Scenario

DEFAULT_BIN_S = 0.1


@dataclass(frozen=True)
class FlowLabel:
    flow_id: int
    host: str
    cc: str
    """The CC with its sender's stack and transport (:func:`l4stb.analysis.senders.cc_label`)."""
    label: str
    group: int = -1
    """The scenario's flow group (-1 when the scenario cannot name the flow)."""
    connection: int = 0


def flow_labels(scenario: Scenario | None, flow_ids, senders: Senders | None = None) -> dict[int, FlowLabel]:
    """Host and CC (with its stack, from ``senders``: by default the scenario's hosts) of each logged flow id
    (``?`` when the scenario cannot name it)."""
    ids = sorted(int(f) for f in flow_ids if int(f) >= 0)
    specs = scenario.streams() if scenario else []
    senders = senders or run_senders(scenario)
    by_fid = {s.fid: s for s in specs}
    by_port: dict[int, list] = {}
    for s in specs:
        by_port.setdefault(s.port, []).append(s)
    sim_ids = bool(ids) and all(f in by_fid for f in ids)
    out = {}
    for f in ids:
        if sim_ids:
            s = by_fid[f]
            cc = senders.label(s.host, s.cc)
            out[f] = FlowLabel(f, s.host, cc, f"{s.host} {cc} g{s.group} c{s.connection}/s{s.stream}", s.group,
                               s.connection)
        elif (f & 0xFFFF) in by_port:
            s = by_port[f & 0xFFFF][0]
            cc = senders.label(s.host, s.cc)
            out[f] = FlowLabel(f, s.host, cc, f"{s.host} {cc} :{f >> 16}->{f & 0xFFFF}", s.group, s.connection)
        else:
            out[f] = FlowLabel(f, "?", "?", f"flow {f}")
    return out


def _timed(packets: pd.DataFrame) -> pd.DataFrame:
    if packets.empty or "flow_id" not in packets or "t_s" not in packets:
        return packets.iloc[0:0]
    sel = (packets["flow_id"].to_numpy() >= 0) & np.isfinite(packets["t_s"].to_numpy(dtype=float))
    return packets[sel]


def has_flow_ids(packets: pd.DataFrame) -> bool:
    return not _timed(packets).empty


def flow_rates(packets: pd.DataFrame, scenario: Scenario | None, *, repeat: int, bin_s: float = DEFAULT_BIN_S,
               window: tuple[float, float] | None = None, senders: Senders | None = None) -> pd.DataFrame:
    """Router-side throughput per flow and bin of one repeat: columns flow_id, label, cc, t_s (bin centre), mbps."""
    g = _timed(packets)
    g = g[(g["repeat"] == repeat) & (g["action"].to_numpy() != M.ACTION_DROP)]
    if window is not None:
        g = g[(g["t_s"] >= window[0]) & (g["t_s"] < window[1])]
    labels = flow_labels(scenario, pd.unique(g["flow_id"]) if not g.empty else [], senders)
    start = window[0] if window is not None else 0.0
    rows = []
    for fid, f in g.groupby("flow_id", sort=True, observed=True):
        b = np.floor((f["t_s"].to_numpy(dtype=float) - start) / bin_s).astype(np.int64)
        total = np.bincount(b, weights=f["packet_length"].to_numpy(dtype=float))
        first = int(b.min())  # a flow's line begins with its first packet, not at the window's start
        lab = labels[int(fid)]
        rows.append(pd.DataFrame({"flow_id": int(fid), "label": lab.label, "cc": lab.cc,
                                  "t_s": start + (np.arange(first, len(total)) + 0.5) * bin_s,
                                  "mbps": total[first:] * 8 / bin_s / 1e6}))
    if not rows:
        return pd.DataFrame({"flow_id": [], "label": [], "cc": [], "t_s": [], "mbps": []})
    return pd.concat(rows, ignore_index=True)


@dataclass(frozen=True)
class FlowPoint:
    """One flow in one repeat: mean router-side throughput after the warm-up and p95 of its own queue delay."""

    repeat: int
    flow_id: int
    label: str
    cc: str
    queue: str
    throughput_mbps: float
    p95_delay_ms: float


@dataclass(frozen=True)
class FlowStat:
    """A :class:`FlowPoint` before its flow is named (names need every flow id of the run, see :func:`flow_labels`)."""

    repeat: int
    flow_id: int
    queue: str
    throughput_mbps: float
    p95_delay_ms: float


def flow_points(packets: pd.DataFrame, scenario: Scenario | None, warmup_s: float = M.WARMUP_S,
                senders: Senders | None = None) -> list[FlowPoint]:
    """One point per flow per repeat of ``packets`` (:func:`flow_stats` named by :func:`name_flow_stats`)."""
    return name_flow_stats(flow_stats(packets, warmup_s), scenario, senders)


def flow_stats(packets: pd.DataFrame, warmup_s: float = M.WARMUP_S) -> list[FlowStat]:
    """Per repeat and flow: router-side throughput after the warm-up and p95 of the flow's own queue delay. Per
    repeat, so a run's can be gathered one repeat at a time and concatenated in repeat order."""
    g = _timed(packets)
    if g.empty:
        return []
    g = g[g["action"].to_numpy() != M.ACTION_DROP]
    out = []
    for (repeat, fid), f in g.groupby(["repeat", "flow_id"], sort=True, observed=True):
        t = f["t_s"].to_numpy(dtype=float)
        first = float(t.min())
        steady = t >= first + warmup_s
        span = float(t[steady].max() - t[steady].min()) if steady.sum() > 1 else 0.0
        mbps = float(f["packet_length"].to_numpy(dtype=float)[steady].sum()) * 8 / span / 1e6 if span > 0 else float("nan")
        delay = f["current_queue_delay"].to_numpy(dtype=float) / 1000.0
        queue = str(f["queue"].mode().iloc[0]) if "queue" in f else "C"
        out.append(FlowStat(int(repeat), int(fid), queue, mbps,
                            float(np.percentile(delay, 95)) if len(delay) else float("nan")))
    return out


def name_flow_stats(stats: list[FlowStat], scenario: Scenario | None,
                    senders: Senders | None = None) -> list[FlowPoint]:
    """Name each flow from all the flow ids of ``stats`` (the run's, when they are the run's)."""
    labels = flow_labels(scenario, list(dict.fromkeys(st.flow_id for st in stats)), senders)
    return [FlowPoint(st.repeat, st.flow_id, labels[st.flow_id].label, labels[st.flow_id].cc, st.queue,
                      st.throughput_mbps, st.p95_delay_ms) for st in stats]
