"""The simulator's side of the real-kernel calibration cells: one flow alone through DualPI2, per rate, in one table.

Usage: python bench/bench_sim_calibration.py [--rates 8,20,40] [--cc dctcp] [--stack linux]
                                             [--classifier any_ect] [--shaper htb] [--duration-s 20]
                                             [--seeds 1,2,3] [--step-packets N]

Each cell is the issue-20 set-up as the simulator runs it: the dumbbell with ``bottleneck.delay`` = the base
RTT (10 ms; the real testbed puts netem on the return path, the simulator its delay line after the queue, the
same RTT), ``bottleneck.shaper`` htb (the real-Linux router's ``htb rate R`` with tc's default burst; dummynet
for the FreeBSD testbed's serialising pipe), DualPI2 at Linux's defaults with ``aqm.l4s_classifier`` as given
(``any_ect`` puts Linux's ECT(0) DCTCP in the L queue, as ``tc qdisc ... dualpi2 any_ect`` does), one ``--cc``
flow on client2 with ``hosts.client2.stack``, iperf3 ``-t duration``. The seeds move only the flow's start
jitter (and DualPI2's draws, which a lone L flow at p' = 0 never makes), so the spread over seeds is tiny: it is
not a stand-in for the real kernel's run-to-run spread.

Columns, each measured in that run (mean and min..max over the seeds):

* goodput/rate: bytes the receiver got in order over the flow's life, over the bottleneck rate (iperf3's
  receiver figure, slow start included, as the real runs report it);
* mean RTT: the sender's mean of its RTT samples (iperf3's ``mean_rtt`` is the mean of srtt; close);
* L p50/p99, C p50/p99: sojourn of the packets each queue forwarded or marked (router log, whole run);
* mark rate: CE marks over packets dequeued, both queues (router log counters);
* L share: the fraction of the flow's packets that the classifier put in the L queue.

Prints a table for comparison with the real kernel's runs; asserts nothing (the bands live in
tests/test_sim_senders.py).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile

from rich.console import Console
from rich.table import Table

from l4stb.config import Aqm, load_scenario, load_topology
from l4stb.logformat import FIELD_INDEX, read_l4stb_rows
from l4stb.sim.runner import SimJob, simulate_repeat

QT = FIELD_INDEX["queue_type"]
QD = FIELD_INDEX["current_queue_delay"]
ACT = FIELD_INDEX["dequeue_action"]
ACTION_DROP, ACTION_MARK = 2, 3
HAS_CLASSIFIER = "l4s_classifier" in Aqm.model_fields
"""Versions before issue 20 have no classifier field: their DualPI2 sends ECT(1) and CE to L (l4s_ect)."""


def percentile(xs: list[int], p: float) -> float:
    """The p-th percentile of ``xs`` (microseconds) in milliseconds, nearest rank; NaN when empty."""
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] / 1000


def run_cell(rate_mbps: int, cc: str, stack: str, classifier: str, shaper: str, duration_s: int, seed: int,
             step_packets: int | None, root: str) -> dict:
    """Simulate one cell with one seed; return its measured figures."""
    overrides = [
        f"bottleneck.rate={rate_mbps}Mbit", "bottleneck.delay=10ms", f"bottleneck.shaper={shaper}", f"duration={duration_s}s",
        "logging.compress=none", *([f"aqm.l4s_classifier={classifier}"] if HAS_CLASSIFIER else []),
        f"flows=[{{host: client2, cc: {cc}}}]", f"hosts={{client2: {{stack: {stack}}}}}",
    ]
    if step_packets is not None:
        overrides.append(f"aqm.step_packets={step_packets}")
    sc = load_scenario("dctcp-8mbps-single", overrides)
    stats = simulate_repeat(SimJob(sc, load_topology(sc.topology), f"cal-{rate_mbps}-{seed}", 1, seed, root))
    rows = []
    for path in stats["log_files"]:
        rows += read_l4stb_rows(path)
    l_soj = [r[QD] for r in rows if r[QT] == 1 and r[ACT] != ACTION_DROP]
    c_soj = [r[QD] for r in rows if r[QT] == 0 and r[ACT] != ACTION_DROP]
    dequeued = sum(1 for r in rows if r[ACT] != ACTION_DROP)
    marks = sum(1 for r in rows if r[ACT] == ACTION_MARK)
    flow = stats["flows"][0]
    return {
        "util": flow["throughput_mbps"] / rate_mbps,
        "rtt": flow["mean_rtt_ms"],
        "l50": percentile(l_soj, 50),
        "l99": percentile(l_soj, 99),
        "c50": percentile(c_soj, 50),
        "c99": percentile(c_soj, 99),
        "mark": marks / dequeued if dequeued else float("nan"),
        "lshare": len(l_soj) / dequeued if dequeued else float("nan"),
    }


def summary(values: list[float], fmt: str) -> str:
    """``mean (min..max)``, or the one value; ``n/a`` when a seed had no value (no packet used that queue)."""
    if any(math.isnan(v) for v in values):
        return "n/a (queue unused)"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.fmean(values), fmt)} ({format(min(values), fmt)}..{format(max(values), fmt)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="8,20,40", help="bottleneck rates in Mbit/s, comma-separated")
    ap.add_argument("--cc", default="dctcp")
    ap.add_argument("--stack", default="linux", choices=("linux", "freebsd"))
    ap.add_argument("--classifier", default="any_ect", choices=("l4s_ect", "any_ect"))
    ap.add_argument("--shaper", default="htb", choices=("htb", "dummynet"),
                    help="the bottleneck: htb (the real-Linux testbed's) or dummynet (the FreeBSD testbed's)")
    ap.add_argument("--duration-s", type=int, default=20)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--step-packets", type=int, default=None, help="DualPI2's step on the L queue length instead")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    console = Console(width=160)
    table = Table(title=f"one {args.cc} flow ({args.stack} stack), {args.shaper} + DualPI2 {args.classifier}, 10 ms, "
                        f"{args.duration_s} s, seeds {args.seeds}")
    for col in ("Mbit/s", "goodput/rate", "mean RTT ms", "L p50 ms", "L p99 ms", "C p50 ms", "C p99 ms", "mark rate",
                "L share"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as root:
        for rate in (int(r) for r in args.rates.split(",")):
            cells = [run_cell(rate, args.cc, args.stack, args.classifier, args.shaper, args.duration_s, s,
                              args.step_packets, root)
                     for s in seeds]
            col = lambda k, cells=cells: [c[k] for c in cells]  # noqa: E731
            table.add_row(str(rate), summary(col("util"), ".3f"), summary(col("rtt"), ".2f"),
                          summary(col("l50"), ".3f"), summary(col("l99"), ".3f"), summary(col("c50"), ".3f"),
                          summary(col("c99"), ".3f"), summary(col("mark"), ".3f"),
                          summary(col("lshare"), ".2f"))
            console.print(f"done: {rate} Mbit/s", style="dim")
    console.print(table)


if __name__ == "__main__":
    main()
