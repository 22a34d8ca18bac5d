"""The numbers of short and unresponsive flows: completion times by size, and offered/delivered/loss/marks of UDP.

Short flows (groups with ``size``) are judged by when they finish, and unresponsive flows (``cc: udp``) by what
the network did with what they sent; neither enters throughput, Jain or the scalable/classic ratio
(:mod:`l4stb.analysis.traffic`).

* **Completion time** of a short connection: the end of its last iperf3 interval, counted from its own start.
  The simulator ends a short flow's report when its last byte is acked; a real ``iperf3 -n`` client ends it when
  its last byte is written, so on the vagrant testbed this is the sender's view. A connection is *unfinished*
  when its sender reported fewer than ``size`` bytes (it was still sending when the test stopped) or left no
  report at all; unfinished connections are counted, never given a completion time.
* **UDP rows**, per ``cc: udp`` group, mean over repeats: the *configured* rate (``rate``); the *offered* rate,
  the bytes its iperf3 sender reported over the flow's lifetime; and from the router log (flow ids), *loss*
  (its dropped packets over its packets the router decided on), *marks* (its CE-marked packets over the same)
  and the *delivered* rate, the offered rate times the share of its packets the router forwarded or marked
  (the log's lengths are IP lengths, headers included, so they are not set against iperf3's payload bytes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from l4stb.analysis import metrics as M
from l4stb.analysis.flowview import flow_labels
from l4stb.analysis.senders import Senders
from l4stb.config import Scenario


@dataclass(frozen=True)
class ShortFlowFcts:
    """Completion times of one short-flow group over every connection of every repeat."""

    group: int
    host: str
    cc: str
    size_bytes: int
    mean_gap_s: float
    started: int
    """Connections expected: ``connections`` x repeats."""
    fct_ms: np.ndarray
    """Completion times of the connections that finished (ms, sorted)."""
    cc_label: str = ""
    """The CC with its sender's stack (:func:`l4stb.analysis.senders.cc_label`); "" when unknown."""

    @property
    def cc_name(self) -> str:
        return self.cc_label or self.cc

    @property
    def finished(self) -> int:
        return len(self.fct_ms)

    @property
    def unfinished(self) -> int:
        return self.started - self.finished

    def quantile(self, p: float) -> float:
        return float(np.quantile(self.fct_ms, p / 100)) if len(self.fct_ms) else float("nan")

    def to_json(self) -> dict:
        q = {f"p{p}": _r(self.quantile(p)) for p in (50, 95, 99)}
        return {"group": self.group, "host": self.host, "cc": self.cc, "cc_label": self.cc_name, "size_bytes": self.size_bytes,
                "mean_gap_s": self.mean_gap_s, "flows": self.finished, "unfinished": self.unfinished,
                "fct_ms": {**q, "mean": _r(float(self.fct_ms.mean())) if len(self.fct_ms) else None}}


def short_flow_fcts(scenario: Scenario | None, flows: pd.DataFrame, n_repeats: int,
                    senders: Senders | None = None) -> list[ShortFlowFcts]:
    """One record per short-flow group of the scenario (see the module docstring for what counts as finished);
    ``senders`` names each group's CC with its stack."""
    if scenario is None:
        return []
    out = []
    for g, group in enumerate(scenario.flows):
        if not group.short:
            continue
        rows = flows[flows["group"] == g] if len(flows) else flows
        fct = np.empty(0)
        if len(rows):
            per = rows.groupby(["repeat", "connection"], observed=True).agg(end=("end_s", "max"), sent=("bytes", "sum"))
            fct = np.sort(per.loc[per["sent"] >= group.size, "end"].to_numpy(dtype=float) * 1000)
        out.append(ShortFlowFcts(g, group.host, group.cc, int(group.size), group.mean_gap / 1e6,
                                 max(1, n_repeats) * group.connections, fct,
                                 senders.label(group.host, group.cc) if senders else ""))
    return out


@dataclass(frozen=True)
class UdpRow:
    """One unresponsive group, means over repeats; NaN (with ``router_na``) where the router log cannot tell."""

    group: int
    host: str
    ecn: str
    configured_mbps: float
    offered_mbps: float
    delivered_mbps: float
    loss: float
    marks: float
    repeats: int
    router_na: str = ""
    """Why delivered/loss/marks are not given ("" when they are)."""

    def to_json(self) -> dict:
        return {"group": self.group, "host": self.host, "ecn": self.ecn, "configured_mbps": _r(self.configured_mbps),
                "offered_mbps": _r(self.offered_mbps), "delivered_mbps": _r(self.delivered_mbps),
                "loss": _r(self.loss, 6), "marks": _r(self.marks, 6), "repeats": self.repeats,
                **({"router_na": self.router_na} if self.router_na else {})}


@dataclass
class _Acc:
    offered: list[float] = field(default_factory=list)
    delivered: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    marks: list[float] = field(default_factory=list)


def udp_rows(scenario: Scenario | None, metrics: M.RunMetrics, packets: pd.DataFrame) -> list[UdpRow]:
    """One row per ``cc: udp`` group (see the module docstring)."""
    if scenario is None:
        return []
    groups = [g for g, grp in enumerate(scenario.flows) if grp.cc == "udp"]
    if not groups:
        return []
    timed = packets[(packets["flow_id"].to_numpy() >= 0) & np.isfinite(packets["t_s"].to_numpy(dtype=float))] \
        if not packets.empty and "flow_id" in packets and "t_s" in packets else packets.iloc[0:0]
    labels = flow_labels(scenario, pd.unique(timed["flow_id"]) if not timed.empty else [])
    fid_group = {fid: lab.group for fid, lab in labels.items()}
    acc = {g: _Acc() for g in groups}
    for rm in metrics.repeats:
        rp = timed[timed["repeat"] == rm.repeat] if not timed.empty else timed
        in_group = rp["flow_id"].map(fid_group).to_numpy() if not rp.empty else np.empty(0)
        for g in groups:
            fl = [f for f in rm.flows if f.key.group == g]
            if not fl:
                continue
            acc[g].offered.append(sum(f.throughput_mbps for f in fl))
            mine = rp[in_group == g] if len(in_group) else rp
            if mine.empty:
                continue
            action = mine["action"].to_numpy()
            acc[g].delivered.append(acc[g].offered[-1] * float((action != M.ACTION_DROP).mean()))
            acc[g].loss.append(float((action == M.ACTION_DROP).mean()))
            acc[g].marks.append(float((action == M.ACTION_MARK).mean()))
    out = []
    for g in groups:
        grp, a = scenario.flows[g], acc[g]
        na = "" if a.delivered else ("the router log carries no flow ids or no packets of this flow, so the router "
                                     "cannot tell its delivered rate, loss or marks")
        out.append(UdpRow(g, grp.host, grp.ecn, (grp.rate or 0) / 1e6, _mean(a.offered), _mean(a.delivered),
                          _mean(a.loss), _mean(a.marks), len(a.offered), na))
    return out


def _mean(x: list[float]) -> float:
    return float(np.mean(x)) if x else float("nan")


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)
