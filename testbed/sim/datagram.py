"""What every UDP sender of the simulator shares: starting, putting one datagram on the host's NIC, sampling.

udp_prague (:mod:`l4stb.sim.udp_prague`) and iperf3's unresponsive UDP (:mod:`l4stb.sim.udp_cbr`) are timer
driven: ``start`` takes the first iperf3 sample and sends at once; ``on_timer`` (the engine's EV_RTO for
them) sends the next datagram. The subclass supplies ``on_timer``, ``on_ack``, ``on_data`` and its sample tuple.
"""

from __future__ import annotations

from heapq import heappush

from l4stb.sim.tcp import EV_ARRIVE, EV_SAMPLE, PKT_BYTES


class DatagramSender:
    """Mixin over a flow with ``sim``, ``access``, ``fid``, ``seq``, ``extra_ns``, ``end_ns``, ``interval_ns``
    and ``samples``."""

    __slots__ = ()

    def _init_sender(self, fid: int, start_ns: int, end_ns: int, sim, access, extra_ns: int) -> None:
        """The state every datagram sender shares: where it sends, and the counters its iperf3 report reads."""
        self.fid = fid
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.sim = sim
        self.access = access
        self.extra_ns = extra_ns
        self.seq = 0
        self.rcv_nxt = 0
        self.ce_received = 0
        self.ce_acked = 0
        self.retrans = 0
        self.srtt = self.rttvar = 0
        self.rtt_min = 1 << 62
        self.rtt_max = self.rtt_sum = self.rtt_n = 0
        self.samples: list = []
        self.interval_ns = 1_000_000_000
        self.size_segs = 0
        self.done_ns = 0

    def start(self, now: int) -> None:
        self.sample(now)
        self.on_timer(now)

    def emit(self, now: int, ecn: int) -> None:
        """One 1500-byte datagram released now: through the host's NIC FIFO (and any extra delay) to the router."""
        heappush(self.sim.heap, (self.access.depart(now) + self.extra_ns, next(self.sim.counter), EV_ARRIVE,
                                 [0, PKT_BYTES, ecn, self.fid, self.seq, now]))
        self.seq += 1

    def on_delack(self, now: int) -> None:
        return

    def record(self, now: int, row: tuple) -> None:
        """Append one iperf3 interval sample and schedule the next (at most at the flow's end)."""
        self.samples.append(row)
        nxt = min(now + self.interval_ns, self.end_ns)
        if now < self.end_ns:
            heappush(self.sim.heap, (nxt, next(self.sim.counter), EV_SAMPLE, self))
