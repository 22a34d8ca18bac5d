"""CoDel (RFC 8289) as FreeBSD's dummynet and Linux run it: the per-queue control law, and the single-queue AQM.

:class:`CodelVars` is one queue's CoDel state and its dequeue logic; :class:`Codel` runs one of them over a
tail-drop queue (the ``codel`` AQM), and :mod:`l4stb.sim.aqm_fq_codel` runs one per flow queue. Both
implementations follow the same algorithm; ``CodelParams.linux`` picks where they differ (each point names the
file it comes from):

* **clock**: FreeBSD stamps and compares in dummynet ticks (``AQM_UNOW``, sys/netpfil/ipfw/dn_aqm.h: ``curr_time *
  tick``, so 1 ms at kern.hz=1000); Linux in ``codel_get_time()`` units of 1.024 us (include/net/codel.h,
  CODEL_SHIFT 10), which the simulator keeps as whole microseconds.
* **the "queue is nearly empty" test** (``codel_dodequeue``, sys/netpfil/ipfw/dn_aqm_codel.h): FreeBSD compares the
  queue's bytes left behind the packet with the largest packet this queue has seen (``maxpkt_size``, 500 bytes
  until a larger one arrives: dn_aqm_codel.c ``aqm_codel_init``); Linux (``codel_should_drop``,
  include/net/codel_impl.h) with the device MTU (``params->mtu``, psched_mtu: 1514 with the Ethernet header,
  here the bottleneck's IP MTU against IP lengths, the same test for full-size packets).
* **entering the dropping state**: both wait until the sojourn has stayed at or above target for ``interval``
  (FreeBSD: ``now >= first_above_time``; Linux: ``codel_time_after(now, first_above_time)``, strictly later).
  The first count: FreeBSD ``count - 2`` when count > 2 and the last drop was under 8 intervals ago, else 1;
  Linux ``count - lastcount`` when that is > 1 and the last scheduled drop was under 16 intervals ago, else 1.
* **control law** ``t + interval / sqrt(count)``: FreeBSD's ``control_law`` (sys/netpfil/ipfw/dn_aqm_codel.c) keeps
  1/sqrt(count) in Q16 (``isqrt``, 0.7 after count 1) and takes one Newton step per call; Linux's
  ``codel_Newton_step`` keeps it in a 16-bit Q0.32 mantissa (``rec_inv_sqrt``, ~1.0 at count 1) and
  ``codel_control_law`` scales the interval with ``reciprocal_scale``. Both are modelled in their integers.
* **ECN**: an ECT (or already CE) packet due to be dropped is CE-marked instead when ECN is on (FreeBSD
  ``ecn_mark``, sys/netpfil/ipfw/ip_dn_io.c; Linux ``INET_ECN_set_ce``); a mark ends that dequeue's drop loop.
* **ce_threshold** (Linux only, codel_impl.h ``codel_dequeue``'s end): every ECT packet leaving with a sojourn
  above it is CE-marked, whatever the control law does (DCTCP-style shallow marking); FreeBSD has no such
  parameter.

CoDel decides at dequeue. One log line per decision: each packet it forwards, marks or drops at dequeue, and
each packet dropped at enqueue (the buffer limit); the fields are the documented CoDel subset of the line
(``logformat.CODEL_MEANINGS``, in docs/data.md's packets table).
"""

from __future__ import annotations

from collections import deque

from l4stb.aqm_catalogue import CodelParams
from l4stb.errors import L4stbError
from l4stb.logformat import ACTION_DROP, ACTION_FORWARD, ACTION_MARK, DECIDED_BY_AQM
from l4stb.sim.packet import CE, ECN, FLOW, LEN, NOT_ECT, T_ENQ

_U64 = (1 << 64) - 1
_FB_FIX = 16
"""dn_aqm_codel.h FIX_POINT_BITS."""
_FB_ISQRT_COUNT1 = (1 << _FB_FIX) * 7 // 10
"""dn_aqm_codel.c control_law: the guess of 1/sqrt(2) prepared at count 1."""
_LX_SHIFT = 16
"""include/net/codel.h REC_INV_SQRT_SHIFT (32 - REC_INV_SQRT_BITS, 16 bits kept)."""
FLAG_ECN, FLAG_DROPPING, FLAG_LINUX, FLAG_CE_THRESHOLD = 1, 2, 4, 8
"""The ``flags`` field of a CoDel line."""
STATUS_BUSY = 2
"""``status_flags`` bit1: packets remain queued after the decision (as DualPI2's bit1 for its C queue)."""


def ecn_mark(pkt: list) -> bool:
    """CE-mark an ECN-capable packet in place; True for an ECT or CE packet, False for not-ECT (FreeBSD
    ``ecn_mark`` in ip_dn_io.c; Linux ``INET_ECN_set_ce`` in include/net/inet_ecn.h: both report CE as marked)."""
    if pkt[ECN] == NOT_ECT:
        return False
    pkt[ECN] = CE
    return True


class CodelVars:
    """One queue's CoDel state (FreeBSD ``struct codel_status``, Linux ``struct codel_vars``) and its dequeue."""

    __slots__ = ("count", "lastcount", "dropping", "drop_next", "first_above", "isqrt", "rec_inv_sqrt",
                 "maxpkt", "ldelay", "prev_delay")

    def __init__(self):
        self.count = 0
        self.lastcount = 0
        self.dropping = False
        self.drop_next = 0
        self.first_above = 0
        self.isqrt = 0
        self.rec_inv_sqrt = 0
        self.maxpkt = 500  # FreeBSD aqm_codel_init / fq_codel_new_sched; Linux ignores it (it has params->mtu)
        self.ldelay = 0
        self.prev_delay = 0

    # ------------------------------------------------------------------ control law

    def control_law(self, prm: CodelParams, t: int) -> int:
        """``t + interval / sqrt(count)`` in the implementation's integers (FreeBSD's takes its Newton step here)."""
        if prm.linux:
            return t + ((prm.interval_us * (self.rec_inv_sqrt << _LX_SHIFT)) >> 32)
        if self.count == 1:
            self.isqrt = _FB_ISQRT_COUNT1
            return t + prm.interval_us
        temp = (self.isqrt * self.isqrt) & 0xFFFFFFFF
        temp = ((3 << (2 * _FB_FIX)) - self.count * temp) & _U64
        temp >>= 1 + 8
        temp = ((self.isqrt * temp) & _U64) >> (2 * _FB_FIX - 8)
        self.isqrt = temp & 0xFFFF
        return t + (((prm.interval_us * temp) & _U64) >> _FB_FIX)

    def newton_step(self) -> None:
        """Linux ``codel_Newton_step``: one Newton iteration of 1/sqrt(count) in Q0.32, 16 bits kept."""
        invsqrt = (self.rec_inv_sqrt << _LX_SHIFT) & 0xFFFFFFFF
        invsqrt2 = (invsqrt * invsqrt) >> 32
        val = ((3 << 32) - self.count * invsqrt2) & _U64
        val >>= 2
        val = ((val * invsqrt) & _U64) >> (32 - 2 + 1)
        self.rec_inv_sqrt = (val >> _LX_SHIFT) & 0xFFFF

    # ------------------------------------------------------------------ dequeue

    def should_drop(self, prm: CodelParams, pkt, backlog_bytes: int, now: int) -> bool:
        """FreeBSD ``codel_dodequeue`` / Linux ``codel_should_drop`` for ``pkt`` just taken off the head, with
        ``backlog_bytes`` left behind it: has the sojourn stayed at or above target for an interval?"""
        if pkt is None:
            self.first_above = 0
            return False
        sojourn = now - pkt[T_ENQ]
        self.prev_delay = self.ldelay
        self.ldelay = sojourn
        if prm.linux:
            small = backlog_bytes <= prm.mtu
        else:
            small = backlog_bytes <= self.maxpkt
        if sojourn < prm.target_us or small:
            self.first_above = 0
            return False
        if self.first_above == 0:
            self.first_above = now + prm.interval_us
            return False
        return now > self.first_above if prm.linux else now >= self.first_above

    def dequeue(self, prm: CodelParams, take, drop, now: int) -> tuple:
        """``(packet, marked)``: the packet to send from this queue (CE-marked in place if so decided) or None, and
        whether CoDel marked it.

        ``take()`` removes the head packet and returns ``(pkt, bytes left)`` or ``(None, 0)``; ``drop(pkt)`` logs
        and frees a packet CoDel drops. FreeBSD ``codel_dequeue`` (dn_aqm_codel.h) or Linux ``codel_dequeue``
        (codel_impl.h), step for step.
        """
        linux = prm.linux
        pkt, left = take()
        if linux and pkt is None:
            self.dropping = False
            return None, False
        ok = self.should_drop(prm, pkt, left, now)
        if self.dropping:
            if not ok:
                self.dropping = False
            while self.dropping and now >= self.drop_next:
                if linux:  # Linux counts (and takes its Newton step) before it marks or drops
                    self.count += 1
                    self.newton_step()
                if prm.ecn and pkt is not None and ecn_mark(pkt):
                    if not linux:
                        self.count += 1
                    self.drop_next = self.control_law(prm, self.drop_next)
                    return self._end(prm, pkt, True)
                drop(pkt)
                pkt, left = take()
                if not self.should_drop(prm, pkt, left, now):
                    self.dropping = False
                else:
                    if not linux:
                        self.count += 1
                    self.drop_next = self.control_law(prm, self.drop_next)
        elif ok:
            marked = prm.ecn and ecn_mark(pkt)
            if not marked:
                drop(pkt)
                pkt, left = take()
                self.should_drop(prm, pkt, left, now)  # only its effect on first_above matters here
            self.dropping = True
            self._first_count(prm, now)
            self.drop_next = self.control_law(prm, now)
            return self._end(prm, pkt, marked)
        return self._end(prm, pkt, False)

    def _first_count(self, prm: CodelParams, now: int) -> None:
        """The count on entering the dropping state (see the module docstring)."""
        if prm.linux:
            delta = (self.count - self.lastcount) & 0xFFFFFFFF
            if delta > 1 and now - self.drop_next < 16 * prm.interval_us:
                self.count = delta
                self.newton_step()
            else:
                self.count = 1
                self.rec_inv_sqrt = 0xFFFFFFFF >> _LX_SHIFT
            self.lastcount = self.count
        else:
            self.count = self.count - 2 if self.count > 2 and now - self.drop_next < 8 * prm.interval_us else 1

    def _end(self, prm: CodelParams, pkt, marked: bool) -> tuple:
        """Linux's ``end:`` label: the ce_threshold mark on the packet that leaves (never set on FreeBSD)."""
        if pkt is not None and prm.ce_threshold_us >= 0 and self.ldelay > prm.ce_threshold_us and ecn_mark(pkt):
            marked = True
        return pkt, marked


def refuse_policy(name: str, policy) -> None:
    """The learned policy decides inside DualPI2's queues only (aqm ``policy`` runs on its dualpi2 fallback)."""
    if policy is not None:
        raise L4stbError(f"the learned policy runs on the dualpi2 AQM only; aqm {name} has no policy hook. Use "
                         "aqm.name: policy (its fallback is dualpi2), or run this AQM without a policy.")


def log_fields(prm: CodelParams, v: CodelVars, pkt: list, action: int, now_us: int, sojourn: int, dq_count: int,
               tot_pkts: int, tot_bytes: int, qlen: int, qbytes: int, drops: int) -> tuple:
    """The 26 values of a CoDel line (``logformat.CODEL_MEANINGS``, in docs/data.md's packets table): the PI/PIE
    fields are 0; ``tupdate`` carries the interval, ``measurement_start_time`` the next scheduled drop while
    dropping."""
    flags = ((FLAG_ECN if prm.ecn else 0) | (FLAG_DROPPING if v.dropping else 0) | (FLAG_LINUX if prm.linux else 0)
             | (FLAG_CE_THRESHOLD if prm.ce_threshold_us >= 0 else 0))
    return (0, prm.target_us, prm.interval_us, 0, 0, 0, 0, flags, 0, 0, max(0, sojourn), max(0, v.prev_delay), 0,
            max(0, v.drop_next) if v.dropping else 0, 0, dq_count, STATUS_BUSY if qlen > 1 else 0, tot_pkts,
            tot_bytes, qlen, qbytes, drops, pkt[LEN], action, now_us, pkt[FLOW])


class Codel:
    """Single-queue CoDel at the bottleneck (the ``codel`` AQM): tail drop at ``limit_packets``, CoDel at dequeue.

    The buffer test counts packets only, as both run it: FreeBSD ``aqm_codel_enqueue`` (queue size in slots, as
    the vagrant plan configures it: ``q->ni.length >= f->qsize``), Linux ``codel_qdisc_enqueue``
    (``qdisc_qlen(sch) < sch->limit``, net/sched/sch_codel.c).
    """

    name = "codel"
    __slots__ = ("prm", "v", "q", "bytes", "emit", "next_update_us", "tot_pkts", "tot_bytes", "dq_count", "drops",
                 "marks", "_now_us", "_take", "_drop")

    @classmethod
    def from_scenario(cls, aqm, bottleneck, seed: int, emit=None, policy=None) -> "Codel":
        """The AQM for a scenario's resolved ``aqm`` and ``bottleneck`` (see :func:`l4stb.sim.runner.make_aqm`);
        CoDel draws no random numbers, so ``seed`` is unused."""
        refuse_policy(cls.name, policy)
        return cls(CodelParams.from_aqm(aqm, bottleneck), emit=emit)

    def __init__(self, params: CodelParams, emit=None):
        self.prm = params
        self.v = CodelVars()
        self.q: deque = deque()
        self.bytes = 0
        self.emit = emit
        self.next_update_us = 1 << 62  # no periodic update: CoDel decides at dequeue
        self.tot_pkts = 0
        self.tot_bytes = 0
        self.dq_count = 0
        self.drops = [0, 0]
        self.marks = [0, 0]
        self._now_us = 0
        self._take = self._take_head
        self._drop = self._drop_head

    def clock(self, now_us: int) -> int:
        """CoDel's "now": the dummynet tick (FreeBSD ``AQM_UNOW``) or the microsecond (Linux)."""
        return now_us if self.prm.linux else now_us - now_us % self.prm.tick_us

    def backlog(self) -> int:
        return len(self.q)

    def update(self, now_us: int) -> None:
        self.next_update_us = 1 << 62

    def enqueue(self, pkt: list, now_us: int) -> bool:
        length = pkt[LEN]
        if length > self.v.maxpkt:  # FreeBSD aqm_codel_enqueue takes the max before the limit test
            self.v.maxpkt = length
        if len(self.q) >= self.prm.limit_packets:
            if self.emit is not None:
                head = now_us - self.q[0][T_ENQ] if self.q else 0
                self.emit(log_fields(self.prm, self.v, pkt, ACTION_DROP, now_us, head, self.dq_count, self.tot_pkts,
                                     self.tot_bytes, len(self.q), self.bytes, self.drops[0]) + (DECIDED_BY_AQM,))
            self.drops[0] += 1
            return False
        pkt[T_ENQ] = self.clock(now_us)
        self.q.append(pkt)
        self.bytes += length
        self.tot_pkts += 1
        self.tot_bytes += length
        return True

    def _take_head(self):
        if not self.q:
            return None, 0
        pkt = self.q.popleft()
        self.bytes -= pkt[LEN]
        return pkt, self.bytes

    def _drop_head(self, pkt: list) -> None:
        if self.emit is not None:
            self._log(pkt, ACTION_DROP)
        self.drops[0] += 1
        self.dq_count += 1

    def _log(self, pkt: list, action: int) -> None:
        now = self._now_us
        self.emit(log_fields(self.prm, self.v, pkt, action, now, self.clock(now) - pkt[T_ENQ], self.dq_count,
                             self.tot_pkts, self.tot_bytes, len(self.q) + 1, self.bytes + pkt[LEN], self.drops[0])
                  + (DECIDED_BY_AQM,))

    def dequeue(self, now_us: int):
        """The next packet to transmit (CE-marked in place if so decided), or None; drops are logged and freed."""
        if not self.q:
            self.v.dequeue(self.prm, self._take, self._drop, self.clock(now_us))  # an empty dequeue resets state
            return None
        self._now_us = now_us
        pkt, marked = self.v.dequeue(self.prm, self._take, self._drop, self.clock(now_us))
        if pkt is None:
            return None
        if marked:
            self.marks[0] += 1
        if self.emit is not None:
            self._log(pkt, ACTION_MARK if marked else ACTION_FORWARD)
        self.dq_count += 1
        return pkt
