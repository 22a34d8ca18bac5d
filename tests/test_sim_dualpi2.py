"""The DualPI2 core (RFC 9332 in integer fixed point): PI update, coupling, L4S floor, classifier, scheduler, replay."""

from __future__ import annotations

import random

import pytest

from l4stb.config import Aqm, Bottleneck
from l4stb.logformat import ACTION_DROP, ACTION_FORWARD
from l4stb.sim.aqm_dualpi2 import P_ONE, DualPI2, DualPI2Params, replay
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


def test_no_l4s_mark_while_only_one_packet_is_queued():
    """Th_len = 1 and the 2-MTU guard: a lone L packet is never marked, however long it waited."""
    aqm = DualPI2(golden_params(), 1)
    aqm.set_base_probability(int(0.3 * P_ONE))  # p_CL = 0.6 would mark 60 % otherwise
    for i in range(200):
        aqm.enqueue(make_packet(0, 1500, ECT1, 0, i), i * 10_000)
        pkt = aqm.dequeue(i * 10_000 + 5_000)  # 5 ms sojourn, far above the 1 ms step
        assert pkt[2] == ECT1
    assert aqm.marks == [0, 0]


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


def test_buffer_limit_tail_drops_at_enqueue():
    prm = DualPI2Params(limit_packets=3)
    out = replay(prm, 1, [("E", t, 1500, ECT0) for t in range(5)])
    assert [o[3] for o in out] == [ACTION_FORWARD] * 3 + [ACTION_DROP] * 2


def test_overload_disables_ecn_for_classic():
    """p_C >= p_Cmax (1/k^2 = 25 %): an ECT(0) packet hit by p_C is dropped, not marked."""
    aqm = DualPI2(golden_params(), 3)
    aqm.set_base_probability(P_ONE)  # p_C = 1
    for i in range(4):
        aqm.enqueue(make_packet(0, 1500, ECT0, 0, i), 0)
    assert aqm.dequeue(10) is None or aqm.drops[0] >= 1
    aqm2 = DualPI2(golden_params(), 3)
    aqm2.set_base_probability(int(0.4 * P_ONE))  # p_C = 0.16 < 0.25: marks
    for i in range(200):
        aqm2.enqueue(make_packet(0, 1500, ECT0, 0, i), 0)
    while aqm2.backlog() > 2:
        aqm2.dequeue(10)
    assert aqm2.drops[0] == 0 and aqm2.marks[0] > 10


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


def test_params_from_aqm_follow_linux_defaults():
    prm = DualPI2Params.from_aqm(Aqm(), Bottleneck())
    assert (prm.target_us, prm.tupdate_us, prm.alpha_mhz, prm.beta_mhz) == (15_000, 16_000, 160, 3200)
    assert prm.k_q8 == 512 and prm.p_cmax == P_ONE // 4
    assert (prm.wc, prm.wl, prm.step_us, prm.range_us, prm.th_len) == (10, 90, 1000, 0, 1)


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
