"""Hold l4stb's simulated FreeBSD senders against public FreeBSD 14.1 SIFTR traces, cell by cell, metric by metric.

The traces are the public repository MPTCP-FreeBSD/FreeBSD-L4S-Experiments (never copied into l4stb: the
user points ``traces_dir`` at a checkout or at the files taken out of it, same relative paths). A
:class:`Cell` names a scenario in playbooks/ and, per repeat, the sender-side SIFTR files with the server
port of each CC. For each flow, :func:`l4stb.analysis.cwnd_metrics.flow_metrics` measures the real and the
simulated sender alike. The traces' spread is the range over the real repeats where the cell has several
(the L4S-LLM collection's 10 iterations), else over the 10 s windows of the one run; a simulated median
inside that range agrees.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

from l4stb.analysis.cwnd_metrics import FlowMetrics, flow_metrics, from_siftr, from_sim
from l4stb.analysis.siftr import iperf3_flows, read_siftr, server_port
from l4stb.config import load_scenario, load_topology
from l4stb.errors import L4stbError
from l4stb.sim.runner import SimJob
from l4stb.sim.trace import TracingTcpFlow, simulate_traced

TWO_QUEUE = "Misc/Experiment Scripts/Old/2 queue L4S NEWRENO VS DCTCP"
LLM = "L4S-LLM Data Collection"


@dataclass(frozen=True)
class Cell:
    """One experiment cell: the l4stb scenario and, per real repeat, {sender log: {server port: cc}}."""

    name: str
    scenario: str
    repeats: tuple[dict[str, dict[int, str]], ...]


def _two_queue(rate: str, aqm: str = "l4s") -> Cell:
    scenario = f"freebsd-siftr-l4s-{rate.lower()}-20ms" if aqm == "l4s" else f"siftr-fqcodel-{rate.lower()}-20ms"
    return Cell(f"{aqm} {rate} 20ms ecn", scenario, ({
        f"{TWO_QUEUE}/client1_data/{aqm}_{rate}_20ms_ecn_newreno_src1.siftr.log": {5101: "newreno"},
        f"{TWO_QUEUE}/client2_data/{aqm}_{rate}_20ms_ecn_dctcp_src2.siftr.log": {5102: "dctcp"},
    },))


CELLS = (
    _two_queue("1Mbps"),
    _two_queue("10Mbps"),
    _two_queue("1Mbps", "fq_codel"),
    _two_queue("10Mbps", "fq_codel"),
    Cell("l4s 8Mbps 10ms ecn", "freebsd-siftr-l4s-8mbps-10ms", tuple({
        f"{LLM}/client1_data/{r}_{r}_l4s_8Mbps_10ms_newreno_src1.siftr.log": {5101: "cubic", 5102: "newreno"},
        f"{LLM}/client2_data/{r}_{r}_l4s_8Mbps_10ms_dctcp_src2.siftr.log": {5103: "dctcp"},
    } for r in range(1, 11))),
)
"""The cells with FreeBSD 14.1 (siftr 1.3.0) sender logs and an AQM the simulator has: the original l4s
scheduler and dummynet's fq_codel. The fq_pie cells of the same runs are left out: no l4stb AQM models fq_pie
yet (docs/aqm-codel.md); the runs have no codel cell with FreeBSD 14 sender logs."""

METRICS = tuple(f.name for f in fields(FlowMetrics))
RESOLUTION = {"srtt_p50_ms": 0.3125, "srtt_p95_ms": 0.3125, "reduction_ms_p50": 1.0, "cut_depth_p50": 0.01}
"""How far outside the real range a simulated value still agrees: the traces' own resolution (srtt moves in
tick/32 = 0.3125 ms steps at kern.hz=100; a cut and its next record lie up to a millisecond apart; cwnd
is cut in whole bytes, so depths differ by rounding)."""
WINDOW_S = 10.0
WARMUP_S = 5.0


def real_metrics(cell: Cell, traces_dir: str | Path) -> dict[str, list[FlowMetrics]]:
    """cc -> the real sender's metrics: one per repeat, or one per 10 s window when the cell has one repeat."""
    root = Path(traces_dir)
    out: dict[str, list[FlowMetrics]] = {}
    for rep in cell.repeats:
        for rel, ports in rep.items():
            path = root / rel
            if not path.is_file():
                raise L4stbError(f"{path}: missing. Point --traces at a checkout of "
                                 "github.com/MPTCP-FreeBSD/FreeBSD-L4S-Experiments (or a folder with the same "
                                 f"relative paths); the cell '{cell.name}' needs this sender log.")
            by_port = {server_port(f): f for f in iperf3_flows(read_siftr(path))}
            for port, cc in ports.items():
                if port not in by_port:
                    raise L4stbError(f"{path}: no iperf3 data connection to port {port} ({cc}) in this log")
                tr = from_siftr(by_port[port])
                out.setdefault(cc, []).extend(_samples(tr, windows=len(cell.repeats) == 1))
    return out


def _samples(tr, windows: bool) -> list[FlowMetrics]:
    if not windows:
        return [flow_metrics(tr, WARMUP_S)]
    span = float(tr.t_s[-1] - tr.t_s[0]) - WARMUP_S
    n = int(span // WINDOW_S)
    return [flow_metrics(tr, WARMUP_S + k * WINDOW_S, WINDOW_S) for k in range(n)]


def sim_metrics(cell: Cell, repeats: int, flow_class=None) -> dict[str, list[FlowMetrics]]:
    """cc -> the simulated FreeBSD sender's metrics, one per simulated repeat (seeds as ``l4stb run`` uses).
    ``flow_class``: a :class:`l4stb.sim.trace.TracingTcpFlow` subclass trying a model change (default: the model)."""
    sc = load_scenario(cell.scenario)
    topo = load_topology(sc.topology)
    out: dict[str, list[FlowMetrics]] = {}
    with tempfile.TemporaryDirectory(prefix="l4stb-siftr-") as tmp:
        for r in range(1, repeats + 1):
            stats, flows = simulate_traced(SimJob(sc, topo, "siftr-compare", r, sc.repeat_seed(r), tmp),
                                           flow_class or TracingTcpFlow)
            for info, flow in zip(stats["flows"], flows):
                out.setdefault(info["cc"], []).append(flow_metrics(from_sim(flow.trace), WARMUP_S))
    return out


@dataclass
class Row:
    """One line of the comparison: a cell, a CC, a metric, the real spread and the simulated median."""

    cell: str
    cc: str
    metric: str
    real_lo: float | None
    real_hi: float | None
    real_n: int
    sim: float | None
    verdict: str


def compare(cell: Cell, real: dict[str, list[FlowMetrics]], sim: dict[str, list[FlowMetrics]]) -> list[Row]:
    """Rows for every CC and metric of a cell: "agrees" when the simulated median lies in the real range
    (widened by the traces' resolution, :data:`RESOLUTION`)."""
    rows = []
    for cc, reals in real.items():
        sims = sim.get(cc, [])
        for m in METRICS:
            rv = [getattr(x, m) for x in reals if getattr(x, m) is not None]
            sv = [getattr(x, m) for x in sims if getattr(x, m) is not None]
            lo, hi = (min(rv), max(rv)) if rv else (None, None)
            med = statistics.median(sv) if sv else None
            if lo is None or med is None:
                verdict = "n/a: " + ("no real value" if lo is None else "no simulated value")
            elif lo - RESOLUTION.get(m, 0.0) <= med <= hi + RESOLUTION.get(m, 0.0):
                verdict = "agrees"
            else:
                ref = hi if med > hi else lo
                verdict = f"{'above' if med > hi else 'below'} by {abs(med - ref) / abs(ref) * 100:.0f}%" \
                    if ref else ("above" if med > hi else "below")
            rows.append(Row(cell.name, cc, m, lo, hi, len(rv), med, verdict))
    return rows


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def format_table(rows: list[Row]) -> str:
    """A plain-text table, one row per cell, CC and metric."""
    head = ("cell", "cc", "metric", "FreeBSD (min..max, n)", "sim (median)", "verdict")
    body = [(r.cell, r.cc, r.metric, f"{_fmt(r.real_lo)}..{_fmt(r.real_hi)} ({r.real_n})", _fmt(r.sim), r.verdict)
            for r in rows]
    widths = [max(len(str(x[i])) for x in (head, *body)) for i in range(len(head))]
    line = lambda cols: "  ".join(str(c).ljust(w) for c, w in zip(cols, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])
