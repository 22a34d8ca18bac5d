"""Gather `l4stb check`'s evidence on the real-Linux testbed: boot one short repeat and read what the router saw.

The evidence is the same record every provider gives :mod:`l4stb.check`: whether sch_dualpi2 is loaded
(``lsmod`` in the guest), the bottleneck's ``tc -s qdisc show``, the packets the ingress captures hold
against the qdisc's own sent + dropped counters (the capture is the log set's source, so losing packets
there loses decisions), and the ECN codepoints the server's side of the bottleneck saw per flow.
"""

from __future__ import annotations

import posixpath
import shutil
from pathlib import Path

from l4stb.layout import REMOTE_ROOT
from l4stb.linuxvm import guest
from l4stb.linuxvm.pcap import ip_to_int, read_pcap
from l4stb.linuxvm.tcstats import parse_tc_samples
from l4stb.providers.base import CheckEvidence, FlowProbe, RunContext


def qdisc_counts(tc_show: str) -> tuple[str, int, int] | None:
    """(kind, packets sent, packets dropped) of the qdisc under htb's class 1:1, from ``tc -s qdisc show``
    (read by the tc sample parser; the ``tc -s class show`` output after it is not a qdisc block)."""
    qdiscs = tc_show.split("\nclass ", 1)[0]
    for rec in parse_tc_samples("@0\n" + qdiscs, where="tc-final.txt"):
        if rec.parent == "1:1":
            return rec.kind, rec.sent_packets, rec.dropped
    return None


def egress_codepoints(pcap: Path, server_ip: str, ports: dict[int, FlowProbe]) -> None:
    """Count the ECN codepoints of data packets leaving the bottleneck, per server port."""
    t = read_pcap(pcap)
    keep = (t.dst == ip_to_int(server_ip)) & (t.payload_len > 0)
    for dport, ecn in zip(t.dport[keep].tolist(), t.ecn[keep].tolist()):
        probe = ports.get(int(dport))
        if probe is not None:
            probe.codepoints[int(ecn)] = probe.codepoints.get(int(ecn), 0) + 1


def self_check(provider, ctx: RunContext) -> CheckEvidence:
    sc, topo = ctx.scenario, ctx.topology
    router, server = topo.router, topo.server
    st = provider.state()
    run_root = posixpath.join(REMOTE_ROOT, "runs", ctx.run_id)
    outcomes = []
    try:
        outcome = provider._one(ctx, 1, st, lambda r, f: None)
        outcomes.append(outcome)
        rdir = provider.host(router).local_path(posixpath.join(run_root, "r01"))
        tc_final = (rdir / "tc-final.txt").read_text(errors="replace") if (rdir / "tc-final.txt").is_file() else ""
        facts = (rdir / "guest-facts.txt").read_text(errors="replace") if (rdir / "guest-facts.txt").is_file() else ""
        caps = guest.capture_files(topo)
        captured = None
        if outcome.ok:
            captured = sum(len(read_pcap(rdir / name)) for _, name in caps.ingress)
        counts = qdisc_counts(tc_final)
        probes: dict[int, FlowProbe] = {}
        for s in sc.streams():
            probes.setdefault(s.port, FlowProbe(s.host, s.cc, s.port, {}))
        if outcome.ok:
            egress_codepoints(rdir / caps.egress[1], topo.address(server), probes)
    finally:
        for host in topo.hosts:
            shutil.rmtree(provider.host(host).local_path(run_root), ignore_errors=True)
    problems = [] if outcomes and outcomes[0].ok else [f"{router}: the check's VM failed: {outcomes[0].detail}."]
    return CheckEvidence(
        provider=provider.name, router=router, receiver=server,
        module_loaded=("sch_dualpi2" in facts) if sc.aqm.name == "dualpi2" else None,
        sched_show=tc_final, kern_hz={}, log_lines_in_file=captured,
        log_lines_counter=(counts[1] + counts[2]) if counts else None,
        flows=list(probes.values()), flow_problems=problems,
        where={"log": "the ingress captures vs the qdisc's sent + dropped counters"})
