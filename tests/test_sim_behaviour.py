"""Network behaviour of the simulator at the paper's 8 Mbit/s, 10 ms (anchors.md §7.3), plus the baselines.

Each test runs 15-20 simulated seconds (about 0.3-1 s of CPU each) and reads the router log back.
The logged delays use kern_hz=100000 (10 us ticks) so medians are not blurred by 1 ms quantisation.
"""

from __future__ import annotations

import statistics

import pytest

from l4stb.config import load_scenario, load_topology
from l4stb.logformat import FIELD_INDEX, read_l4stb_rows
from l4stb.sim.runner import SimJob, simulate_repeat

QD = FIELD_INDEX["current_queue_delay"]
QT = FIELD_INDEX["queue_type"]
ACT = FIELD_INDEX["dequeue_action"]


def run(tmp_path, flows: str, *extra: str, scenario: str = "dctcp-8mbps", duration: str = "20s", seed: int = 3):
    sc = load_scenario(scenario, [f"duration={duration}", f"flows={flows}", "aqm.kern_hz=100000", *extra])
    topo = load_topology(sc.topology)
    stats = simulate_repeat(SimJob(sc, topo, "t-run", 1, seed, str(tmp_path / "hosts")))
    return stats, read_log(stats["log_files"][0])


read_log = read_l4stb_rows


def delays(rows, queue: int, skip_us: int = 3_000_000) -> list[int]:
    """Sojourn of forwarded/marked packets of ``queue`` after the first 3 s (slow start excluded)."""
    return [r[QD] for r in rows if r[QT] == queue and r[ACT] != 2 and r[24] >= skip_us]


def rate(stats, fid: int) -> float:
    return stats["flows"][fid]["throughput_mbps"]


def jain(xs: list[float]) -> float:
    return sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs))


def test_single_cubic_holds_the_classic_queue_near_the_15ms_target(tmp_path):
    """Median C sojourn within 15 ms +- 4 ms (PI2 regulates the *mean* to the target; Cubic's sawtooth
    spreads the samples), utilisation >= 95 % (anchors: 95-100 %)."""
    stats, rows = run(tmp_path, "[{host: client1, cc: cubic}]")
    med = statistics.median(delays(rows, 0))
    assert 11_000 <= med <= 19_000, med
    assert stats["utilisation"] >= 0.95


@pytest.mark.parametrize("cc", ["dctcp", "prague"])
def test_single_scalable_flow_keeps_the_l_queue_within_a_few_ms_without_drops(tmp_path, cc):
    """RFC 9332's Th_len step (no step mark unless more than one packet is left in L): median L sojourn
    <= 3.5 ms, i.e. at most two 1.5 ms packets ahead (anchors: ~1.5-3 ms at 8 Mbit/s; measured 3.3 ms for
    FreeBSD DCTCP, whose window takes a 2-segment step at each reduction, less for paced udp_prague, the
    FreeBSD host's Prague), drops <= 0.1 % of packets (a few are allowed for slow-start overshoot),
    utilisation >= 90 %."""
    stats, rows = run(tmp_path, f"[{{host: client2, cc: {cc}}}]", "aqm.step_semantics=rfc9332-thlen")
    med = statistics.median(delays(rows, 1))
    assert med <= 3_500, med
    assert stats["drops"]["L"] + stats["drops"]["C"] <= 0.001 * stats["packets"]
    assert stats["utilisation"] >= 0.90


@pytest.mark.parametrize("cc, min_utilisation", [("dctcp", 0.5), ("prague", 0.9)])
def test_linux_step_holds_a_single_scalable_flow_to_about_one_packet_of_queue(tmp_path, cc, min_utilisation):
    """Linux's step (every L packet whose sojourn exceeds 1 ms is marked, min_qlen_step 0): at 8 Mbit/s one
    1500-byte packet takes 1.5 ms, so any packet that waits behind another is marked. Median L sojourn
    <= 1.6 ms (one packet ahead at most), no drops. The price, measured (seed 3): unpaced FreeBSD DCTCP,
    whose ACK-clocked pairs arrive back to back so the second of each waits 1.5 ms and is marked, keeps
    the link only ~59 % busy (asserted >= 50 %; 77 % before issue 25 modelled cc_dctcp's integer alpha and
    its receiver, which ACKs each CE change at once: here nearly every segment); paced udp_prague (FreeBSD's
    prague) ~93 %."""
    stats, rows = run(tmp_path, f"[{{host: client2, cc: {cc}}}]")
    med = statistics.median(delays(rows, 1))
    assert med <= 1_600, med
    assert stats["drops"]["L"] + stats["drops"]["C"] <= 0.001 * stats["packets"]
    assert stats["utilisation"] >= min_utilisation


@pytest.mark.slow
@pytest.mark.parametrize("cc", ["dctcp", "prague"])
def test_cubic_against_a_scalable_flow_shares_the_link_and_keeps_l_latency(tmp_path, cc):
    """Cubic (C) against DCTCP/Prague (L) at 8 Mbit/s, 10 ms, equal base RTT: the link stays full, the L
    queue within a few ms, the C queue near its target.

    DCTCP gets more than Cubic, at least the lower edge of anchors.md 7.3's 1.6-1.8x (window-fair
    coupling, RTT_C/RTT_L ~ 2): seeds 1-6 give 3.6-4.5x (5.1-5.8x before FreeBSD's integer DCTCP and its
    receiver's ECE were modelled), far above the band. FreeBSD's cc_dctcp sets
    cwnd = ssthresh on a CE echo and keeps growing through the recovery round, so the very ACK that cuts
    the window takes a slow-start step (cwnd <= ssthresh) of up to 2 segments -- several times the +1
    segment per round trip the derivation assumes, at 4-8 packet windows (that alone gave 2.4-2.7x); and
    FreeBSD's Cubic walks down by PRR-SSRB through each ECN congestion recovery and does not grow until it
    ends (tcp_input.c, the IN_CONGRECOVERY branch; issue 25's fix A took Cubic from 2.11-2.27 to 1.13-1.55
    Mbit/s over seeds 1-6; with the receiver's window, l4stb.sim.rcvwnd, 1.13-1.27; with FreeBSD's integer
    DCTCP, 1.39-1.65). Asserted 1.6-7x.
    Prague on the default FreeBSD host is udp_prague (rate-based, RTT-independent with a 25 ms virtual RTT):
    seeds 1-4 give 0.88-1.21x (0.97-1.14x before issue 25 modelled the FreeBSD receiver's one ECE bit and its
    immediate ACK of CWR; the same spread); asserted 0.5-1.3x. The derivation assumes the L queue may hold a packet or two, so this runs RFC
    9332's Th_len step; Linux's step, which marks every packet waiting behind another at 8 Mbit/s, gives
    less (README, DualPI2)."""
    stats, rows = run(tmp_path, f"[{{host: client1, cc: cubic}}, {{host: client2, cc: {cc}}}]",
                      "aqm.step_semantics=rfc9332-thlen")
    ratio = rate(stats, 1) / rate(stats, 0)
    assert (1.6 <= ratio <= 7.0) if cc == "dctcp" else (0.5 <= ratio <= 1.3), ratio
    assert stats["utilisation"] >= 0.97
    assert statistics.median(delays(rows, 1)) <= 3_000
    assert 8_000 <= statistics.median(delays(rows, 0)) <= 22_000


@pytest.mark.slow
def test_cubic_and_newreno_share_the_classic_queue_fairly(tmp_path):
    """Jain's index >= 0.9 (both are Reno-friendly at this BDP: Cubic runs in its Reno-friendly region)."""
    stats, _ = run(tmp_path, "[{host: client1, cc: cubic}, {host: client2, cc: newreno}]")
    assert jain([rate(stats, 0), rate(stats, 1)]) >= 0.9


def test_tail_drop_fifo_builds_a_standing_queue_as_deep_as_the_receivers_windows_allow(tmp_path):
    """A 1000-packet tail-drop buffer (1.5 s at 8 Mbit/s), versus ~15 ms under DualPI2. Linux receivers (whose
    window is not modelled: it keeps ahead of cwnd) let Cubic and NewReno fill it: median queue delay > 200 ms
    (0.9-1.3 s over seeds 1-4) and drops. FreeBSD receivers hold each flow to their 64 KiB buffer: 45 segments,
    since tcp_autorcvbuf grows it only when 3/8 of it (24.6 kB) arrive within half the handshake's srtt, and
    a 4 Mbit/s share brings ~10 kB in that time (l4stb.sim.rcvwnd); two such flows keep 2 x 45 packets
    queued less the path's BDP: 121.5 ms over seeds 1-4, no drop."""
    stats, rows = run(tmp_path, "[{host: client1, cc: cubic}, {host: client2, cc: newreno}]", "aqm.name=fifo",
                      "hosts.client1.stack=linux", "hosts.client2.stack=linux", duration="15s")
    med = statistics.median(r[QD] for r in rows if r[24] >= 5_000_000)
    assert med > 200_000, med
    assert stats["drops"]["C"] > 0
    stats, rows = run(tmp_path / "freebsd", "[{host: client1, cc: cubic}, {host: client2, cc: newreno}]",
                      "aqm.name=fifo", duration="15s")
    med = statistics.median(r[QD] for r in rows if r[24] >= 5_000_000)
    assert 100_000 <= med <= 140_000, med
    assert stats["drops"]["C"] == 0


def test_pie_baseline_holds_its_target(tmp_path):
    """FreeBSD PIE (RFC 8033, target 15 ms): the median delay seen by arrivals stays within 5-40 ms
    (PIE controls the average with a slow integral and the queue swings around it), and the link stays
    busy: 99.0-99.8 % over seeds 1-6 (asserted >= 90 %). Issue 25's fix A alone (FreeBSD's PRR-SSRB walk after
    a CE echo, tcp_input.c IN_CONGRECOVERY) gave 86-96 %: the two classic flows kept their flight for a round
    after each CE echo, PIE's probability passed its 10 % mark limit more often and dropped (seed 3: 361 marks
    and 179 drops in 20 s, 198 and 130 before), and the recoveries left the link idle at times. With the
    receiver's advertised window (l4stb.sim.rcvwnd: 45 segments, a FreeBSD receiver's 64 KiB buffer) those
    flights are held as on a real host, and the link stays busy again."""
    stats, rows = run(tmp_path, "[{host: client1, cc: cubic}, {host: client2, cc: newreno}]", "aqm.name=pie",
                      duration="20s")
    med = statistics.median(r[QD] for r in rows if r[24] >= 5_000_000)
    assert 2_000 <= med <= 40_000, med
    assert stats["utilisation"] >= 0.9


def test_l4s_pie_quantises_time_to_the_kernel_tick(tmp_path):
    """The original scheduler at kern.hz=100: every logged delay is a multiple of 10 ms; both sub-queues log."""
    sc = load_scenario("paper-l4s-pie-10mbps-20ms", ["duration=10s"])
    topo = load_topology(sc.topology)
    stats = simulate_repeat(SimJob(sc, topo, "t-run", 1, 5, str(tmp_path / "hosts")))
    rows = read_log(stats["log_files"][0])
    assert rows and all(r[QD] % 10_000 == 0 for r in rows)
    assert {r[QT] for r in rows} == {0, 1}
    assert rows[0][1:8] == [15_000, 15_000, 150_000, 819, 1024, 10240, 1 | 2 | 16]


def test_udp_prague_rate_sender_fills_the_link_with_a_short_l_queue(tmp_path):
    """The rate-based UDP Prague model: utilisation >= 90 %, median L sojourn <= 3 ms, no drops."""
    sc = load_scenario("prague-8mbps", ["duration=15s", "flows=[{host: client2, cc: prague}]", "aqm.kern_hz=100000"])
    stats = simulate_repeat(SimJob(sc, load_topology(sc.topology), "t-run", 1, 3, str(tmp_path / "hosts")),
                            prague_transport="udp")
    rows = read_log(stats["log_files"][0])
    assert stats["utilisation"] >= 0.90
    assert statistics.median(delays(rows, 1)) <= 3_000
    assert stats["drops"] == {"C": 0, "L": 0}


class DropEveryTenth:
    """A stand-in for the learned policy: asked every 10th decision, it always drops."""

    every = 10

    def __init__(self):
        self.calls = 0

    def decide(self, fields):
        assert len(fields) == 24 and fields[23] == 0
        self.calls += 1
        return 1


def test_closed_loop_policy_drives_the_router(tmp_path):
    """Every 10th AQM decision is the policy's (all drops): ~10 % of logged decisions are drops."""
    policy = DropEveryTenth()
    sc = load_scenario("dctcp-8mbps", ["duration=5s"])
    stats = simulate_repeat(SimJob(sc, load_topology(sc.topology), "t-run", 1, 3, str(tmp_path / "hosts")),
                            policy=policy)
    rows = read_log(stats["log_files"][0])
    assert policy.calls == stats["policy_decisions"] > 0
    drops = sum(1 for r in rows if r[ACT] == 2)
    assert drops >= policy.calls and 0.08 <= policy.calls / len(rows) <= 0.12
