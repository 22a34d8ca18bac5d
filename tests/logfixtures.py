"""Small router logs, iperf3 JSON and run folders made in the tests (fetch, parser, importer, pools).

Lines are built from l4stb.logformat's field list, never from a copy of it.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

from l4stb.config import load_topology
from l4stb.layout import remote_repeat_dir
from l4stb.logformat import FIELD_NAMES, L4STB_PREFIX, OLD_FIELD_NAMES, OLD_PREFIX, PAPER_PREFIX, PROB_SCALE
from l4stb.manifest import Manifest, RepeatRecord, save_manifest
from l4stb.providers.sim import SimProvider
from l4stb.workspace import Workspace

COMPRESSORS = {".bz2": bz2.compress, ".gz": gzip.compress, ".xz": lzma.compress, "": lambda b: b}


def values(i: int, *, queue: int = 0, action: int = 1, delay_us: int = 10_000, length: int = 1500,
           prob: float = 0.05) -> dict[str, int]:
    """The 24 paper fields of decision number ``i`` (dequeue_count = i, so rows are told apart)."""
    v = dict.fromkeys(FIELD_NAMES, 0)
    v.update(queue_type=queue, qdelay_reference=15_000, tupdate=16_000, flags=1,
             drop_probability=int(prob * PROB_SCALE),
             current_queue_delay=delay_us, previous_queue_delay=delay_us // 2,
             accumulated_probability=int(prob / 2 * PROB_SCALE), measurement_start_time=1000 * i, dequeue_count=i,
             total_packets=i, total_bytes=1500 * i, queue_length=3, length_in_bytes=4500, total_drops=0,
             packet_length=length, dequeue_action=action)
    return v


def syslog(stamp: str = "Dec 30 10:00:00", host: str = "dummynet-VM1", tag: str = "") -> str:
    return f"{stamp} {host} kernel: {tag}"


def paper_line(v: dict[str, int], prefix: str = "", trailing: str = " ") -> str:
    return f"{prefix}{PAPER_PREFIX},{','.join(str(v[n]) for n in FIELD_NAMES)},end{trailing}"


def old_line(v: dict[str, int], prefix: str = "") -> str:
    return f"{prefix}{OLD_PREFIX},{','.join(str(v[n]) for n in OLD_FIELD_NAMES)},end "


def l4stb_line(v: dict[str, int], ts_us: int, flow_id: int, prefix: str = "") -> str:
    return f"{prefix}{L4STB_PREFIX},{','.join(str(v[n]) for n in FIELD_NAMES)},{ts_us},{flow_id},end"


def sim_log_lines(n: int, *, start: int = 0, host: str = "router", t0_us: int = 0, step_us: int = 1000,
                  actions=(1,), queues=(0, 1)) -> list[str]:
    """Lines as the simulated router writes them (syslog prefix + dualpi2 tag + l4stb line)."""
    out = []
    for i in range(start, start + n):
        t = t0_us + (i - start) * step_us
        sec = 0 + t // 1_000_000
        stamp = f"Nov 21 10:{sec // 60 % 60:02d}:{sec % 60:02d}"
        v = values(i, queue=queues[i % len(queues)], action=actions[i % len(actions)], delay_us=1000 * (i % 20))
        out.append(l4stb_line(v, t, i % 5, prefix=syslog(stamp, host, "dualpi2: ")))
    return out


def write_log(path: Path, lines: list[str], ext: str = "", final_newline: bool = True) -> Path:
    path = Path(str(path) + ext)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + ("\n" if final_newline and lines else "")
    path.write_bytes(COMPRESSORS[ext](text.encode()))
    return path


def iperf3_doc(host: str = "client1", cc: str = "cubic", intervals: int = 5, sockets=(5,), server: bool = False,
               mbps: float = 2.0) -> dict:
    start = {"version": "iperf 3.17.1", "system_info": f"FreeBSD {host} 14.1-RELEASE amd64",
             "connected": [{"socket": s} for s in sockets], "test_start": {"protocol": "TCP", "duration": intervals}}
    if server:
        start["accepted_connection"] = {"host": "10.0.1.11", "port": 50000}
    else:
        start["connecting_to"] = {"host": "10.0.3.13", "port": 5101}
    ivs = []
    for k in range(intervals):
        streams = [{"socket": s, "start": float(k), "end": float(k + 1), "seconds": 1.0,
                    "bytes": int(mbps * 1e6 / 8), "bits_per_second": mbps * 1e6, "retransmits": k % 2,
                    "snd_cwnd": 10000 + k, "rtt": 20000 + k, "rttvar": 1000, "omitted": False, "sender": True}
                   for s in sockets]
        ivs.append({"streams": streams, "sum": {}})
    return {"start": start, "intervals": ivs,
            "end": {"sender_tcp_congestion": cc, "receiver_tcp_congestion": cc}}


def sim_testbed(root: Path) -> Workspace:
    """A workdir with the sim testbed 'up' (host folders and testbed.json), no simulator involved."""
    ws = Workspace.at(root)
    provider = SimProvider(ws)
    provider.up(load_topology("dumbbell-4")).save(ws)
    return ws


def sim_run(ws: Workspace, run_id: str = "dctcp-8mbps-20250101T000000Z", repeats=(1, 2), lines_per_repeat: int = 300,
            rotate: bool = True) -> Manifest:
    """A finished run's files left on the simulated hosts, as the layout says, plus its manifest."""
    topo = load_topology("dumbbell-4")
    m = Manifest(run_id=run_id, status="complete", provider="sim", topology=topo.model_dump(mode="json"),
                 repeats={str(r): RepeatRecord(repeat=r, seed=r, status="ok") for r in repeats})
    save_manifest(ws, m)
    for r in repeats:
        rdir = remote_repeat_dir(run_id, r).lstrip("/")
        router = ws.host_dir("router") / rdir
        lines = sim_log_lines(lines_per_repeat, start=r * 100_000)
        if rotate:
            third = len(lines) // 3
            write_log(router / "dualpi2.log.1", lines[:third], ".bz2")
            write_log(router / "dualpi2.log.0", lines[third:2 * third], ".bz2")
            write_log(router / "dualpi2.log", lines[2 * third:])
        else:
            write_log(router / "dualpi2.log", lines)
        for host, cc in (("client1", "cubic"), ("client2", "dctcp")):
            p = ws.host_dir(host) / rdir / f"{host}-{cc}-g0-c1.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(iperf3_doc(host, cc)))
        s = ws.host_dir("server") / rdir / "server-5101.json"
        s.parent.mkdir(parents=True, exist_ok=True)
        s.write_text(json.dumps(iperf3_doc("server", "cubic", server=True)))
    return m


def raw_run(ws: Workspace, run_id: str, logs: dict[int, list[str]], *, iperf3: dict[int, list[dict]] | None = None,
            router_host: str = "router") -> str:
    """A run whose raw/ folder is already filled (as after fetch-logs), for parser and pool tests."""
    topo = load_topology("dumbbell-4")
    m = Manifest(run_id=run_id, status="complete", provider="sim", topology=topo.model_dump(mode="json"),
                 repeats={str(r): RepeatRecord(repeat=r, seed=r, status="ok") for r in logs},
                 steps={"fetch": {"status": "done"}})
    save_manifest(ws, m)
    for r, lines in logs.items():
        write_log(ws.raw_dir(run_id) / router_host / f"r{r:02d}" / "dualpi2.log", lines)
    for r, docs in (iperf3 or {}).items():
        for k, doc in enumerate(docs, start=1):
            host = doc["start"]["system_info"].split()[1]
            p = ws.raw_dir(run_id) / host / f"r{r:02d}" / f"{host}-{doc['end']['sender_tcp_congestion']}-g0-c{k}.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(doc))
    return run_id
