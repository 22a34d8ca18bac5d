"""The DualPI2 core (RFC 9332 in integer fixed point, as Linux sch_dualpi2 runs it): PI update, coupling, native
step, overload, classifier, scheduler credit, logged delays, RTT-derived gains, replay.

Each test names its reference: a derivation (by hand, in the docstring) or the behaviour of Linux's
net/sched/sch_dualpi2.c (torvalds/linux, mainline since 6.17; the function is named) or iproute2's
tc/q_dualpi2.c.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from pydantic import ValidationError

from l4stb.aqm_catalogue import dualpi2_rtt_gains
from l4stb.config import Aqm, Bottleneck
from l4stb.logformat import ACTION_DROP, ACTION_FORWARD, FIELD_NAMES
from l4stb.sim.aqm_dualpi2 import P_ONE, STEP_LINUX, STEP_RFC_THLEN, DualPI2, DualPI2Params, replay
from l4stb.sim.packet import CE, ECT0, ECT1, NOT_ECT, make_packet
from l4stb.sim.prng import seed_state, xorshift32

GOLDEN = [0, 0.02448, 0.07712, 0.13232, 0.19008, 0.25040, 0.31328, 0.37872, 0.44672, 0.51728]


def golden_params() -> DualPI2Params:
    return DualPI2Params.from_aqm(Aqm(name="dualpi2", alpha=0.16, beta=3.2, target="15ms", tupdate="16ms"),
                                  Bottleneck())


def test_pi_update_reproduces_the_golden_vector():
    """dualpi2-freebsd-vagrant.md §1.6: one C packet enqueued at 24 ms, never dequeued, ticks at 16n ms.

    Tolerance 1e-6 absolute: alpha/beta carry 16 fractional bits per microsecond, a relative error of
    ~1e-8 per step, so ten steps stay far below 1e-6.
    """
    events = [("U", 16_000)] + [("E", 24_000, 1500, NOT_ECT)] + [("U", 16_000 * n) for n in range(2, 11)]
    got = [o[7] / P_ONE for o in replay(golden_params(), 1, events) if o[0] == "U"]
    assert got == pytest.approx(GOLDEN, abs=1e-6)


@pytest.mark.parametrize("p_prime, p_c, p_cl", [(0.2, 0.04, 0.4), (0.6, 0.36, 1.2), (0.05, 0.0025, 0.1)])
def test_classic_probability_is_the_square_and_l_is_k_times_base(p_prime, p_c, p_cl):
    """p_C = p'^2 and p_CL = k p' (k = 2), exact to 2^-31 (one integer rounding each)."""
    aqm = DualPI2(golden_params(), 1)
    aqm.set_base_probability(int(p_prime * P_ONE))
    assert aqm.p_c / P_ONE == pytest.approx(p_c, abs=2 ** -31 * 4)
    assert aqm.p_cl / P_ONE == pytest.approx(p_cl, abs=2 ** -31 * 4)


def test_l_marking_probability_is_capped_at_one_and_overload_drops_with_p_c():
    """p_L = min(k p', 1): at p' = 0.6 every L packet that is not dropped with p_C is marked."""
    prm = golden_params()
    aqm = DualPI2(prm, 7)
    aqm.set_base_probability(int(0.6 * P_ONE))
    for i in range(400):
        aqm.enqueue(make_packet(0, 1500, ECT1, 0, i), 0)
    actions = []
    while aqm.backlog() > 2:
        pkt = aqm.dequeue(100)
        actions.append(pkt[2] if pkt else None)
    marked = sum(1 for a in actions if a == CE)
    drops = aqm.drops[1]
    assert marked == len(actions)  # every forwarded L packet is marked (p_L = 1)
    assert drops / (drops + marked) == pytest.approx(0.36, abs=0.06)  # overload: drop with p_C = 0.36


def test_linux_step_marks_a_lone_l_packet_past_the_step():
    """Linux (min_qlen_step = 0): skb_apply_step is true for every L packet, and do_step_aqm marks when
    the sojourn exceeds 1 ms, however short the queue. The 2-MTU guard (must_drop) holds back only p_CL."""
    aqm = DualPI2(golden_params(), 1)
    aqm.set_base_probability(int(0.3 * P_ONE))  # p_CL = 0.6, held back by the guard
    for i in range(50):
        aqm.enqueue(make_packet(0, 1500, ECT1, 0, i), i * 10_000)
        assert aqm.dequeue(i * 10_000 + 1_001)[2] == CE  # 1.001 ms > 1 ms
        aqm.enqueue(make_packet(0, 1500, ECT1, 0, i), i * 10_000 + 2_000)
        assert aqm.dequeue(i * 10_000 + 3_000)[2] == ECT1  # exactly 1 ms is not above the step
    assert aqm.marks == [0, 50]


def test_rfc_thlen_step_spares_a_lone_l_packet():
    """RFC 9332 A.1 (``if (lq.len() > Th_len)`` after ``lq.dequeue``), Th_len = 1, plus the 2-MTU guard:
    a lone L packet is never marked, however long it waited."""
    prm = DualPI2Params.from_aqm(Aqm(step_semantics="rfc9332-thlen"), Bottleneck())
    assert (prm.step_semantics, prm.th_len) == (STEP_RFC_THLEN, 1)
    aqm = DualPI2(prm, 1)
    aqm.set_base_probability(int(0.3 * P_ONE))
    for i in range(200):
        aqm.enqueue(make_packet(0, 1500, ECT1, 0, i), i * 10_000)
        assert aqm.dequeue(i * 10_000 + 5_000)[2] == ECT1  # 5 ms sojourn, far above the 1 ms step
    assert aqm.marks == [0, 0]


def _marks_of_a_burst(aqm: DualPI2, n: int, sojourn_us: int) -> list[bool]:
    """n L packets arrive together at t = 0 and leave at ``sojourn_us``: which ones are CE-marked."""
    for i in range(n):
        aqm.enqueue(make_packet(0, 1500, ECT1, 0, i), 0)
    return [aqm.dequeue(sojourn_us)[2] == CE for _ in range(n)]


def test_linux_min_qlen_step_counts_the_l_queue_on_arrival_rfc_th_len_on_departure():
    """Three L packets arrive back to back and leave 5 ms later. Linux min_qlen_step = 2 (skb_apply_step at
    enqueue: qdisc_qlen(l_queue) >= 2) lets only the third, which found two queued, be step-marked; RFC
    Th_len = 1 (at dequeue: packets left > 1) marks only the first, which leaves two behind."""
    linux = DualPI2(DualPI2Params.from_aqm(Aqm(min_qlen_step=2), Bottleneck()), 1)
    rfc = DualPI2(DualPI2Params.from_aqm(Aqm(step_semantics="rfc9332-thlen", th_len=1), Bottleneck()), 1)
    assert _marks_of_a_burst(linux, 3, 5_000) == [False, False, True]
    assert _marks_of_a_burst(rfc, 3, 5_000) == [True, False, False]


def test_step_in_packets_compares_the_packets_left_in_l():
    """Linux step_thresh in packets (do_step_aqm: qdelay = qdisc_qlen(l_queue) after the dequeue, marked when
    > step_thresh): five packets with zero sojourn, step at 2 packets -> the first two (4 and 3 left) marked."""
    aqm = DualPI2(DualPI2Params.from_aqm(Aqm(step_packets=2), Bottleneck()), 1)
    assert _marks_of_a_burst(aqm, 5, 0) == [True, True, False, False, False]


def test_native_step_marks_l_packets_once_the_l_queue_builds():
    aqm = DualPI2(golden_params(), 1)
    for i in range(5):
        aqm.enqueue(make_packet(0, 1500, ECT1, 0, i), 0)
    first = aqm.dequeue(2_000)  # sojourn 2 ms > 1 ms step, 4 packets left behind it
    assert first[2] == CE
    aqm2 = DualPI2(golden_params(), 1)
    for i in range(5):
        aqm2.enqueue(make_packet(0, 1500, ECT1, 0, i), 0)
    assert aqm2.dequeue(500)[2] == ECT1  # 0.5 ms sojourn: under the step


@pytest.mark.parametrize("ecn, queue", [(ECT1, 1), (CE, 1), (ECT0, 0), (NOT_ECT, 0)])
def test_classifier_sorts_by_ecn_bits(ecn, queue):
    out = replay(golden_params(), 1, [("E", 0, 1500, ecn), ("D", 10)])
    assert out[0][2] == queue and out[1][2] == queue


@pytest.mark.parametrize("classifier, l_queue", [("l4s_ect", {ECT1, CE}), ("any_ect", {ECT0, ECT1, CE})])
def test_the_l4s_classifier_sends_what_tc_names_to_the_l_queue(tmp_path, classifier, l_queue):
    """dualpi2_skb_classify: L when ``ect & ecn_mask``; tc's l4s_ect is mask 1 (ECT(1) = 01 and CE = 11), any_ect
    mask 3 (ECT(0) = 10 too); not-ECT always goes to C. The scenario field reaches the simulator's AQM."""
    from l4stb.config import load_scenario
    from l4stb.sim.runner import make_aqm

    sc = load_scenario("dctcp-8mbps", [f"aqm.l4s_classifier={classifier}"])
    aqm = make_aqm(sc, 1, None, None)
    for i, ecn in enumerate((NOT_ECT, ECT1, ECT0, CE)):
        aqm.enqueue(make_packet(0, 1500, ecn, 0, i), 0)
    assert sorted(p[2] for p in aqm.lq) == sorted(l_queue)
    assert sorted(p[2] for p in aqm.cq) == sorted({NOT_ECT, ECT1, ECT0, CE} - l_queue)


def test_the_default_classifier_is_linux_and_rfc_9332s():
    """sch_dualpi2.c dualpi2_reset_default: ecn_mask = TC_DUALPI2_ECN_MASK_L4S_ECT, so scenarios that do not name a
    classifier keep ECT(1)/CE in L (FreeBSD's DCTCP with ect1=1 and Prague) and ECT(0) in C."""
    assert Aqm().l4s_classifier == "l4s_ect"
    with pytest.raises(ValidationError):
        Aqm(l4s_classifier="cla_ect")


def test_buffer_limit_tail_drops_at_enqueue():
    prm = DualPI2Params(limit_packets=3)
    out = replay(prm, 1, [("E", t, 1500, ECT0) for t in range(5)])
    assert [o[3] for o in out] == [ACTION_FORWARD] * 3 + [ACTION_DROP] * 2


def test_overload_disables_ecn_for_classic():
    """Linux dualpi2_classic_marking: in overload (k p' > 1) a C packet hit by p_C is dropped even if ECT;
    below it (p' = 0.4, k p' = 0.8) ECT(0) packets are marked, never dropped."""
    aqm = DualPI2(golden_params(), 3)
    aqm.set_base_probability(P_ONE)  # p_C = 1, k p' = 2
    for i in range(4):
        aqm.enqueue(make_packet(0, 1500, ECT0, 0, i), 0)
    # two dropped; the third leaves 1500 bytes behind it, under the 2-MTU guard, so it goes unmarked
    assert aqm.dequeue(10)[2] == ECT0 and aqm.drops[0] == 2 and aqm.marks[0] == 0
    aqm2 = DualPI2(golden_params(), 3)
    aqm2.set_base_probability(int(0.4 * P_ONE))  # p_C = 0.16, not overloaded: marks
    for i in range(200):
        aqm2.enqueue(make_packet(0, 1500, ECT0, 0, i), 0)
    while aqm2.backlog() > 2:
        aqm2.dequeue(10)
    assert aqm2.drops[0] == 0 and aqm2.marks[0] > 10


def _saturate(aqm: DualPI2) -> None:
    """Drive p' to its ceiling with a standing 200 ms queue (ten PI updates)."""
    aqm.enqueue(make_packet(0, 1500, ECT0, 0, -1), 0)
    for n in range(1, 11):
        aqm.update(200_000 * n)


def test_overflow_mode_keeps_marking_classic_ect_packets_at_saturation():
    """Linux overflow mode (drop_overload = 0): calculate_probability caps p' at 1/k, so k p' never exceeds 1
    and must_drop never sees overload: ECT(0) packets are CE-marked with p_C = 1/k^2 = 25 % and never
    dropped, every L packet is marked (but the last two, under the 2-MTU guard). (Binomial: ~400 draws at
    25 %, +-7 points is over 3 sigma.)"""
    aqm = DualPI2(DualPI2Params.from_aqm(Aqm(drop_on_overload=False), Bottleneck()), 5)
    _saturate(aqm)
    assert aqm.p == P_ONE // 2 and aqm.p_cl == P_ONE
    for i in range(400):
        aqm.enqueue(make_packet(0, 1500, ECT0, 0, i), 2_000_000)
        aqm.enqueue(make_packet(0, 1500, ECT1, 1, i), 2_000_000)
    sent = [aqm.dequeue(2_000_100) for _ in range(aqm.backlog() - 2)]
    assert aqm.drops == [0, 0]
    assert all(p[2] == CE for p in sent if p[3] == 1)
    classic = [p for p in sent if p[3] == 0]
    assert sum(p[2] == CE for p in classic) / len(classic) == pytest.approx(0.25, abs=0.07)


def test_drop_mode_drops_classic_at_saturation():
    """The same saturation with drop_on_overload (Linux's default): p' = 1, k p' = 2 > 1, so every C packet
    hit by p_C = 1 is dropped, ECT or not (the last two go through under the 2-MTU guard)."""
    aqm = DualPI2(golden_params(), 5)
    _saturate(aqm)
    assert aqm.p == P_ONE
    for i in range(100):
        aqm.enqueue(make_packet(0, 1500, ECT0, 0, i), 2_000_000)
    assert aqm.dequeue(2_000_100)[2] == ECT0 and aqm.marks[0] == 0 and aqm.drops[0] == 99


def test_wrr_scheduler_gives_classic_about_ten_percent_under_contention():
    """Linux credit WRR with classic_protection 10 %: C gets 1 packet in ~10 (tolerance +-2 points)."""
    aqm = DualPI2(DualPI2Params(), 1)
    for i in range(2000):
        aqm.enqueue(make_packet(0, 1500, ECT1, 0, i), 0)
        aqm.enqueue(make_packet(0, 1500, NOT_ECT, 1, i), 0)
    served = [aqm.dequeue(10)[3] for _ in range(1000)]
    assert served.count(1) / len(served) == pytest.approx(0.10, abs=0.02)


def test_tsfifo_serves_the_older_head_after_the_time_shift():
    prm = DualPI2Params.from_aqm(Aqm(scheduler="tsfifo", tshift="50ms"), Bottleneck())
    out = replay(prm, 1, [("E", 0, 1500, NOT_ECT), ("E", 60_000, 1500, ECT1), ("D", 60_001), ("D", 60_002)])
    assert [o[2] for o in out if o[0] == "D"] == [0, 1]  # C waited 60 ms > L's 0 ms + 50 ms shift


def test_params_from_an_empty_aqm_section_are_linux_dualpi2_reset_default():
    """Linux dualpi2_reset_default: target 15 ms, tupdate 16 ms, alpha 41/256 ~ 0.16 Hz, beta 819/256 ~ 3.2 Hz,
    step 1 ms in time with min_qlen_step 0, k = 2, classic_protection 10 %, drop on overload."""
    prm = DualPI2Params.from_aqm(Aqm(), Bottleneck())
    assert (prm.target_us, prm.tupdate_us, prm.alpha_mhz, prm.beta_mhz) == (15_000, 16_000, 160, 3200)
    assert prm.k_q8 == 512 and prm.p_cmax == P_ONE // 4 and prm.drop_on_overload == 1
    assert (prm.step_semantics, prm.step_us, prm.step_in_packets, prm.min_qlen_step) == (STEP_LINUX, 1000, 0, 0)
    assert (prm.wc, prm.wl, prm.range_us) == (10, 90, 0)
    assert prm == dataclasses.replace(DualPI2Params(), limit_packets=1000, limit_bytes=1_500_000)  # the pipe's


def _random_events(rng: random.Random, n: int) -> list[tuple]:
    t, events = 0, []
    for _ in range(n):
        t += rng.randrange(0, 2000)
        r = rng.random()
        if r < 0.5:
            events.append(("E", t, rng.choice([1500, 1500, 52, 600]), rng.choice([NOT_ECT, ECT0, ECT1, CE])))
        elif r < 0.95:
            events.append(("D", t))
        else:
            events.append(("U", t))
    return events


def test_replay_is_a_pure_function_of_params_seed_and_events():
    events = _random_events(random.Random(5), 3000)
    prm = DualPI2Params(min_backlog_bytes=0)
    a = replay(prm, 11, events)
    assert a == replay(prm, 11, events)
    assert a != replay(prm, 12, events)  # marking draws differ
    assert all(len(o) == 9 and all(isinstance(v, int) for v in o[1:]) for o in a)


def test_prng_is_xorshift32_with_the_documented_seeding():
    """Pins the generator for the C port: seed 1 -> state 191034278 -> 4157947021, 1490166095, 2206345586."""
    s = seed_state(1)
    assert s == 191034278
    out = []
    for _ in range(3):
        s = xorshift32(s)
        out.append(s)
    assert out == [4157947021, 1490166095, 2206345586]


class EveryOtherDrop:
    every = 2

    def __init__(self):
        self.seen = []

    def decide(self, fields):
        self.seen.append(tuple(fields))
        return 1


def test_policy_decides_every_nth_packet_from_the_24_logged_fields():
    policy = EveryOtherDrop()
    logged = []
    aqm = DualPI2(golden_params(), 1, emit=logged.append, policy=policy)
    for i in range(10):
        aqm.enqueue(make_packet(0, 1500, ECT0, 4, i), 0)
    sent = 0
    while aqm.backlog():
        if aqm.dequeue(100) is not None:
            sent += 1
    assert len(policy.seen) == 5 and all(len(f) == 24 and f[23] == 0 for f in policy.seen)
    assert [f[23] for f in logged] == [ACTION_DROP, ACTION_FORWARD] * 5
    assert sent == 5 and aqm.drops[0] == 5


def test_policy_mark_on_a_non_ect_packet_is_a_drop():
    class Mark:
        every = 1

        def decide(self, fields):
            return 2

    aqm = DualPI2(golden_params(), 1, policy=Mark())
    aqm.enqueue(make_packet(0, 1500, NOT_ECT), 0)
    aqm.enqueue(make_packet(0, 1500, ECT0), 0)
    assert aqm.dequeue(10)[2] == CE and aqm.drops[0] == 1


# -- the WRR credit (Linux dequeue_packet / dualpi2_qdisc_dequeue) ---------------------------------------


class DropClassic:
    """A policy that drops every C packet and forwards every L packet."""

    every = 1

    def decide(self, fields):
        return 1 if fields[0] == 0 else 0


def test_a_dropped_packet_moves_no_wrr_credit():
    """dualpi2_qdisc_dequeue adds dequeue_packet's credit_change only after must_drop/do_step_aqm let the
    packet through. With a positive credit C is served while L waits; all three C packets are dropped,
    so the credit is unchanged when the L packet finally leaves (C is empty by then: no change either)."""
    aqm = DualPI2(golden_params(), 1, policy=DropClassic())
    for i in range(3):
        aqm.enqueue(make_packet(0, 1500, NOT_ECT, 0, i), 0)
    aqm.enqueue(make_packet(0, 1500, ECT1, 1, 0), 0)
    aqm.enqueue(make_packet(0, 1500, ECT1, 1, 1), 0)
    aqm.credit = 1
    assert aqm.dequeue(10)[3] == 1 and aqm.drops[0] == 3
    assert aqm.credit == 1


def test_credit_moves_when_a_packet_is_sent_and_resets_when_a_dequeue_finds_both_queues_empty():
    """Linux: the credit starts at MTU (wc - wl) = -120000 (L first); sending L while C waits adds wc x len
    = 15000; sending the last C packet (L empty) changes nothing and does not reset it; the next dequeue,
    finding both queues empty, resets it (dequeue_packet's else branch)."""
    aqm = DualPI2(DualPI2Params(), 1)
    aqm.enqueue(make_packet(0, 1500, ECT1, 1, 0), 0)
    aqm.enqueue(make_packet(0, 1500, NOT_ECT, 0, 0), 0)
    assert aqm.dequeue(10)[3] == 1 and aqm.credit == -120_000 + 15_000
    assert aqm.dequeue(10)[3] == 0 and aqm.credit == -105_000
    assert aqm.dequeue(10) is None and aqm.credit == -120_000


# -- the log: microseconds ---------------------------------------------------------------------------------


def test_logged_delays_are_microseconds_as_measured():
    """The module measures with sbinuptime in microseconds: a packet that waited 1234 us logs 1234 (not the
    1 ms tick's 1000), the PI's previous qdelay and the update time are logged unrounded too. (L leaves first:
    the credit starts negative.)"""
    logged: list[tuple] = []
    aqm = DualPI2(DualPI2Params(), 1, emit=logged.append)
    aqm.enqueue(make_packet(0, 1500, ECT0, 0, 0), 15_123)
    aqm.update(16_000)  # head sojourn 877 us
    aqm.enqueue(make_packet(0, 1500, ECT1, 1, 0), 16_100)
    aqm.dequeue(16_357)
    aqm.dequeue(16_400)
    rows = [dict(zip(FIELD_NAMES, line)) for line in logged]
    assert [(r["queue_type"], r["current_queue_delay"]) for r in rows] == [(1, 257), (0, 16_400 - 15_123)]
    assert (rows[0]["previous_queue_delay"], rows[0]["measurement_start_time"]) == (877, 16_000)
    assert rows[0]["dequeue_action"] == ACTION_FORWARD


# -- gains from RTTs (iproute2 tc/q_dualpi2.c) and Tupdate sweeps ------------------------------------------


def test_rtt_derived_parameters_match_tc_dualpi2():
    """tc's derivation, by hand: max_rtt 100 ms -> typical 100/6 = 16666 us = target; Tupdate = min(16666,
    33333) = 16666 us; alpha = 0.1 x 16666e-6 / 0.1^2 = 0.16666 Hz, sent as int(x 256) = 42 -> 42/256;
    beta = 0.3 / 0.1 = 3 Hz -> 768/256. typical_rtt 10 ms -> max 60 ms, Tupdate 10 ms, alpha 0.1 x 0.01 / 0.06^2 = 0.2777 -> 71/256,
    beta 5 Hz."""
    assert dualpi2_rtt_gains(100_000, None) == {"target": 16_666, "tupdate": 16_666, "alpha": 42 / 256,
                                                 "beta": 768 / 256}
    assert dualpi2_rtt_gains(None, 10_000) == {"target": 10_000, "tupdate": 10_000, "alpha": 71 / 256,
                                                "beta": 1280 / 256}
    a = Aqm(max_rtt="100ms").resolved()
    assert (a.target, a.tupdate, a.alpha, a.beta) == (16_666, 16_666, 42 / 256, 3.0)


@pytest.mark.parametrize("extra, words", [({"tupdate": "10ms"}, "unset tupdate"),
                                          ({"typical_rtt": "200ms"}, "must be <= max_rtt"),
                                          ({"th_len": 2}, "rfc9332-thlen"),
                                          ({"step_packets": 3, "ramp_range": "1ms"}, "step_packets")])
def test_contradictory_dualpi2_settings_are_refused_with_what_to_change(extra, words):
    with pytest.raises(ValidationError, match=words):
        Aqm(max_rtt="100ms", **extra)


def test_a_tupdate_sweep_keeps_the_integral_gain_per_second():
    """p' moves by alpha x (qdelay - target) per update, so alpha / Tupdate is the integral gain per second
    (RFC 9332: 0.1 / RTT_max^2). With alpha unset it follows Tupdate; beta multiplies a delay change and
    needs no rescaling. Checked on the core: a constant 10 ms error for 1.024 s raises p' by the same amount
    whether Tupdate is 8, 16 or 32 ms (0.16 x 0.01 x 64 = 0.1024)."""
    gains = set()
    for tupdate in (8_000, 16_000, 32_000):
        a = Aqm(tupdate=f"{tupdate}us").resolved()
        gains.add(round(a.alpha / tupdate * 1e6, 9))
        assert a.beta == 3.2
        aqm = DualPI2(DualPI2Params.from_aqm(a, Bottleneck()), 1)
        aqm.enqueue(make_packet(0, 1500, ECT0, 0, 0), 0)
        aqm.prev_q = 25_000
        for n in range(1, 1_024_000 // tupdate + 1):
            aqm.enqueue(make_packet(0, 1500, ECT0, 0, n), tupdate * n)
            aqm.cq.popleft()  # keep the head 25 ms old: a constant 10 ms error, no delay change
            aqm.cq[0][0] = tupdate * n - 25_000
            aqm.update(tupdate * n)
        assert aqm.p / P_ONE == pytest.approx(0.1024, rel=1e-4)
    assert gains == {10.0}
