"""Benchmark the packet-level simulator: simulated seconds and packets per wall second for dctcp-8mbps at 3 rates.

Usage: python bench/bench_sim.py [--repeats N] [--out DIR]

Rows: the paper repeat (dctcp-8mbps: 60 s, 9 flows, 8 Mbit/s), and the same flows at 100 Mbit/s and
1 Gbit/s with shorter durations (10 s and 2 s: the packet count, not the simulated time, is what
costs). Each row is the best of N runs (other processes on the machine only ever slow a run down).
``wall`` is the whole repeat (simulation, syslog lines, iperf3 JSON) minus the bzip2 compression of
rotated log files, which is shown on its own (``compress s``; the 100 Mbit/s and 1 Gbit/s rows write
more than the 10 MB rotate_size). ``cpu`` is the event loop's process CPU time, also without
compression. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from rich.console import Console
from rich.table import Table

from l4stb.config import load_scenario, load_topology
from l4stb.sim.runner import SimJob, simulate_repeat

CASES = [
    ("dctcp-8mbps (paper repeat)", "dctcp-8mbps", []),
    ("dctcp-8mbps @ 100 Mbit/s", "dctcp-8mbps", ["bottleneck.rate=100Mbit", "duration=10s"]),
    ("dctcp-8mbps @ 1 Gbit/s", "dctcp-8mbps", ["bottleneck.rate=1Gbit", "duration=2s",
                                                "bottleneck.limit_packets=10000", "bottleneck.limit_bytes=15MB"]),
]


def run_case(name: str, overrides: list[str], repeats: int, root: str) -> dict:
    sc = load_scenario(name, overrides)
    topo = load_topology(sc.topology)
    best = None
    for i in range(repeats):
        t0 = time.perf_counter()
        stats = simulate_repeat(SimJob(sc, topo, f"bench-{i}", 1, sc.repeat_seed(1), root))
        stats["total_wall_s"] = time.perf_counter() - t0 - stats["compress_wall_s"]
        if best is None or stats["total_wall_s"] < best["total_wall_s"]:
            best = stats
    best["rate"] = sc.bottleneck.rate
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="Host folder root for the artifacts (default: a temp dir).")
    args = ap.parse_args()
    console = Console(width=170)
    table = Table(title="l4stb packet-level simulator (best of %d, one core)" % args.repeats)
    for col in ("scenario", "rate", "sim s", "packets", "log lines", "compress s", "wall s", "cpu s (loop)",
                "sim s / wall s", "packets / wall s", "events / s"):
        table.add_column(col, justify="right" if col != "scenario" else "left")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or tmp
        for label, name, overrides in CASES:
            s = run_case(name, overrides, args.repeats, root)
            wall = s["total_wall_s"]
            table.add_row(label, f"{s['rate'] / 1e6:g} Mbit/s", f"{s['sim_s']:.1f}", f"{s['packets']:,}",
                          f"{s['log_lines']:,}", f"{s['compress_wall_s']:.2f}", f"{wall:.3f}",
                          f"{s['sim_cpu_s'] - s['compress_cpu_s']:.3f}",
                          f"{s['sim_s'] / wall:,.1f}", f"{s['packets'] / wall:,.0f}",
                          f"{s['events'] / (s['sim_wall_s'] - s['compress_wall_s']):,.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
