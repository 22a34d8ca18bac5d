"""Print each simulated TCP sender's throughput, largest cwnd and receive window, seed by seed (asserts nothing).

    python bench/sim_window_cap.py --scenario paper-l4s-pie-10mbps-20ms --set bottleneck.match=egress --seeds 1-4

Why: a FreeBSD sender's window can run away when a stale PRR ``recover_fs`` lets it send many segments per
delivered one (issue 25, fix A); a real sender is held by the receiver's advertised window. This shows whether
the simulated one is (largest cwnd against the window the receiver last advertised, from the client's iperf3
JSON: ``max_snd_cwnd`` and ``max_snd_wnd``). Run it from each checkout to compare models.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from l4stb.config import load_scenario, load_topology
from l4stb.errors import L4stbError
from l4stb.sim.runner import SimJob, simulate_repeat
from l4stb.sim.tcp import MSS


def seeds(text: str) -> list[int]:
    """``1-4`` or ``1,3``: the seeds to run."""
    if "-" in text:
        lo, hi = text.split("-", 1)
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def senders(stats: dict) -> list[dict]:
    """The sender half of each client iperf3 JSON's end summary (the server's files are left out)."""
    out = []
    for path in stats["iperf3_files"]:
        doc = json.loads(Path(path).read_text())
        if "connecting_to" not in doc.get("start", {}):
            continue
        for s in doc["end"]["streams"]:
            out.append(s["sender"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--set", action="append", default=[], help="scenario override KEY=VALUE (repeatable)")
    ap.add_argument("--seeds", default="1-4")
    args = ap.parse_args()
    try:
        sc = load_scenario(args.scenario, args.set)
    except L4stbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    topo = load_topology(sc.topology)
    print(f"{'seed':>4}  {'total Mbit/s':>12}  per flow: Mbit/s, max cwnd (segs), max rwnd (segs), mean RTT (ms)")
    for seed in seeds(args.seeds):
        with tempfile.TemporaryDirectory(prefix="l4stb-wcap-") as tmp:
            stats = simulate_repeat(SimJob(sc, topo, "wcap", 1, seed, tmp))
            rows = senders(stats)
        total = sum(r["bits_per_second"] for r in rows) / 1e6
        cells = "  ".join(f"{r['bits_per_second'] / 1e6:.2f}/{r['max_snd_cwnd'] / MSS:.0f}/"
                          f"{r['max_snd_wnd'] / MSS:.0f}/{r['mean_rtt'] / 1000:.0f}" for r in rows)
        print(f"{seed:>4}  {total:>12.2f}  {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
