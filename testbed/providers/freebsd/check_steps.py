"""The FreeBSD steps of ``l4stb check`` (module, capture, log count) rendered from playbooks/templates, and the
parsers of what they print.

The self-check runs one short repeat of a check scenario through the normal run phases
(:func:`l4stb.providers.freebsd.plans.run_phases`) and adds these steps around them: the module and scheduler on the router
after "configure", a tcpdump capture on the server from before the clients start until the servers stop,
and a count of the module's lines in the log set after "collect router logs". Each parser reads the exact
lines its template prints, so a test can feed it recorded FreeBSD output.
"""

from __future__ import annotations

import posixpath
import re

from l4stb import layout, logformat
from l4stb.config import Scenario, Topology
from l4stb.providers.freebsd import plans

CAPTURE_MAX_PACKETS = 50_000
"""tcpdump -c: a 5 s flow at 8 Mbit/s is about 3,500 data packets; the cap bounds the file at high rates."""

_SCHED_RE = re.compile(r"^\s*sched\s+(\d+)\s+type\s+(\S+)", re.MULTILINE)
"""sbin/ipfw/dummynet.c (list_pipes, DN_SCH): `` sched %d type %s flags 0x%x %d buckets %d active``."""


def after_phases(scenario: Scenario, topology: Topology, run_id: str) -> dict[str, plans.Phase]:
    """Run-phase name -> the self-check phase that runs right after it."""
    router, server = topology.router, topology.server
    state_dir = plans.state_dir_of(run_id, 1)
    server_ip = topology.address(server)
    ports = [p.port for p in plans.processes(scenario, topology, run_id, 1) if p.side == "server"]
    aqm = scenario.aqm
    capture_filter = (f"ip and dst host {server_ip} and (tcp or udp) and dst portrange {min(ports)}-{max(ports)}")

    def step(host: str, name: str, template: str, **values) -> plans.HostStep:
        return plans.HostStep(host, name, plans.render(template, host=host, step=name, **values), timeout_s=120)

    return {
        "configure": plans.Phase("check module", [step(
            router, "check module and scheduler", "check_module.sh.j2", uses_module=plans.uses_module(aqm),
            kmod_file=plans.KMOD_FILE, sched=plans.SCHED)]),
        "start servers": plans.Phase("start capture", [step(
            server, "start capture", "capture_start.sh.j2", state_dir=state_dir, server_ip=server_ip,
            max_packets=CAPTURE_MAX_PACKETS, capture_filter=capture_filter)]),
        "stop servers": plans.Phase("stop capture", [step(
            server, "count ECN codepoints", "capture_stop.sh.j2", state_dir=state_dir, ports=ports)]),
        "collect router logs": plans.Phase("count log lines", [step(
            router, "count log lines", "count_log_lines.sh.j2", prefix=logformat.L4STB_PREFIX,
            repeat_dir=layout.remote_repeat_dir(run_id, 1), run_dir=posixpath.join(plans.RUNS_ROOT, run_id),
            state_run_dir=posixpath.join(plans.STATE_ROOT, run_id))]),
    }


def parse_module(text: str) -> tuple[bool | None, str]:
    """check_module.sh's output -> (module loaded, or None when not asked; the ``ipfw sched show`` text)."""
    loaded = True if "l4stb-module loaded" in text else False if "l4stb-module missing" in text else None
    sched = text.split("=== sched ===", 1)[1].strip("\n") if "=== sched ===" in text else ""
    return loaded, sched


def sched_types(sched_show: str) -> dict[int, str]:
    """Scheduler number -> type name, from ``ipfw sched show``."""
    return {int(m.group(1)): m.group(2) for m in _SCHED_RE.finditer(sched_show)}


def parse_ecn_counts(text: str) -> dict[int, dict[int, int]]:
    """capture_stop.sh's ``l4stb-ecn PORT CODEPOINT PACKETS`` lines -> port -> codepoint -> packets."""
    counts: dict[int, dict[int, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "l4stb-ecn" and all(p.isdigit() for p in parts[1:]):
            counts.setdefault(int(parts[1]), {})[int(parts[2])] = int(parts[3])
    return counts


def parse_log_file_lines(text: str) -> int | None:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "l4stb-log-file-lines" and parts[1].isdigit():
            return int(parts[1])
    return None
