"""Coexistence under DualPI2: DCTCP/Cubic and Prague/Cubic throughput ratios and L/C queue delays, per sender stack.

Usage: python bench/bench_coexistence.py [--rates 8,40,100] [--stacks freebsd,linux]
                                         [--semantics linux,rfc9332-thlen] [--duration-s 20] [--seed 1]

For each bottleneck rate (Mbit/s), sender stack (both clients run it: ``hosts.<client>.stack``) and DualPI2
step semantics (``aqm.step_semantics``, when this version of l4stb has that field; otherwise the one
column is labelled ``as built``), two simulated repeats of the dumbbell at 10 ms: Cubic on client1 against
DCTCP on client2, and Cubic against Prague (udp_prague on FreeBSD hosts, TCP Prague v0.7 on Linux hosts).

Columns: the scalable flow's goodput over Cubic's (whole run, slow start included), the utilisation, and the
L and C sojourn percentiles (p50/p99, ms) from the router log after a warm-up of 2 s, at 10 us resolution
(``aqm.kern_hz=100000``). Runs are short (``--duration-s``, default 20 s at 8 Mbit/s and 10 s above), so
they show the regime, not converged long-run shares. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from rich.console import Console
from rich.table import Table

from l4stb.config import Aqm, load_scenario, load_topology
from l4stb.logformat import FIELD_INDEX, read_l4stb_rows
from l4stb.sim.runner import SimJob, simulate_repeat

QT = FIELD_INDEX["queue_type"]
QD = FIELD_INDEX["current_queue_delay"]
ACT = FIELD_INDEX["dequeue_action"]
TS = FIELD_INDEX["timestamp_us"]
WARMUP_US = 2_000_000




def percentile(xs: list[int], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] / 1000


def run_mix(rate: int, stack: str, semantics: str | None, scalable: str, duration_s: int, seed: int, root: str) -> dict:
    overrides = [
        f"bottleneck.rate={rate}Mbit", f"duration={duration_s}s", "aqm.kern_hz=100000", "logging.compress=none",
        f"flows=[{{host: client1, cc: cubic}}, {{host: client2, cc: {scalable}}}]",
        f"hosts={{client1: {{stack: {stack}}}, client2: {{stack: {stack}}}}}",
    ]
    if semantics is not None:
        overrides.append(f"aqm.step_semantics={semantics}")
    sc = load_scenario("dctcp-8mbps", overrides)
    t0 = time.perf_counter()
    stats = simulate_repeat(SimJob(sc, load_topology(sc.topology), f"bench-{rate}-{stack}-{scalable}", 1, seed, root))
    wall = time.perf_counter() - t0
    rows = []
    for path in stats["log_files"]:
        rows += read_l4stb_rows(path)
    delays = {q: [r[QD] for r in rows if r[QT] == q and r[ACT] != 2 and r[TS] >= WARMUP_US] for q in (0, 1)}
    cubic, other = stats["flows"][0]["throughput_mbps"], stats["flows"][1]["throughput_mbps"]
    return {"ratio": other / cubic if cubic > 0 else float("inf"), "util": stats["utilisation"],
            "L": (percentile(delays[1], 50), percentile(delays[1], 99)),
            "C": (percentile(delays[0], 50), percentile(delays[0], 99)), "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="8,40,100", help="bottleneck rates in Mbit/s, comma-separated")
    ap.add_argument("--stacks", default="freebsd,linux")
    has_semantics = "step_semantics" in Aqm.model_fields
    ap.add_argument("--semantics", default="linux,rfc9332-thlen" if has_semantics else "",
                    help="aqm.step_semantics values (empty: the AQM as built, for versions without the field)")
    ap.add_argument("--duration-s", type=int, default=0, help="simulated seconds (default 20 at 8 Mbit/s, 10 above)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    semantics = [s for s in args.semantics.split(",") if s] or [None]
    console = Console(width=200)
    table = Table(title="DualPI2 coexistence at 10 ms base delay (one seeded repeat per row; see the module docstring)")
    for col in ("Mbit/s", "stack", "step semantics", "DCTCP/Cubic", "util", "L p50/p99 ms", "C p50/p99 ms",
                "Prague/Cubic", "util ", "L p50/p99 ms ", "C p50/p99 ms ", "wall s"):
        table.add_column(col, justify="right" if col not in ("stack", "step semantics") else "left")
    with tempfile.TemporaryDirectory() as root:
        for rate in (int(r) for r in args.rates.split(",")):
            duration = args.duration_s or (20 if rate <= 8 else 10)
            for stack in args.stacks.split(","):
                for sem in semantics:
                    d = run_mix(rate, stack, sem, "dctcp", duration, args.seed, root)
                    p = run_mix(rate, stack, sem, "prague", duration, args.seed, root)
                    fmt = lambda pair: ("n/a (empty)" if pair[0] != pair[0]  # noqa: E731
                                        else f"{pair[0]:.2f}/{pair[1]:.2f}")
                    table.add_row(str(rate), stack, sem or "as built", f"{d['ratio']:.2f}", f"{d['util']:.1%}",
                                  fmt(d["L"]), fmt(d["C"]), f"{p['ratio']:.2f}", f"{p['util']:.1%}", fmt(p["L"]),
                                  fmt(p["C"]), f"{d['wall'] + p['wall']:.1f}")
                    console.print(f"done: {rate} Mbit/s, {stack}, {sem or 'as built'}", style="dim")
    console.print(table)


if __name__ == "__main__":
    main()
