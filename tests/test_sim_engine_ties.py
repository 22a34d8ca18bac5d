"""The event loop's tie order: what happens first when several sources are due at the same nanosecond.

Reference: the order the engine's docstring states (update, heap, link, server arrivals, ACKs), which
the loop's source selection implements (``<=`` for the update, ``<`` for the others in that order).
"""

from __future__ import annotations

from l4stb.sim.aqm_fifo import Fifo
from l4stb.sim.engine import Engine
from l4stb.sim.link import Bottleneck
from l4stb.sim.packet import make_packet

MS = 1_000_000


class RecordingFifo(Fifo):
    """A FIFO that writes every call into ``log`` and runs one update at 2 ms."""

    def __init__(self, log: list):
        super().__init__(1000, 10**9)
        self.log = log
        self.next_update_us = 2_000

    def enqueue(self, pkt, now_us):
        self.log.append(("enqueue", pkt[4], now_us))
        return super().enqueue(pkt, now_us)

    def dequeue(self, now_us):
        pkt = super().dequeue(now_us)
        self.log.append(("link", None if pkt is None else pkt[4], now_us))  # an empty dequeue is logged too
        return pkt

    def update(self, now_us):
        self.log.append(("update", None, now_us))
        super().update(now_us)


class Receiver:
    def __init__(self, log: list):
        self.log = log

    def on_data(self, t, pkt):
        self.log.append(("server", pkt[4], t // 1000))

    def on_ack(self, t, cum, sack, ce, ts):
        self.log.append(("ack", cum, t // 1000))


def test_sources_due_at_the_same_time_run_update_heap_link_server_ack():
    """At 2 ms five things are due at once: the AQM update, a packet arriving (heap), the pipe finishing
    packet 1 (link, 1 ms per packet at 12 Mbit/s), packet 0 reaching the server (1 ms after its
    transmission ended) and an ACK. They must run in the documented order: had the link gone before the
    heap, it would have found the queue empty (``("link", None)``) and packet 2 would start an idle pipe."""
    log: list = []
    rx = Receiver(log)
    engine = Engine(RecordingFifo(log), Bottleneck(12_000_000, 1 * MS), [rx], [0])
    engine.schedule(0, 0, make_packet(0, 1500, 0, 0, 0))
    engine.schedule(0, 0, make_packet(0, 1500, 0, 0, 1))
    engine.schedule(2 * MS, 0, make_packet(0, 1500, 0, 0, 2))
    engine._ackq.qs[0].append((2 * MS, rx, 99, -1, 0, 0))
    engine.run(2 * MS)
    at_2ms = [(what, n) for what, n, t in log if t == 2_000]
    assert at_2ms == [("update", None), ("enqueue", 2), ("link", 2), ("server", 0), ("ack", 99)]


def test_heap_entries_due_together_keep_their_insertion_order():
    log: list = []
    engine = Engine(RecordingFifo(log), Bottleneck(12_000_000, 1 * MS), [Receiver(log)], [0])
    for seq in (5, 3, 9, 1):
        engine.schedule(1 * MS, 0, make_packet(0, 1500, 0, 0, seq))
    engine.run(1 * MS)
    assert [n for what, n, _ in log if what == "enqueue"] == [5, 3, 9, 1]
