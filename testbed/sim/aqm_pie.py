"""PIE (RFC 8033) as FreeBSD's dummynet implements it (dn_aqm_pie.c), in its integer arithmetic, as a single-queue AQM.

The controller (:class:`PieState`) is shared with the ``l4s-pie`` scheduler, which runs one per sub-queue.
FreeBSD specifics kept on purpose:

* **Integer scales**: probabilities in [0, PIE_MAX_PROB = 2^31-1]; alpha, beta and max_ecnth scaled by
  2^13 (PIE_SCALE); times in microseconds.
* **Time is the dummynet tick**: ``AQM_UNOW = curr_time * tick``, so enqueue stamps and sojourn times
  are multiples of ``tick_us = 1e6 / kern.hz`` (1 ms at hz=1000, 10 ms at hz=100).
* **Timestamp (TS) mode**, the default: ``current_qdelay`` is the sojourn of the last packet dequeued
  (0 when the queue is empty at an update); no departure-rate estimation, so ``avg_dq_time``,
  ``dq_count`` and ``measurement_start`` stay 0 (the paper's data: average_dequeue_time always 0).
* **calculate_drop_prob** every ``tupdate``: ``p = alpha*(qdelay-ref) + beta*(qdelay-qdelay_old)``,
  scaled by ``(PIE_MAX_PROB << 12) / 1e6``, then auto-tuned by shifting 11/9/7/5/3/1/0 extra bits for
  drop_prob below 1e-6/1e-5/1e-4/1e-3/1e-2/1e-1/above; a cap of 2 % per step once drop_prob >= 10 %
  (``capdrop``); exponential decay (p -= p/64) when both delays are 0; then the burst allowance
  shrinks by tupdate.
* **drop_early** (at enqueue): no drop while (qdelay_old < ref/2 and drop_prob < 20 %) or fewer than
  2 x 800 bytes are queued; derandomisation accumulates drop_prob into ``accu_prob`` and only draws
  between 0.85 and 8.5; ``random() < p`` with FreeBSD's 31-bit random() (here ``xorshift32 >> 1``).
* **enqueue**: tail drop at the limit; when PIE is active and the burst allowance is used up, an early
  drop becomes a CE mark if ECN is on, drop_prob < max_ecnth and the packet is ECN-capable; the burst
  allowance is refilled (to max_burst) whenever drop_prob is 0 and both delays are below ref/2.
  PIE is active from the start (FreeBSD's default, no on/off mode).

One log line per enqueue attempt (the decision is taken at enqueue), with the fields of the original
``printf`` (see :mod:`l4stb.logformat`, column ``l4s_pie``).
"""

from __future__ import annotations

from collections import deque

from l4stb.aqm_catalogue import (  # noqa: F401  (PIE's integer parameters live in the AQM catalogue)
    PIE_CAPDROP_ENABLED,
    PIE_DEPRATEEST_ENABLED,
    PIE_DERAND_ENABLED,
    PIE_ECN_ENABLED,
    PIE_FIX_POINT_BITS,
    PIE_ON_OFF_MODE_ENABLED,
    PIE_SCALE,
    PieParams,
)
from l4stb.logformat import ACTION_DROP, ACTION_FORWARD, ACTION_MARK, DECIDED_BY_AQM, DECIDED_BY_POLICY
from l4stb.sim.packet import CE, ECN, FLOW, LEN, NOT_ECT, T_ENQ
from l4stb.sim.policy import POLICY_DROP, POLICY_MARK, PolicyGate
from l4stb.sim.prng import seed_state

PIE_MAX_PROB = (1 << 31) - 1
MEAN_PKTSIZE = 800
PIE_ACTIVE, PIE_INMEASUREMENT = 1, 2
_P_FACTOR = (PIE_MAX_PROB << 12) // 1_000_000
_AUTOTUNE = (
    (PIE_MAX_PROB // 1_000_000, 11), (PIE_MAX_PROB // 100_000, 9), (PIE_MAX_PROB // 10_000, 7),
    (PIE_MAX_PROB // 1_000, 5), (PIE_MAX_PROB // 100, 3), (PIE_MAX_PROB // 10, 1),
)


class PieState:
    """``struct pie_status`` of one queue plus its dummynet queue statistics."""

    __slots__ = ("burst_allowance", "drop_prob", "current_qdelay", "qdelay_old", "accu_prob", "sflags",
                 "tot_pkts", "tot_bytes", "length", "len_bytes", "drops", "marks", "q")

    def __init__(self, prm: PieParams):
        self.burst_allowance = prm.max_burst
        self.drop_prob = 0
        self.current_qdelay = 0
        self.qdelay_old = 0
        self.accu_prob = 0
        self.sflags = PIE_ACTIVE
        self.tot_pkts = 0
        self.tot_bytes = 0
        self.length = 0
        self.len_bytes = 0
        self.drops = 0
        self.marks = 0
        self.q: deque = deque()

    def calculate_drop_prob(self, prm: PieParams) -> None:
        """FreeBSD ``calculate_drop_prob`` (TS mode), run every tupdate."""
        if not self.len_bytes:
            self.current_qdelay = 0
        prob = self.drop_prob
        p = prm.alpha * (self.current_qdelay - prm.qdelay_ref) + prm.beta * (self.current_qdelay - self.qdelay_old)
        neg = p < 0
        if neg:
            p = -p
        p *= _P_FACTOR
        shift = PIE_FIX_POINT_BITS + 12
        for bound, extra in _AUTOTUNE:
            if prob < bound:
                shift += extra
                break
        p >>= shift
        if neg:
            prob -= p
            if prob < 0:
                prob = 0
        else:
            if (prm.flags & PIE_CAPDROP_ENABLED) and prob >= PIE_MAX_PROB // 10 and p > PIE_MAX_PROB // 50:
                p = PIE_MAX_PROB // 50
            prob += p
        if self.current_qdelay == 0 and self.qdelay_old == 0:
            prob -= prob >> 6
        if prob > PIE_MAX_PROB:
            prob = PIE_MAX_PROB
        self.drop_prob = prob
        self.qdelay_old = self.current_qdelay
        if (self.sflags & PIE_ACTIVE) and self.burst_allowance > 0:
            self.burst_allowance = self.burst_allowance - prm.tupdate if self.burst_allowance > prm.tupdate else 0

    def not_congested(self, prm: PieParams, prob: int) -> bool:
        """drop_early's safeguard, with ``prob`` the probability it applies (this queue's p, or the l4s
        scheduler's coupled L probability)."""
        return (self.qdelay_old < (prm.qdelay_ref >> 1) and prob < PIE_MAX_PROB // 5) or \
            self.len_bytes <= 2 * MEAN_PKTSIZE

    def derand(self, prm: PieParams, prob: int) -> int:
        """The derandomisation step of drop_early for probability ``prob``: ACTION_FORWARD/ACTION_DROP if
        decided, else 0 (draw)."""
        if prob == 0:
            self.accu_prob = 0
        if prm.flags & PIE_DERAND_ENABLED:
            self.accu_prob += prob
            if self.accu_prob < PIE_MAX_PROB * 17 // 20:
                return ACTION_FORWARD
            if self.accu_prob >= PIE_MAX_PROB * 17 // 2:
                return ACTION_DROP
        return 0

    def refill_burst(self, prm: PieParams) -> None:
        if self.drop_prob == 0 and self.current_qdelay < (prm.qdelay_ref >> 1) and \
                self.qdelay_old < (prm.qdelay_ref >> 1):
            self.burst_allowance = prm.max_burst

    def admit(self, pkt: list, t_enq_us: int) -> None:
        """Queue ``pkt`` with its (tick-quantised) enqueue time and update the stats the log carries."""
        pkt[T_ENQ] = t_enq_us
        self.q.append(pkt)
        self.length += 1
        self.len_bytes += pkt[LEN]
        self.tot_pkts += 1
        self.tot_bytes += pkt[LEN]

    def pop_head(self) -> list:
        """Take the head packet out of the queue's statistics (a departure or a head drop)."""
        pkt = self.q.popleft()
        self.length -= 1
        self.len_bytes -= pkt[LEN]
        return pkt

    def depart(self, now_us: int, tick_us: int) -> list:
        """Take the head packet; its sojourn, in whole ticks like AQM_UNOW, becomes ``current_qdelay``."""
        pkt = self.pop_head()
        self.current_qdelay = (now_us - now_us % tick_us) - pkt[T_ENQ]
        return pkt

    def log_fields(self, queue_type: int, prm: PieParams, pkt: list, action: int, now_us: int) -> tuple:
        return (queue_type, prm.qdelay_ref, prm.tupdate, prm.max_burst, prm.max_ecnth, prm.alpha, prm.beta,
                prm.flags, self.burst_allowance, self.drop_prob, self.current_qdelay, self.qdelay_old,
                self.accu_prob, 0, 0, 0, self.sflags, self.tot_pkts, self.tot_bytes, self.length,
                self.len_bytes, self.drops, pkt[LEN], action, now_us, pkt[FLOW])


class Rand31:
    """FreeBSD's ``random()`` stand-in: 31-bit draws from xorshift32 (``state >> 1``)."""

    __slots__ = ("state",)

    def __init__(self, seed: int):
        self.state = seed_state(seed)

    def draw(self) -> int:
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x >> 1


def apply_policy(gate: PolicyGate, fields: tuple, ecn: int, ecn_on: bool) -> int:
    choice = gate.decide(fields[:23] + (0,))
    if choice == POLICY_DROP:
        return ACTION_DROP
    if choice == POLICY_MARK:
        return ACTION_MARK if (ecn != NOT_ECT and ecn_on) else ACTION_DROP
    return ACTION_FORWARD


class Pie:
    """Single-queue FreeBSD PIE at the bottleneck (the ``pie`` baseline)."""

    name = "pie"
    __slots__ = ("prm", "st", "rand", "emit", "gate", "next_update_us", "drops", "marks")

    @classmethod
    def from_scenario(cls, aqm, bottleneck, seed: int, emit=None, policy=None) -> "Pie":
        """The AQM for a scenario's resolved ``aqm`` and ``bottleneck`` (see :func:`l4stb.sim.runner.make_aqm`)."""
        return cls(PieParams.from_aqm(aqm, bottleneck), seed, emit=emit, policy=policy)

    def __init__(self, params: PieParams, seed: int, emit=None, policy=None):
        self.prm = params
        self.st = PieState(params)
        self.rand = Rand31(seed)
        self.emit = emit
        self.gate = PolicyGate(policy) if policy is not None else None
        self.next_update_us = params.tupdate
        self.drops = [0, 0]
        self.marks = [0, 0]

    def backlog(self) -> int:
        return len(self.st.q)

    def update(self, now_us: int) -> None:
        self.st.calculate_drop_prob(self.prm)
        self.next_update_us = now_us + self.prm.tupdate

    def enqueue(self, pkt: list, now_us: int) -> bool:
        prm, st = self.prm, self.st
        tick = prm.tick_us
        unow = now_us - now_us % tick
        ecn = pkt[ECN]
        by = DECIDED_BY_AQM
        if st.length >= prm.limit_packets or st.len_bytes + pkt[LEN] > prm.limit_bytes:
            action = ACTION_DROP
        elif self.gate is not None and self.gate.take():
            by = DECIDED_BY_POLICY
            action = apply_policy(self.gate, st.log_fields(0, prm, pkt, 0, now_us), ecn, bool(prm.flags & PIE_ECN_ENABLED))
        elif st.burst_allowance == 0 and not st.not_congested(prm, st.drop_prob):
            action = st.derand(prm, st.drop_prob)
            if action == 0:
                if self.rand.draw() < st.drop_prob:
                    st.accu_prob = 0
                    action = ACTION_DROP
                else:
                    action = ACTION_FORWARD
            if action == ACTION_DROP:
                if (prm.flags & PIE_ECN_ENABLED) and st.drop_prob < prm.ecn_threshold and ecn != NOT_ECT:
                    action = ACTION_MARK
        else:
            action = ACTION_FORWARD
        st.refill_burst(prm)
        if self.emit is not None:
            self.emit(st.log_fields(0, prm, pkt, action, now_us) + (by,))
        if action == ACTION_DROP:
            st.drops += 1
            self.drops[0] += 1
            st.accu_prob = 0
            return False
        if action == ACTION_MARK:
            pkt[ECN] = CE
            st.marks += 1
            self.marks[0] += 1
        st.admit(pkt, unow)
        return True

    def dequeue(self, now_us: int):
        st = self.st
        if not st.q:
            return None
        return st.depart(now_us, self.prm.tick_us)
