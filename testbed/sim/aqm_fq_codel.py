"""FQ-CoDel (RFC 8290) as FreeBSD's dummynet and Linux run it: flows hashed into queues, deficit round robin, CoDel each.

Modelled on FreeBSD's ``dn_sched_fq_codel.c`` / ``dn_sched_fq_codel.h`` / ``dn_sched_fq_codel_helper.h``
(sys/netpfil/ipfw/) and Linux's ``net/sched/sch_fq_codel.c``; each flow queue runs the CoDel of
:mod:`l4stb.sim.aqm_codel` (``CodelParams.linux`` picks the implementation). What both do:

* **classify**: a packet's 5-tuple, hashed with a per-instance random value, picks one of ``flows`` queues
  (FreeBSD ``fq_codel_classify_flow``: Jenkins hash with ``perturbation = random()``; Linux ``fq_codel_hash``:
  the skb flow hash). The simulator hashes (flow id, direction) with a value drawn from the repeat's seed, so
  two of n flows share a queue with the same small chance (about n^2 / (2 x flows)).
* **new and old lists, deficit round robin**: a queue that becomes active joins the tail of the new list with
  ``deficit = quantum``; dequeue serves the new list first, then the old one; a queue whose deficit is spent gets
  another quantum and moves to the tail of the old list; each packet sent is charged its length.
* **CoDel per queue**: its own state, its own timestamps; drops and marks happen at dequeue.

Where they differ (followed per ``linux``):

* **deficit test**: FreeBSD moves a queue on when ``deficit < 0``, Linux when ``deficit <= 0``.
* **a queue that CoDel finds empty**: FreeBSD moves it from the new list to the old one, and drops it from the
  old list; Linux moves it from the new list to the old one only when the old list is not empty.
* **a queue that becomes active**: FreeBSD also resets its CoDel (``dropping`` and ``first_above_time``), Linux
  keeps its CoDel state.
* **CoDel's "nearly empty" test**: FreeBSD per queue (its bytes against its largest packet), Linux the whole
  qdisc's backlog against the MTU (``codel_dequeue(sch, &sch->qstats.backlog, ...)``).
* **over the limit** (packets in all queues): FreeBSD ``fq_codel_enqueue`` drops the head packet of the queue with
  the most packets (the first such in index order); Linux ``fq_codel_drop`` drops from the head of the queue with
  the most bytes until half its bytes or 64 packets (``drop_batch_size``) are gone, and adds that many to its
  CoDel count.

Every decision gets a CoDel line (:func:`l4stb.sim.aqm_codel.log_fields`); the queue fields are the whole
scheduler's (FreeBSD's ``main_q`` statistics), the sojourn and CoDel state the packet's own queue's.
"""

from __future__ import annotations

from collections import deque

from l4stb.aqm_catalogue import CodelParams
from l4stb.logformat import ACTION_DROP, ACTION_FORWARD, ACTION_MARK, DECIDED_BY_AQM
from l4stb.sim.aqm_codel import CodelVars, log_fields, refuse_policy
from l4stb.sim.packet import FLOW, LEN, SEQ, T_ENQ
from l4stb.sim.prng import seed_state


class FlowQueue:
    """One flow queue (FreeBSD ``struct fq_codel_flow``, Linux ``struct fq_codel_flow``)."""

    __slots__ = ("idx", "q", "bytes", "deficit", "active", "v")

    def __init__(self, idx: int):
        self.idx = idx
        self.q: deque = deque()
        self.bytes = 0
        self.deficit = 0
        self.active = False
        self.v = CodelVars()


def _mix32(x: int) -> int:
    """A 32-bit integer hash (murmur3's finaliser) standing in for the kernels' flow hashes."""
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & 0xFFFFFFFF
    x ^= x >> 16
    return x


class FqCodel:
    """FQ-CoDel at the bottleneck (the ``fq_codel`` AQM)."""

    name = "fq_codel"
    __slots__ = ("prm", "queues", "new", "old", "perturbation", "emit", "next_update_us", "qlen", "bytes",
                 "tot_pkts", "tot_bytes", "dq_count", "drop_count", "drops", "marks", "_cur", "_now_us", "_bucket")

    @classmethod
    def from_scenario(cls, aqm, bottleneck, seed: int, emit=None, policy=None) -> "FqCodel":
        """The AQM for a scenario's resolved ``aqm`` and ``bottleneck`` (see :func:`l4stb.sim.runner.make_aqm`);
        ``seed`` draws the hash perturbation."""
        refuse_policy(cls.name, policy)
        return cls(CodelParams.from_aqm(aqm, bottleneck), seed, emit=emit)

    def __init__(self, params: CodelParams, seed: int, emit=None):
        self.prm = params
        self.queues: dict[int, FlowQueue] = {}
        self.new: deque = deque()
        self.old: deque = deque()
        self.perturbation = seed_state(seed)
        self.emit = emit
        self.next_update_us = 1 << 62
        self.qlen = 0
        self.bytes = 0
        self.tot_pkts = 0
        self.tot_bytes = 0
        self.dq_count = 0
        self.drop_count = 0
        self.drops = [0, 0]
        self.marks = [0, 0]
        self._cur: FlowQueue | None = None
        self._now_us = 0
        self._bucket: dict[int, int] = {}

    # ------------------------------------------------------------------ helpers

    def clock(self, now_us: int) -> int:
        return now_us if self.prm.linux else now_us - now_us % self.prm.tick_us

    def backlog(self) -> int:
        return self.qlen

    def update(self, now_us: int) -> None:
        self.next_update_us = 1 << 62

    def bucket(self, pkt: list) -> int:
        """The flow queue of ``pkt``: its flow and direction (an ACK, SEQ -1, is the reverse 5-tuple) hashed with
        the perturbation, modulo ``flows``."""
        key = pkt[FLOW] * 2 + (1 if pkt[SEQ] == -1 else 0)
        idx = self._bucket.get(key)
        if idx is None:
            idx = self._bucket[key] = _mix32(key * 0x9E3779B1 ^ self.perturbation) % self.prm.flows
        return idx

    def _queue(self, idx: int) -> FlowQueue:
        fq = self.queues.get(idx)
        if fq is None:
            fq = self.queues[idx] = FlowQueue(idx)
        return fq

    def _log(self, fq: FlowQueue, pkt: list, action: int, now_us: int, in_queue: bool) -> None:
        """One line; ``in_queue``: the packet is still counted in the queue fields (it was just taken off)."""
        extra_n, extra_b = (1, pkt[LEN]) if in_queue else (0, 0)
        self.emit(log_fields(self.prm, fq.v, pkt, action, now_us, self.clock(now_us) - pkt[T_ENQ], self.dq_count,
                             self.tot_pkts, self.tot_bytes, self.qlen + extra_n, self.bytes + extra_b,
                             self.drop_count) + (DECIDED_BY_AQM,))

    # ------------------------------------------------------------------ enqueue

    def enqueue(self, pkt: list, now_us: int) -> bool:
        """Queue ``pkt`` in its flow queue; over the limit, drop from the fattest queue's head. False when the
        packet itself was the one dropped."""
        prm = self.prm
        fq = self._queue(self.bucket(pkt))
        length = pkt[LEN]
        if length > fq.v.maxpkt:
            fq.v.maxpkt = length
        pkt[T_ENQ] = self.clock(now_us)
        fq.q.append(pkt)
        fq.bytes += length
        self.qlen += 1
        self.bytes += length
        self.tot_pkts += 1
        self.tot_bytes += length
        if not fq.active:
            self.new.append(fq)
            fq.active = True
            fq.deficit = prm.quantum
            if not prm.linux:  # fq_codel_enqueue resets the flow's CoDel on activation (Linux does not)
                fq.v.dropping = False
                fq.v.first_above = 0
        if self.qlen <= prm.limit_packets:
            return True
        return self._drop_over_limit(pkt, now_us)

    def _drop_over_limit(self, arriving: list, now_us: int) -> bool:
        prm = self.prm
        if prm.linux:  # the most bytes; ties keep the lowest index (strict > in the scan)
            fat = max(self.queues.values(), key=lambda f: (f.bytes, -f.idx))
            threshold, dropped_bytes, n = fat.bytes >> 1, 0, 0
            while fat.q:
                dropped_bytes += self._drop_head(fat, now_us)
                n += 1
                if n >= prm.drop_batch or dropped_bytes >= threshold:
                    break
            fat.v.count += n
        else:
            fat = max((f for f in self.queues.values() if f.active), key=lambda f: (len(f.q), -f.idx))
            if fat.q:
                self._drop_head(fat, now_us)
        own = self._queue(self.bucket(arriving)).q
        return bool(own) and own[-1] is arriving

    def _drop_head(self, fq: FlowQueue, now_us: int) -> int:
        pkt = fq.q.popleft()
        fq.bytes -= pkt[LEN]
        self.qlen -= 1
        self.bytes -= pkt[LEN]
        if self.emit is not None:
            self._log(fq, pkt, ACTION_DROP, now_us, False)
        self.drop_count += 1
        self.drops[0] += 1
        return pkt[LEN]

    # ------------------------------------------------------------------ dequeue

    def _take(self):
        fq = self._cur
        if not fq.q:
            return None, 0
        pkt = fq.q.popleft()
        fq.bytes -= pkt[LEN]
        self.qlen -= 1
        self.bytes -= pkt[LEN]
        return pkt, (self.bytes if self.prm.linux else fq.bytes)

    def _drop(self, pkt: list) -> None:
        if self.emit is not None:
            self._log(self._cur, pkt, ACTION_DROP, self._now_us, True)
        self.drop_count += 1
        self.drops[0] += 1
        self.dq_count += 1

    def dequeue(self, now_us: int):
        """The next packet to transmit (CE-marked in place if so decided), or None."""
        prm = self.prm
        linux = prm.linux
        now = self.clock(now_us)
        self._now_us = now_us
        new, old = self.new, self.old
        while True:
            lst = new if new else old
            if not lst:
                return None
            fq = lst[0]
            if fq.deficit <= 0 if linux else fq.deficit < 0:
                fq.deficit += prm.quantum
                lst.popleft()
                old.append(fq)
                continue
            self._cur = fq
            pkt, marked = fq.v.dequeue(prm, self._take, self._drop, now)
            if pkt is None:
                lst.popleft()
                if lst is new and (old or not linux):
                    old.append(fq)
                else:
                    fq.active = False
                continue
            fq.deficit -= pkt[LEN]
            if marked:
                self.marks[0] += 1
            if self.emit is not None:
                self._log(fq, pkt, ACTION_MARK if marked else ACTION_FORWARD, now_us, True)
            self.dq_count += 1
            return pkt
