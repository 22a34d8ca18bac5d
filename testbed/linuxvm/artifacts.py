"""Turn what one repeat's VM left in its shared folder into the host folders' artifacts, as every provider leaves them.

Clients' and server's iperf3 ``-J`` files are real and move unchanged. The router's log set is written from
the two captures (:mod:`l4stb.linuxvm.capture_log`) through the same syslogd/newsyslog emulation the
simulator uses (``l4stb.sim.syslog``: ``kernel: dualpi2:`` prefix, size rotation, compressed ``.N`` files),
so the parser reads it like any router's. The captures, tcpdump's own drop counts, and the qdisc's sampled
statistics stay beside it as evidence (:func:`l4stb.layout.is_router_evidence` keeps them out of the log set).
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
from pathlib import Path

from l4stb import layout
from l4stb.linuxvm import guest
from l4stb.linuxvm.capture_log import CaptureStats, Stream, capture_to_log_lines
from l4stb.linuxvm.pcap import read_pcap
from l4stb.linuxvm.tcstats import read_tc_samples, write_tc_csv
from l4stb.logformat import L4STB_PREFIX, LINE_END
from l4stb.sim.syslog import SyslogFile

TC_SAMPLES_CSV = "tc-samples.csv"
_TCPDUMP_DROPS = re.compile(r"(\d+) packets? dropped by kernel")


def capture_drops(stderr_file: Path) -> int | None:
    """Packets tcpdump says the kernel dropped before the capture read them (its exit summary)."""
    if not stderr_file.is_file():
        return None
    m = _TCPDUMP_DROPS.search(stderr_file.read_text(errors="replace"))
    return int(m.group(1)) if m else None


def _streams(ctx) -> list[Stream]:
    topo = ctx.topology
    return [Stream(flow_id=s.fid, src=topo.address(s.host), dport=s.port,
                   proto="udp" if s.cc == "udp" else "tcp") for s in ctx.scenario.streams()]


def _fields(line: str) -> tuple[int, ...]:
    body = line[len(L4STB_PREFIX) + 1:-(len(LINE_END) + 1)]
    return tuple(int(x) for x in body.split(","))


def place_repeat(provider, ctx, repeat: int, share: Path) -> dict:
    """Move one repeat's files into the host folders; write the router's log set; return the repeat's stats."""
    sc, topo = ctx.scenario, ctx.topology
    router = topo.router
    dest = {h: provider.host(h).local_path(layout.remote_repeat_dir(ctx.run_id, repeat)) for h in topo.hosts}
    for h, d in dest.items():
        d.mkdir(parents=True, exist_ok=True)
        src = share / "hosts" / h
        if src.is_dir():
            for f in sorted(src.iterdir()):
                if f.is_file():
                    os.replace(f, d / f.name)
    rdir = dest[router]
    caps = guest.capture_files(topo)
    stats = CaptureStats()
    if not (rdir / caps.egress[1]).is_file():  # the testbed runs without capture: no log set
        return {"log_lines": 0, "module_log_lines": 0, "log_files": [], "capture": None,
                "tc_samples": _tc_csv(rdir, caps)}
    first_ns = _first_timestamp_ns(rdir / caps.egress[1])
    epoch_s = first_ns // 1_000_000_000
    lines = capture_to_log_lines([rdir / name for _, name in caps.ingress], rdir / caps.egress[1],
                                 servers=[topo.address(topo.server)], qdisc=_qdisc_name(sc),
                                 classifier=guest.l4s_classifier(sc), streams=_streams(ctx),
                                 time_origin_ns=epoch_s * 1_000_000_000, stats=stats)
    log = SyslogFile(rdir / posixpath.basename(sc.logging.file), hostname=router, epoch_s=epoch_s,
                     rotate_size=sc.logging.rotate_size, rotate_count=sc.logging.rotate_count,
                     compress=sc.logging.compress, sample_every=sc.logging.sample_every)
    try:
        for line in lines:
            log.emit_fields(_fields(line))
    finally:
        files = log.close()
    drops = {name: capture_drops(rdir / f"{name}.stderr") for _, name in (*caps.ingress, caps.egress)}
    tc_rows = _tc_csv(rdir, caps)
    facts = share / "facts.txt"
    if facts.is_file():
        shutil.copyfile(facts, rdir / "guest-facts.txt")
    return {"log_lines": log.lines, "module_log_lines": log.module_lines, "log_files": [str(p) for p in files],
            **({"module_decisions": log.decisions} if sc.logging.sample_every > 1 else {}),
            "capture": _capture_counts(stats),
            "capture_drops": drops, "tc_samples": tc_rows}


def _tc_csv(rdir: Path, caps) -> int:
    """The qdisc's own view (p', delays, counters) as CSV beside the log set; returns the samples written."""
    samples = rdir / caps.tc_samples
    if not samples.is_file():
        return 0
    rows = read_tc_samples(samples)
    write_tc_csv(rows, rdir / TC_SAMPLES_CSV)
    return len(rows)


def _qdisc_name(scenario) -> str:
    return {"fifo": "pfifo"}.get(scenario.aqm.name, scenario.aqm.name)


def _first_timestamp_ns(pcap: Path) -> int:
    t = read_pcap(pcap)
    return int(t.ts_ns[0]) if len(t.ts_ns) else 0


def _capture_counts(stats: CaptureStats) -> dict:
    """The matcher's counts (JSON-serialisable) for the repeat's record."""
    return {k: v for k, v in vars(stats).items() if isinstance(v, int)}
