"""What the report draws from a run's packets, gathered one repeat at a time in the summary's pass over them.

The report used to read every packet of the run into one frame (4 GB at 15 M decisions). Every per-packet view
it draws is per repeat or pools the repeats' rows in log order, so it is gathered from each repeat's frame as
:func:`~l4stb.analysis.summary.summarize_repeats` hands it over, and the frame is dropped: the delay samples of
the ECDF and box figures (one float per forwarded or marked packet, exact), the router-side utilisation series
and the per-flow points. The one repeat the "over time" figure shows is read again afterwards, with the AQM
state columns only it needs. Memory follows the largest repeat plus the delay samples, not the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from l4stb.analysis import metrics as M
from l4stb.analysis.flowview import FlowPoint, FlowStat, flow_stats, has_flow_ids, name_flow_stats
from l4stb.analysis.packet_repeats import PacketRepeats
from l4stb.analysis.summary import SUMMARY_PACKET_COLUMNS, RunData, RunSummary, summarize_repeats
from l4stb.analysis.timebase import router_offsets_s
from l4stb.workspace import Workspace


@dataclass
class RunPacketViews:
    """The report's per-packet views of one run (what the whole packets frame gave before)."""

    repeats: list[int]
    """The repeats that have packets, ascending."""
    delays: M.DelaySamples
    link_utilization: list[M.UtilizationSeries]
    flow_points: list[FlowPoint] | None
    """None when no packet carries a flow id and a time (the per-flow section is left out)."""
    timed: bool
    """Some packet has a time (the "over time" section needs one)."""
    shown: pd.DataFrame | None
    """The packets of the repeat the "over time" figure shows (None when the run has no such repeat)."""


@dataclass
class _Gatherer:
    """Takes each repeat's frame in the summary's pass and keeps only what the figures need of it."""

    data: RunData
    util_bin_s: float
    warmup_s: float
    delays: dict[str, list[np.ndarray]] = field(default_factory=lambda: {q: [] for q in M.QUEUES})
    util: list[M.UtilizationSeries] = field(default_factory=list)
    stats: list[FlowStat] = field(default_factory=list)
    with_flow_ids: bool = False
    timed: bool = False

    def __post_init__(self) -> None:
        self.offsets = router_offsets_s(self.data.flows)

    def visit(self, repeat: int, packets: pd.DataFrame) -> None:
        for q in M.QUEUES:
            self.delays[q].append(M.delay_samples_ms(packets, q))
        self.util += M.link_utilization_timeseries(
            packets, self.data.capacity, self.util_bin_s, self.data.log_sample_every, self.offsets
        )
        if has_flow_ids(packets):
            self.with_flow_ids = True
            self.stats += flow_stats(packets, self.warmup_s)
        if not packets.empty and np.isfinite(packets["t_s"].to_numpy(dtype=float)).any():
            self.timed = True

    def result(self, repeats: list[int], shown: pd.DataFrame | None) -> RunPacketViews:
        delays = M.DelaySamples({q: _joined(self.delays.pop(q)) for q in M.QUEUES})
        points = name_flow_stats(self.stats, self.data.scenario, self.data.senders) if self.with_flow_ids else None
        return RunPacketViews(repeats, delays, self.util, points, self.timed, shown)


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    parts = [p for p in parts if len(p)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty(0)


def summarize_for_report(
    ws: Workspace, data: RunData, shown_repeat: int | None, util_bin_s: float, warmup_s: float = M.WARMUP_S
) -> tuple[RunSummary, RunPacketViews]:
    """The run's summary and the report's per-packet views, from one pass over its repeats (``data`` loaded
    without its packets). ``shown_repeat``: the repeat of the "over time" figure (None: the first one)."""
    repeats = PacketRepeats(ws.packets_file(data.run_id), SUMMARY_PACKET_COLUMNS)
    ids = repeats.repeat_ids
    gather = _Gatherer(data, util_bin_s, warmup_s)
    summary = summarize_repeats(data, repeats, warmup_s, gather.visit)
    shown = shown_repeat if shown_repeat is not None else (ids[0] if ids else None)
    frame = (
        PacketRepeats(ws.packets_file(data.run_id), M.PACKET_COLUMNS).frame(shown)
        if gather.timed and shown in ids
        else None
    )
    return summary, gather.result(ids, frame)
