"""An unresponsive UDP sender (iperf3 ``-u -b``): constant bit rate, or on-off, with a fixed ECN codepoint.

iperf3's UDP client writes one datagram every ``len * 8 / rate`` seconds (``-l`` 1448-byte payload plus
headers: 1500-byte IP packets here) and never slows down for loss or CE: the traffic an AQM study uses
to drive DualPI2 into overload on purpose. On-off alternates ``on_ns`` of sending with ``off_ns`` of
silence, starting with an on period. The receiver counts what arrives; there is no feedback.

It speaks the engine's flow interface (``start``, ``on_timer``, ``on_ack``, ``on_data``, ``on_delack``,
``sample``) and the counters the iperf3 writer reads, so the runner treats it like a TCP flow.
"""

from __future__ import annotations

from heapq import heappush

from l4stb.sim.datagram import DatagramSender
from l4stb.sim.packet import CE, ECT0, ECT1, NOT_ECT
from l4stb.sim.tcp import EV_RTO, PKT_BYTES

ECN_CODEPOINTS = {"not-ect": NOT_ECT, "ect0": ECT0, "ect1": ECT1}


class UdpCbrFlow(DatagramSender):
    __slots__ = ("fid", "start_ns", "end_ns", "sim", "access", "gap_ns", "on_ns", "off_ns", "ecn", "extra_ns",
                 "seq", "rcv_nxt", "ce_received", "ce_acked", "marked_rtts", "retrans", "max_cwnd", "cwnd", "srtt",
                 "rttvar", "rtt_min", "rtt_max", "rtt_sum", "rtt_n", "samples", "interval_ns", "size_segs",
                 "done_ns")

    def __init__(self, fid: int, start_ns: int, end_ns: int, sim, access, *, rate_bps: int, on_ns: int = 0,
                 off_ns: int = 0, ecn: str = "not-ect", extra_delay_ns: int = 0):
        self._init_sender(fid, start_ns, end_ns, sim, access, extra_delay_ns)
        self.gap_ns = PKT_BYTES * 8_000_000_000 // rate_bps
        self.on_ns = on_ns
        self.off_ns = off_ns
        self.ecn = ECN_CODEPOINTS[ecn]
        self.marked_rtts = 0
        self.max_cwnd = 0.0
        self.cwnd = 0.0

    def on_timer(self, now: int) -> None:
        """Send one datagram (through the NIC FIFO), then schedule the next, skipping an off period."""
        if now >= self.end_ns:
            return
        self.emit(now, self.ecn)
        nxt = now + self.gap_ns
        if self.on_ns:
            cycle = self.on_ns + self.off_ns
            phase = (nxt - self.start_ns) % cycle
            if phase >= self.on_ns:
                nxt += cycle - phase
        heappush(self.sim.heap, (nxt, next(self.sim.counter), EV_RTO, self))

    def on_ack(self, now: int, cum: int, sack: int, ce: int, ts_echo: int) -> None:
        return

    def on_data(self, now: int, pkt: list) -> None:
        self.rcv_nxt += 1
        if pkt[2] == CE:
            self.ce_received += 1

    def sample(self, now: int) -> None:
        self.record(now, (now, self.seq, 0, 0.0, 0, 0, self.rcv_nxt))  # datagrams sent, received
