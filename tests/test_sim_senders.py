"""FreeBSD 14.1 and Linux senders, section-4 traffic and scenario fields, each against a derivation or the
source it models (named in each docstring)."""

from __future__ import annotations

import json
import math

import pytest
from sim_fakes import FakeSim

from l4stb.calibrate import Cell
from l4stb.config import CC_NAMES, Scenario, load_scenario, load_topology
from l4stb.errors import L4stbError
from l4stb.ratetrace import trace_schedule
from l4stb.sim.link import AccessLink
from l4stb.sim.packet import CE, ECT0, ECT1, NOT_ECT
from l4stb.sim.runner import SimJob, simulate_repeat
from l4stb.sim.tcp import EV_ARRIVE, EV_PACE, TcpFlow
from l4stb.sim.tcp_cc import FreeBsdCubic, LinuxCubic, PragueV07
from l4stb.sim.tcp_stacks import TCP_CCS, SenderCC, sender_cc
from l4stb.sim.udp_prague import UdpPragueFlow




def flow(cc: str, stack: str, ecn: bool = True) -> TcpFlow:
    return TcpFlow(0, cc, ecn, 0, 10**12, FakeSim(), AccessLink("c", 10**9, 50), stack=stack)


def past_cookie(f: TcpFlow) -> TcpFlow:
    """The flow once iperf3's cookie (segment 0 of a Linux-host stream) is sent and acknowledged on both sides."""
    f.snd_una = f.snd_nxt = f.high_tx = f.rcv_nxt = f.cookie
    return f


def sim(tmp_path, flows: str, *extra: str, duration: str = "20s", seed: int = 3) -> dict:
    sc = load_scenario("dctcp-8mbps", [f"duration={duration}", f"flows={flows}", *extra])
    return simulate_repeat(SimJob(sc, load_topology(sc.topology), "t-run", 1, seed, str(tmp_path / "hosts")))


# ------------------------------------------------------------------------------------------- senders


@pytest.mark.parametrize("stack", ["freebsd", "linux"])
@pytest.mark.parametrize("cc", TCP_CCS)
def test_every_stack_and_cc_is_one_object_that_answers_every_congestion_hook(stack, cc):
    """sender_cc binds a (stack, CC) once; each object implements the whole interface (no NotImplementedError),
    says which stack and CC it models, and a flow built on it runs a loss, a recovery and an RTO."""
    assert set(TCP_CCS) == set(CC_NAMES) - {"udp"}  # every TCP CC a scenario may name has an object
    obj = sender_cc(stack, cc, True, 0)
    assert isinstance(obj, SenderCC) and obj.name == cc
    assert obj.stack == ("linux" if cc == "prague" else stack)  # a TCP Prague is the Linux model on either host
    for hook in ("on_ack", "loss_ssthresh", "enter_recovery", "end_recovery", "on_rto"):
        assert getattr(type(obj), hook) is not getattr(SenderCC, hook), f"{type(obj).__name__} lacks {hook}"
    f = flow(cc, stack)
    f.snd_nxt = f.high_tx = 20
    f.on_ack(1_000_000, 2, 7, 1, 0)  # a SACK 5 above the cumulative ACK: fast recovery
    assert f.in_rec and f.ssthresh < 1e12
    f.on_ack(2_000_000, 20, -1, 0, 0)  # everything acked: recovery ends
    assert not f.in_rec and f.cwnd >= 1
    f.snd_nxt = f.high_tx = 30
    f.rto_at = f.timer_at = 3_000_000
    f.on_timer(3_000_000)
    assert f.snd_nxt > f.snd_una == 20 and f.backoff == 2  # go-back-N from snd_una after the timeout


@pytest.mark.parametrize("cc, stack, new_data, retransmission", [
    ("dctcp", "freebsd", ECT1, NOT_ECT), ("cubic", "freebsd", ECT0, NOT_ECT),
    ("dctcp", "linux", ECT0, ECT0), ("prague", "linux", ECT1, ECT1), ("cubic", "linux", ECT0, NOT_ECT)])
def test_each_stack_sends_the_ecn_codepoint_its_source_sets(cc, stack, new_data, retransmission):
    """New data: Linux's DCTCP sends ECT(0) (tcp_dctcp.c has TCP_CONG_NEEDS_ECN only, so INET_ECN_xmit sets
    ECT(0); ECT(1) needs TCP_CONG_ECT_1_NEGOTIATION, as Prague has); FreeBSD's DCTCP sends ECT(1) with
    net.inet.tcp.cc.dctcp.ect1=1. Retransmissions: FreeBSD tcp_ecn_output_established marks ECT on new data only;
    Linux tcp_ecn_send clears ECT on them unless the CC needs ECN (DCTCP and Prague keep their codepoint)."""
    f = flow(cc, stack)
    assert f.ecn_cp == new_data
    assert f.rtx_cp == retransmission


def _ack_with_ce(f: TcpFlow, cwnd: int) -> None:
    f.cwnd = float(cwnd)
    f.ssthresh = 1e12
    if f.cc.name == "dctcp":
        f.cc.alpha = 1.0
    f.snd_nxt = f.high_tx = 100 + cwnd
    f.snd_una = 100
    if f.cc.stack == "freebsd" and f.cc.name == "dctcp":
        f.cc.win_end = 10**9  # cc_dctcp: no alpha update on this ACK
    f.on_ack(1_000_000, 102, -1, 2, 0)


def test_freebsd_dctcp_takes_a_slow_start_step_on_the_reducing_ack():
    """cc_dctcp: CC_ECN sets cwnd = ssthresh = cwnd (1 - alpha/2), then ack_received runs newreno's growth
    with cwnd == ssthresh, i.e. slow start: +2 segments on a 2-segment ACK (20 -> 10 -> 12)."""
    f = flow("dctcp", "freebsd")
    _ack_with_ce(f, 20)
    assert f.ssthresh == pytest.approx(10.0)
    assert f.cwnd == pytest.approx(12.0)


def test_freebsd_newreno_walks_cwnd_down_by_prr_after_a_ce_echo_and_grows_only_after_the_episode():
    """tcp_input.c, IN_CONGRECOVERY: "During ECN cwnd reduction always use PRR-SSRB". cc_newreno's CC_ECN sets
    ssthresh = cwnd = 10 (of 20), then tcp_do_prr_ack on the same ACK: pipe 20 >= ssthresh, snd_cnt =
    ceil(2 x 10 / 20) - 0 = 1, cwnd = pipe - 2 acked + 1 = 19; each later 2-segment ACK lowers it by one. The
    ACK past snd_recover ends the episode without growth (cc_ack_received still sees IN_RECOVERY); the next
    one grows."""
    f = flow("newreno", "freebsd")
    _ack_with_ce(f, 20)
    assert f.ssthresh == 10.0 and f.in_cwr
    assert f.cwnd == 19.0
    walk = [f.cwnd]
    cum = 102
    while f.in_cwr:
        cum += 2
        f.on_ack(1_000_000 + cum, cum, -1, 0, 0)
        walk.append(f.cwnd)
    assert walk[:3] == [19.0, 18.0, 17.0]
    assert all(b <= a for a, b in zip(walk, walk[1:-1]))
    assert walk[-1] == walk[-2]  # the ACK that ends congestion recovery does not grow cwnd
    assert abs(walk[-1] - f.ssthresh) <= 2
    end = f.cwnd
    f.on_ack(9_000_000, cum + 2, -1, 0, 0)
    assert f.cwnd == end + 2  # cwnd <= ssthresh: newreno's slow-start step, abc_l_var = 2


def test_freebsd_ecn_prr_divides_by_the_flight_of_the_last_loss_recovery():
    """tcp_input.c: entering fast recovery (with do_prr) sets sackhint.recover_fs to the flight; tcp_do_prr_ack
    sets it only when it is 0 and nothing else resets it, so the next ECN episode's proportional part divides
    by that flight. A loss at a flight of 40 then a CE echo at a flight of 20 (ssthresh 10): snd_cnt =
    ceil(2 x 10 / 40) = 1 on the first 2-segment ACK, which sends that segment (prr_out 1, pipe 19 at the
    next ACK); the next one gives ceil(4 x 10 / 40) - 1 = 0, cwnd = 19 - 2 + 0 (with the episode's own
    flight of 20 it would be ceil(4 x 10 / 20) - 1 = 1, cwnd 18)."""
    f = flow("newreno", "freebsd")
    f.snd_una, f.snd_nxt, f.high_tx = 100, 140, 140
    f.cwnd = 40.0
    f.cc.enter_recovery(f, 0)
    assert f.cc.recover_fs == 40
    f.cc.end_recovery(f)
    _ack_with_ce(f, 20)
    assert (f.ssthresh, f.cwnd, f.cc.recover_fs) == (10.0, 19.0, 40)
    assert (f.prr_out, f.high_tx) == (1, 121)
    f.on_ack(1_000_001, 104, -1, 0, 0)
    assert f.cwnd == 17.0


def test_linux_dctcp_reduces_by_prr_and_does_not_grow_in_cwr():
    """tcp_dctcp.c dctcp_ssthresh = cwnd - cwnd alpha / 2 (20 -> 10); tcp_cwnd_reduction (PRR) sets
    cwnd = pipe + sndcnt with pipe above ssthresh: sndcnt = ceil(ssthresh x delivered / prior_cwnd) - prr_out
    = 1 (the forced first send), so cwnd = 18 + 1; later ACKs in CWR never raise it above pipe + sndcnt."""
    f = flow("dctcp", "linux")
    _ack_with_ce(f, 20)
    assert f.ssthresh == 10.0 and f.in_cwr
    assert f.cwnd == 19.0
    before = f.cwnd
    f.on_ack(2_000_000, 104, -1, 0, 0)
    assert f.cwnd <= before


def _segment(seq: int, ecn: int) -> list:
    return [0, 1500, ecn, 0, seq, 0]


def test_linux_dctcp_receiver_acks_at_once_when_the_ce_state_changes():
    """tcp_dctcp.h dctcp_ece_ack_update: on a CE state change the delayed ACK for the segments before goes out
    first with their (prior) state, then the new segment is ACKed at once; while the state holds, every 2nd
    segment is ACKed (tcp_input.c __tcp_ack_snd_check). FreeBSD-stack flows keep the plain every-2nd rule."""
    f = past_cookie(flow("dctcp", "linux"))
    f.quick = 0  # past the connection's quick-ACK mode (its first 16 ACKs)
    acks = f.sim.acks
    c = f.cookie
    f.on_data(1, _segment(c, ECT0))
    assert acks == []  # delayed
    f.on_data(2, _segment(c + 1, CE))
    assert [(a[2] - c, a[4]) for a in acks] == [(1, 0), (2, 1)]  # (cumulative ACK, CE count) twice, at once
    f.on_data(3, _segment(c + 2, CE))
    f.on_data(4, _segment(c + 3, CE))
    assert [(a[2] - c, a[4]) for a in acks[2:]] == [(4, 2)]
    bsd = flow("dctcp", "freebsd")
    bsd.on_data(1, _segment(0, ECT1))
    bsd.on_data(2, _segment(1, CE))
    assert [(a[2], a[4]) for a in bsd.sim.acks] == [(2, 1)]


def test_linux_dctcp_receiver_acks_the_cwr_segment_at_once():
    """tcp_ecn_accept_cwr: the first new segment after the sender entered CWR carries CWR and is ACKed at once."""
    f = flow("dctcp", "linux")
    f.cwnd, f.snd_nxt, f.high_tx, f.snd_una = 20.0, 120, 120, 100
    f.on_ack(1_000_000, 102, -1, 2, 0)  # ECE: CWR, the next new segment (120) carries CWR
    assert f.in_cwr and f.cwr_pending
    f.rcv_nxt, f.quick, f.rcv_last = 119, 0, 1  # past the quick-ACK mode, receiving without a gap
    f.on_data(2, _segment(119, ECT0))
    assert f.sim.acks == []  # an ordinary segment: delayed
    f.on_data(3, _segment(120, ECT0))
    assert [a[2] for a in f.sim.acks] == [121]


def _ack_window(f: TcpFlow, alpha: int, delivered: int, ce: int) -> None:
    f.cc.alpha_1024, f.cc.next_seq = alpha, 0
    f.cwnd, f.ssthresh = 10.0, 1e12
    f.snd_una, f.snd_nxt, f.high_tx = 0, delivered, delivered
    f.on_ack(1_000_000, delivered, -1, ce, 0)


def test_linux_dctcp_alpha_is_integer_and_drops_to_zero_below_one_sixteenth_of_a_percent():
    """tcp_dctcp.c dctcp_update_alpha: alpha (of 1024) -= min_not_zero(alpha, alpha >> 4), then += (delivered_ce
    << 6) / delivered: 1024 with 5 of 10 marked -> 960 + 32 = 992, and dctcp_ssthresh = 10 - (10 x 992 >> 11) = 6;
    an alpha of 15 (15 >> 4 = 0) falls to 0 in one unmarked window, 16 to 15."""
    f = flow("dctcp", "linux")
    _ack_window(f, 1024, 10, 5)
    assert f.cc.alpha_1024 == 992 and f.ssthresh == 6.0
    for before, after in ((15, 0), (16, 15)):
        f = flow("dctcp", "linux")
        _ack_window(f, before, 10, 0)
        assert f.cc.alpha_1024 == after


# real Linux 7.2, real sch_dualpi2 any_ect, one DCTCP flow, base RTT 10 ms, iperf3 20 s (issue 20): goodput/rate
REAL_LINUX_DCTCP_ALONE = {8: 0.857, 20: 0.927, 40: 0.880}


@pytest.mark.parametrize("rate_mbps", sorted(REAL_LINUX_DCTCP_ALONE))
def test_one_linux_dctcp_flow_through_htb_and_dualpi2_any_ect_matches_the_real_kernel(tmp_path, rate_mbps):
    """The issue-20 cell on the simulator (bench/bench_sim_calibration.py): goodput/rate within 10 % of the real
    kernel's, every packet in the L queue (ECT(0) with any_ect), and the L sojourn no longer pinned at one
    packet time (before: every L packet at 1.488 ms and 0.21 of the link at 8 Mbit/s)."""
    stats = sim(tmp_path, "[{host: client2, cc: dctcp}]", f"bottleneck.rate={rate_mbps}Mbit",
                "bottleneck.shaper=htb", "aqm.l4s_classifier=any_ect", "hosts={client2: {stack: linux}}",
                "logging.compress=none", seed=1)
    util = stats["flows"][0]["throughput_mbps"] / rate_mbps
    assert util == pytest.approx(REAL_LINUX_DCTCP_ALONE[rate_mbps], rel=0.10)
    assert stats["marks"]["C"] == stats["drops"]["C"] == 0 and stats["marks"]["L"] > 0
    assert stats["flows"][0]["ecn_codepoint"] == ECT0


def test_linux_dctcp_goes_to_the_classic_queue_under_linuxs_default_classifier(tmp_path):
    """ECT(0) under l4s_ect (sch_dualpi2's default): every DCTCP packet in C, as the real qdisc's pkts_in_l = 0 showed."""
    stats = sim(tmp_path, "[{host: client2, cc: dctcp}]", "hosts={client2: {stack: linux}}", "bottleneck.shaper=htb",
                duration="5s")
    assert stats["marks"]["L"] == 0 and stats["marks"]["C"] > 0


def test_htb_lets_two_back_to_back_packets_through_after_idle_and_charges_the_ethernet_header():
    """sch_htb.c htb_accnt_tokens with tc's default burst of 1600 bytes: tokens full after idle; the first
    1514-byte charge leaves 86, still >= 0, so the second packet leaves at once too; the third waits until the
    tokens are back at 0, (1514 - 86) bytes at 8 Mbit/s = 1.428 ms. A pipe instead serialises: 1.5 ms each."""
    from l4stb.sim.aqm_fifo import Fifo
    from l4stb.sim.engine import Engine, TokenBucket
    from l4stb.sim.link import Bottleneck

    class Sink:
        def on_data(self, t, pkt):
            pass

    sojourns = {}
    for shaper in (TokenBucket(1600), None):
        eng = Engine(Fifo(100, 10**6), Bottleneck(8_000_000, 0), [Sink()], [0], shaper=shaper)
        eng.sojourns = []
        for seq in range(3):
            eng.schedule(1_000_000_000, EV_ARRIVE, [0, 1500, ECT0, 0, seq, 0])
        eng.run(2_000_000_000)
        sojourns[shaper is not None] = eng.sojourns
    assert sojourns[True] == [0, 0, 1428]
    assert sojourns[False] == [0, 1500, 3000]


def test_freebsd_cubic_halves_at_the_first_congestion_event_then_uses_beta():
    """cc_cubic.c cubic_ssthresh_update: first event ssthresh = cwnd / 2 and W_max = 179/256 cwnd; later
    ones ssthresh = 179/256 cwnd (fast convergence 217/256 only below W_max)."""
    c = FreeBsdCubic(10.0)
    assert c.signal(0, 100.0) == 50.0
    assert c.w_max == pytest.approx(100 * 179 / 256)
    assert c.signal(0, 100.0) == pytest.approx(100 * 179 / 256)
    assert c.signal(0, 50.0) == pytest.approx(50 * 217 / 256 * 179 / 256)


def test_freebsd_cubic_jumps_to_w_cubic_at_t_plus_the_mean_rtt():
    """cubic_ack_received: cwnd = W_cubic(t + mean RTT) = C (t + RTT - K)^3 + W_max with K = cbrt(W_max 0.3 / C),
    t in whole ticks since the epoch (it jumps, it does not add (target - cwnd) / cwnd per ACK)."""
    c = FreeBsdCubic(10.0)
    c.min_rtt = c.mean_rtt = 200_000_000  # a long RTT keeps W_est = 0.7 W_max + 0.53 t / RTT below W_cubic
    c.cong_event = True
    c.w_max = 100.0
    c.in_ss = True
    c.ack(0, 70.0, 60.0, 2)  # first CA ACK: the epoch starts here
    t = 3.0004
    cwnd = c.ack(int(t * 1e9), 71.0, 60.0, 2)
    k = math.cbrt(100 * 0.3 / 0.4)
    assert cwnd == pytest.approx(0.4 * (3.0 + 0.2 - k) ** 3 + 100, rel=1e-9)


def test_linux_cubic_grows_at_the_reno_friendly_rate_in_a_small_window():
    """tcp_cubic.c tcp_friendliness: tcp_cwnd gains one segment per (cwnd x 15 / 8) segments acked, i.e.
    3(1 - beta)/(1 + beta) = 0.53 segments per RTT; far below W_max (K ~ 2 s) the cubic target stays under it,
    so over 30 RTTs of a 7-segment window cwnd grows by about 30 x 0.53 = 16 (asserted 12-20)."""
    c = LinuxCubic()
    c.last_max = 10
    c.delay_min = 20_000_000
    cwnd = 7
    now = 0
    for _ in range(30):
        w = cwnd
        for _ in range(w):
            now += 20_000_000 // w
            cwnd = c.cong_avoid(now, cwnd, 1)
    assert 12 <= cwnd - 7 <= 20, cwnd


def test_linux_hystart_leaves_slow_start_when_the_round_rtt_rises():
    """tcp_cubic.c hystart_update (delay): after 8 samples, a round minimum above delay_min + clamp(delay_min/8,
    4 ms, 16 ms) sets ssthresh = cwnd; below that slow start goes on."""
    c = LinuxCubic()
    ss = c.rtt_sample(0, 20_000_000, 32, 10**9, 0, 100)
    assert ss == 10**9
    t = 0
    for _ in range(8):
        t += 3_000_000  # ACKs 3 ms apart: no ACK train
        assert c.rtt_sample(t, 25_000_000, 32, 10**9, 1, 100) == 10**9
    assert c.rtt_sample(t + 3_000_000, 25_000_000, 32, 10**9, 1, 100) == 32  # round minimum 25 ms > 20 + 4 ms


def test_linux_hystart_counts_rounds_from_the_first_ack_below_the_low_window():
    """tcp_cubic.c hystart_update: the round test (snd_una past end_seq) comes before the hystart_low_window test, so
    a round starts at the first ACK and the round in progress when cwnd reaches 16 keeps its start (the model used
    to start a fresh round there, mid-flight)."""
    c = LinuxCubic()
    c.rtt_sample(1_000_000, 10_000_000, 10, 10**9, 1, 20)  # cwnd 10: a round starts all the same, ending at 20
    assert (c.round_start, c.end_seq) == (1_000_000, 20)
    c.rtt_sample(6_000_000, 10_000_000, 16, 10**9, 8, 40)  # cwnd reaches 16 inside that round
    assert (c.round_start, c.end_seq) == (1_000_000, 20)
    c.rtt_sample(12_000_000, 10_000_000, 24, 10**9, 21, 60)  # snd_una passes 20: the next round
    assert (c.round_start, c.end_seq) == (12_000_000, 60)


def test_linux_cubic_samples_the_newest_acked_segments_rtt_not_the_timestamp_echo():
    """tcp_input.c tcp_clean_rtx_queue: the congestion control's sample (ca_rtt_us) is the RTT of the newest segment
    the ACK covers, by its send time; the timestamp echo of a delayed ACK is the oldest one's (RFC 7323), a whole
    inter-departure time longer, which made HyStart see delay that was not there."""
    f = past_cookie(flow("cubic", "linux", ecn=False))
    c = f.cookie
    f.send(0)  # the initial window at t = 0
    f.cwnd += 2
    f.send(5_000_000)  # two more at 5 ms
    f.on_ack(30_000_000, c + 12, -1, 0, 0)  # one ACK for all 12, echoing the first's timestamp (0)
    assert f.cc.cubic.delay_min == 25_000_000  # HyStart's first sample: 30 ms - 5 ms, not 30 ms


@pytest.mark.parametrize("stack, first_bytes, at_start", [("linux", 37 + 52, 1), ("freebsd", 1500, 10)])
def test_a_linux_stream_opens_with_iperf3s_cookie_and_its_ack_gives_hystart_the_unloaded_rtt(stack, first_bytes,
                                                                                            at_start):
    """iperf3 writes its 37-byte cookie on each data connection before any data (iperf_tcp_connect), and the data
    follows once the server has the stream; the real kernel's captures show the 89-byte packet per stream. Its ACK
    is Linux Cubic's first RTT sample, taken before any initial window queues. FreeBSD-host flows start with the
    window (the FreeBSD model is left as published)."""
    f = flow("cubic", stack, ecn=False)
    f.send(0)
    sent = [e[3] for e in f.sim.heap if e[2] == EV_ARRIVE]
    assert len(sent) == at_start and sent[0][1] == first_bytes
    if stack == "linux":
        f.on_ack(10_000_000, 1, -1, 0, 0)
        assert f.cc.cubic.delay_min == 10_000_000
        assert len([e for e in f.sim.heap if e[2] == EV_ARRIVE]) == 1 + 10  # then the initial window
        f.sample(20_000_000)
        assert f.samples[-1][1] == 0  # iperf3 counts no byte of the cookie


def _recovery_over_sacked(cc: str) -> TcpFlow:
    """A Linux flow in recovery since snd_una 100 was lost, 101..140 SACKed, sent up to 200; the ACK of the
    retransmission of 100 then acknowledges 100..140 at once, and 145 is already SACKed above a new hole at 141."""
    f = flow(cc, "linux", ecn=False)
    f.snd_una, f.snd_nxt, f.high_tx = 100, 200, 200
    f.in_rec, f.recover, f.rtx_next = True, 130, 141
    f.sacked = set(range(101, 141)) | {145}
    f.fack = 146
    f.cwnd = f.ssthresh = 30.0
    f.prior_cwnd = 43.0
    f.on_ack(1_000_000, 141, -1, 0, 0)
    return f


def test_a_cumulative_ack_over_sacked_segments_delivers_only_the_rest():
    """Linux counts a segment delivered once, when first SACKed or acked (tcp_ack's newly_acked_sacked,
    tp->delivered): DCTCP's alpha and PRR saw the 40 segments SACKed before as delivered again."""
    f = _recovery_over_sacked("dctcp")
    assert f.delivered == 1


def test_linux_prr_entering_recovery_on_the_ack_that_ended_the_last_one_sends_no_burst():
    """The ACK ends one recovery and starts the next (a hole below a SACK): tcp_cwnd_reduction with
    newly_acked_sacked = 1 lets out one segment (the pipe of 54 is above the new ssthresh of 21: PRR's
    proportional part, ceil(21 x 1 / 30)). Counting the 40 segments SACKed before as delivered made it release
    ceil(21 x 41 / 30) = 29 at once."""
    f = _recovery_over_sacked("cubic")
    assert f.in_rec and f.ssthresh == 21.0
    assert (f.snd_nxt - 200) + len(f.rtx_out) <= 1


@pytest.mark.slow
def test_cubic_beside_dctcp_whose_initial_window_is_queued_first_leaves_slow_start_as_the_kernel_does(tmp_path):
    """Calibration cell cubic-dctcp-any-ect-8m-10ms with DCTCP started 1 ms before Cubic, so that Cubic's initial
    window waits behind DCTCP's in the L queue. On the real kernel (6 repeats, DCTCP first in 3: the run
    dctcp-first-8m of docs/real-linux.md) the first 3 s held the C queue's sojourn at most 66 ms with 14-23 C drops:
    the cookie's ACK gives HyStart an unloaded delay_min. The model without the cookie took delay_min from the
    queued window (25 ms), left slow start at twice the window and gave 117 ms and 124 drops. Bounds: 25 % above
    the kernel's worst sojourn and twice its worst drop count."""
    sc = Cell("cubic+dctcp", "any-ect", 8, 10).scenario(duration_s=3, repeats=1, seed=1, provider="sim")
    doc = sc.model_dump(mode="json")
    doc["flows"][0]["start"] = "1ms"
    doc["logging"]["compress"] = "none"
    sc = Scenario.model_validate(doc)
    stats = simulate_repeat(SimJob(sc, load_topology(sc.topology), "t-run", 1, 1, str(tmp_path / "hosts")),
                            collect_sojourn=True)
    assert max(stats["sojourn_us"]) <= 1.25 * 65_700
    assert stats["drops"]["C"] <= 2 * 23


def test_prague_becomes_rtt_independent_after_4_rounds():
    """tcp_prague.c v0.7 prague_ai_ack_increase: 1 before prague_rtt_transition = 4 rounds out of slow start,
    then (srtt / 25 ms)^2 for srtt < 25 ms ((10/25)^2 = 0.16), 1 at or above the target."""
    p = PragueV07(10)
    p.round = 3
    p.update_ai(10_000_000)
    assert p.ai == 1.0
    p.round = 4
    p.update_ai(10_000_000)
    assert p.ai == pytest.approx(0.16)
    p.update_ai(30_000_000)
    assert p.ai == 1.0


def _prague_in_ca(cwnd: float = 20.0) -> TcpFlow:
    f = flow("prague", "linux")
    f.ssthresh = f.cwnd = f.cc.pr.frac = cwnd
    f.srtt = 20_000_000
    f.snd_nxt = f.high_tx = 100 + int(cwnd)
    f.snd_una = 100
    f.is_cwnd_limited = True
    return f


def test_prague_halves_its_window_at_the_first_mark_and_cwnd_follows_one_segment_per_ack():
    """v0.7 alpha_mode 0: alpha starts at 0 (so the first CWR takes nothing) and the first CE echo halves
    frac_cwnd; prague_update_cwnd then moves cwnd one segment per ACK toward it, ssthresh following; the
    round's EWMA then counts the marks (all of them: alpha = 1/16)."""
    f = _prague_in_ca()
    f.on_ack(1_000_000, 102, -1, 2, 0)
    assert f.cc.pr.saw_ce and f.cc.pr.alpha == pytest.approx(1 / 16)
    assert f.cc.pr.frac == pytest.approx(10.0)
    assert f.cwnd == 19.0 and f.ssthresh == 19.0


def test_prague_cwr_cuts_the_window_by_alpha_half():
    """prague_enter_cwr in window mode: frac_cwnd -= alpha/2 frac_cwnd (alpha 0.5: 20 -> 15)."""
    f = _prague_in_ca()
    f.cc.pr.saw_ce = True
    f.cc.pr.alpha = 0.5
    f.on_ack(1_000_000, 102, -1, 2, 0)
    assert f.cc.pr.frac == pytest.approx(15.0)


def test_prague_switches_to_rate_mode_below_four_packets_and_adds_one_mtu_per_virtual_rtt():
    """prague_cong_control: once marked and at cwnd <= cwnd_transit (4), the pacing rate is the state. In
    rate mode, RTT-independent, each virtual RTT (max(25 ms, srtt)) of ACKed packets adds one MTU per
    virtual RTT to the rate (prague_update_cwnd), with the kernel's 2^20-us second."""
    f = _prague_in_ca(3.0)
    pr = f.cc.pr
    pr.saw_ce = True
    pr.round = 10
    f.on_ack(1_000_000, 101, -1, 0, 0)
    assert pr.rate_mode
    vrtt_s = 0.025 * pr.SEC
    before = pr.rate
    n = math.ceil(before * vrtt_s / pr.MTU)
    for k in range(n):
        f.is_cwnd_limited = True
        f.snd_nxt = f.high_tx = f.snd_una + 4
        f.on_ack(2_000_000 + k, f.snd_una + 1, -1, 0, 0)
    assert pr.rate - before == pytest.approx(pr.MTU / vrtt_s, rel=0.3)


def _lost_retransmission(stack: str) -> TcpFlow:
    """A flow in recovery whose retransmission of segment 5 (sent when snd_nxt was 30) is lost: the SACK of
    segment 31, sent after it, arrives while 5 is still a hole."""
    f = flow("newreno", stack)
    f.snd_una, f.snd_nxt, f.high_tx = 5, 40, 40
    f.in_rec, f.recover, f.fack = True, 30, 31
    f.sacked = set(range(6, 31))
    f.rtx_out = {5: 30}
    f.rtx_next = 31
    f.cwnd = f.ssthresh = 10.0
    f.prior_cwnd = 20.0
    f.on_ack(1_000_000, 5, 31, 0, 0)
    return f


def test_freebsd_resends_a_lost_retransmission_and_reduces_once_more():
    """tcp_sack.c tcp_sack_lost_retransmission: the hole is resent from the start (no RTO), cwnd = ssthresh and
    CC_NDUPACK again: NewReno's ssthresh 10 -> 5."""
    f = _lost_retransmission("freebsd")
    assert f.rtx_next == 5 and 5 not in f.rtx_out
    assert f.ssthresh == 5.0


def test_linux_resends_a_lost_retransmission_in_the_same_episode():
    """RACK marks the retransmission lost (a later-sent segment was delivered); PRR sends it on this ACK
    (prr_out = 0 forces one segment) and ssthresh stays: no second reduction."""
    f = _lost_retransmission("linux")
    assert any(e[3][4] == 5 for e in f.sim.heap if isinstance(e[3], list))
    assert f.ssthresh == 10.0


def _timer_events(f) -> list[int]:
    from l4stb.sim.tcp import EV_RTO
    return sorted(e[0] for e in f.sim.heap if e[2] == EV_RTO)


def _established(stack: str, cc: str = "newreno", out: int = 4) -> TcpFlow:
    """A flow in congestion avoidance with ``out`` segments in flight and a 10 ms RTT (min RTT 10 ms)."""
    f = flow(cc, stack, ecn=False)
    f.cwnd, f.ssthresh = float(out), 2.0
    f.snd_nxt = f.high_tx = 10 + out
    f.on_ack(10_000_000, 10, -1, 0, 0)  # an RTT sample of 10 ms (the segment's timestamp was 0)
    return f


@pytest.mark.parametrize("stack, recovers_at_ms", [("linux", 18.0), ("freebsd", None)])
def test_one_sack_above_a_hole_starts_recovery_after_racks_reordering_window_on_linux_only(stack, recovers_at_ms):
    """tcp_recovery.c: with fewer than 3 segments SACKed, RACK waits min_rtt/4 (2.5 ms) plus TCP_TIMEOUT_MIN
    (2 ms), in jiffies of 4 ms (HZ=250, rounded up: 8 ms), then tcp_rack_reo_timeout enters recovery and resends
    the hole. FreeBSD needs three duplicate ACKs (tcprexmtthresh): one SACK never starts recovery."""
    f = _established(stack)
    f.on_ack(10_000_000, 10, 11, 0, 0)  # segment 10 lost, 11 SACKed
    assert not f.in_rec
    if recovers_at_ms is not None:
        assert f.reo_at == recovers_at_ms * 1e6
    for t in _timer_events(f):
        if t <= 30_000_000 and t == f.timer_at:
            f.on_timer(t)
    if recovers_at_ms is None:
        assert not f.in_rec
    else:
        assert f.in_rec and f.retrans == 1
        assert f.recover == f.high_tx


def test_linux_sends_a_tail_loss_probe_two_rtts_after_the_last_ack_freebsd_waits_for_the_rto():
    """tcp_output.c tcp_schedule_loss_probe: 2 srtt + TCP_TIMEOUT_MIN (4 segments out), rounded up to jiffies:
    22 ms -> 24 ms after the ACK; tcp_send_loss_probe sends one new segment beyond cwnd and restarts the RTO from
    it. FreeBSD's base stack has no TLP: its only timer is the RTO (srtt + 4 rttvar + 200 ms)."""
    linux, freebsd = _established("linux"), _established("freebsd")
    assert freebsd.tlp_at == 0 and freebsd.rto_at - 10_000_000 >= 200_000_000
    assert linux.tlp_at == 10_000_000 + 24_000_000
    nxt = linux.snd_nxt
    linux.on_timer(linux.timer_at)
    assert linux.snd_nxt == nxt + 1 and linux.tlp_high == nxt + 1  # one probe, beyond cwnd
    assert linux.rto_at == 34_000_000 + linux.rto  # the RTO restarts from the probe
    linux.on_ack(40_000_000, 10, -1, 0, 0)  # a duplicate ACK schedules no second probe while one is out
    assert linux.tlp_at == 0


def test_linux_probe_waits_for_a_delayed_ack_when_one_segment_is_out():
    """With one segment in flight the probe adds TCP_RTO_MIN (200 ms) for the receiver's delayed ACK, and never
    fires later than the RTO."""
    f = _established("linux", out=1)
    assert f.tlp_at - 10_000_000 == min(-(-(2 * f.srtt + 200_000_000) // 4_000_000) * 4_000_000,
                                        -(-f.rto // 4_000_000) * 4_000_000)


def test_linux_rto_is_srtt_plus_at_least_rto_min():
    """tcp_rtt_estimator / __tcp_set_rto: rttvar is at least TCP_RTO_MIN, so RTO = srtt + max(4 mdev, 200 ms);
    FreeBSD adds its 200 ms rexmit_slop on top of 4 rttvar."""
    linux, freebsd = _established("linux"), _established("freebsd")
    assert linux.rto == linux.srtt + max(4 * linux.rttvar, 200_000_000)
    assert freebsd.rto == freebsd.srtt + 4 * freebsd.rttvar + 200_000_000


@pytest.mark.parametrize("stack, acks", [("linux", 16 + 2), ("freebsd", 10)])
def test_a_linux_receiver_acks_its_first_16_segments_one_by_one_freebsd_every_other(stack, acks):
    """tcp_input.c tcp_event_data_recv / tcp_incr_quickack: quick-ACK mode from the first data segment, 16 ACKs
    (TCP_MAX_QUICKACKS), then delayed ACKs every second segment; FreeBSD delays from the first (DELAY_ACK).
    20 in-order segments: Linux 16 + 2, FreeBSD 10."""
    f = flow("cubic", stack, ecn=False)
    for seq in range(20):
        f.on_data(1_000_000 + seq * 100_000, [0, 1500, 0, 0, seq, 0])
    assert len(f.sim.acks) == acks


def test_a_linux_receiver_re_enters_quick_ack_after_a_long_gap():
    """tcp_event_data_recv: a receive gap longer than the RTO means the sender's window stalled: ACK quickly."""
    f = flow("cubic", "linux", ecn=False)
    for seq in range(20):
        f.on_data(1_000_000 + seq * 100_000, [0, 1500, 0, 0, seq, 0])
    before = len(f.sim.acks)
    f.on_data(2_000_000_000, [0, 1500, 0, 0, 20, 0])  # 2 s later
    assert len(f.sim.acks) == before + 1 and f.quick == 15


def test_paced_packets_leave_through_the_hosts_nic_fifo():
    """A paced packet released while the NIC still serialises another host packet waits for it: arrival at
    the router = NIC free time + its serialisation + propagation."""
    f = flow("prague", "linux")
    f.srtt = 20_000_000
    f.access.free_ns = 5_000_000
    f.send(1_000_000)
    first = min(e[0] for e in f.sim.heap if e[2] == EV_ARRIVE)
    assert first == 5_000_000 + f.access.ser_ns + f.access.prop_ns


def test_tcp_prague_paces_its_window_per_srtt_with_tsq_holding_about_one_ms():
    """prague_update_pacing_rate (window mode): mtu / srtt x max(floor(frac_cwnd), in flight) = 10 per 20 ms,
    one packet every 2 ms in GSO bursts of max(1, rate x 2^-12 s) = 1 segment; the fq qdisc holds packets
    until their time, at most max(2 packets, ~1 ms) ahead (TSQ): at t = 0 packets leave at 0, 2 and 4 ms, and
    the pacing timer hands over the next at 2 ms."""
    f = past_cookie(flow("prague", "linux"))
    f.srtt = 20_000_000
    f.ssthresh = 10.0  # cwnd >= ssthresh / 2: 100 % of the rate
    f.send(0)
    releases = sorted(e[3][5] for e in f.sim.heap if e[2] == EV_ARRIVE)
    assert releases == [0, 2_000_000, 4_000_000]
    assert f.cc.pr.tso == 1 and [e[0] for e in f.sim.heap if e[2] == EV_PACE] == [2_000_000]


def test_udp_prague_rate_is_capped_by_the_access_link_not_the_bottleneck():
    """udp_prague cannot send faster than its NIC: the cap is the access link's rate (1 Gbit/s here)."""
    f = UdpPragueFlow(0, 0, 10**9, FakeSim(), AccessLink("c", 10**9, 50))
    assert f.max_rate == 1e9


# ------------------------------------------------------------------------------------------- end to end


def test_iperf3_json_reports_the_clients_congestion_control_on_both_sides(tmp_path):
    """iperf_server_api.c applies the client's -C to the accepted socket: receiver_tcp_congestion is dctcp."""
    stats = sim(tmp_path, "[{host: client2, cc: dctcp}]", duration="3s")
    docs = [json.loads(open(p).read()) for p in stats["iperf3_files"]]
    assert {d["end"]["receiver_tcp_congestion"] for d in docs} == {"dctcp"}


def test_unresponsive_udp_sends_its_rate_and_on_off_halves_it(tmp_path):
    """iperf3 -u -b 2Mbit: 2 Mbit/s of 1500-byte packets arrives (the link has room), 2 x 1448/1500 Mbit/s of
    payload; 1 s on / 1 s off: half of it."""
    cbr = sim(tmp_path, "[{host: client1, cc: udp, rate: 2Mbit}]", duration="10s")
    onoff = sim(tmp_path, "[{host: client1, cc: udp, rate: 2Mbit, on_time: 1s, off_time: 1s}]", duration="10s")
    assert cbr["flows"][0]["throughput_mbps"] == pytest.approx(2.0 * 1448 / 1500, rel=0.01)
    assert onoff["flows"][0]["throughput_mbps"] == pytest.approx(1.0 * 1448 / 1500, rel=0.06)


def test_udp_overload_drives_dualpi2_to_drop_classic_packets(tmp_path):
    """12 Mbit/s of not-ECT UDP into an 8 Mbit/s pipe: the C queue overflows its target and PI2 drops."""
    stats = sim(tmp_path, "[{host: client1, cc: udp, rate: 12Mbit}]", duration="5s")
    assert stats["drops"]["C"] > 0.2 * stats["packets"]


def test_short_flow_completion_time_is_bounded_by_its_bytes_and_slow_start(tmp_path):
    """One 100 KB (70-segment) flow alone at 8 Mbit/s, ~20 ms RTT: it cannot finish before 100 KB / 8 Mbit/s
    = 0.1 s, and slow start from 10 segments needs 3 rounds (10 + 20 + 40), so at most ~0.1 s + 4 RTTs."""
    stats = sim(tmp_path, "[{host: client1, cc: cubic, size: 100KB, mean_gap: 100ms}]", duration="5s")
    fct = stats["flows"][0]["fct_ms"]
    assert 100 <= fct <= 100 + 4 * 25, fct


def test_short_flows_arrive_as_a_seeded_poisson_process():
    """Arrivals from FlowGroup.arrivals_us: increasing, the same for a seed, mean gap near mean_gap."""
    sc = load_scenario("dctcp-8mbps", ["flows=[{host: client1, cc: cubic, connections: 400, size: 10KB, mean_gap: 50ms}]"])
    a = sc.flows[0].arrivals_us(7, 0)
    assert a == sorted(a) and a == sc.flows[0].arrivals_us(7, 0)
    assert (a[-1] / len(a)) == pytest.approx(50_000, rel=0.15)


def test_rate_schedule_changes_the_bottleneck_rate_mid_run(tmp_path):
    """8 Mbit/s for 10 s then 2 Mbit/s for 10 s: one Cubic flow averages about 5 Mbit/s (asserted 4-5.2)."""
    stats = sim(tmp_path, "[{host: client1, cc: cubic}]", "bottleneck.rate_schedule=[{at: 10s, rate: 2Mbit}]")
    assert 4.0 <= stats["flows"][0]["throughput_mbps"] <= 5.2


def test_extra_delay_lengthens_one_flows_base_rtt(tmp_path):
    """extra_delay 30ms on one group: its minimum RTT is 30 ms above the other's (within 1.5 ms: one packet's
    serialisation at 8 Mbit/s, and the delayed-ACK timing in the echoed timestamp)."""
    stats = sim(tmp_path, "[{host: client1, cc: dctcp}, {host: client2, cc: dctcp, extra_delay: 30ms}]",
                duration="5s")
    base = [f["min_rtt_ms"] for f in stats["flows"]]
    assert base[1] - base[0] == pytest.approx(30, abs=1.5)


def test_mahimahi_trace_becomes_one_rate_per_bin(tmp_path):
    """12 opportunities per ms for 100 ms then 3 per ms (mahimahi: one 1500-byte packet per line) -> 144 and
    36 Mbit/s bins; the trace loops with its last timestamp (199 ms) as the period, so the three lines at 199 ms
    open the next loop's first bin (1203 packets: 144.36 Mbit/s)."""
    lines = [str(t) for t in range(100) for _ in range(12)] + [str(t) for t in range(100, 200) for _ in range(3)]
    path = tmp_path / "trace"
    path.write_text("\n".join(lines) + "\n")
    steps = trace_schedule(str(path), 100_000, 400_000)
    assert [r for _, r in steps][:2] == [144_360_000, 36_000_000]
    assert [a for a, _ in steps] == [0, 100_000, 199_000, 299_000, 398_000]


# ------------------------------------------------------------------------------------------- scenario fields


@pytest.mark.parametrize("override, words", [
    ("flows=[{host: client1, cc: udp}]", "needs a rate"),
    ("flows=[{host: client1, cc: cubic, size: 10KB}]", "mean_gap"),
    ("flows=[{host: client1, cc: udp, rate: 1Mbit, on_time: 1s}]", "off_time"),
    ("hosts={client9: {stack: linux}}", "not a client"),
    ("hosts={client1: {stack: windows}}", "freebsd, linux"),
    ("bottleneck.burst=3000", "shaper: htb"),
    ("bottleneck={shaper: htb, serve_on_ticks: true}", "serve_on_ticks"),
    ("aqm.l4s_classifier=ect0", "any_ect"),
])
def test_bad_section_4_fields_are_refused_with_the_field_named(override, words):
    with pytest.raises(L4stbError) as err:
        load_scenario("dctcp-8mbps", [override])
    assert words in str(err.value)


def test_a_freebsd_host_runs_prague_as_udp_prague_and_a_linux_host_as_tcp():
    sc = load_scenario("dctcp-8mbps", ["hosts={client2: {stack: linux}}"])
    assert sc.host("client1").prague == "udp" and sc.host("client2").prague == "tcp"


# ------------------------------------------------------------------------------------------- summary


@pytest.mark.slow
def test_summary_reports_short_flow_completion_times(l4stb):
    """`l4stb summary --json` holds, per short-flow group, its flow count and FCT percentiles; each FCT is at
    least the flow's bytes over the 8 Mbit/s bottleneck (100 KB: 100 ms)."""
    assert l4stb("up").exit_code == 0
    run = l4stb("run", "--scenario", "dctcp-8mbps", "--repeats", "1", "--set", "duration=5s", "--set",
                "flows=[{host: client1, cc: cubic}, {host: client2, cc: dctcp, connections: 6, size: 100KB, mean_gap: 500ms}]")
    assert run.exit_code == 0, run.output
    assert l4stb("fetch-logs").exit_code == 0
    out = l4stb("summary", "--json")
    assert out.exit_code == 0, out.output
    (sf,) = json.loads(out.stdout)["short_flows"]
    assert sf["cc"] == "dctcp" and sf["size_bytes"] == 100_000 and sf["flows"] + sf["unfinished"] == 6
    assert sf["flows"] >= 4 and sf["fct_ms"]["p50"] >= 100
    assert "short flows: completion time" in l4stb("summary").stdout


def test_set_reaches_into_the_hosts_mapping_and_names_a_misspelt_field():
    sc = load_scenario("dctcp-8mbps", ["hosts.client2.stack=linux", "hosts.client1.extra_delay=5ms"])
    assert sc.host("client2").stack == "linux" and sc.host("client1").extra_delay == 5000
    with pytest.raises(L4stbError, match="did you mean 'stack'"):
        load_scenario("dctcp-8mbps", ["hosts.client2.stak=linux"])


def test_a_bad_trace_line_is_refused_with_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.trace"
    bad.write_text("1\n2\nfast\n")
    with pytest.raises(L4stbError, match=r"line 3: 'fast' is not a whole number"):
        load_scenario("dctcp-8mbps", [f"bottleneck.rate_trace={bad}"])
