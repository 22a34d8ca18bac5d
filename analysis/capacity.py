"""The bottleneck capacity a run actually offered over time: its fixed rate, its ``rate_schedule`` or its trace.

Utilisation and the equal share are measured against this, not the nominal ``bottleneck.rate``: with a link
that halves for 10 s, a full link reads 100 %, not 71 %. The capacity is a piecewise-constant rate from the
repeat's start: ``bottleneck.rate`` until the first step of :meth:`l4stb.config.Bottleneck.schedule` (the
schedule, or one rate per ``trace_bin`` of a mahimahi trace), then each step's rate.

On the vagrant testbed the router's helper records when it applied each step (``router-rate-schedule.txt`` in the
repeat's folder); :func:`applied_capacities` reads those files, so each such repeat is measured against the
schedule as it was applied (each step from the moment its ``ipfw pipe config`` returned; a step whose ipfw
failed, and every step after it, never applied), not as planned. The simulator applies steps exactly, so its
runs have no such file and use the planned schedule.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from l4stb.config import Scenario
from l4stb.errors import L4stbError
from l4stb.layout import RATE_APPLIED_NAME
from l4stb.rate_applied import read_rate_applied

if TYPE_CHECKING:
    from l4stb.rate_applied import AppliedStep

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Capacity:
    """Rate (bit/s) from each step's time on; ``times_s[0]`` is 0."""

    times_s: tuple[float, ...]
    rates_bps: tuple[float, ...]
    source: str = "fixed"
    """"fixed", "schedule", "trace", "applied" (the schedule as the router applied it), or "nominal" (a trace that
    could not be read: the nominal rate is used)."""

    @classmethod
    def fixed(cls, rate_bps: float) -> "Capacity":
        return cls((0.0,), (float(rate_bps),), "fixed")

    @property
    def nominal_bps(self) -> float:
        return self.rates_bps[0]

    @property
    def varies(self) -> bool:
        return len(set(self.rates_bps)) > 1

    @property
    def known(self) -> bool:
        return all(math.isfinite(r) and r > 0 for r in self.rates_bps)

    def changes(self) -> list[tuple[float, float]]:
        """(time s, new rate bit/s) of every step that changes the rate."""
        return [(t, r) for i, (t, r) in enumerate(zip(self.times_s, self.rates_bps))
                if i > 0 and r != self.rates_bps[i - 1]]

    def bits(self, t0: float, t1: float) -> float:
        """Bits the link could carry from ``t0`` to ``t1`` (s)."""
        if not t1 > t0:
            return 0.0
        edges = np.r_[np.asarray(self.times_s, dtype=float), np.inf]
        lo = np.clip(edges[:-1], t0, t1)
        hi = np.clip(edges[1:], t0, t1)
        return float(((hi - lo) * np.asarray(self.rates_bps, dtype=float)).sum())

    def mean_bps(self, t0: float, t1: float) -> float:
        """Mean rate offered from ``t0`` to ``t1``; the rate at ``t0`` when the span is empty."""
        return self.bits(t0, t1) / (t1 - t0) if t1 > t0 else self.rate_at(t0)

    def rate_at(self, t: float) -> float:
        i = int(np.searchsorted(np.asarray(self.times_s), t, side="right")) - 1
        return self.rates_bps[max(0, i)]

    def bin_means(self, starts_s: np.ndarray, width_s: float) -> np.ndarray:
        """Mean rate offered in each bin ``[start, start + width)``."""
        return np.array([self.mean_bps(float(s), float(s) + width_s) for s in starts_s], dtype=float)


def capacity_of(scenario: Scenario | None, rate_bps: float | None) -> Capacity:
    """The capacity a run's scenario offered (a fixed ``rate_bps`` when there is no scenario)."""
    nominal = float(rate_bps) if rate_bps else float("nan")
    if scenario is None:
        return Capacity.fixed(nominal)
    b = scenario.bottleneck
    if not b.rate_schedule and not b.rate_trace:
        return Capacity.fixed(float(b.rate))
    horizon_us = scenario.duration + max((g.start for g in scenario.flows), default=0)
    try:
        steps = b.schedule(horizon_us)
    except L4stbError as exc:  # a trace file that is no longer where the run read it
        log.warning("%s; utilisation is measured against the nominal rate", exc)
        return Capacity((0.0,), (float(b.rate),), "nominal")
    times, rates = [0.0], [float(b.rate)]
    for at_us, r in steps:
        if at_us <= 0:
            rates[0] = float(r)
            continue
        times.append(at_us / 1e6)
        rates.append(float(r))
    return Capacity(tuple(times), tuple(rates), "trace" if b.rate_trace else "schedule")


def applied_capacity(base_rate_bps: float, steps: "list[AppliedStep]") -> Capacity:
    """The capacity a repeat offered from the helper's record: ``base_rate_bps`` (the configure step's rate) until
    the first step's ipfw returned, then each applied step's rate; the helper stops at the first failed step."""
    times, rates = [0.0], [float(base_rate_bps)]
    for st in steps:
        if st.rc != 0 or st.rate_bps is None:
            break
        t = max(0.0, st.done_us / 1e6)
        if t <= times[-1]:
            rates[-1] = float(st.rate_bps)
        else:
            times.append(t)
            rates.append(float(st.rate_bps))
    return Capacity(tuple(times), tuple(rates), "applied")


def applied_capacities(scenario: Scenario | None, evidence: "dict[int, list[Path]]") -> dict[int, Capacity]:
    """Repeat -> its applied capacity, for the repeats whose router folder holds the helper's record (``evidence``:
    :attr:`l4stb.analysis.rawfiles.RawInventory.evidence`); empty without a rate schedule or trace."""
    if scenario is None or not (scenario.bottleneck.rate_schedule or scenario.bottleneck.rate_trace):
        return {}
    out: dict[int, Capacity] = {}
    for repeat, paths in evidence.items():
        record = next((p for p in paths if p.name == RATE_APPLIED_NAME), None)
        if record is None:
            continue
        try:
            steps = read_rate_applied(record.read_text(errors="replace"))
        except OSError as exc:
            log.warning("repeat %d: cannot read %s (%s); its utilisation uses the planned schedule", repeat, record, exc)
            continue
        if steps:
            out[repeat] = applied_capacity(float(scenario.bottleneck.rate), steps)
    return out
