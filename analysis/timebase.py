"""The one time origin of every over-time figure: seconds since the repeat's start, the scenario's t=0.

A run's tables count time from three different origins:

* iperf3 intervals (``flows.parquet`` ``start_s``/``end_s``) count from *each flow's own* start;
  ``flow_start_s`` (:mod:`l4stb.analysis.traffic`) is that start in the scenario's time (its ``start``, the
  seeded Poisson arrivals of short flows and the seeded ``start_jitter``), as the simulator and the vagrant and
  qemu plans start the clients;
* the router log (``packets.parquet`` ``t_s``) counts from the repeat's *first logged decision*, which is the
  first packet of the first flow to start: the log itself knows no scenario clock (a real router's syslog has
  wall-clock times only);
* a ``rate_schedule`` or ``rate_trace`` (:mod:`l4stb.analysis.capacity`) is in the scenario's time.

Every figure puts all three on the scenario's clock (:data:`TIME_LABEL`): iperf3 intervals at
``flow_start_s + start_s``, and router-log times shifted by the start of the repeat's first flow
(:func:`router_offsets_s`), which is when its first decision happened (give or take the sender's access-link
delay, well under one bin). A run without a scenario (imported logs) has every flow starting at 0, so there t=0
is the first flow's start in all three sources alike.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

TIME_LABEL = "time since the repeat's start, the scenario's t=0 (s)"
"""The x label of every over-time figure and of its data file."""


def router_offsets_s(flows: pd.DataFrame) -> dict[int, float]:
    """Per repeat: the scenario time of the router log's first decision (the earliest ``flow_start_s`` of the
    repeat's flows; 0 when the table has no starts)."""
    if flows is None or flows.empty or "flow_start_s" not in flows or "repeat" not in flows:
        return {}
    starts = flows.groupby("repeat", observed=True)["flow_start_s"].min()
    return {int(r): float(v) for r, v in starts.items() if np.isfinite(v)}


def on_repeat_clock(packets: pd.DataFrame, offsets: Mapping[int, float]) -> pd.DataFrame:
    """``packets`` with ``t_s`` moved from the first decision to the scenario's t=0 (a copy; the rows of a repeat
    without an offset stay as they are)."""
    if packets.empty or "t_s" not in packets or not offsets:
        return packets
    shift = packets["repeat"].map(lambda r: offsets.get(int(r), 0.0)).to_numpy(dtype=float)
    return packets.assign(t_s=packets["t_s"].to_numpy(dtype=float) + shift)


def interval_times_s(flows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each iperf3 interval's start and end on the scenario's clock (``flow_start_s`` + its own times)."""
    t0 = flows["flow_start_s"].to_numpy(dtype=float) if "flow_start_s" in flows else np.zeros(len(flows))
    return flows["start_s"].to_numpy(dtype=float) + t0, flows["end_s"].to_numpy(dtype=float) + t0
