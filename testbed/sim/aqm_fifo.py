"""Tail-drop FIFO at the bottleneck (the ``fifo`` baseline): drop at enqueue when the buffer is full, nothing else.

One log line per enqueue attempt. Fields that belong to an AQM controller (target, probabilities,
burst allowance...) are 0; ``current_queue_delay`` is the sojourn of the queue's head packet,
``queue_length``/``length_in_bytes`` the backlog the arriving packet sees (ticks as kern.hz).
"""

from __future__ import annotations

from collections import deque

from l4stb.logformat import ACTION_DROP, ACTION_FORWARD, ACTION_MARK, DECIDED_BY_AQM, DECIDED_BY_POLICY
from l4stb.sim.packet import CE, ECN, FLOW, LEN, NOT_ECT, T_ENQ
from l4stb.sim.policy import POLICY_DROP, POLICY_MARK, PolicyGate


class Fifo:
    name = "fifo"
    __slots__ = ("limit_packets", "limit_bytes", "tick_us", "q", "bytes", "emit", "gate", "next_update_us",
                 "tot_pkts", "tot_bytes", "drops", "marks", "ecn")

    @classmethod
    def from_scenario(cls, aqm, bottleneck, seed: int, emit=None, policy=None) -> "Fifo":
        """The AQM for a scenario's resolved ``aqm`` and ``bottleneck`` (see :func:`l4stb.sim.runner.make_aqm`)."""
        return cls(bottleneck.limit_packets, bottleneck.limit_bytes, max(1, 1_000_000 // aqm.kern_hz), emit=emit,
                   policy=policy, ecn=aqm.ecn)

    def __init__(self, limit_packets: int, limit_bytes: int, tick_us: int = 1000, emit=None, policy=None,
                 ecn: bool = True):
        self.limit_packets = limit_packets
        self.limit_bytes = limit_bytes
        self.tick_us = tick_us
        self.q: deque = deque()
        self.bytes = 0
        self.emit = emit
        self.gate = PolicyGate(policy) if policy is not None else None
        self.next_update_us = 1 << 62
        self.tot_pkts = 0
        self.tot_bytes = 0
        self.drops = [0, 0]
        self.marks = [0, 0]
        self.ecn = ecn

    def backlog(self) -> int:
        return len(self.q)

    def update(self, now_us: int) -> None:
        self.next_update_us = 1 << 62

    def _fields(self, pkt: list, now_us: int, action: int) -> tuple:
        head = now_us - self.q[0][T_ENQ] if self.q else 0
        head -= head % self.tick_us
        return (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, head, 0, 0, 0, 0, 0, 0, self.tot_pkts, self.tot_bytes,
                len(self.q), self.bytes, self.drops[0], pkt[LEN], action, now_us, pkt[FLOW])

    def enqueue(self, pkt: list, now_us: int) -> bool:
        length = pkt[LEN]
        by = DECIDED_BY_AQM
        if len(self.q) >= self.limit_packets or self.bytes + length > self.limit_bytes:
            action = ACTION_DROP
        elif self.gate is not None and self.gate.take():
            by = DECIDED_BY_POLICY
            choice = self.gate.decide(self._fields(pkt, now_us, 0)[:24])
            if choice == POLICY_DROP:
                action = ACTION_DROP
            elif choice == POLICY_MARK:
                action = ACTION_MARK if (pkt[ECN] != NOT_ECT and self.ecn) else ACTION_DROP
            else:
                action = ACTION_FORWARD
        else:
            action = ACTION_FORWARD
        if self.emit is not None:
            self.emit(self._fields(pkt, now_us, action) + (by,))
        if action == ACTION_DROP:
            self.drops[0] += 1
            return False
        if action == ACTION_MARK:
            pkt[ECN] = CE
            self.marks[0] += 1
        pkt[T_ENQ] = now_us
        self.q.append(pkt)
        self.bytes += length
        self.tot_pkts += 1
        self.tot_bytes += length
        return True

    def dequeue(self, now_us: int):
        if not self.q:
            return None
        pkt = self.q.popleft()
        self.bytes -= pkt[LEN]
        return pkt
