"""Try a model change by subclassing, not by editing the sender: FreeBSD's PRR-SSRB during ECN congestion recovery.

FreeBSD's tcp_input.c (tcp_do_segment, the ``IN_CONGRECOVERY`` branch: "During ECN cwnd reduction always use
PRR-SSRB", calling tcp_do_prr_ack) lets PRR (RFC 6937, slow-start reduction bound) set cwnd on every ACK of an
ECN congestion-recovery episode, so cwnd walks down from the flight to ssthresh over about an RTT instead of
dropping at once (the cc modules' CC_ECN sets cwnd = ssthresh, and PRR overrides it on the same ACK). The
public FreeBSD 14.1 SIFTR traces show that walk for NewReno (docs/freebsd-siftr.md). This script runs the
comparison with :class:`PrrEcnFlow`, a traced sender that applies the simulator's own PRR
(:meth:`l4stb.sim.tcp.TcpFlow.prr_step`) to classic-ECN (NewReno, Cubic) reductions on the FreeBSD stack, and prints
the table, to be set beside ``bench/siftr_compare.py``'s.

    python bench/siftr_prr_ecn.py --traces /path/to/FreeBSD-L4S-Experiments [--repeats 5] [--cell "l4s 1Mbps"]
"""

from __future__ import annotations

import sys
from pathlib import Path

from l4stb.sim.trace import TracingTcpFlow


class PrrEcnFlow(TracingTcpFlow):
    """FreeBSD sender whose classic-ECN reduction is PRR-SSRB from the flight at the cut (recover_fs)."""

    __slots__ = ("_pre_cwnd", "_acked_now", "_marks_seen", "_prr_on")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pre_cwnd = self.cwnd
        self._acked_now = 0
        self._marks_seen = 0
        self._prr_on = False

    def on_ack(self, now, cum, sack, ce, ts_echo):
        self._pre_cwnd = self.cwnd
        self._acked_now = max(0, cum - self.snd_una)
        super().on_ack(now, cum, sack, ce, ts_echo)

    def send(self, now):
        if self.cc.stack == "linux" or not self.cc.classic_ecn:
            return super().send(now)
        if self.marked_rtts != self._marks_seen:  # this ACK started an ECN congestion-recovery episode
            self._marks_seen = self.marked_rtts
            self.prior_cwnd = float(max(1, self.snd_nxt - self.snd_una))  # recover_fs: the flight at the cut
            self.prr_delivered = 0
            self.prr_out = 0
            self._prr_on = True
        if self._prr_on and not self.in_cwr:
            self._prr_on = False  # the episode ended (cum >= recover); growth goes on from here
        if self._prr_on and self._acked_now:
            self.prr_step(self._acked_now, True)
        self._acked_now = 0
        before = self.snd_nxt
        super().send(now)
        if self._prr_on:
            self.prr_out += self.snd_nxt - before


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from siftr_compare import main

    sys.exit(main(PrrEcnFlow, __doc__.splitlines()[0]))
