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
