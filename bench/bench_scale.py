"""The whole analysis path on growing log sets: time and peak memory of each step, from 8 Mbit/s to 1 Gbit/s.

    python bench/bench_scale.py --quick              # minutes: 8 Mbit/s 60 s, 100 Mbit/s 10 s, 1 Gbit/s 3 s, 1 repeat
    python bench/bench_scale.py                      # the issue's size: 8, 100 and 1000 Mbit/s, 9 flows, 60 s, 3 repeats
    python bench/bench_scale.py --rates 1Gbit --duration 20s --repeats 1 --json out.json
    python bench/bench_scale.py --rates 1Gbit --duration 3s --replicate 20 --repeats 3   # 60 s worth, from 3 s

Each size is the paper repeat (``dctcp-8mbps``: 9 flows through DualPI2) at another bottleneck rate, on the sim
testbed in a temporary workdir. Every step runs in a child process, the way a user runs it:

* ``simulate``  -- ``l4stb run`` (the log set is written by the simulator's syslogd/newsyslog emulation: .bz2);
* ``fetch``     -- ``l4stb fetch-logs`` (copies and checks the log set into the run folder);
* ``parse``     -- ``ensure_parsed``: logs to data/packets.parquet (one process per rotated file);
* ``pool``      -- ``build_pool``: the experience pool (paper7 features, paper reward) from the parsed run;
* ``summary``   -- ``l4stb summary --json``;
* ``report``    -- ``l4stb report`` (figures and HTML).

Per step it prints the wall time and two peak memories: ``peak RSS`` is the largest resident set of any one
process of the step (``ru_maxrss`` from ``wait4``), ``tree RSS`` the largest sum over the step's process tree
(the parse workers included), sampled every 50 ms with psutil. The goal is 2 GB per step. Prints a table;
asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

QUICK = [("8Mbit", "60s"), ("100Mbit", "10s"), ("1Gbit", "3s")]
FULL = [("8Mbit", "60s"), ("100Mbit", "60s"), ("1Gbit", "60s")]
HIGH_RATE = ["bottleneck.limit_packets=10000", "bottleneck.limit_bytes=15MB"]
"""At 1 Gbit/s the 8 Mbit/s scenario's queue limit is a few packets; bench/bench_sim.py uses the same limits."""


@dataclass
class StepResult:
    rate: str
    duration: str
    repeats: int
    step: str
    wall_s: float
    peak_rss_mb: float
    tree_rss_mb: float
    decisions: int = 0
    log_mb: float = 0.0


def _tree_rss(proc) -> int:
    try:
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except Exception:  # a worker that just ended
                pass
        return total
    except Exception:
        return 0


def run_step(cmd: list[str], env: dict, log_path: Path) -> tuple[float, float, float]:
    """Run one step as a child; (wall s, peak RSS of one process MB, peak sampled tree RSS MB)."""
    import psutil

    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        log.flush()
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        peak = [0]
        done = threading.Event()

        def sample() -> None:
            proc = psutil.Process(child.pid)
            while not done.is_set():
                peak[0] = max(peak[0], _tree_rss(proc))
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"step failed ({child.returncode}): {' '.join(cmd)}; see {log_path}")
    return wall, usage.ru_maxrss / 1024, peak[0] / 2**20  # ru_maxrss is in KiB on Linux (getrusage(2))


PARSE = ("from l4stb.workspace import Workspace; from l4stb.analysis.packets import ensure_parsed; import sys; "
         "r = ensure_parsed(Workspace.at(sys.argv[1]), sys.argv[2]); print(r.packets)")
POOL = ("from l4stb.workspace import Workspace; from l4stb.analysis.pool_build import build_pool; import sys; "
        "build_pool(Workspace.at(sys.argv[1]), [sys.argv[2]])")


def replicate_log_set(folder: Path, times: int) -> None:
    """Make a repeat's router log set ``times`` as long by repeating its rotated files in order, renumbered as
    newsyslog would have numbered them (plain copies of the live file become uncompressed rotated files).

    A long log set without simulating it: what the analysis steps cost grows with the lines, not with their
    content, and the files stay exactly as the simulator wrote them."""
    from l4stb.logfiles import order_log_files

    files = order_log_files([p for p in folder.iterdir() if p.name.startswith("dualpi2.log")])
    live = files[-1]
    blobs = [(p.read_bytes(), p.name.endswith(".bz2")) for p in files]
    for p in files:
        p.unlink()
    chain = [b for _ in range(times) for b in blobs]
    for age, (data, compressed) in enumerate(reversed(chain[:-1])):
        (folder / f"dualpi2.log.{age}{'.bz2' if compressed else ''}").write_bytes(data)
    live.write_bytes(chain[-1][0])


def one_size(rate: str, duration: str, repeats: int, root: Path, console: Console,
             replicate: int = 1) -> list[StepResult]:
    work = root / f"w-{rate}-{duration}"
    env = dict(os.environ, L4STB_WORKDIR=str(work), COLUMNS="150", NO_COLOR="1")
    cli = [sys.executable, "-m", "l4stb.cli"]
    log = root / f"{rate}-{duration}.log"
    subprocess.run([*cli, "up"], env=env, check=True, capture_output=True)
    sets = [f"bottleneck.rate={rate}", f"duration={duration}"]
    if rate.lower().endswith("gbit"):
        sets += HIGH_RATE
    steps: list[tuple[str, list[str]]] = [
        ("simulate", [*cli, "run", "--scenario", "dctcp-8mbps", "--repeats", str(repeats),
                      *[a for s in sets for a in ("--set", s)]]),
    ]
    out: list[StepResult] = []
    for name, cmd in steps:
        wall, rss, tree = run_step(cmd, env, log)
        out.append(StepResult(rate, duration, repeats, name, wall, rss, tree))
    run_id = sorted(p.name for p in (work / "runs").iterdir())[-1]
    if replicate > 1:
        t0 = time.perf_counter()
        for rdir in sorted((work / "hosts" / "router").rglob(f"{run_id}/r*")):
            replicate_log_set(rdir, replicate)
        console.log(f"{rate} {duration}: log sets replicated x{replicate} in {time.perf_counter() - t0:.0f} s")
    for name, cmd in [
        ("fetch", [*cli, "fetch-logs", "--run", run_id]),
        ("parse", [sys.executable, "-c", PARSE, str(work), run_id]),
        ("pool", [sys.executable, "-c", POOL, str(work), run_id]),
        ("summary", [*cli, "summary", "--run", run_id, "--json"]),
        ("report", [*cli, "report", "--run", run_id]),
    ]:
        console.log(f"{rate} {duration} x{repeats}: {name}")
        wall, rss, tree = run_step(cmd, env, log)
        out.append(StepResult(rate, duration, repeats, name, wall, rss, tree))
        console.log(f"  {name}: {wall:.1f} s, peak RSS {rss:.0f} MB, tree {tree:.0f} MB")  # kept if a later step is cut
    parse = json.loads((work / "runs" / run_id / "data" / "parse.json").read_text())
    log_mb = sum(p.stat().st_size for p in (work / "runs" / run_id / "raw").rglob("*") if p.is_file()
                 and ".log" in p.name) / 1e6
    for r in out:
        r.decisions, r.log_mb = int(parse["parsed"]), log_mb
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs at each rate, 1 repeat (minutes)")
    ap.add_argument("--rates", nargs="*", default=None, help="bottleneck rates (default: 8Mbit 100Mbit 1Gbit)")
    ap.add_argument("--duration", default=None, help="simulated seconds per repeat for every rate given")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--replicate", type=int, default=1,
                    help="repeat each simulated log set this many times before fetch (a long run without simulating it)")
    ap.add_argument("--keep", default=None, help="keep the workdirs under this folder (default: a temp folder)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.rates:
        sizes = [(r, args.duration or dict(sizes).get(r, "60s")) for r in args.rates]
    elif args.duration:
        sizes = [(r, args.duration) for r, _ in sizes]
    repeats = args.repeats or (1 if args.quick else 3)
    console = Console(width=150)
    rows: list[StepResult] = []
    with tempfile.TemporaryDirectory(prefix="l4stb-scale-") as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        for rate, duration in sizes:
            rows += one_size(rate, duration, repeats, root, console, args.replicate)
    table = Table(title=f"the analysis path at scale (dctcp-8mbps flows, {repeats} repeat(s)"
                        + (f", log sets x{args.replicate}" if args.replicate > 1 else "") + "; "
                        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
    for col in ("rate", "duration", "decisions", "log set MB", "step", "wall s", "peak RSS MB", "tree RSS MB"):
        table.add_column(col, justify="left" if col in ("rate", "step") else "right")
    for r in rows:
        table.add_row(r.rate, r.duration, f"{r.decisions:,}", f"{r.log_mb:.1f}", r.step, f"{r.wall_s:.1f}",
                      f"{r.peak_rss_mb:.0f}", f"{r.tree_rss_mb:.0f}")
    console.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=1))


if __name__ == "__main__":
    main()
