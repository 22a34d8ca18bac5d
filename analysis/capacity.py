"""The bottleneck capacity a run actually offered over time: its fixed rate, its ``rate_schedule`` or its trace.

Utilisation and the equal share are measured against this, not the nominal ``bottleneck.rate``: with a link
that halves for 10 s, a full link reads 100 %, not 71 %. The capacity is a piecewise-constant rate from the
repeat's start: ``bottleneck.rate`` until the first step of :meth:`l4stb.config.Bottleneck.schedule` (the
schedule, or one rate per ``trace_bin`` of a mahimahi trace), then each step's rate.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from l4stb.config import Scenario
from l4stb.errors import L4stbError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Capacity:
    """Rate (bit/s) from each step's time on; ``times_s[0]`` is 0."""

    times_s: tuple[float, ...]
    rates_bps: tuple[float, ...]
    source: str = "fixed"
    """"fixed", "schedule", "trace", or "nominal" (a trace that could not be read: the nominal rate is used)."""

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
