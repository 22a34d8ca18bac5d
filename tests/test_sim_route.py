"""How packets cross the router's pipe: the ipfw rule (``bottleneck.match``) and dummynet's tick service.

The original testbed's rule was ``ipfw add 100 queue 1 ip from any to any``: on a router ipfw runs on a
forwarded packet's input and output pass, so every packet -- ACKs included -- crossed the pipe twice.
These tests pin that route in the simulator and check it against the real iperf3 files it explains.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from l4stb.analysis.logparse import parse_log_files
from l4stb.logfiles import order_log_files
from l4stb.config import load_scenario, load_topology
from l4stb.layout import iperf3_server_name
from l4stb.sim.aqm_fifo import Fifo
from l4stb.sim.engine import Engine
from l4stb.sim.link import Bottleneck
from l4stb.sim.packet import make_packet
from l4stb.sim.runner import SimJob, simulate_repeat

from conftest import realdata

MS = 1_000_000


def simulate(tmp_path: Path, scenario: str, *overrides: str, seed: int = 1) -> dict:
    sc = load_scenario(scenario, list(overrides))
    return simulate_repeat(SimJob(sc, load_topology(sc.topology), "t-run", 1, seed, str(tmp_path / "hosts")))


def client_reports(stats: dict) -> list[dict]:
    """The sender side of each client iperf3 JSON: throughput (Mbit/s) and RTTs (ms)."""
    out = []
    server_files = {iperf3_server_name(f["port"]) for f in stats["flows"]}
    for path in stats["iperf3_files"]:
        if Path(path).name in server_files:
            continue
        doc = json.loads(Path(path).read_text())
        sender = doc["end"]["streams"][0]["sender"]
        out.append({"cc": doc["end"]["sender_tcp_congestion"], "mbps": sender["bits_per_second"] / 1e6,
                    "mean_rtt_ms": sender["mean_rtt"] / 1000, "min_rtt_ms": sender["min_rtt"] / 1000})
    return out


def logged(stats: dict):
    batch, _ = parse_log_files(order_log_files([Path(p) for p in stats["log_files"]]))
    return batch


def test_original_rule_puts_acks_and_both_passes_through_the_pipe(tmp_path):
    """With ``match: any`` the router logs ACK-sized packets (52 bytes, 64 with a SACK block) in the
    Classic queue, every data packet is decided twice, and no RTT can be below the four pipe delays
    (2 x 20 ms each way); with the default ``match: egress`` only 1500-byte data is logged, once, and
    the minimum RTT is one pipe delay plus small latencies."""
    common = ("duration=10s", "bottleneck.serve_on_ticks=false", "aqm.kern_hz=1000")
    anyway = simulate(tmp_path / "any", "paper-l4s-pie-10mbps-20ms", *common, "bottleneck.match=any")
    egress = simulate(tmp_path / "egress", "paper-l4s-pie-10mbps-20ms", *common, "bottleneck.match=egress")

    b = logged(anyway)
    lengths = set(b.column("packet_length").tolist())
    assert {52, 1500} <= lengths and lengths <= {52, 64, 1500}
    acks = b.column("packet_length") < 1500
    assert set(b.column("queue_type")[acks].tolist()) == {0}  # not-ECT ACKs go to the Classic queue
    data_decisions = int((~acks).sum())
    delivered = sum(f["throughput_mbps"] for f in anyway["flows"]) * 1e6 * 10 / 8 / 1448
    assert 1.9 * delivered <= data_decisions <= 2.3 * delivered, (data_decisions, delivered)
    assert min(r["min_rtt_ms"] for r in client_reports(anyway)) >= 80

    assert set(logged(egress).column("packet_length").tolist()) == {1500}
    assert max(r["min_rtt_ms"] for r in client_reports(egress)) < 30


def test_tick_service_sends_per_tick_batches_at_the_pipe_rate():
    """dummynet serves the pipe from its tick callout: 20 packets reach an idle 10 Mbit/s pipe (1.2 ms
    each, 20 ms delay, 10 ms ticks) at 1 ms. The first goes at once (zero credit lets one through) on
    the tick clock, so it leaves the delay line at 0 + 20 ms; then each tick sends the packets whose
    transmission would have started by it, counting from tick 0 (0 + 1.2 k <= tick): 8 at 10 ms, 8 at
    20 ms, the last 3 at 30 ms, each leaving 20 ms later -- except the last packet of each batch that
    overdrew the credit, which dummynet's serve_sched holds until the tick at which the credit is back
    (``output_time += t``, ip_dn_io.c): 10 ms later. The pipe is busy for exactly 20 x 1.2 ms."""
    arrivals = []

    class Sink:
        def on_data(self, t, pkt):
            arrivals.append(t)

    engine = Engine(Fifo(1000, 10**9), Bottleneck(10_000_000, 20 * MS), [Sink()], [0], tick_ns=10 * MS)
    for seq in range(20):
        engine.schedule(1 * MS, 0, make_packet(0, 1500, 0, 0, seq))
    engine.run(200 * MS)
    assert [(t // MS, arrivals.count(t)) for t in sorted(set(arrivals))] == [(30, 1 + 7), (40, 1 + 7), (50, 1 + 3)]
    assert engine.busy_ns == 20 * 1_200_000


def test_original_rule_regenerates_the_real_10mbps_regime(tmp_path):
    """Against the real FreeBSD iperf3 files (10 Mbit/s, 20 ms, 20 runs of 60 s, cubic + dctcp).

    Real: about 4.5 Mbit/s of goodput in total on a 10 Mbit/s pipe (every byte crosses it twice), Cubic
    1.5-2.3 and DCTCP 2.2-3.1 Mbit/s, mean RTTs of 300-440 ms (a standing queue behind a 20 ms pipe). The
    scenario (original rule, 10 ms ticks, the scheduler's PIE on/off) must give the total within 20 %,
    each flow's throughput and mean RTT inside the real runs' range widened by 10 % (seeds 1-4 give
    Cubic 1.9-2.1, DCTCP 2.4-2.6 Mbit/s, RTTs 308-348 ms, with the FreeBSD receivers' windows autoscaled to
    102-153 segments; the clean dumbbell, ``bottleneck.match=egress``, gives 61-71 ms: bench/sim_window_cap.py)."""
    folder = realdata("iperf3-freebsd-10mbps-20ms")
    real = {"cubic": [], "dctcp": []}
    real_rtt = []
    for path in sorted(folder.glob("*.json")):
        doc = json.loads(path.read_text())
        sender = doc["end"]["streams"][0]["sender"]
        real[doc["end"]["sender_tcp_congestion"]].append(sender["bits_per_second"] / 1e6)
        real_rtt.append(sender["mean_rtt"] / 1000)
    real_total = statistics.mean(real["cubic"]) + statistics.mean(real["dctcp"])

    reports = client_reports(simulate(tmp_path, "paper-l4s-pie-10mbps-20ms", "duration=60s"))
    sim = {r["cc"]: r for r in reports}
    total = sim["cubic"]["mbps"] + sim["dctcp"]["mbps"]
    assert 0.8 * real_total <= total <= 1.2 * real_total, (total, real_total)
    for cc in ("cubic", "dctcp"):
        assert 0.9 * min(real[cc]) <= sim[cc]["mbps"] <= 1.1 * max(real[cc]), (cc, sim[cc]["mbps"], real[cc])
        assert 0.9 * min(real_rtt) <= sim[cc]["mean_rtt_ms"] <= 1.1 * max(real_rtt), (cc, sim[cc], real_rtt)
