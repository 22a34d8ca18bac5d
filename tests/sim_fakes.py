"""Stand-ins for the simulator's engine, for tests that drive one sender or receiver by hand."""

from __future__ import annotations

import itertools


class FakeSim:
    """The engine's surface a flow touches: a heap, a counter, the ACK sink and return latencies."""

    def __init__(self):
        self.heap: list = []
        self.counter = itertools.count()
        self.acks: list = []
        self.ack_delay_ns = [0]
