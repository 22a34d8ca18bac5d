"""Benchmark the packet-level simulator: simulated seconds and packets per wall second for dctcp-8mbps at 3 rates, on both engines.

Usage: python bench/bench_sim.py [--repeats N] [--out DIR] [--engine both|pure|compiled]

Rows: the paper repeat (dctcp-8mbps: 60 s, 9 flows, 8 Mbit/s), and the same flows at 100 Mbit/s and
1 Gbit/s with shorter durations (10 s and 2 s: the packet count, not the simulated time, is what
costs), each on the pure-Python engine and on the compiled one (:mod:`l4stb.sim.compiled`; each engine runs in
its own interpreter, ``L4STB_PURE_PYTHON=1`` for the pure one). Logging is on: one syslog line per AQM
decision. Each row is the best of N runs (other processes on the machine only ever slow a run down).
``wall`` is the whole repeat (simulation, syslog lines, iperf3 JSON) minus the bzip2 compression of
rotated log files, which is shown on its own (``compress s``; the 100 Mbit/s and 1 Gbit/s rows write
more than the 10 MB rotate_size). ``cpu`` is the event loop's process CPU time, also without
compression. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from rich.console import Console
from rich.table import Table

CASES = [
    ("dctcp-8mbps (paper repeat)", "dctcp-8mbps", []),
    ("dctcp-8mbps @ 100 Mbit/s", "dctcp-8mbps", ["bottleneck.rate=100Mbit", "duration=10s"]),
    ("dctcp-8mbps @ 1 Gbit/s", "dctcp-8mbps", ["bottleneck.rate=1Gbit", "duration=2s",
                                                "bottleneck.limit_packets=10000", "bottleneck.limit_bytes=15MB"]),
]


def run_case(name: str, overrides: list[str], repeats: int, root: str) -> dict:
    from l4stb.config import load_scenario, load_topology
    from l4stb.sim.runner import SimJob, simulate_repeat

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
    return {k: best[k] for k in ("rate", "sim_s", "packets", "log_lines", "compress_wall_s", "total_wall_s",
                                 "sim_cpu_s", "compress_cpu_s", "events", "sim_wall_s", "engine")}


def run_engine(engine: str, repeats: int, root: str) -> list[dict]:
    """Every case on one engine, in a fresh interpreter (the engine is chosen once per process)."""
    env = dict(os.environ)
    env.pop("L4STB_PURE_PYTHON", None)
    if engine == "pure":
        env["L4STB_PURE_PYTHON"] = "1"
    proc = subprocess.run([sys.executable, __file__, "--worker", "--repeats", str(repeats), "--out", root],
                          capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"the {engine} run failed: {proc.stderr[-2000:]}")
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    if engine == "compiled" and not rows[0]["engine"].startswith("compiled"):
        sys.exit(f"no compiled engine to measure ({rows[0]['engine']})")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="Host folder root for the artifacts (default: a temp dir).")
    ap.add_argument("--engine", choices=("both", "pure", "compiled"), default="both")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps([run_case(name, ov, args.repeats, args.out) for _, name, ov in CASES]))
        return
    console = Console(width=190)
    table = Table(title="l4stb packet-level simulator, logging on (best of %d, one core)" % args.repeats)
    for col in ("scenario", "rate", "engine", "sim s", "packets", "log lines", "compress s", "wall s",
                "cpu s (loop)", "sim s / wall s", "packets / wall s", "events / s", "speed-up"):
        table.add_column(col, justify="right" if col not in ("scenario", "engine") else "left")
    engines = ["pure", "compiled"] if args.engine == "both" else [args.engine]
    with tempfile.TemporaryDirectory() as tmp:
        results = {e: run_engine(e, args.repeats, args.out or tmp) for e in engines}
    for i, (label, _, _) in enumerate(CASES):
        for e in engines:
            s = results[e][i]
            wall = s["total_wall_s"]
            base = results[engines[0]][i]["total_wall_s"]
            table.add_row(label, f"{s['rate'] / 1e6:g} Mbit/s", s["engine"], f"{s['sim_s']:.1f}", f"{s['packets']:,}",
                          f"{s['log_lines']:,}", f"{s['compress_wall_s']:.2f}", f"{wall:.3f}",
                          f"{s['sim_cpu_s'] - s['compress_cpu_s']:.3f}",
                          f"{s['sim_s'] / wall:,.1f}", f"{s['packets'] / wall:,.0f}",
                          f"{s['events'] / (s['sim_wall_s'] - s['compress_wall_s']):,.0f}", f"{base / wall:.2f}x")
    console.print(table)


if __name__ == "__main__":
    main()
