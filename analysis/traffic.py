"""Which traffic class each iperf3 flow of a run belongs to (bulk, short, unresponsive) and when it really started.

The headline metrics of an AQM study mean something only over the right flows:

* **bulk**: long-running TCP (or udp_prague) flows. Throughput, Jain's index and the scalable/classic ratio
  are computed over these only.
* **short**: the connections of a group with ``size`` (iperf3 ``-n``). They are judged by their completion
  times, not by a throughput: a 100 KB transfer never reaches a steady state.
* **unresponsive**: ``cc: udp`` groups (iperf3 ``-u``). They get their own rows (offered rate, delivered rate,
  loss, marks) and never count as a "classic" flow of the L/C ratio.

iperf3 reports each connection's intervals from its own start. A connection's **real start** (seconds after
the repeat's start) comes from the scenario, as the simulator and the vagrant plan both start it:
:meth:`l4stb.config.Scenario.connection_starts_us` with the repeat's seed (``start`` for long flows, seeded
Poisson arrivals for short flows, plus the seeded ``start_jitter``). Both are added to the flows table as columns
``flow_class`` and ``flow_start_s``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from l4stb.config import Scenario

BULK, SHORT, UNRESPONSIVE = "bulk", "short", "unresponsive"
CLASSES: tuple[str, ...] = (BULK, SHORT, UNRESPONSIVE)


def group_class(scenario: Scenario | None, group: int, cc: str) -> str:
    """The class of a flow of scenario group ``group`` (an imported file without a group: by its CC)."""
    if scenario is not None and 0 <= group < len(scenario.flows):
        g = scenario.flows[group]
        return UNRESPONSIVE if g.cc == "udp" else SHORT if g.short else BULK
    return UNRESPONSIVE if cc == "udp" else BULK


def annotate_flows(flows: pd.DataFrame, scenario: Scenario | None, seeds: Mapping[int, int]) -> pd.DataFrame:
    """A copy of the flows table with ``flow_class`` and ``flow_start_s`` (see the module docstring).

    ``seeds`` maps a repeat to its seed (the manifest's); a repeat without one takes the scenario's own
    :meth:`~l4stb.config.Scenario.repeat_seed`. Without a scenario every start is 0."""
    out = flows.copy()
    if out.empty:
        out["flow_class"] = pd.Series([], dtype="object")
        out["flow_start_s"] = pd.Series([], dtype="float64")
        return out
    groups = out["group"].to_numpy(dtype=np.int64) if "group" in out else np.full(len(out), -1)
    ccs = out["cc"].astype(str).to_numpy()
    out["flow_class"] = [group_class(scenario, int(g), c) for g, c in zip(groups, ccs)]
    starts = np.zeros(len(out))
    if scenario is not None and "connection" in out:
        cache: dict[tuple[int, int], list[int]] = {}
        reps = out["repeat"].to_numpy(dtype=np.int64)
        conns = out["connection"].to_numpy(dtype=np.int64)
        for i, (r, g, c) in enumerate(zip(reps, groups, conns)):
            if not 0 <= g < len(scenario.flows):
                continue
            key = (int(r), int(g))
            if key not in cache:
                seed = seeds.get(int(r), scenario.repeat_seed(int(r)))
                cache[key] = scenario.connection_starts_us(seed, int(g))
            arr = cache[key]
            if 1 <= c <= len(arr):
                starts[i] = arr[c - 1] / 1e6
    out["flow_start_s"] = starts
    return out


def flow_class_of(flows: pd.DataFrame) -> np.ndarray:
    """The ``flow_class`` column, or the class by CC when the table was not annotated (udp: unresponsive)."""
    if "flow_class" in flows:
        return flows["flow_class"].astype(str).to_numpy()
    return np.where(flows["cc"].astype(str).to_numpy() == "udp", UNRESPONSIVE, BULK)


def flow_start_of(flows: pd.DataFrame) -> np.ndarray:
    """The ``flow_start_s`` column (seconds after the repeat's start), or zeros when the table was not annotated."""
    if "flow_start_s" in flows:
        return flows["flow_start_s"].to_numpy(dtype=float)
    return np.zeros(len(flows))


def bulk_streams(scenario: Scenario) -> int:
    """How many bulk streams the scenario runs (what the capacity is shared by)."""
    return sum(g.streams for i, g in enumerate(scenario.flows) if group_class(scenario, i, g.cc) == BULK)
