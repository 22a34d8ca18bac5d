"""The record the router's rate-schedule helper writes of each step it applied, read back into typed steps.

freebsd_module/ratesched/l4stb_ratesched.c prints one ``l4stb-rate AT_US APPLIED_US DONE_US BW RC`` line per step
into ``layout.RATE_APPLIED_NAME`` in the repeat's folder (fetched with the run); the run step summarises it for the
manifest (l4stb.providers.freebsd.plans.parse_rate_applied) and the analysis measures utilisation against it
(l4stb.analysis.capacity.applied_capacities). The ``BW`` word is what l4stb.providers.freebsd.plans.ipfw_bandwidth wrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class AppliedStep:
    """One step as the rate-schedule helper applied it: times in us after the helper's start (the repeat's common
    start), the rate it set, and ipfw's exit status."""

    at_us: int
    applied_us: int
    """When `ipfw pipe N config` was started."""
    done_us: int
    """When it returned: the pipe has the new bandwidth from then on (ip_dummynet.c config_link, at dummynet's
    next tick)."""
    rate_bps: int | None
    """The ``bw`` word read back (None when it is not one l4stb.providers.freebsd.plans.ipfw_bandwidth writes)."""
    rc: int


_BW_RE = re.compile(r"([0-9]+)(K|M)?bit/s")


def read_rate_applied(text: str) -> list[AppliedStep]:
    """The helper's ``l4stb-rate AT_US APPLIED_US DONE_US BW RC`` lines (its file, or the collect step's output)."""
    steps: list[AppliedStep] = []
    for line in text.splitlines():
        parts = line.split()
        if (len(parts) == 6 and parts[0] == "l4stb-rate" and all(p.lstrip("-").isdigit() for p in parts[1:4])
                and parts[5].lstrip("-").isdigit()):
            m = _BW_RE.fullmatch(parts[4])
            rate = int(m.group(1)) * {None: 1, "K": 1000, "M": 1_000_000}[m.group(2)] if m else None
            steps.append(AppliedStep(int(parts[1]), int(parts[2]), int(parts[3]), rate, int(parts[5])))
    return steps
