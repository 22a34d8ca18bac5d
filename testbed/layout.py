"""Where a run's artifacts live on the testbed hosts: one layout for the sim folders and the FreeBSD VMs.

Per repeat, the router's log set (current file plus newsyslog's rotated ``.N.bz2`` files) is moved into the
repeat's folder when the repeat ends, and the clients' iperf3 ``-J`` output is written straight into theirs.
``fetch-logs`` pulls these folders; nothing else on the hosts is touched.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

from l4stb.workspace import validate_name

REMOTE_ROOT = "/var/l4stb"
"""Everything l4stb leaves on a host lives under this folder, one subfolder per run."""

_REPEAT_DIR_RE = re.compile(r"^r(\d{2,4})$")


def repeat_dirname(repeat: int) -> str:
    return f"r{repeat:02d}"


def parse_repeat_dirname(name: str) -> int | None:
    m = _REPEAT_DIR_RE.match(name)
    return int(m.group(1)) if m else None


def repeat_of(rel_parts: Sequence[str]) -> int:
    """The repeat a run file belongs to, from its path below a host's folder: the first ``rNN`` folder;
    a file outside one belongs to repeat 1."""
    for part in rel_parts[:-1]:
        r = parse_repeat_dirname(part)
        if r is not None:
            return r
    return 1


def remote_run_dir(run_id: str) -> str:
    return posixpath.join(REMOTE_ROOT, "runs", validate_name(run_id, "run id"))


def remote_repeat_dir(run_id: str, repeat: int) -> str:
    return posixpath.join(remote_run_dir(run_id), repeat_dirname(repeat))


def iperf3_client_name(host: str, cc: str, group: int, connection: int) -> str:
    """``client1-cubic-g0-c1.json``: one iperf3 process (connection) of flow group ``group``."""
    return f"{validate_name(host, 'host')}-{cc}-g{group}-c{connection}.json"


def iperf3_server_name(port: int) -> str:
    return f"server-{int(port)}.json"


UDP_PRAGUE_SUFFIX = ".udp_prague.txt"
"""udp_prague's text reports (Prague flows on FreeBSD) end with this."""


def udp_prague_client_name(host: str, group: int, connection: int) -> str:
    """``client2-prague-g1-c1.udp_prague.txt``: one udp_prague sender (connection) of flow group ``group``."""
    return f"{validate_name(host, 'host')}-prague-g{group}-c{connection}{UDP_PRAGUE_SUFFIX}"


def udp_prague_server_name(port: int) -> str:
    return f"server-{int(port)}{UDP_PRAGUE_SUFFIX}"


RATE_APPLIED_NAME = "router-rate-schedule.txt"
"""The vagrant router's rate-schedule helper writes here, in the repeat folder, when it applied each step
(``l4stb-rate AT_US APPLIED_US DONE_US BW RC`` lines: freebsd_module/ratesched/l4stb_ratesched.c)."""

ROUTER_EVIDENCE_SUFFIXES = (".pcap", ".pcap.stderr", "tc-samples.txt", "tc-samples.csv", "tc-final.txt",
                            "guest-facts.txt", RATE_APPLIED_NAME)
"""Files a router keeps beside its log set: a real-Linux (qemu) router's packet captures the log lines were
derived from, tcpdump's drop counts, the sampled ``tc -s qdisc show`` and the guest's facts; a FreeBSD router's
applied rate schedule. They are evidence, fetched with the run, and never read as log files."""


def is_router_evidence(name: str) -> bool:
    return name.endswith(ROUTER_EVIDENCE_SUFFIXES)
