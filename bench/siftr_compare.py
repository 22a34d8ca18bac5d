"""Print simulated FreeBSD senders against the public FreeBSD 14.1 SIFTR traces, cell by cell (asserts nothing).

    python bench/siftr_compare.py --traces /path/to/FreeBSD-L4S-Experiments [--repeats 5] [--cell "l4s 1Mbps"]

``--traces``: a checkout of github.com/MPTCP-FreeBSD/FreeBSD-L4S-Experiments (or a folder holding its sender
logs at the same relative paths). See docs/freebsd-siftr.md for what each metric means and what the table
said when it was last run.
"""

from __future__ import annotations

import argparse
import sys

from l4stb.analysis.siftr_compare import CELLS, compare, format_table, real_metrics, sim_metrics
from l4stb.errors import L4stbError


def main(flow_class=None, description: str = __doc__.splitlines()[0]) -> int:
    """Parse the command line and print the table; ``flow_class`` replaces the simulated TCP sender (a model
    change tried by subclassing a :class:`l4stb.sim.trace.TracingTcpFlow` before it goes into the model)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--traces", required=True, help="checkout of MPTCP-FreeBSD/FreeBSD-L4S-Experiments")
    ap.add_argument("--repeats", type=int, default=5, help="simulated repeats per cell (default 5)")
    ap.add_argument("--cell", default="", help="only cells whose name contains this text")
    a = ap.parse_args()
    rows = []
    try:
        for cell in CELLS:
            if a.cell in cell.name:
                sim = sim_metrics(cell, a.repeats, flow_class) if flow_class else sim_metrics(cell, a.repeats)
                rows += compare(cell, real_metrics(cell, a.traces), sim)
    except L4stbError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
