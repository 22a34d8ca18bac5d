"""How much a calibration cell's result depends on the phase of the ACK clock: the simulator's side of a cell with
the base RTT moved by fractions of one packet time.

Usage: python bench/bench_sim_phase.py [--cells dctcp-any-ect-20m-10ms,cubic-dctcp-any-ect-40m-10ms]
                                       [--steps 6] [--duration-s 10] [--seed 1]

Why: with one or two long flows and no cross traffic, a packet-level model is a deterministic machine. Each
arrival lands at the same point of the bottleneck's departure grid, fixed by the base RTT modulo one packet time
(605.6 us at 20 Mbit/s for a 1514-byte frame). Move the RTT by a tenth of a millisecond and every packet waits a
different share of a slot, so the L queue's sojourn, the step marks and the split between two flows all move.
A real kernel sets its phase with per-packet processing times that no model of the protocol holds, and those
times vary. So a cell's simulated value is one sample of a range, and this bench prints the range.

For each cell of the calibration matrix (:mod:`l4stb.calibrate`, the simulator's side: Linux senders behind
htb), the bottleneck's one-way delay is moved by ``k / steps`` of one packet time, for k = 0 .. steps-1, and one
repeat is run at each offset. Columns, each measured in that run: utilisation (busy time of the bottleneck over
the run), sojourn p50/p99 (every packet the bottleneck sent, both queues: in the one-DCTCP cells, the L queue's),
the L mark rate (CE marks in the L queue over the segments the scalable flows delivered), and each CC's share of
the goodput. The last rows give the range over offsets.

Prints tables; asserts nothing. The calibration's verdicts (docs/real-linux.md) are read against it.
"""

from __future__ import annotations

import argparse
import collections
import tempfile

import numpy as np
from rich.console import Console
from rich.table import Table

from l4stb.calibrate import matrix
from l4stb.config import Scenario, load_topology
from l4stb.sim.runner import SimJob, simulate_repeat

FRAME_BYTES = 1514
"""What htb charges per packet (the Ethernet header included), as the simulator's htb shaper does."""


def run_offset(cell, offset_us: float, duration_s: int, seed: int) -> dict:
    sc = cell.scenario(duration_s=duration_s, repeats=1, seed=seed, provider="sim")
    doc = sc.model_dump(mode="json")
    doc["bottleneck"]["delay"] = f"{int(round(cell.rtt_ms * 1000 + offset_us))}us"
    sc = Scenario.model_validate(doc)
    with tempfile.TemporaryDirectory() as d:
        st = simulate_repeat(SimJob(sc, load_topology(sc.topology), "phase", 1, seed, d), collect_sojourn=True)
    sojourn = np.asarray(st["sojourn_us"], dtype=float)
    goodput = collections.defaultdict(float)
    for f in st["flows"]:
        goodput[f["cc"]] += f["throughput_mbps"]
    total = sum(goodput.values()) or float("nan")
    l_sent = sum(f["segments_delivered"] for f in st["flows"] if f["cc"] in ("dctcp", "prague"))
    return {"util": st["utilisation"],
            "p50": float(np.percentile(sojourn, 50)) / 1000 if sojourn.size else float("nan"),
            "p99": float(np.percentile(sojourn, 99)) / 1000 if sojourn.size else float("nan"),
            "mark": st["marks"]["L"] / l_sent if l_sent else float("nan"),
            "shares": {cc: v / total for cc, v in sorted(goodput.items())}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="dctcp-any-ect-20m-10ms,dctcp-any-ect-40m-10ms,cubic-dctcp-any-ect-40m-10ms")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--duration-s", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    cells = {c.name: c for c in matrix("full")}
    console = Console(width=160)
    for name in args.cells.split(","):
        if name not in cells:
            raise SystemExit(f"no calibration cell {name!r}; cells: {', '.join(sorted(cells))}")
        cell = cells[name]
        slot_us = FRAME_BYTES * 8 / cell.rate_mbps
        table = Table(title=f"{name}: base RTT moved within one packet time ({slot_us:.1f} us)")
        for col in ("offset (us)", "utilisation", "sojourn p50 (ms)", "sojourn p99 (ms)", "L mark rate", "shares"):
            table.add_column(col, justify="right")
        rows = []
        for k in range(args.steps):
            off = k * slot_us / args.steps
            r = run_offset(cell, off, args.duration_s, args.seed)
            rows.append(r)
            table.add_row(f"{off:.0f}", f"{r['util']:.3f}", f"{r['p50']:.3f}", f"{r['p99']:.3f}", f"{r['mark']:.3f}",
                          "; ".join(f"{cc} {v:.3f}" for cc, v in r["shares"].items()))
        for label, fn in (("min", min), ("max", max)):
            ccs = rows[0]["shares"].keys()
            table.add_row(label, f"{fn(r['util'] for r in rows):.3f}", f"{fn(r['p50'] for r in rows):.3f}",
                          f"{fn(r['p99'] for r in rows):.3f}", f"{fn(r['mark'] for r in rows):.3f}",
                          "; ".join(f"{cc} {fn(r['shares'][cc] for r in rows):.3f}" for cc in ccs))
        console.print(table)


if __name__ == "__main__":
    main()
