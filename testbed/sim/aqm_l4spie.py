"""The original FreeBSD "l4s" dummynet scheduler of the L4S-LLM paper: one FreeBSD PIE per sub-queue, decisions at enqueue.

Reconstructed from shared/reference/original-l4s-llm.md §1 (the scheduler's ``pie_enqueue`` and its
``printf``) and the FreeBSD PIE of :mod:`l4stb.sim.aqm_pie`:

* **Classification**: ECN field == ECT(1) -> L sub-queue (queue_type 1); everything else, CE included,
  -> C sub-queue (queue_type 0), as the dualpi2 variant of the scheduler does.
* **Per sub-queue PIE** (auto-tune, burst allowance, derandomisation, capdrop), each updated every
  tupdate from its own TS-mode queue delay; all AQM time is the dummynet tick (``kern.hz``), so with
  kern_hz=100 every delay is a multiple of 10 ms, as in the paper's data.
* **drop_early** per packet at enqueue: Classic ``random() < p && random() < p`` (p^2 with two 31-bit
  draws); L ``random() < local_l_prob`` with ``local_l_prob = max(own PIE p, 2 x the C queue's p)``
  (the intended coupling). ``couple_same_flow=True`` reproduces the code as read in the reference
  ([reading]: it reads ``c_base_drop_prob`` of the L flow itself, which is never written, so L packets
  see only their own PIE probability).
* **Action**: the logged ``dequeue_action`` is drop_early's verdict; a DROP is carried out only when
  the burst allowance is used up -- then it becomes a CE mark if ECN is on, the queue's drop_prob <
  max_ecnth and the packet is ECN-capable; while burst allowance remains, the line says DROP but the
  packet is still enqueued ([reading] in the reference). Tail drop at the buffer limit.
* **Scheduler**: deficit round robin with equal quanta (1514 bytes) between the two sub-queues, as
  the FQ-PIE code it derives from (the exact wl/wc weights of the original are not known).
* **Log**: one line per enqueue attempt, for both sub-queues, with the ``printf``'s 24 fields.
"""

from __future__ import annotations

from l4stb.logformat import ACTION_DROP, ACTION_FORWARD, ACTION_MARK
from l4stb.sim.aqm_pie import (
    PIE_ECN_ENABLED,
    PIE_MAX_PROB,
    PieParams,
    PieState,
    Rand31,
    apply_policy,
)
from l4stb.sim.packet import CE, ECN, ECT1, LEN, NOT_ECT
from l4stb.sim.policy import PolicyGate

QUANTUM = 1514


class L4sPie:
    name = "l4s-pie"
    __slots__ = ("prm", "qs", "rand", "emit", "gate", "next_update_us", "deficit", "cur", "couple_same_flow",
                 "k", "drops", "marks")

    def __init__(self, params: PieParams, seed: int, emit=None, policy=None, *, coupling: int = 2,
                 couple_same_flow: bool = False):
        self.prm = params
        self.qs = (PieState(params), PieState(params))
        self.rand = Rand31(seed)
        self.emit = emit
        self.gate = PolicyGate(policy) if policy is not None else None
        self.next_update_us = params.tupdate
        self.deficit = [0, 0]
        self.cur = 0
        self.k = int(coupling)
        self.couple_same_flow = couple_same_flow
        self.drops = [0, 0]
        self.marks = [0, 0]

    def backlog(self) -> int:
        return len(self.qs[0].q) + len(self.qs[1].q)

    def update(self, now_us: int) -> None:
        for st in self.qs:
            st.calculate_drop_prob(self.prm)
        self.next_update_us = now_us + self.prm.tupdate

    def _drop_early(self, qt: int, st: PieState) -> int:
        prm = self.prm
        if st.not_congested(prm):
            return ACTION_FORWARD
        decided = st.derand(prm)
        if decided:
            return decided
        draw = self.rand.draw
        if qt == 0:
            hit = draw() < st.drop_prob and draw() < st.drop_prob
        else:
            c_prob = 0 if self.couple_same_flow else self.qs[0].drop_prob
            local = c_prob * self.k
            if local > PIE_MAX_PROB:
                local = PIE_MAX_PROB
            if st.drop_prob > local:
                local = st.drop_prob
            hit = draw() < local
        if hit:
            st.accu_prob = 0
            return ACTION_DROP
        return ACTION_FORWARD

    def enqueue(self, pkt: list, now_us: int) -> bool:
        prm = self.prm
        ecn = pkt[ECN]
        qt = 1 if ecn == ECT1 else 0
        st = self.qs[qt]
        total_len = len(self.qs[0].q) + len(self.qs[1].q)
        total_bytes = self.qs[0].len_bytes + self.qs[1].len_bytes
        enqueue = True
        if total_len >= prm.limit_packets or total_bytes + pkt[LEN] > prm.limit_bytes:
            logged = ACTION_DROP
            enqueue = False
        else:
            if self.gate is not None and self.gate.take():
                logged = apply_policy(self.gate, st.log_fields(qt, prm, pkt, 0, now_us), ecn,
                                      bool(prm.flags & PIE_ECN_ENABLED))
                enqueue = logged != ACTION_DROP
            else:
                logged = self._drop_early(qt, st)
                if logged == ACTION_DROP and st.burst_allowance == 0:
                    if (prm.flags & PIE_ECN_ENABLED) and st.drop_prob < prm.ecn_threshold and ecn != NOT_ECT:
                        logged = ACTION_MARK
                    else:
                        enqueue = False
        st.refill_burst(prm)
        if self.emit is not None:
            self.emit(st.log_fields(qt, prm, pkt, logged, now_us))
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
        return True

    def dequeue(self, now_us: int):
        qs = self.qs
        if not qs[0].q and not qs[1].q:
            return None
        deficit = self.deficit
        cur = self.cur
        while True:
            st = qs[cur]
            if not st.q:
                deficit[cur] = 0
                cur ^= 1
                continue
            head = st.q[0]
            if deficit[cur] < head[LEN]:
                deficit[cur] += QUANTUM
                if qs[cur ^ 1].q:
                    cur ^= 1
                continue
            break
        self.cur = cur
        pkt = st.depart(now_us, self.prm.tick_us)
        deficit[cur] -= pkt[LEN]
        return pkt
