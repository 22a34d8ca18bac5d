"""Link models: a host's access link (serialisation + propagation) and the dummynet-style bottleneck pipe's timing.

* **Access links** (client -> router, from the topology: 1 Gbit/s, 50 us by default): a FIFO NIC
  whose only state is the time it becomes free; every packet the host sends, paced or not, TCP or UDP,
  reaches the router at ``max(release, free) + serialisation + propagation`` (:meth:`AccessLink.depart`). They never drop (they are 125x faster than
  the bottleneck in the paper's scenarios).
* **Bottleneck** (router egress to the server): a dummynet pipe ``bw R delay D`` with the AQM as its
  scheduler. dummynet puts the delay line *after* the bandwidth-limited queue: the AQM dequeues a
  packet when the pipe can transmit it, the packet occupies the pipe for ``len * 8 / R``, then sits in
  the delay line for ``D`` before it leaves the router. So the AQM sees only queueing, never the
  propagation delay, and base RTT = D + access/return latencies + one serialisation. By default
  transmissions are continuous; ``bottleneck.serve_on_ticks`` batches them on kern.hz ticks the way
  dummynet's callout does (``Engine._serve``): at hz=1000 and 8 Mbit/s that is under one packet
  per tick, at hz=100 and 10 Mbit/s about 8 packets every 10 ms.
* **Bottleneck, ``shaper: htb``** (the real-Linux testbed's router: ``tc ... htb rate R`` over a veth, the AQM as
  its leaf): a token bucket instead of a serialising pipe (:meth:`l4stb.sim.engine.Engine._tb_send`): a packet
  leaves the AQM while the tokens are >= 0 and enters the delay line at once, charged its length plus the
  14-byte Ethernet header; with tc's default burst of 1600 bytes two back-to-back full packets after an idle
  moment both leave with no wait, where the pipe makes the second wait a whole packet time (1.5 ms at 8 Mbit/s,
  over Linux DualPI2's 1 ms step).
* **Return path** (server -> router -> client, ACKs only): with ``bottleneck.match: egress`` (the
  default) uncongested, a constant latency of the two links' serialisation of a 52-byte ACK plus their
  propagation delays; with ``match: any`` (the original testbed's ipfw rule) ACKs cross the pipe too,
  and every packet crosses it twice (see :mod:`l4stb.sim.engine`).
"""

from __future__ import annotations

from dataclasses import dataclass


def ser_ns(length_bytes: int, rate_bps: int) -> int:
    """Serialisation time of ``length_bytes`` at ``rate_bps``, integer nanoseconds (floor)."""
    return (length_bytes * 8_000_000_000) // rate_bps


class AccessLink:
    """A host's NIC and link towards the router."""

    __slots__ = ("name", "rate_bps", "prop_ns", "ser_ns", "free_ns")

    def __init__(self, name: str, rate_bps: int, delay_us: int, packet_bytes: int = 1500):
        self.name = name
        self.rate_bps = rate_bps
        self.prop_ns = delay_us * 1000
        self.ser_ns = ser_ns(packet_bytes, rate_bps)
        self.free_ns = 0

    def depart(self, release_ns: int) -> int:
        """A full-size packet the host releases at ``release_ns`` (paced or not) queues in the NIC's FIFO behind
        what the host sent before; returns when it reaches the router."""
        free = self.free_ns if self.free_ns > release_ns else release_ns
        free += self.ser_ns
        self.free_ns = free
        return free + self.prop_ns


@dataclass(frozen=True)
class Bottleneck:
    """The dummynet pipe: rate and the delay line after the queue."""

    rate_bps: int
    delay_ns: int

    def ser_ns(self, length_bytes: int) -> int:
        return ser_ns(length_bytes, self.rate_bps)


def return_latency_ns(links: list[tuple[int, int]], ack_bytes: int = 52) -> int:
    """Constant latency of an ACK over ``links`` = [(rate_bps, delay_us), ...]."""
    return sum(ser_ns(ack_bytes, rate) + delay_us * 1000 for rate, delay_us in links)
