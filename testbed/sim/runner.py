"""Simulate one repeat of a scenario and leave on the simulated hosts what the real testbed would leave there.

``simulate_repeat(job)`` builds the dumbbell (clients' access links, the router's bottleneck pipe
with the scenario's AQM, the server), runs every iperf3 stream as a TCP flow for the scenario's
duration, and writes:

* **router**: the log set (``<basename of logging.file>``, ``.0.bz2``, ``.1.bz2``, ... newest
  rotation = .0) directly in ``<hosts_root>/router/var/l4stb/runs/<run_id>/r<NN>/`` -- on a real
  router the live file is moved there when the repeat ends; repeats run in parallel processes here,
  so each writes its own copy in place. One syslog line per AQM decision (see ``syslog.py``).
* **clients**: one iperf3 ``-J`` JSON per iperf3 process (connection) in their repeat folder,
  named by :func:`l4stb.layout.iperf3_client_name`.
* **server**: one iperf3 server JSON per port (:func:`l4stb.layout.iperf3_server_name`).

Every random draw comes from generators seeded by ``job.seed`` (stream start jitter: Python's
``random.Random``; AQM decisions: the xorshift32 of :mod:`l4stb.sim.prng`), and syslog/iperf3 clocks
are a fixed epoch plus simulated time, so a repeat is a pure function of (scenario, topology, seed).

Senders follow each client's ``hosts.<name>`` settings: ``stack`` (FreeBSD 14.1 or Linux, see
:mod:`l4stb.sim.tcp`), and for ``cc: prague`` the transport: on a FreeBSD host udp_prague (the real
testbed's sender, :mod:`l4stb.sim.udp_prague`), on a Linux host TCP Prague. ``cc: udp`` groups are
unresponsive iperf3 ``-u`` senders (:mod:`l4stb.sim.udp_cbr`); groups with ``size`` are short flows whose
connections start at seeded Poisson arrivals and end when their bytes are acked. ``extra_delay`` (host and
group) lengthens a flow's path to the router; ``bottleneck.rate_schedule`` / ``rate_trace`` change the
pipe's rate during the repeat.
"""

from __future__ import annotations

import gc
import importlib
import posixpath
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

from l4stb import aqm_catalogue, layout, policyblob
from l4stb.aqm_catalogue import P_ONE, DualPI2Params
from l4stb.config import Scenario, StreamSpec, Topology
from l4stb.errors import L4stbError
from l4stb.units import format_duration, format_rate, format_size
from l4stb.sim.compiled import engine_name
from l4stb.sim.engine import Engine, TokenBucket
from l4stb.sim.iperf3 import Conn, client_json, dumps, server_json
from l4stb.sim.packet import ECT1
from l4stb.sim.policy import BlobPolicy
from l4stb.sim.link import AccessLink, Bottleneck, return_latency_ns, ser_ns
from l4stb.sim.syslog import SyslogFile
from l4stb.sim.tcp import EV_RATE, EV_START, MSS, TcpFlow
from l4stb.sim.udp_cbr import UdpCbrFlow
from l4stb.sim.udp_prague import UdpPragueFlow
from l4stb.workspace import atomic_write_text

EPOCH_BASE_S = 1_735_689_600
"""2025-01-01T00:00:00Z: simulated clocks start here (repeat r starts (r-1) x (duration + 30 s) later)."""
START_JITTER_NS = 1_000_000
"""iperf3 streams of one test start within 1 ms of each other (seeded uniform jitter)."""


@dataclass(frozen=True)
class SimJob:
    """One repeat to simulate (picklable: it is sent to worker processes)."""

    scenario: Scenario
    topology: Topology
    run_id: str
    repeat: int
    seed: int
    hosts_root: str


def epoch_of(scenario: Scenario, repeat: int) -> int:
    return EPOCH_BASE_S + (repeat - 1) * (scenario.duration // 1_000_000 + 30)


def _access_link(topology: Topology, host: str):
    router = topology.router
    for link in topology.links:
        if set(link.endpoints) == {host, router} and not link.bottleneck:
            return link
    raise L4stbError(f"topology {topology.name}: no link between {host} and the router {router}")


def _host_dir(hosts_root: str, host: str, run_id: str, repeat: int) -> Path:
    remote = layout.remote_repeat_dir(run_id, repeat)
    return Path(hosts_root) / host / remote.lstrip("/")


def make_aqm(scenario: Scenario, seed: int, emit, policy):
    """The bottleneck AQM object for ``scenario.aqm`` (its log lines go to ``emit``)."""
    aqm = scenario.aqm.resolved()
    b = scenario.bottleneck
    if aqm.name == "policy" and policy is None:  # the deployable policy: its blob decides every N-th packet
        policy = BlobPolicy(policyblob.load(aqm.policy), aqm.every)
    module, _, name = aqm_catalogue.record(aqm).sim_class.rpartition(".")  # the catalogue names the class
    return getattr(importlib.import_module(module), name).from_scenario(aqm, b, seed, emit, policy)


def simulate_repeat(job: SimJob, progress: Callable[[float], None] | None = None, *, policy=None,
                    prague_transport: str | None = None, collect_sojourn: bool = False) -> dict:
    """Simulate one repeat; write its artifacts; return its statistics (JSON-serialisable).

    ``policy``: see :mod:`l4stb.sim.policy`. ``prague_transport``: "tcp" or "udp" for every Prague flow,
    overriding the hosts' settings (None: each host's ``prague_transport``, udp on FreeBSD, tcp on Linux).
    ``collect_sojourn``: also return every transmitted packet's bottleneck sojourn in us as
    ``stats["sojourn_us"]`` (for comparisons; large).
    """
    t_wall = time.perf_counter()
    sc, topo = job.scenario, job.topology
    sc.check_against(topo)
    rng = random.Random(job.seed)
    log = _router_log(job)

    # ---- network
    aqm = make_aqm(sc, job.seed, log.emit_fields, policy)
    bottleneck = Bottleneck(sc.bottleneck.rate, sc.bottleneck.delay * 1000)
    specs = sc.streams()
    paths = _paths(sc, topo, specs)
    flows: list = []
    tick_ns = 1_000_000_000 // sc.aqm.kern_hz if sc.bottleneck.serve_on_ticks else 0
    shaper = TokenBucket(sc.bottleneck.burst_bytes) if sc.bottleneck.shaper == "htb" else None
    engine = Engine(aqm, bottleneck, flows, paths.ack_delay, pipe_passes=sc.bottleneck.pipe_passes,
                    ack_exit_ns=paths.ack_exit, tick_ns=tick_ns, shaper=shaper)
    if collect_sojourn:
        engine.sojourns = []
    t_stop = _start_flows(job, engine, flows, bottleneck, specs, paths, rng, prague_transport)
    for at_us, rate_bps in sc.bottleneck.schedule(t_stop // 1000):
        engine.schedule(at_us * 1000, EV_RATE, rate_bps)

    # ---- run
    sim_wall, sim_cpu = _run_engine(engine, t_stop, progress)
    files = log.close()
    if progress is not None:
        progress(1.0)
    json_files = _write_iperf3_json(job, specs, flows)

    # ---- stats
    sim_s = t_stop / 1e9
    wall = time.perf_counter() - t_wall
    drops = aqm.drops
    marks = aqm.marks
    stats = {
        "sim_s": round(sim_s, 6),
        "wall_s": round(wall, 4),
        "sim_wall_s": round(sim_wall, 4),
        "sim_cpu_s": round(sim_cpu, 4),
        "sim_s_per_wall_s": round(sim_s / sim_wall, 2) if sim_wall > 0 else None,
        "events": engine.events,
        "events_per_s": round(engine.events / sim_wall) if sim_wall > 0 else None,
        "packets": engine.packets_sent,
        "packets_per_s": round(engine.packets_sent / sim_wall) if sim_wall > 0 else None,
        "engine": engine_name(),
        "drops": {"C": drops[0], "L": drops[1]},
        "marks": {"C": marks[0], "L": marks[1]},
        "utilisation": round(engine.busy_ns / max(1, t_stop - min(f.start_ns for f in flows)), 4),
        "log_lines": log.lines,
        "module_log_lines": log.module_lines,
        **({"module_decisions": log.decisions} if sc.logging.sample_every > 1 else {}),
        "log_files": [str(p) for p in files],
        "log_rotations": log.rotations,
        "compress_wall_s": round(log.compress_wall_s, 4),
        "compress_cpu_s": round(log.compress_cpu_s, 4),
        "iperf3_files": json_files,
        "flows": _flow_stats(sc, specs, flows),
    }
    if collect_sojourn:
        stats["sojourn_us"] = engine.sojourns
    if policy is not None and getattr(aqm, "gate", None) is not None:
        stats["policy_decisions"] = aqm.gate.asked
    return stats


def _router_log(job: SimJob) -> SyslogFile:
    """The router's log set, started afresh in the repeat's folder (a file left by an earlier try is removed)."""
    sc, router = job.scenario, job.topology.router
    router_dir = _host_dir(job.hosts_root, router, job.run_id, job.repeat)
    router_dir.mkdir(parents=True, exist_ok=True)
    base = posixpath.basename(sc.logging.file)
    for stale in router_dir.glob(base + "*"):
        stale.unlink()
    return SyslogFile(router_dir / base, hostname=router, epoch_s=epoch_of(sc, job.repeat),
                      rotate_size=sc.logging.rotate_size, rotate_count=sc.logging.rotate_count,
                      compress=sc.logging.compress, sample_every=sc.logging.sample_every)


class _Paths(NamedTuple):
    """Each client's access link, and per stream (by flow id) the ACK path's latency in ns: server to client (or,
    with two pipe passes, server to router) in ``ack_delay``, and router to client in ``ack_exit``."""

    access: dict[str, AccessLink]
    ack_delay: list[int]
    ack_exit: list[int]


def _paths(sc: Scenario, topo: Topology, specs: list[StreamSpec]) -> _Paths:
    bn = topo.bottleneck
    access = {}
    ack_delay = []
    ack_exit = []
    for sp in specs:
        if sp.host not in access:
            link = _access_link(topo, sp.host)
            access[sp.host] = AccessLink(sp.host, link.rate, link.delay)
        link = _access_link(topo, sp.host)
        server_side = return_latency_ns([(bn.rate, bn.delay)])
        client_side = return_latency_ns([(link.rate, link.delay)])
        ack_delay.append(server_side if sc.bottleneck.pipe_passes == 2 else server_side + client_side)
        ack_exit.append(client_side)
    return _Paths(access, ack_delay, ack_exit)


def _start_flows(job: SimJob, engine: Engine, flows: list, bottleneck: Bottleneck, specs: list[StreamSpec],
                 paths: _Paths, rng: random.Random, prague_transport: str | None) -> int:
    """One sender per stream (UDP CBR, udp_prague or TCP) appended to ``flows`` (the engine's), each scheduled to
    start after its connection's arrival, one handshake RTT and its seeded jitter; returns when the last stops (ns)."""
    sc = job.scenario
    passes = sc.bottleneck.pipe_passes
    duration_ns = sc.duration * 1000
    t_stop = 0
    arrivals = {gi: sc.connection_starts_us(job.seed, gi) for gi in range(len(sc.flows))}
    for sp in specs:
        acc = paths.access[sp.host]
        group = sc.flows[sp.group]
        host = sc.host(sp.host)
        extra_ns = sc.flow_delay_us(sp.group) * 1000
        # three-way handshake: one base RTT before data flows (SYN and SYN-ACK cross the pipe like data and ACKs)
        pipe_ns = ser_ns(60, sc.bottleneck.rate) + bottleneck.delay_ns
        rtt0 = acc.ser_ns + acc.prop_ns + extra_ns + passes * pipe_ns + paths.ack_delay[sp.fid]
        if passes == 2:
            rtt0 += passes * pipe_ns + paths.ack_exit[sp.fid]
        start = arrivals[sp.group][sp.connection - 1] * 1000 + rtt0 + rng.randrange(START_JITTER_NS)
        end = start + duration_ns if not group.short else group.start * 1000 + duration_ns
        if group.cc == "udp":
            flow = UdpCbrFlow(sp.fid, start, end, engine, acc, rate_bps=group.rate, on_ns=group.on_time * 1000,
                              off_ns=group.off_time * 1000, ecn=group.ecn, extra_delay_ns=extra_ns)
        elif sp.cc == "prague" and (prague_transport or host.prague) == "udp":
            flow = UdpPragueFlow(sp.fid, start, end, engine, acc, extra_delay_ns=extra_ns)
        else:
            size_segs = -(-group.size // MSS) if group.short else 0
            flow = TcpFlow(sp.fid, sp.cc, sc.ecn, start, max(end, start + 1), engine, acc, stack=host.stack,
                           size_segs=size_segs, extra_delay_ns=extra_ns, handshake_rtt_ns=rtt0,
                           kern_hz=sc.aqm.kern_hz, server_cc=group.server_cc or "")
        flows.append(flow)
        engine.schedule(start, EV_START, flow)
        t_stop = max(t_stop, end)
    return t_stop


def _run_engine(engine: Engine, t_stop: int, progress: Callable[[float], None] | None) -> tuple[float, float]:
    """Run the event loop to ``t_stop``; returns its wall and CPU seconds."""
    t_sim = time.perf_counter()
    c_sim = time.process_time()
    # the cyclic garbage collector off while the loop runs: it allocates a tuple or list per event, none of them in a
    # cycle, and each GC pass would walk every live packet for nothing (a few % of the loop)
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        engine.run(t_stop, progress)
    finally:
        if gc_was_on:
            gc.enable()
    return time.perf_counter() - t_sim, time.process_time() - c_sim


def _write_iperf3_json(job: SimJob, specs: list[StreamSpec], flows: list) -> list[str]:
    """One iperf3 ``-J`` JSON per connection on its client and on the server, as the real processes write them."""
    sc, topo = job.scenario, job.topology
    server = topo.server
    epoch = epoch_of(sc, job.repeat)
    conns: dict[tuple[int, int], list] = {}
    for sp in specs:
        conns.setdefault((sp.group, sp.connection), []).append(sp)
    server_dir = _host_dir(job.hosts_root, server, job.run_id, job.repeat)
    server_dir.mkdir(parents=True, exist_ok=True)
    server_ip = topo.address(server)
    json_files = []
    for (gi, ci), sps in conns.items():
        sp0 = sps[0]
        conn = Conn(host=sp0.host, system_name=sp0.host, cc=sp0.cc, port=sp0.port,
                    local_ip=topo.address(sp0.host), server_ip=server_ip, epoch_s=epoch,
                    duration_s=sc.duration // 1_000_000, seed=job.seed, size=sc.flows[gi].size or 0)
        fl = [flows[sp.fid] for sp in sps]
        cdir = _host_dir(job.hosts_root, sp0.host, job.run_id, job.repeat)
        cdir.mkdir(parents=True, exist_ok=True)
        cpath = cdir / layout.iperf3_client_name(sp0.host, sp0.cc, gi, ci)
        atomic_write_text(cpath, dumps(client_json(conn, fl)))
        spath = server_dir / layout.iperf3_server_name(sp0.port)
        atomic_write_text(spath, dumps(server_json(conn, fl, server)))
        json_files += [str(cpath), str(spath)]
    return json_files


def _flow_stats(sc: Scenario, specs: list[StreamSpec], flows: list) -> list[dict]:
    """What each stream's sender counted: throughput, retransmits, RTTs, ECN, completion time."""
    per_flow = []
    for sp, f in zip(specs, flows):
        secs = max(1e-9, ((f.done_ns or f.end_ns) - f.start_ns) / 1e9)
        per_flow.append({"flow_id": sp.fid, "host": sp.host, "cc": sp.cc, "port": sp.port,
                         "throughput_mbps": round((f.rcv_nxt - getattr(f, "cookie", 0)) * MSS * 8 / secs / 1e6, 4),
                         "retransmits": f.retrans,
                         "mean_rtt_ms": round(f.rtt_sum / f.rtt_n / 1e6, 3) if f.rtt_n else None,
                         "min_rtt_ms": round(f.rtt_min / 1e6, 3) if f.rtt_n else None,
                         "ce_marks": getattr(f, "ce_acked", None),
                         "ce_received": f.ce_received,
                         "ecn_codepoint": getattr(f, "ecn_cp", ECT1),
                         "segments_delivered": getattr(f, "bytes_rcvd", 0) // MSS,
                         "ecn_reductions": getattr(f, "marked_rtts", None),
                         "stack": sc.host(sp.host).stack,
                         "fct_ms": round((f.done_ns - f.start_ns) / 1e6, 3) if f.done_ns else None})
    return per_flow


def describe_repeat(scenario: Scenario, topology: Topology, run_id: str, repeat: int) -> dict[str, str]:
    """Host -> what that simulated host does in this repeat (for ``l4stb run --dry-run``)."""
    sc = scenario
    aqm = sc.aqm.resolved()
    out: dict[str, str] = {}
    rdir = layout.remote_repeat_dir(run_id, repeat)
    secs = sc.duration // 1_000_000
    server_ip = topology.address(topology.server)
    b = sc.bottleneck
    if aqm.engine == "dualpi2":
        prm = DualPI2Params.from_aqm(aqm, b)
        what = (f"DualPI2 (RFC 9332): target {format_duration(aqm.target)}, Tupdate {format_duration(aqm.tupdate)}, "
                f"alpha {aqm.alpha} Hz, beta {aqm.beta} Hz, k {aqm.coupling_factor:g}, p_Cmax {prm.p_cmax / P_ONE:.3g}, "
                f"L AQM {prm.native_aqm_text()}, L classifier {aqm.l4s_classifier} "
                f"({'ECT(1) and CE' if aqm.l4s_classifier == 'l4s_ect' else 'ECT(0), ECT(1) and CE'} to L), "
                f"scheduler {aqm.scheduler} "
                f"(classic_protection {aqm.classic_protection:.0%}), ECN {'on' if aqm.ecn else 'off'}")
        if aqm.name == "policy":
            what = (f"the distilled policy {aqm.policy} deciding every {aqm.every} packet(s) "
                    f"(log field decided_by = 1), {what} the rest")
    elif aqm.name in ("pie", "l4s-pie"):
        what = (f"{'FreeBSD PIE' if aqm.name == 'pie' else 'original l4s scheduler (PIE per sub-queue, L = max(own p, 2 p_C))'}: "
                f"target {format_duration(aqm.target)}, tupdate {format_duration(aqm.tupdate)}, alpha {aqm.alpha}, "
                f"beta {aqm.beta}, max_burst {format_duration(aqm.max_burst)}, max_ecnth {aqm.max_ecnth}, "
                f"kern.hz {aqm.kern_hz}")
    elif aqm.name in ("codel", "fq_codel"):
        what = (f"{'FQ-CoDel' if aqm.name == 'fq_codel' else 'CoDel'} ({aqm.codel_semantics}'s): target "
                f"{format_duration(aqm.target)}, interval {format_duration(aqm.interval)}, ECN {'on' if aqm.ecn else 'off'}"
                + (f", ce_threshold {format_duration(aqm.ce_threshold)}" if aqm.ce_threshold is not None else "")
                + (f", quantum {aqm.quantum} bytes, {aqm.flows} flow queues" if aqm.name == "fq_codel" else "")
                + (f", kern.hz {aqm.kern_hz}" if aqm.codel_semantics == "freebsd" else ""))
    else:
        what = "tail-drop FIFO"
    steps = b.schedule(sc.duration)
    changes = (f" then {len(steps)} rate step(s) from {'trace ' + b.rate_trace if b.rate_trace else 'its schedule'}"
               if steps else "")
    shaper = (f"htb rate {format_rate(b.rate)}{changes} burst {b.burst_bytes} bytes (tokens charged IP + 14 bytes of "
              f"Ethernet), delay {format_duration(b.delay)} after it" if b.shaper == "htb" else
              f"dummynet pipe {format_rate(b.rate)}{changes} delay {format_duration(b.delay)} (delay line after the queue)")
    out[topology.router] = (
        f"{shaper}, "
        f"buffer {b.limit_packets} pkts / {format_size(b.limit_bytes)}; AQM {what}; "
        f"one syslog line per decision -> {sc.logging.file} (newsyslog: rotate at {format_size(sc.logging.rotate_size)}, "
        f"keep {sc.logging.rotate_count}, {sc.logging.compress}), log set moved to {rdir}/"
    )
    per_host: dict[str, list[str]] = {}
    server_lines = []
    for gi, g in enumerate(sc.flows):
        ports = [sp.port for sp in sc.streams() if sp.group == gi and sp.stream == 0]
        host = sc.host(g.host)
        if g.cc == "prague":
            cc = ("udp_prague sender (rate-based Prague)" if host.prague == "udp"
                  else "-C prague (Linux TCP Prague v0.7)")
        elif g.cc == "udp":
            cc = f"-u -b {format_rate(g.rate)}" + (f" on {format_duration(g.on_time)} / off "
                                                   f"{format_duration(g.off_time)}" if g.on_time else "")
        else:
            cc = f"-C {g.cc}"
        if g.cc == "udp":
            ecn = {"not-ect": "not-ECT", "ect0": "ECT(0)", "ect1": "ECT(1)"}[g.ecn]
        elif g.cc == "dctcp" and host.stack == "linux":
            ecn = "ECT(0)"  # Linux's DCTCP (see l4stb.sim.tcp)
        else:
            ecn = "ECT(1)" if g.scalable else ("ECT(0)" if sc.ecn else "not-ECT")
        length = f"-n {g.size}" if g.short else f"-t {secs}"
        extra = sc.flow_delay_us(gi)
        notes = [f"{host.stack} stack"] + ([f"+{format_duration(extra)} one-way"] if extra else [])
        if g.short:
            notes.append(f"Poisson arrivals, mean gap {format_duration(g.mean_gap)}")
        for ci, port in enumerate(ports, start=1):
            per_host.setdefault(g.host, []).append(
                f"iperf3 -c {server_ip} -p {port} {length} -P {g.parallel} -J {cc} [{ecn}; {', '.join(notes)}]"
                f" > {rdir}/{layout.iperf3_client_name(g.host, g.cc, gi, ci)}"
                + (f" (starts at +{format_duration(g.start)})" if g.start and not g.short else ""))
            server_lines.append(f"iperf3 -s -p {port} -1 -J > {rdir}/{layout.iperf3_server_name(port)}")
    for host in topology.clients:
        out[host] = "; ".join(per_host.get(host, [])) or "idle in this scenario"
    out[topology.server] = "; ".join(server_lines)
    return out
