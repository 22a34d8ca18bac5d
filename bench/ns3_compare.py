"""Compare the l4stb simulator's TCP dynamics and speed with ns-3 (PyPI ``ns3``, 3.44) on FIFO and PIE bottlenecks.

Usage: pip install ns3   (not a product dependency; the wheel builds cppyy's CPyCppyy, minutes)
       python bench/ns3_compare.py [--duration 20] [--quick] [--no-ns3]

Same dumbbell in both: clients on 1 Gbit/s 50 us access links, an 8 Mbit/s bottleneck with 10 ms base
RTT, a 100-packet buffer, MSS 1448, initial window 10, delayed ACKs (every 2nd segment), SACK, ECN
negotiated by every flow (classic flows send ECT(0), DCTCP ECT(0) in ns-3 / ECT(1) here -- a single
queue treats both alike). Differences kept on purpose:

* ns-3's point-to-point delay is symmetric, l4stb's dummynet pipe delays only the forward path, so
  ns-3's bottleneck gets 5 ms each way (same 10 ms base RTT);
* ns-3 PIE is RFC 8033 in floating point with its own defaults for what RFC 8033 leaves open;
  l4stb's ``pie`` is FreeBSD's integer dn_aqm_pie (auto-tune shifts, capdrop, derandomisation) at
  kern_hz=100000 here so its clock does not round to 1 ms;
* loss recovery: ns-3 uses SACK + PRR; l4stb uses FACK-style SACK recovery with cwnd set to
  ssthresh (FreeBSD without its PRR in loss recovery; after a CE echo FreeBSD's PRR walk is modelled) --
  see l4stb.sim.tcp_stacks;
* RTO: ns-3 min RTO set to 200 ms; l4stb uses FreeBSD's srtt + 4 rttvar + 200 ms slop;
* DCTCP gets a DCTCP receiver in ns-3 (per-packet CE echo), which is what l4stb models.

Per case it prints per-flow throughput shares, utilisation, mean/median/p95 queue sojourn (ns-3:
QueueDisc SojournTime trace; l4stb: every transmitted packet's sojourn), and the wall time of each
simulator. The speed table runs the paper mix (4 Cubic + 4 NewReno + 1 DCTCP, 60 s) at 8 and 100 Mbit/s
through PIE in both, and through l4stb's DualPI2: ns-3.44's contributed DualPI2 model is not in the pip wheel
(mainline ns-3 has none), so the DualPI2 row is compared with ns-3's PIE run of the same flows. l4stb runs on
the engine this process has (compiled when built, see ``python -m l4stb.sim.build_engine``; the table names it).
``--no-ns3`` prints the l4stb rows of both tables alone, for a machine without the ns-3 wheel.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

from rich.console import Console
from rich.table import Table

from l4stb.config import load_scenario, load_topology
from l4stb.sim.runner import SimJob, simulate_repeat

NS3_CC = {"cubic": "ns3::TcpCubic", "newreno": "ns3::TcpNewReno", "dctcp": "ns3::TcpDctcp"}
RATE_MBPS = 8
BUFFER_PKTS = 100
ECN_MODE = ["On"]

_CPP = r"""
#include "ns3/core-module.h"
#include "ns3/traffic-control-module.h"
#include <vector>
namespace l4stbcmp {
std::vector<double> soj;
void Sojourn(ns3::Time t) { soj.push_back(t.GetMicroSeconds()); }
void Connect(ns3::Ptr<ns3::QueueDisc> q) {
  soj.clear();
  q->TraceConnectWithoutContext("SojournTime", ns3::MakeCallback(&Sojourn));
}
}
"""


def _ns():
    try:
        from ns import ns  # noqa: F401
        import cppyy
    except Exception as exc:  # pragma: no cover - depends on the optional wheel
        sys.exit(f"ns-3 is not importable ({exc}); install it with `pip install ns3`.")
    cppyy.cppdef(_CPP)
    return ns, cppyy


def run_ns3(ns, cppyy, aqm: str, groups: list[tuple[str, int]], duration_s: float, rate_mbps: int = RATE_MBPS) -> dict:
    """One ns-3 run: ``groups`` = [(cc, streams)], one client node per group."""
    ns.Simulator.Destroy()
    ns.Config.Reset()
    ns.RngSeedManager.SetSeed(1)
    ns.RngSeedManager.SetRun(1)
    ns.Config.SetDefault("ns3::TcpSocket::SegmentSize", ns.UintegerValue(1448))
    ns.Config.SetDefault("ns3::TcpSocket::SndBufSize", ns.UintegerValue(4 << 20))
    ns.Config.SetDefault("ns3::TcpSocket::RcvBufSize", ns.UintegerValue(4 << 20))
    ns.Config.SetDefault("ns3::TcpSocket::InitialCwnd", ns.UintegerValue(10))
    ns.Config.SetDefault("ns3::TcpSocket::DelAckCount", ns.UintegerValue(2))
    ns.Config.SetDefault("ns3::TcpSocketBase::MinRto", ns.TimeValue(ns.MilliSeconds(200)))
    ns.Config.SetDefault("ns3::TcpSocketBase::UseEcn", ns.StringValue(ECN_MODE[0]))
    n = len(groups)
    nodes = ns.NodeContainer()
    nodes.Create(n + 2)
    router, server = nodes.Get(n), nodes.Get(n + 1)
    stack = ns.InternetStackHelper()
    stack.Install(nodes)
    access = ns.PointToPointHelper()
    access.SetDeviceAttribute("DataRate", ns.StringValue("1Gbps"))
    access.SetChannelAttribute("Delay", ns.StringValue("50us"))
    bn = ns.PointToPointHelper()
    bn.SetDeviceAttribute("DataRate", ns.StringValue(f"{rate_mbps}Mbps"))
    bn.SetChannelAttribute("Delay", ns.StringValue("5ms"))
    bn.SetQueue("ns3::DropTailQueue", "MaxSize", ns.StringValue("1p"))
    addr = ns.Ipv4AddressHelper()
    for i in range(n):
        d = access.Install(nodes.Get(i), router)
        addr.SetBase(ns.Ipv4Address(f"10.0.{i + 1}.0"), ns.Ipv4Mask("255.255.255.0"))
        addr.Assign(d)
    dbn = bn.Install(router, server)
    tch = ns.TrafficControlHelper()
    if aqm == "pie":
        tch.SetRootQueueDisc("ns3::PieQueueDisc",
                             "MaxSize", ns.StringValue(f"{BUFFER_PKTS}p"),
                             "QueueDelayReference", ns.TimeValue(ns.MilliSeconds(15)),
                             "Tupdate", ns.TimeValue(ns.MilliSeconds(15)),
                             "A", ns.DoubleValue(0.125), "B", ns.DoubleValue(1.25),
                             "MaxBurstAllowance", ns.TimeValue(ns.MilliSeconds(150)),
                             "UseEcn", ns.BooleanValue(True),
                             "UseDerandomization", ns.BooleanValue(True))
    else:
        tch.SetRootQueueDisc("ns3::FifoQueueDisc", "MaxSize", ns.StringValue(f"{BUFFER_PKTS}p"))
    qdiscs = tch.Install(dbn.Get(0))
    cppyy.gbl.l4stbcmp.Connect(qdiscs.Get(0))
    addr.SetBase(ns.Ipv4Address("10.0.100.0"), ns.Ipv4Mask("255.255.255.0"))
    ifs = addr.Assign(dbn)
    ns.Ipv4GlobalRoutingHelper.PopulateRoutingTables()
    server_ip = ifs.GetAddress(1)
    sinks = []
    port = 5101
    stop = ns.Seconds(0.1 + duration_s)
    if any(cc == "dctcp" for cc, _ in groups):
        # DCTCP needs a DCTCP receiver for its per-packet CE echo (l4stb models accurate feedback)
        ns.Config.Set(f"/NodeList/{server.GetId()}/$ns3::TcpL4Protocol/SocketType",
                      ns.TypeIdValue(ns.TypeId.LookupByName(NS3_CC["dctcp"])))
    for i, (cc, streams) in enumerate(groups):
        # NodeList is global across runs in one process: address nodes by their real id
        ns.Config.Set(f"/NodeList/{nodes.Get(i).GetId()}/$ns3::TcpL4Protocol/SocketType",
                      ns.TypeIdValue(ns.TypeId.LookupByName(NS3_CC[cc])))
        for _s in range(streams):
            sink_h = ns.PacketSinkHelper("ns3::TcpSocketFactory",
                                         ns.InetSocketAddress(ns.Ipv4Address.GetAny(), port).ConvertTo())
            sink_app = sink_h.Install(server)
            sink_app.Start(ns.Seconds(0.0))
            sinks.append((cc, sink_app.Get(0)))
            bulk = ns.BulkSendHelper("ns3::TcpSocketFactory", ns.InetSocketAddress(server_ip, port).ConvertTo())
            bulk.SetAttribute("MaxBytes", ns.UintegerValue(0))
            app = bulk.Install(nodes.Get(i))
            app.Start(ns.Seconds(0.1 + 0.0003 * (len(sinks))))
            app.Stop(stop)
            port += 1
    ns.Simulator.Stop(stop)
    t0 = time.perf_counter()
    ns.Simulator.Run()
    wall = time.perf_counter() - t0
    rates = [cppyy.gbl.ns3.DynamicCast[cppyy.gbl.ns3.PacketSink](app).GetTotalRx() * 8 / duration_s / 1e6
             for _, app in sinks]
    soj = list(cppyy.gbl.l4stbcmp.soj)
    ns.Simulator.Destroy()
    return {"ccs": [cc for cc, _ in sinks], "rates": rates, "sojourn_us": soj, "wall_s": wall}


def run_ns3_isolated(aqm: str, groups: list[tuple[str, int]], duration_s: float, rate_mbps: int = RATE_MBPS) -> dict:
    """Run one ns-3 case in a fresh interpreter: ns-3 keeps global state (NodeList, RNG streams, Config)
    across simulations in one process, and results drift with the order of cases otherwise."""
    spec = json.dumps({"aqm": aqm, "groups": groups, "duration": duration_s, "rate_mbps": rate_mbps})
    proc = subprocess.run([sys.executable, __file__, "--ns3-case", spec], capture_output=True, text=True, timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith("NS3RESULT "):
            return json.loads(line[len("NS3RESULT "):])
    raise RuntimeError(f"ns-3 case {spec} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")


def run_l4stb(aqm: str, groups: list[tuple[str, int]], duration_s: int, root: str, rate_mbps: int = RATE_MBPS) -> dict:
    hosts = ["client1", "client2"]
    flows = ", ".join(f"{{host: {hosts[min(i, 1)]}, cc: {cc}, parallel: {n}}}" for i, (cc, n) in enumerate(groups))
    sc = load_scenario("dctcp-8mbps", [f"duration={duration_s}s", f"flows=[{flows}]", f"aqm.name={aqm}",
                                       f"bottleneck.limit_packets={BUFFER_PKTS}", "aqm.kern_hz=100000", "ecn=true",
                                       f"bottleneck.rate={rate_mbps}Mbit"])
    topo = load_topology(sc.topology)
    t0 = time.perf_counter()
    st = simulate_repeat(SimJob(sc, topo, "ns3cmp", 1, sc.repeat_seed(1), root), collect_sojourn=True)
    wall = time.perf_counter() - t0
    return {"ccs": [f["cc"] for f in st["flows"]], "rates": [f["throughput_mbps"] for f in st["flows"]],
            "sojourn_us": st["sojourn_us"], "wall_s": wall, "rate_mbps": rate_mbps, "engine": st["engine"],
            "packets": st["packets"]}


def summary(res: dict) -> dict:
    total = sum(res["rates"])
    by_cc: dict[str, float] = {}
    for cc, r in zip(res["ccs"], res["rates"]):
        by_cc[cc] = by_cc.get(cc, 0.0) + r
    soj = sorted(res["sojourn_us"]) or [0]
    return {
        "shares": {cc: v / total for cc, v in by_cc.items()} if total else {},
        "util": total / res.get("rate_mbps", RATE_MBPS),
        "mean_ms": statistics.fmean(soj) / 1000,
        "median_ms": soj[len(soj) // 2] / 1000,
        "p95_ms": soj[int(0.95 * (len(soj) - 1))] / 1000,
        "wall_s": res["wall_s"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="one case only")
    ap.add_argument("--no-ns3", action="store_true", help="l4stb's rows of both tables only (no ns-3 wheel)")
    ap.add_argument("--ns3-case", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ns3_case:
        spec = json.loads(args.ns3_case)
        ns, cppyy = _ns()
        res = run_ns3(ns, cppyy, spec["aqm"], [tuple(g) for g in spec["groups"]], spec["duration"],
                      spec.get("rate_mbps", RATE_MBPS))
        print("NS3RESULT " + json.dumps(res))
        return
    console = Console(width=180)
    with tempfile.TemporaryDirectory() as tmp:
        dynamics_table(console, args, tmp, with_ns3=not args.no_ns3)
        speed_table(console, tmp, with_ns3=not args.no_ns3)


def dynamics_table(console: Console, args, tmp: str, *, with_ns3: bool) -> None:
    """Per-flow shares, utilisation and sojourn of both simulators on the small mixes (8 Mbit/s); without the
    ns-3 wheel, l4stb's rows alone, so its column can be re-measured after a change to the simulator."""
    if with_ns3:
        console.print("each ns-3 case runs in a fresh interpreter; its wall time excludes the ~20 s cppyy start-up")
    mixes = [[("cubic", 1), ("newreno", 1)], [("cubic", 1), ("dctcp", 1)], [("newreno", 2), ("dctcp", 1)]]
    cases = [(aqm, mix) for aqm in ("fifo", "pie") for mix in mixes]
    if args.quick:
        cases = cases[:1]
    table = Table(title=f"ns-3 3.44 vs l4stb sim: 8 Mbit/s, 10 ms base RTT, {BUFFER_PKTS}-packet buffer, "
                        f"{args.duration} s")
    for col in ("AQM", "mix", "simulator", "throughput share", "utilisation", "sojourn mean / median / p95 ms",
                "wall s"):
        table.add_column(col)
    for aqm, mix in cases:
        label = " + ".join(f"{n}x{cc}" for cc, n in mix)
        for name in (("ns-3", "l4stb") if with_ns3 else ("l4stb",)):
            res = (run_ns3_isolated(aqm, mix, args.duration) if name == "ns-3"
                   else run_l4stb(aqm, mix, args.duration, tmp))
            s = summary(res)
            shares = ", ".join(f"{cc} {v:.0%}" for cc, v in s["shares"].items())
            table.add_row(aqm, label, name, shares, f"{s['util']:.1%}",
                          f"{s['mean_ms']:.1f} / {s['median_ms']:.1f} / {s['p95_ms']:.1f}", f"{s['wall_s']:.2f}")
    console.print(table)


def speed_table(console: Console, tmp: str, *, with_ns3: bool, duration_s: int = 60) -> None:
    """The paper mix at 8 and 100 Mbit/s: ns-3 through PIE; l4stb through PIE and through DualPI2 (against ns-3's
    PIE run of the same flows: ns-3.44's DualPI2 is not in the pip wheel)."""
    paper = [("cubic", 4), ("newreno", 4), ("dctcp", 1)]
    timing = Table(title=f"speed on the paper mix (4 Cubic + 4 NewReno + 1 DCTCP, {duration_s} s); the l4stb DualPI2 "
                         "rows are compared with ns-3's PIE (ns-3.44's DualPI2 is not in the pip wheel)")
    for col in ("rate", "simulator", "AQM", "wall s", "sim s / wall s", "packets / wall s", "x ns-3 (PIE)",
                "throughput share", "sojourn median ms"):
        timing.add_column(col)
    for rate in (8, 100):
        rows = []
        if with_ns3:
            rows.append(("ns-3 3.44", "pie", run_ns3_isolated("pie", paper, duration_s, rate)))
        for aqm in ("pie", "dualpi2"):
            res = run_l4stb(aqm, paper, duration_s, tmp, rate)
            rows.append((f"l4stb, {res['engine']}", aqm, res))
        ns3_wall = rows[0][2]["wall_s"] if with_ns3 else None
        for name, aqm, res in rows:
            s = summary(res)
            pps = f"{res['packets'] / s['wall_s']:,.0f}" if "packets" in res else "-"
            ratio = f"{ns3_wall / s['wall_s']:.1f}x" if ns3_wall else "-"
            timing.add_row(f"{rate} Mbit/s", name, aqm, f"{s['wall_s']:.2f}", f"{duration_s / s['wall_s']:.1f}", pps,
                           ratio, ", ".join(f"{cc} {v:.0%}" for cc, v in s["shares"].items()),
                           f"{s['median_ms']:.1f}")
    console.print(timing)


if __name__ == "__main__":
    main()
