"""RFC 9332 DualPI2 in integer fixed-point arithmetic: the core that the FreeBSD kernel module ports line by line.

Everything here is an integer, so a C port (``freebsd_module``) can agree with it bit for bit:

* **Time** is integer microseconds (``now_us``). Sojourn = ``now_us`` - the packet's enqueue stamp.
* **Probabilities** are integers in [0, P_ONE] with ``P_ONE = 2**32`` meaning 1.0 (a ``uint64_t`` in C).
  p_C = p'^2 is ``(p * p) >> 32``; p_CL = k p' is ``(p * k_q8) >> 8`` (k in 1/256 units).
* **Gains**: alpha and beta (Hz) are stored as ``round(gain_hz * 2**32 / 1e6 * 2**GAIN_SHIFT)``: the
  probability change per microsecond of delay error, with GAIN_SHIFT = 16 fractional bits. The PI update is
  ``delta = (qdelay - target) * alpha_q + (qdelay - prev_qdelay) * beta_q`` (a signed 64-bit value),
  and ``p += delta >> 16`` for a positive delta, ``p -= (-delta) >> 16`` for a negative one
  (shifting the magnitude keeps C's and Python's rounding identical), clamped to [0, p_max].
* **Random draws** come from :mod:`l4stb.sim.prng` (xorshift32, draws in [1, 2^32-1]); ``roll(p)`` is
  true when ``draw < p``. A draw is consumed only when 0 < p < P_ONE, so certain and impossible events
  leave the generator untouched (the C port must follow the same rule).

Algorithm (RFC 9332 Appendix A.1, with the A.2 overload handling), as Linux's ``net/sched/sch_dualpi2.c``
(mainline since 6.17) runs it; the Linux function each step mirrors is named:

* **Classifier** (enqueue, ``dualpi2_skb_classify``): a packet goes to L when ``ecn & ecn_mask`` is non-zero.
  ``ecn_mask`` is tc's classifier keyword (``TCA_DUALPI2_ECN_MASK``): ``l4s_ect`` = 1 (Linux's default, RFC 9332:
  ECT(1) and CE to L, ECT(0) and not-ECT to C) or ``any_ect`` = 3 (every ECN-capable packet, ECT(0) included, to
  L; not-ECT to C). It is a constructor argument, not a :class:`DualPI2Params` field: the C core and the FreeBSD
  module classify as RFC 9332 (``l4s_ect``) only, and the vagrant plan refuses ``any_ect``.
* **Buffer limit** (enqueue): a packet is tail-dropped when the two queues together already hold
  ``limit_packets`` packets or it would take them past ``limit_bytes``. Every AQM drop or mark happens
  at dequeue (Linux's default ``drop_dequeue``).
* **PI update** every Tupdate (``calculate_probability``): ``qdelay = max(C head sojourn, L head sojourn)``
  (0 for an empty queue), p' updated as above and clamped to [0, 1], or to [0, 1/k] when
  ``drop_on_overload`` is off. p_C = p'^2, p_CL = k p'. **Overload** is k p' > 1 (``must_drop``:
  ``local_l_prob > MAX_PROB``), so the capped p' of overflow mode never reaches it.
* **Small-backlog guard** (``must_drop``): the PI-based decisions (p_C, p_CL) are skipped while the bytes left
  in both queues after this dequeue are below ``min_backlog_bytes`` (2 MTU; 0 disables it). The native
  L4S step is not guarded, as in Linux.
* **Dequeue, C** (``dualpi2_classic_marking``): with probability p_C: drop if not-ECT, ECN is off, or in
  overload; otherwise CE-mark.
* **Dequeue, L, no overload**: p_L = max(p'_L, p_CL) (RFC's combining function; Linux rolls p_CL in
  ``dualpi2_scalable_marking`` and then applies the step in ``do_step_aqm``, which marks the same packets),
  CE-mark with p_L (a not-ECT packet in L, possible only with a policy, is dropped). p'_L, the native AQM:

  - ``step_semantics`` **linux** (default): Linux's ``skb_apply_step`` decides at *enqueue* whether a packet
    may be step-marked: the L queue held at least ``min_qlen_step`` packets as it arrived (default 0, so every
    L packet). At dequeue (``do_step_aqm``) p'_L = 1 when its sojourn exceeds ``step_us`` (1 ms), or, with
    ``step_in_packets``, when more than ``step_packets`` packets remain in the L queue behind it.
  - ``step_semantics`` **rfc9332-thlen**: RFC 9332 A.1's ``if (lq.len() > Th_len)`` tested at *dequeue*,
    after the packet left: no native marking unless more than ``th_len`` (1) packets remain in L; then the
    same step, or the RFC ramp (minTh = ``step_us``, range = ``range_us``) when ``range_us`` > 0.
* **Dequeue, L, overload**: drop with p_C (``drop_on_overload``), then CE-mark every remaining packet.
* **Scheduler** (``dequeue_packet``): ``SCHED_WRR`` = Linux's credit-based WRR ("classic_protection"):
  a signed credit starts at MTU * (wc - wl); L is served when it is non-empty and (C is empty or
  credit <= 0). Serving L while C waits adds wc * len, serving C while L waits subtracts wl * len, but
  only once the AQM has let the packet through (``dualpi2_qdisc_dequeue``: a dropped packet moves no
  credit). A dequeue that finds both queues empty resets the credit. wc = classic_protection in percent
  (10 by default), wl = 100 - wc. ``SCHED_TSFIFO`` = time-shifted FIFO: serve L when
  ``C head stamp + tshift > L head stamp`` (i.e. L sojourn + tshift > C sojourn).
* **Log**: sojourn, previous qdelay and the last update time in microseconds as measured (the module
  reads sbinuptime), never rounded to the kernel tick.

:func:`replay` runs the core over an explicit event list with no simulator around it; the C
harness runs the same events and the outputs must be identical.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Optional

from l4stb.aqm_catalogue import (  # noqa: F401  (DualPI2's integer parameters live in the AQM catalogue)
    GAIN_SHIFT,
    K_SHIFT,
    P_ONE,
    SCHED_TSFIFO,
    SCHED_WRR,
    STEP_LINUX,
    STEP_RFC_THLEN,
    DualPI2Params,
    gain_to_q,
)
from l4stb.logformat import ACTION_DROP, ACTION_FORWARD, ACTION_MARK, DECIDED_BY_AQM, DECIDED_BY_POLICY, PROB_SCALE
from l4stb.sim.packet import CE, ECN, FLOW, LEN, NOT_ECT, T_ENQ
from l4stb.sim.policy import POLICY_DROP, POLICY_MARK, PolicyGate
from l4stb.sim.prng import seed_state

LOG_PROB_SCALE = PROB_SCALE
"""The log line carries probabilities scaled by 2^31-1 (logformat's scale): ``(p * LOG_PROB_SCALE) >> 32``."""

ECN_MASK_L4S_ECT, ECN_MASK_ANY_ECT = 1, 3
"""sch_dualpi2's classifier masks (uapi pkt_sched.h TC_DUALPI2_ECN_MASK_L4S_ECT / _ANY_ECT)."""
ECN_MASKS = {"l4s_ect": ECN_MASK_L4S_ECT, "any_ect": ECN_MASK_ANY_ECT}
"""The scenario's ``aqm.l4s_classifier`` (tc's keyword) -> the mask."""
Q_C, Q_L = 0, 1

FLAG_ECN, FLAG_OVERLOAD, FLAG_STEP = 1, 2, 4
"""Bits of the logged ``flags`` field."""
STATUS_PI_ACTIVE, STATUS_C_BUSY, STATUS_L_BUSY = 1, 2, 4
"""Bits of the logged ``status_flags`` field (PI active means p' > 0)."""


def to_log_prob(p: int) -> int:
    return (p * LOG_PROB_SCALE) >> 32


class DualPI2:
    """The DualPI2 state machine. ``emit`` receives one 27-value tuple (logformat.format_line) per logged packet decision."""

    name = "dualpi2"

    __slots__ = (
        "prm", "rng", "p", "p_c", "p_cl", "prev_q", "last_update_us", "credit", "lq", "cq",
        "l_bytes", "c_bytes", "stats", "emit", "trace", "gate", "next_update_us", "_const",
        "p_max", "marks", "drops", "_flags", "l_step", "ecn_mask",
    )

    @classmethod
    def from_scenario(cls, aqm, bottleneck, seed: int, emit=None, policy=None) -> "DualPI2":
        """The AQM for a scenario's resolved ``aqm`` and ``bottleneck`` (see :func:`l4stb.sim.runner.make_aqm`)."""
        return cls(DualPI2Params.from_aqm(aqm, bottleneck), seed, emit=emit, policy=policy,
                   ecn_mask=ECN_MASKS[aqm.l4s_classifier])

    def __init__(self, params: DualPI2Params, seed: int, emit: Optional[Callable[[tuple], None]] = None,
                 policy=None, trace: Optional[list] = None, ecn_mask: int = ECN_MASK_L4S_ECT):
        if ecn_mask not in ECN_MASKS.values():
            raise ValueError(f"ecn_mask={ecn_mask}: use {ECN_MASK_L4S_ECT} (l4s_ect) or {ECN_MASK_ANY_ECT} (any_ect)")
        self.ecn_mask = ecn_mask
        self.prm = params
        self.rng = seed_state(seed)
        self.p = 0
        self.p_c = 0
        self.p_cl = 0
        self.prev_q = 0
        self.last_update_us = 0
        self.next_update_us = params.tupdate_us
        self.credit = params.mtu * (params.wc - params.wl)
        self.lq: deque = deque()
        self.l_step: deque = deque()
        """Linux's per-packet ``apply_step`` of each packet in lq, decided at enqueue (same order as lq)."""
        self.cq: deque = deque()
        self.l_bytes = 0
        self.c_bytes = 0
        # per queue [dequeued, enqueued pkts, enqueued bytes, drops, marks]
        self.stats = ([0, 0, 0, 0, 0], [0, 0, 0, 0, 0])
        self.emit = emit
        self.trace = trace
        self.gate = PolicyGate(policy) if policy is not None else None
        # overflow mode caps p' at 1/k so that k p' never exceeds 1: no overload, ECN marking goes on (Linux's
        # calculate_probability: min(new_prob, MAX_PROB / coupling_factor))
        self.p_max = P_ONE if params.drop_on_overload else (P_ONE << K_SHIFT) // params.k_q8
        const = (params.target_us, params.tupdate_us, 0, to_log_prob(params.p_cmax), params.alpha_mhz,
                 params.beta_mhz)
        self._const = ((Q_C,) + const, (Q_L,) + const)
        self._flags = FLAG_ECN * params.ecn | (FLAG_STEP if params.range_us == 0 else 0)
        self.marks = [0, 0]
        self.drops = [0, 0]

    # ------------------------------------------------------------------ helpers

    def _roll(self, p: int) -> bool:
        if p <= 0:
            return False
        if p >= P_ONE:
            return True
        x = self.rng
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.rng = x
        return x < p

    def backlog(self) -> int:
        return len(self.lq) + len(self.cq)

    def _fields(self, q: int, pkt: list, now_us: int, prob: int, sojourn: int, qlen: int, qbytes: int,
                action: int = 0) -> tuple:
        """The 26 logged values for a decision on ``pkt`` in queue ``q`` (``action`` 0 = not decided yet)."""
        st = self.stats[q]
        p = self.p
        flags = self._flags
        if self.p_cl > P_ONE:
            flags |= FLAG_OVERLOAD
        status = (STATUS_PI_ACTIVE if p else 0) | (STATUS_C_BUSY if self.cq else 0) | (STATUS_L_BUSY if self.lq else 0)
        return self._const[q] + (
            flags, 0, (prob * LOG_PROB_SCALE) >> 32, sojourn, self.prev_q,
            (p * LOG_PROB_SCALE) >> 32, self.last_update_us, 0, st[0], status,
            st[1], st[2], qlen, qbytes, st[3], pkt[LEN], action, now_us, pkt[FLOW],
        )

    # ------------------------------------------------------------------ enqueue

    def enqueue(self, pkt: list, now_us: int) -> bool:
        """Classify and queue ``pkt`` (stamped with ``now_us``); False if the buffer limit drops it."""
        prm = self.prm
        length = pkt[LEN]
        q = 1 if pkt[ECN] & self.ecn_mask else 0
        if len(self.lq) + len(self.cq) >= prm.limit_packets or self.l_bytes + self.c_bytes + length > prm.limit_bytes:
            st = self.stats[q]
            if self.emit is not None:
                queue = self.lq if q else self.cq
                head = now_us - queue[0][T_ENQ] if queue else 0
                self.emit(self._fields(q, pkt, now_us, self.p_cl if q else self.p_c, head, len(queue),
                                       self.l_bytes if q else self.c_bytes, ACTION_DROP) + (DECIDED_BY_AQM,))
            st[3] += 1
            self.drops[q] += 1
            if self.trace is not None:
                self.trace.append(("E", now_us, q, ACTION_DROP, length, pkt[ECN], 0, self.p, 0))
            return False
        pkt[T_ENQ] = now_us
        st = self.stats[q]
        st[1] += 1
        st[2] += length
        if q:
            # Linux skb_apply_step: the L queue's length before this packet joins it, against min_qlen_step
            self.l_step.append(len(self.lq) >= prm.min_qlen_step)
            self.lq.append(pkt)
            self.l_bytes += length
        else:
            self.cq.append(pkt)
            self.c_bytes += length
        if self.trace is not None:
            self.trace.append(("E", now_us, q, ACTION_FORWARD, length, pkt[ECN], 0, self.p, 0))
        return True

    # ------------------------------------------------------------------ PI update

    def update(self, now_us: int) -> None:
        """The PI2 controller step (call every Tupdate)."""
        prm = self.prm
        qc = now_us - self.cq[0][T_ENQ] if self.cq else 0
        ql = now_us - self.lq[0][T_ENQ] if self.lq else 0
        qdelay = qc if qc > ql else ql
        delta = (qdelay - prm.target_us) * prm.alpha_q + (qdelay - self.prev_q) * prm.beta_q
        p = self.p
        if delta >= 0:
            p += delta >> GAIN_SHIFT
            if p > self.p_max:
                p = self.p_max
        else:
            p -= (-delta) >> GAIN_SHIFT
            if p < 0:
                p = 0
        self.set_base_probability(p)
        self.prev_q = qdelay
        self.last_update_us = now_us
        self.next_update_us = now_us + prm.tupdate_us
        if self.trace is not None:
            self.trace.append(("U", now_us, -1, 0, 0, 0, self.p_c, p, qdelay))

    def set_base_probability(self, p: int) -> None:
        """Set p' (in 1/2^32) and derive p_C = p'^2 and p_CL = k p' (not capped: p_CL >= 1 means overload)."""
        self.p = p
        self.p_c = (p * p) >> 32
        self.p_cl = (p * self.prm.k_q8) >> K_SHIFT

    # ------------------------------------------------------------------ dequeue

    def dequeue(self, now_us: int):
        """The next packet to transmit (CE-marked in place if so decided), or None. Drops are logged and discarded."""
        prm = self.prm
        lq, cq = self.lq, self.cq
        emit = self.emit
        trace = self.trace
        gate = self.gate
        while lq or cq:
            # -------- scheduler
            if not lq:
                serve_l = False
            elif not cq:
                serve_l = True
            elif prm.scheduler == SCHED_WRR:
                serve_l = self.credit <= 0
            else:
                serve_l = cq[0][T_ENQ] + prm.tshift_us > lq[0][T_ENQ]
            if serve_l:
                pkt = lq.popleft()
                apply_step = self.l_step.popleft()
                length = pkt[LEN]
                qlen = len(lq) + 1
                qbytes = self.l_bytes
                self.l_bytes = qbytes - length
                credit_change = prm.wc * length if cq else 0
                q = Q_L
            else:
                pkt = cq.popleft()
                length = pkt[LEN]
                qlen = len(cq) + 1
                qbytes = self.c_bytes
                self.c_bytes = qbytes - length
                credit_change = -prm.wl * length if lq else 0
                q = Q_C
            sojourn = now_us - pkt[T_ENQ]
            ecn = pkt[ECN]
            # -------- AQM decision: action and the probability it applied
            action = ACTION_FORWARD
            by = DECIDED_BY_AQM
            # Linux guard: no PI-based drop/mark while fewer than min_backlog_bytes remain queued
            pi_on = self.l_bytes + self.c_bytes >= prm.min_backlog_bytes
            if q:
                p_cl = self.p_cl if pi_on else 0
                if p_cl <= P_ONE:  # overload is k p' > 1 (Linux must_drop: local_l_prob > MAX_PROB)
                    native = self._native_l(apply_step, qlen - 1, sojourn)
                    prob = native if native > p_cl else p_cl
                    if gate is None or not gate.take():
                        if self._roll(prob):
                            action = ACTION_MARK if (ecn != NOT_ECT and prm.ecn) else ACTION_DROP
                    else:
                        action = self._ask(gate, q, pkt, now_us, prob, sojourn, qlen, qbytes)
                        by = DECIDED_BY_POLICY
                else:
                    prob = p_cl
                    if gate is None or not gate.take():
                        if prm.drop_on_overload and self._roll(self.p_c):
                            action = ACTION_DROP
                            prob = self.p_c
                        else:
                            action = ACTION_MARK if (ecn != NOT_ECT and prm.ecn) else ACTION_DROP
                    else:
                        action = self._ask(gate, q, pkt, now_us, prob, sojourn, qlen, qbytes)
                        by = DECIDED_BY_POLICY
            else:
                prob = self.p_c if pi_on else 0
                if gate is None or not gate.take():
                    if self._roll(prob):
                        # Linux dualpi2_classic_marking: overload (k p' > 1) disables ECN
                        if ecn == NOT_ECT or not prm.ecn or self.p_cl > P_ONE:
                            action = ACTION_DROP
                        else:
                            action = ACTION_MARK
                else:
                    action = self._ask(gate, q, pkt, now_us, prob, sojourn, qlen, qbytes)
                    by = DECIDED_BY_POLICY
            # -------- apply, log
            st = self.stats[q]
            if emit is not None:
                emit(self._fields(q, pkt, now_us, prob, sojourn, qlen, qbytes, action) + (by,))
            if trace is not None:
                trace.append(("D", now_us, q, action, length, CE if action == ACTION_MARK else ecn, prob, self.p, sojourn))
            st[0] += 1
            if action == ACTION_DROP:
                st[3] += 1
                self.drops[q] += 1
                continue
            # Linux dualpi2_qdisc_dequeue: the WRR credit moves only for a packet that is sent
            self.credit += credit_change
            if action == ACTION_MARK:
                pkt[ECN] = CE
                st[4] += 1
                self.marks[q] += 1
            return pkt
        # Linux dequeue_packet: a dequeue that finds both queues empty resets the credit
        self.credit = prm.mtu * (prm.wc - prm.wl)
        if trace is not None:
            trace.append(("D", now_us, -1, 0, 0, 0, 0, self.p, 0))
        return None

    def _native_l(self, apply_step: bool, left: int, sojourn: int) -> int:
        """p'_L, the native L4S AQM's probability for an L packet leaving ``left`` packets behind it.

        The gate: ``apply_step`` from enqueue (Linux) or ``left > th_len`` (RFC 9332 A.1). Then Linux's
        ``do_step_aqm``: a step on the queue length (``step_in_packets``) or on the sojourn time, or the RFC ramp.
        """
        prm = self.prm
        if not (apply_step if prm.step_semantics == STEP_LINUX else left > prm.th_len):
            return 0
        if prm.step_in_packets:
            return P_ONE if left > prm.step_packets else 0
        if prm.range_us == 0:
            return P_ONE if sojourn > prm.step_us else 0
        if sojourn >= prm.step_us + prm.range_us:
            return P_ONE
        if sojourn > prm.step_us:
            return ((sojourn - prm.step_us) << 32) // prm.range_us
        return 0

    def _ask(self, gate: PolicyGate, q: int, pkt: list, now_us: int, prob: int, sojourn: int, qlen: int,
             qbytes: int) -> int:
        choice = gate.decide(self._fields(q, pkt, now_us, prob, sojourn, qlen, qbytes)[:24])
        if choice == POLICY_DROP:
            return ACTION_DROP
        if choice == POLICY_MARK:
            return ACTION_MARK if (pkt[ECN] != NOT_ECT and self.prm.ecn) else ACTION_DROP
        return ACTION_FORWARD


def replay(params: DualPI2Params, seed: int, events: list[tuple]) -> list[tuple]:
    """Run the DualPI2 core over explicit events and return one tuple per event outcome, in order.

    Events: ``("E", now_us, length, ecn)`` enqueue, ``("D", now_us)`` dequeue (one transmission
    opportunity), ``("U", now_us)`` PI update. Times must not decrease.

    Output tuples (all ints after the kind): ``(kind, now_us, queue, action, length, ecn_out, prob,
    p_prime, delay_us)``:

    * ``"E"``: queue 0/1, action 1 queued or 2 dropped by the buffer limit, prob 0, delay 0;
    * ``"D"``: one tuple per decision of that dequeue (drops first, then the packet sent), with the
      probability that was applied and the packet's sojourn; an empty dequeue gives queue -1, action 0;
    * ``"U"``: queue -1, action 0, prob = p_C after the update, delay = the PI's qdelay input.
    """
    trace: list[tuple] = []
    aqm = DualPI2(params, seed, emit=None, trace=trace)
    n = 0
    for ev in events:
        kind = ev[0]
        if kind == "E":
            aqm.enqueue([0, int(ev[2]), int(ev[3]), 0, n, 0], int(ev[1]))
            n += 1
        elif kind == "D":
            aqm.dequeue(int(ev[1]))
        elif kind == "U":
            aqm.update(int(ev[1]))
        else:
            raise ValueError(f"unknown event kind {kind!r} in {ev!r}; use 'E', 'D' or 'U'")
    return trace
