"""The original FreeBSD "l4s" dummynet scheduler of the L4S-LLM paper: one FreeBSD PIE per sub-queue, decisions at enqueue.

Ported from the original source on top of the FreeBSD PIE of :mod:`l4stb.sim.aqm_pie`; the C module's
l4s-pie mode is the same code, checked bit for bit. The version reproduced is
deol-satish/FreeBSD-L4S-SRC ``sys/netpfil/ipfw/dn_sched_dualpi2.c`` at commit
``69cdd1cbb1c35beaa854933347afea809e0a3836`` (``pie_enqueue``, ``cqueue_drop_early``,
``lqueue_drop_early``, ``fq_calculate_drop_prob``, ``fq_activate_pie``, ``dualpi2_enqueue``/``_dequeue``,
``dualpi2_new_sched``'s wc = 1, wl = 2), with one difference: that commit prints the 23-field
``dualpi2_ecn_marking-start`` line, while the log here has the paper's 24 fields (``len`` before the
action: the ``l4s_ecn_marking-start`` printf of the paper's data). The stored versions of
``dn_sched_l4s.c`` differ in their decisions and are not what this reproduces: ``51e2832a`` hashes flows
into ``flows_cnt`` sub-queues with unweighted quanta and one PIE probability; ``00f30eea`` carries out a
drop verdict only in the Classic sub-queue (an L packet judged "drop" and not markable is queued) and
does not compile (``f`` is undeclared in ``l4s_enqueue``).

* **Classification**: ECN field == ECT(1) -> L sub-queue (queue_type 1); everything else, CE included,
  -> C sub-queue (queue_type 0).
* **drop_early** per packet at enqueue: Classic ``random() < p && random() < p`` (p^2, two 31-bit
  draws), skipped while (qdelay_old < target/2 and p < 0.2) or the sub-queue holds <= 1600 bytes; L
  ``random() < local_l_prob`` with ``local_l_prob = max(own p, k x c_base)``. As coded, ``c_base`` is the
  L flow's *own* (never written) Classic probability, so L sees only its own PIE (``couple_same_flow``,
  the default; ``aqm.pie_coupling: intended`` uses the Classic PIE's p). Derandomisation as in PIE.
* **Action**: the logged ``dequeue_action`` is drop_early's verdict; it is carried out only while the
  sub-queue's PIE is on and its burst allowance used up -- then a CE mark if ECN is on, the queue's p <
  max_ecnth and the packet is ECN-capable, else a drop. Otherwise the line says DROP and the packet is
  queued.
* **PIE on and off** (FQ-PIE's, the source of the standing queues in the original data): a sub-queue
  joins the scheduler's new-flows list on its first packet, and its PIE is switched on *reset*
  (p = 0, burst allowance = max_burst, its own callout every tupdate from then on); when the round robin
  finds it empty on the old list it leaves, its PIE and callout stop, and the next packet starts it over.
  PIE also switches on when the sub-queue holds (limit / 2) / 3 bytes (the original compares a packet
  count with bytes).
* **Scheduler**: FQ-PIE's round robin over new then old flows with deficits in quanta of 1514 bytes,
  weighted 2:1 for L (wl = 2, wc = 1); a sub-queue is served while its deficit is >= 0.
* **Limit**: ``limit_packets`` (10240 in the original) over both sub-queues; when exceeded after an
  enqueue, the head of the longer sub-queue is dropped (not logged). ``limit_bytes`` is checked the same
  way (the original has no byte limit).
* **Time**: AQM time is the dummynet tick (``kern.hz``): with kern_hz=100 every delay is a multiple of
  10 ms, as in the paper's data. Queue delay is measured on dequeue (TS mode), only while PIE is on.
* **Log**: one line per enqueue attempt, for both sub-queues, with the ``printf``'s 24 fields.
"""

from __future__ import annotations

from l4stb.logformat import ACTION_DROP, ACTION_FORWARD, ACTION_MARK, DECIDED_BY_AQM, DECIDED_BY_POLICY
from l4stb.sim.aqm_pie import (
    PIE_ACTIVE,
    PIE_ECN_ENABLED,
    PIE_INMEASUREMENT,
    PIE_MAX_PROB,
    PieParams,
    PieState,
    Rand31,
    apply_policy,
)
from l4stb.sim.packet import CE, ECN, ECT1, LEN, NOT_ECT
from l4stb.sim.policy import PolicyGate

QUANTUM = 1514
WC, WL = 1, 2
"""DRR weights of the original: the L sub-queue's deficit grows by 2 quanta a round, the Classic one's by 1."""
INF_US = 1 << 62


class L4sPie:
    name = "l4s-pie"
    __slots__ = ("prm", "qs", "rand", "emit", "gate", "next_update_us", "deficit", "couple_same_flow",
                 "k", "drops", "marks", "new", "old", "next_upd", "one_third", "cur")

    @classmethod
    def from_scenario(cls, aqm, bottleneck, seed: int, emit=None, policy=None) -> "L4sPie":
        """The AQM for a scenario's resolved ``aqm`` and ``bottleneck`` (see :func:`l4stb.sim.runner.make_aqm`)."""
        return cls(PieParams.from_aqm(aqm, bottleneck), seed, emit=emit, policy=policy,
                   coupling=int(round(aqm.coupling_factor)), couple_same_flow=aqm.pie_coupling == "as-coded")

    def __init__(self, params: PieParams, seed: int, emit=None, policy=None, *, coupling: int = 2,
                 couple_same_flow: bool = True):
        self.prm = params
        self.qs = (PieState(params), PieState(params))
        for st in self.qs:  # allocated zeroed: PIE off, no burst allowance until first activated
            st.sflags = 0
            st.burst_allowance = 0
        self.rand = Rand31(seed)
        self.emit = emit
        self.gate = PolicyGate(policy) if policy is not None else None
        self.k = int(coupling)
        self.couple_same_flow = couple_same_flow
        self.drops = [0, 0]
        self.marks = [0, 0]
        self.deficit = [0, 0]
        self.new: list = []
        self.old: list = []
        self.next_upd = [INF_US, INF_US]
        self.next_update_us = INF_US
        self.one_third = params.limit_packets // 2 // 3  # the original's (limit / flows) / 3, compared with bytes
        self.cur = 0

    def backlog(self) -> int:
        return len(self.qs[0].q) + len(self.qs[1].q)

    # ---------------------------------------------------------------- PIE on/off and its per-queue callout

    def _activate(self, qt: int, now_us: int) -> None:
        st = self.qs[qt]
        st.drop_prob = 0
        st.qdelay_old = 0
        st.burst_allowance = self.prm.max_burst
        st.accu_prob = 0
        st.sflags = PIE_INMEASUREMENT | PIE_ACTIVE
        self.next_upd[qt] = now_us + self.prm.tupdate
        self._next()

    def _deactivate(self, qt: int) -> None:
        self.qs[qt].sflags &= ~(PIE_ACTIVE | PIE_INMEASUREMENT)
        self.next_upd[qt] = INF_US
        self._next()

    def _next(self) -> None:
        a, b = self.next_upd
        self.next_update_us = a if a < b else b

    def update(self, now_us: int) -> None:
        for qt in (0, 1):
            if self.next_upd[qt] <= now_us:
                st = self.qs[qt]
                st.calculate_drop_prob(self.prm)
                self.next_upd[qt] = now_us + self.prm.tupdate if st.sflags & PIE_ACTIVE else INF_US
        self._next()

    def _drop_early(self, qt: int, st: PieState) -> int:
        """cqueue_drop_early (p^2) or lqueue_drop_early (max(own p, k x coupled p)), which differ only in the
        probability the safeguard, the derandomisation and the draw use."""
        prm = self.prm
        if qt == 0:
            prob = st.drop_prob
        else:
            prob = 0 if self.couple_same_flow else self.qs[0].drop_prob * self.k
            if st.drop_prob > prob:
                prob = st.drop_prob
        if st.not_congested(prm, prob):
            return ACTION_FORWARD
        decided = st.derand(prm, prob)
        if decided:
            return decided
        draw = self.rand.draw
        if qt == 0 or prob > PIE_MAX_PROB:  # Classic, or L in overload: p^2 drops
            hit = draw() < st.drop_prob and draw() < st.drop_prob
        else:
            hit = draw() < prob
        if hit:
            st.accu_prob = 0
            return ACTION_DROP
        return ACTION_FORWARD

    # ---------------------------------------------------------------- enqueue / dequeue

    def enqueue(self, pkt: list, now_us: int) -> bool:
        prm = self.prm
        ecn = pkt[ECN]
        qt = 1 if ecn == ECT1 else 0
        st = self.qs[qt]
        enqueue = True
        by = DECIDED_BY_AQM
        if self.gate is not None and self.gate.take():
            by = DECIDED_BY_POLICY
            logged = apply_policy(self.gate, st.log_fields(qt, prm, pkt, 0, now_us), ecn,
                                  bool(prm.flags & PIE_ECN_ENABLED))
            enqueue = logged != ACTION_DROP
        else:
            logged = self._drop_early(qt, st)
            if logged == ACTION_DROP and st.sflags & PIE_ACTIVE and st.burst_allowance == 0:
                if (prm.flags & PIE_ECN_ENABLED) and st.drop_prob < prm.ecn_threshold and ecn != NOT_ECT:
                    logged = ACTION_MARK
                else:
                    enqueue = False
        if self.emit is not None:
            self.emit(st.log_fields(qt, prm, pkt, logged, now_us) + (by,))
        if not st.sflags & PIE_ACTIVE and st.len_bytes >= self.one_third:
            self._activate(qt, now_us)
        st.refill_burst(prm)
        if not enqueue:
            st.drops += 1
            self.drops[qt] += 1
            st.accu_prob = 0
            return False
        if logged == ACTION_MARK:
            pkt[ECN] = CE
            st.marks += 1
            self.marks[qt] += 1
        st.admit(pkt, now_us - now_us % prm.tick_us)
        if qt not in self.new and qt not in self.old:  # the sub-queue (re)joins the round robin
            self.new.append(qt)
            self.deficit[qt] = (WL if qt else WC) * QUANTUM
            self._activate(qt, now_us)
        qs = self.qs
        while len(qs[0].q) + len(qs[1].q) > prm.limit_packets or qs[0].len_bytes + qs[1].len_bytes > prm.limit_bytes:
            big = 0 if len(qs[0].q) >= len(qs[1].q) else 1
            victim = qs[big]
            victim.pop_head()
            victim.drops += 1
            victim.accu_prob = 0
            self.drops[big] += 1
        return True

    def dequeue(self, now_us: int):
        qs = self.qs
        deficit = self.deficit
        while True:
            lst = self.new if self.new else self.old
            if not lst:
                return None
            while lst:
                f = lst[0]
                if deficit[f] < 0:
                    deficit[f] += (WL if f else WC) * QUANTUM
                    lst.pop(0)
                    self.old.append(f)
                else:
                    break
            if not lst:
                continue
            f = lst[0]
            st = qs[f]
            if not st.q:
                lst.pop(0)
                if lst is self.new:
                    self.old.append(f)
                else:
                    self._deactivate(f)
                continue
            # the queue delay is measured only while PIE is on
            pkt = st.depart(now_us, self.prm.tick_us) if st.sflags & PIE_ACTIVE else st.pop_head()
            deficit[f] -= pkt[LEN]
            self.cur = f
            return pkt
