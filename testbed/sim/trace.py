"""Record every simulated TCP sender's cwnd, ssthresh, srtt and acknowledged bytes per ACK, as SIFTR does on FreeBSD.

:func:`traced_senders` swaps the runner's ``TcpFlow`` for :class:`TracingTcpFlow` while a block runs, so a
plain :func:`l4stb.sim.runner.simulate_repeat` leaves per-ACK records in each flow's ``trace`` list; the
flows are returned by :func:`simulate_traced`. The records mirror what a SIFTR ``i`` line plus the
following line tell (see :mod:`l4stb.analysis.siftr`): the state after the ACK was processed and what it acked.
"""

from __future__ import annotations

from contextlib import contextmanager

from l4stb.sim import runner
from l4stb.sim.tcp import MSS, TcpFlow


class TracingTcpFlow(TcpFlow):
    """A :class:`l4stb.sim.tcp.TcpFlow` that appends ``(now_ns, cwnd_segs, ssthresh_segs, srtt_ns,
    acked_bytes, in_loss_recovery)`` to ``trace`` after every ACK it processes."""

    __slots__ = ("trace",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.trace: list[tuple[int, float, float, int, int, bool]] = []
        _created.append(self)

    def on_ack(self, now: int, cum: int, sack: int, ce: int, ts_echo: int) -> None:
        una = self.snd_una
        super().on_ack(now, cum, sack, ce, ts_echo)
        self.trace.append((now, self.cwnd, self.ssthresh, self.srtt, (self.snd_una - una) * MSS, self.in_rec))


_created: list[TracingTcpFlow] = []


@contextmanager
def traced_senders(flow_class: type[TracingTcpFlow] = TracingTcpFlow):
    """While the block runs, every TCP sender the runner builds is a ``flow_class`` (a :class:`TracingTcpFlow`
    or a subclass that tries a model change); yields the list they are appended to, in flow-id order."""
    saved = runner.TcpFlow
    _created.clear()
    runner.TcpFlow = flow_class
    try:
        yield _created
    finally:
        runner.TcpFlow = saved


def simulate_traced(job: runner.SimJob, flow_class: type[TracingTcpFlow] = TracingTcpFlow
                    ) -> tuple[dict, list[TracingTcpFlow]]:
    """Simulate one repeat with traced TCP senders: the runner's statistics and the traced flows."""
    with traced_senders(flow_class) as flows:
        stats = runner.simulate_repeat(job)
        return stats, list(flows)
