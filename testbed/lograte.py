"""How long the router's kernel message buffer can hold the module's per-packet lines, and the warning when that
is less than the syslogd stall a vagrant run should ride out.

Each decision is one log(9) line (sys/kern/subr_prf.c log() -> msgbuf): it is written under dummynet's lock into
the kernel message buffer (kern.msgbufsize, MSGBUF_BYTES on the router), and syslogd copies the buffer into
the log file when it is woken (at most kern.log_wakeups_per_second = 100 times a second, sys/kern/subr_log.c).
Lines are complete as long as syslogd keeps up; when it does not, the oldest unread lines are overwritten and
lost. The buffer rides out a syslogd stall of ``MSGBUF_BYTES / (decisions/s x line bytes)`` seconds. On the
router syslogd shares the CPUs with dummynet, the log rotation loop and newsyslog's bzip2 of each full log
file (usr.sbin/newsyslog/newsyslog.c do_zipwork), so l4stb warns when the buffer holds less than
MIN_STALL_S of lines; ``l4stb check --scenario NAME`` measures the loss at the scenario's own rate (lines in
the file against the module's ``log_lines`` counter, and again at a higher rate). ``logging.sample_every`` N
divides the line rate by N (the module logs every N-th decision). Nothing here is a measured syslogd
throughput: none has been measured on a FreeBSD VM yet.
"""

from __future__ import annotations

import math

from l4stb import logformat
from l4stb.config import Scenario

MSGBUF_BYTES = 8 << 20
"""kern.msgbufsize on the router (provision_router.sh.j2 writes it to /boot/loader.conf)."""
MIN_STALL_S = 1.0
LINE_BYTES = len("<6>dualpi2: " + logformat.format_line([2 ** 31 - 1] * len(logformat.L4STB_FIELD_NAMES)) + "\n")
"""One line as the message buffer stores it (priority, tag, every field at ten digits): an upper estimate."""


def peak_rate_bps(scenario: Scenario) -> int:
    """The highest bottleneck rate of the repeat: the base rate or any step of its schedule or trace."""
    b = scenario.bottleneck
    horizon_us = scenario.duration + max(max(f.arrivals_us(scenario.repeat_seed(1), g))
                                         for g, f in enumerate(scenario.flows))
    return max([b.rate, *(rate for _, rate in b.schedule(horizon_us))])


def decisions_per_s(scenario: Scenario) -> float:
    """Packet decisions a second at the peak rate with MTU-sized packets, counting both passes of
    ``match: any``."""
    b = scenario.bottleneck
    return peak_rate_bps(scenario) * b.pipe_passes / (8 * b.mtu)


def lines_per_s(scenario: Scenario) -> float:
    """Log lines a second: every ``logging.sample_every``-th decision."""
    return decisions_per_s(scenario) / scenario.logging.sample_every


def stall_budget_s(scenario: Scenario) -> float:
    """Seconds of syslogd stall the message buffer absorbs at the scenario's peak line rate."""
    return MSGBUF_BYTES / (lines_per_s(scenario) * LINE_BYTES)


def sample_every_needed(scenario: Scenario) -> int:
    """The smallest ``logging.sample_every`` whose line rate leaves the buffer MIN_STALL_S of stall."""
    return max(1, math.ceil(decisions_per_s(scenario) * LINE_BYTES * MIN_STALL_S / MSGBUF_BYTES))


def warning(scenario: Scenario) -> str | None:
    """One paragraph when the module's logging may lose lines at this scenario's rate on the vagrant router."""
    budget = stall_budget_s(scenario)
    if budget >= MIN_STALL_S:
        return None
    every = scenario.logging.sample_every
    what = "every decision" if every == 1 else f"every {every}th decision"
    return (f"scenario {scenario.name}: at {peak_rate_bps(scenario) / 1e6:g} Mbit/s the module logs {what}, about "
            f"{lines_per_s(scenario):,.0f} lines a second, and the router's {MSGBUF_BYTES >> 20} MB kernel message "
            f"buffer holds only {budget:.2f} s of them: any longer syslogd stall loses lines (overwritten before "
            f"syslogd reads them). Sample the log (--set logging.sample_every={sample_every_needed(scenario)} keeps "
            f"{MIN_STALL_S:g} s), and run `l4stb check --scenario {scenario.name}` first: it compares the lines in the "
            "log file with the module's counter at this rate and at a higher one. Each repeat records "
            "module_log_lines, so a loss stays visible in the manifest.")
