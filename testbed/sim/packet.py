"""The simulator's packet record: a small list with fixed slots, and the ECN codepoints it carries.

A packet is a plain ``list`` (cheap to create, mutable so an AQM can CE-mark it in place):

====  ==========  ============================================================
slot  name        meaning
====  ==========  ============================================================
0     T_ENQ       time it entered the bottleneck AQM, integer microseconds
1     LEN         IP length in bytes (1500 for a full TCP segment)
2     ECN         ECN field of the IP header: 0 not-ECT, 1 ECT(1), 2 ECT(0), 3 CE
3     FLOW        flow id (index of the sender in the repeat)
4     SEQ         segment number within the flow (TCP) or packet number (UDP)
5     TX          time the sender released it, integer nanoseconds (echoed for RTT)
6     PASSES      pipe passes done so far (only with ``bottleneck.match: any``, appended after the first)
7     ACK_INFO    an ACK's ``(flow, cum, sack, ce, ts_echo)`` (ACK packets only; their SEQ is -1)
====  ==========  ============================================================

Data packets have six slots on the default route; with ``match: any`` the engine appends PASSES when
a packet leaves the pipe the first time, and ACKs travel as packets of eight slots.
"""

from __future__ import annotations

T_ENQ, LEN, ECN, FLOW, SEQ, TX, PASSES, ACK_INFO = range(8)

NOT_ECT, ECT1, ECT0, CE = 0, 1, 2, 3
"""ECN field values as in the IP header (RFC 3168): 0b00, 0b01, 0b10, 0b11."""


def make_packet(t_enq_us: int, length: int, ecn: int, flow: int = 0, seq: int = 0, tx_ns: int = 0) -> list:
    return [t_enq_us, length, ecn, flow, seq, tx_ns]
