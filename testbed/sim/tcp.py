"""TCP senders (NewReno, Cubic, DCTCP, Prague) and their receiver, per segment, as FreeBSD 14.1 or Linux sends.

One :class:`TcpFlow` is one iperf3 stream: a bulk sender on a client (or a short flow of ``size_segs``
segments) and its receiver on the server. ``stack`` picks whose sender: ``freebsd`` (the real testbed;
every rule below unless a Linux rule is named) or ``linux``. Where the stacks differ:

==================  =====================================================  ====================================================
                    FreeBSD 14.1                                           Linux
==================  =====================================================  ====================================================
ECN codepoint       DCTCP ECT(1) (net.inet.tcp.cc.dctcp.ect1=1, set by      DCTCP ECT(0): tcp_dctcp.c is TCP_CONG_NEEDS_ECN only,
                    the vagrant plan); classic CCs ECT(0) with ECN on      so INET_ECN_xmit (include/net/tcp_ecn.h) sets ECT(0);
                                                                            Prague ECT(1) (L4STeam tcp_prague.c)
ECN on retransmits  Not-ECT for every retransmission (tcp_ecn.c,            Not-ECT, except when the CC needs ECN (DCTCP, Prague
                    tcp_ecn_output_established: ECT on new data only)      keep their codepoint): tcp_output.c tcp_ecn_send
slow start          while cwnd <= ssthresh, <= 2 segments per ACK           while cwnd < ssthresh, cwnd = min(cwnd + acked,
                    (cc_newreno / abc_l_var = 2)                            ssthresh), the rest goes to CA (tcp_slow_start)
CE / loss response  cwnd = ssthresh at once (cc_*.c cong_signal)            PRR from cwnd down to ssthresh (tcp_input.c
                                                                            tcp_cwnd_reduction, SSRB), no growth until the
                                                                            window sent at the reduction is acked
NewReno CA          +1 MSS once a cwnd of bytes is acked (ABC,              tcp_cong_avoid_ai(cwnd): +1 per cwnd segments acked
                    cc_newreno.c); ssthresh floor(cwnd/2) whole MSS         ssthresh max(cwnd/2, 2)
DCTCP               grows in congestion recovery (cc_dctcp.c                 tcp_dctcp.c: ssthresh = cwnd - (cwnd alpha >> 11), CWR
                    ack_received leaves it), so the reducing ACK takes       with PRR, no growth in CWR; alpha in 1/1024 per window
                    a slow-start step (cwnd == ssthresh)                    from 1024, integer EWMA (below 16/1024 it drops to 0)
DCTCP receiver      every 2nd segment (the FreeBSD model; cc_dctcp's         dctcp_ece_ack_update (tcp_dctcp.h): an immediate ACK on
                    dctcp_ecnpkt_handler also ACKs on a CE change: not       every CE state change, the delayed one for the prior
                    modelled yet, so FreeBSD results stay as published)      segments first; the CWR segment at once (tcp_ecn_accept_cwr)
Cubic               cc_cubic.c: K = cbrt(W_max 0.3 / C) from W_max alone,  tcp_cubic.c: bictcp_update (origin W_max, t + min RTT,
                    cwnd jumps to W_cubic(t + mean RTT) or W_est =          cnt per ACK, Reno-friendly tcp_cwnd at 3(1-b)/(1+b)),
                    0.7 W_max + 0.53 t/mean RTT, ssthresh cwnd/2 at the    beta 717/1024, fast convergence, HyStart (ACK train
                    first congestion event then 0.7 cwnd, fast             and delay, from cwnd 16)
                    convergence 217/256; post-recovery cwnd from W_max
Prague              not in FreeBSD: ``cc: prague`` runs udp_prague          L4STeam tcp_prague.c v0.7 (commit 893e147, modelled
                    (:mod:`l4stb.sim.udp_prague`); a TCP Prague here is    whole: alpha from 0 and half the window at the first
                    the Linux model                                         mark, frac_cwnd, rate mode below 4 packets, RTT
                                                                            independence after 4 rounds, pacing +-3 %)
lost retransmits    LRD (tcp_sack.c tcp_sack_lost_retransmission): a SACK  RACK marks it lost the same way on a path that never
                    above a retransmission's send point resends it and     reorders; the recovery episode goes on
                    reduces cwnd once more
==================  =====================================================  ====================================================

Departures: FreeBSD's PRR (net.inet.tcp.do_prr) and HyStart++ are not modelled (FreeBSD enters fast recovery
at cwnd = ssthresh here; the stored sources could not confirm 14.1's do_prr default); Linux's TLP, undo
(Eifel/DSACK), TSO autosizing and RACK's reordering window (min_rtt/4 before a hole counts as lost) are not
modelled: on both stacks a hole below the highest SACK counts as lost at once (FACK), which is what RACK
concludes on a path that never reorders, a quarter of an RTT earlier; Limited Transmit is not modelled on
either stack (recovery starts at the 4th SACK, the same decision one or two segments later).

Common to both stacks
  * Segments of ``MSS = 1448`` payload bytes in 1500-byte IP packets (timestamps on); sequence numbers
    count segments. Initial window 10 segments (RFC 6928), initial RTO 1 s.
  * **Full segments only**: at most ``floor(cwnd)`` segments in flight (cwnd is a real number, as FreeBSD
    keeps it in bytes; Linux's is an integer here too).
  * **Loss recovery**: SACK-based, FACK-style because the path never reorders: recovery starts when the
    highest SACKed segment is more than 3 above the cumulative ACK (DupThresh, RFC 5681), then every hole
    below it is retransmitted once while ``pipe = snd_nxt - fack + retransmitted_in_flight < cwnd``; one
    window reduction per episode and ``recover`` as in RFC 6582; a retransmission found lost (above) is
    resent.
  * **RTO** (RFC 6298 estimator, FreeBSD bounds): ``srtt + 4 rttvar + 200 ms`` (``rexmit_slop``), at least
    30 ms (``rexmit_min``), doubled per consecutive timeout up to 64x; on expiry cwnd = 1, go-back-N from
    snd_una, scoreboard cleared.
  * **ECN**: classic RFC 3168 for Cubic/NewReno when the scenario enables ECN (ECT(0), one reduction per
    window on echoed CE); DCTCP and Prague get *accurate* CE counts (the receiver reports how many of the newly
    acked segments were CE-marked, as DCTCP's receiver state machine and AccECN do). Prague sends ECT(1); DCTCP
    ECT(1) on FreeBSD and ECT(0) on Linux (the table above), so whether Linux's DCTCP uses DualPI2's L queue is
    the AQM's ``l4s_classifier`` (``any_ect``) choice, as with the real qdisc.
  * **Receiver** (the server; for a Linux-stack DCTCP flow the server runs Linux's DCTCP receiver, as on the
    real-Linux testbed, with the CE-change and CWR rules of the table): delayed ACKs (every 2nd in-order segment, or after 40 ms); an
    immediate ACK with a SACK for every out-of-order arrival and when a hole fills; TSecr echoes the first
    unacknowledged segment's timestamp (RFC 7323), so RTT samples include the delayed-ACK wait. The receive
    window is never the limit (2 MB).
  * **Every packet leaves through the host's NIC FIFO** and access link (:meth:`l4stb.sim.link.AccessLink.depart`).
  * **Pacing** (TCP Prague): at Prague's pacing rate (:class:`l4stb.sim.tcp_cc.PragueV07`), in GSO bursts of
    max(1, rate x 2^-12 s) segments (prague_tso_segs); as with Linux's fq qdisc (EDT), which Prague asks for, a
    burst waits in the host until its departure time, counted in flight, at most max(2 packets, ~1 ms)
    ahead (TCP small queues). Linux CCs grow only when cwnd-limited (tcp_is_cwnd_limited: the flight
    reached cwnd this round, or in slow start cwnd < 2 x the most packets out), so a paced flow's window
    follows what it can send. Linux's DCTCP, Cubic and Reno are **not** paced: tcp_output.c paces only when
    tcp_needs_internal_pacing (sk_pacing_status == SK_PACING_NEEDED, set by the fq qdisc or a CC such as BBR or
    Prague); TSQ (tcp_small_queue_check) does not hold them back on the real-Linux testbed either, since the
    router's ip_rcv_core orphans each skb (net/ipv4/ip_input.c) before it reaches the bottleneck.

Congestion-control details are in the table above and, for Cubic and Prague, in :mod:`l4stb.sim.tcp_cc`.
DCTCP on both stacks: alpha EWMA with g = 1/16 per window of data, starting at 1; FreeBSD cuts cwnd =
ssthresh = cwnd (1 - alpha/2) in bytes, Linux ssthresh = cwnd - (cwnd alpha_1024 >> 11) then PRR; both halve
on loss.
"""

from __future__ import annotations

import math
from heapq import heappush

from l4stb.sim.packet import CE, ECT0, ECT1, NOT_ECT
from l4stb.sim.tcp_cc import FreeBsdCubic, LinuxCubic, PragueV07, ai

MSS = 1448
PKT_BYTES = 1500
ACK_BYTES = 52
INIT_CWND = 10.0
INIT_RTO_NS = 1_000_000_000
RTO_MIN_NS = 30_000_000
RTO_SLOP_NS = 200_000_000
RTO_MAX_NS = 64_000_000_000
MAX_BACKOFF = 64
DELACK_NS = 40_000_000
DUPTHRESH = 3
RWND_BYTES = 2 * 1024 * 1024

CC_NEWRENO, CC_CUBIC, CC_DCTCP, CC_PRAGUE = 0, 1, 2, 3
CC_CODES = {"newreno": CC_NEWRENO, "cubic": CC_CUBIC, "dctcp": CC_DCTCP, "prague": CC_PRAGUE}

CUBIC_C = 0.4
CUBIC_BETA = 0.7
CUBIC_ALPHA = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)
DCTCP_G = 1.0 / 16
DCTCP_SHIFT_G = 4
DCTCP_MAX_ALPHA = 1024
"""Linux tcp_dctcp.c: alpha in 1/1024 (DCTCP_MAX_ALPHA), g = 2^-dctcp_shift_g, dctcp_alpha_on_init = 1024."""
PRAGUE_RTT_TARGET_NS = 25_000_000
PRAGUE_TRANSITION_ROUNDS = 4

EV_ARRIVE, EV_RTO, EV_DELACK, EV_SAMPLE, EV_START, EV_RATE, EV_PACE = 0, 1, 2, 3, 4, 5, 6
"""Heap event kinds shared with the engine (EV_RATE: the bottleneck's rate changes to ``obj`` bit/s;
EV_PACE: a paced sender's next departure is due, ``obj.on_pace``)."""


class TcpFlow:
    """One TCP connection (sender + receiver). The engine calls ``start``, ``on_ack``, ``on_data``, timers."""

    __slots__ = (
        "fid", "cc", "ecn_cp", "rtx_cp", "classic_ecn", "start_ns", "end_ns", "sim", "access", "linux",
        "size_segs", "done_ns", "extra_ns",
        # sender
        "snd_una", "snd_nxt", "high_tx", "cwnd", "ssthresh", "in_rec", "recover", "fack", "sacked",
        "rtx_next", "rtx_out", "srtt", "rttvar", "rto", "backoff", "rto_at", "timer_at", "ecn_recover",
        "retrans", "ce_acked", "marked_rtts", "rtt_min", "rtt_max", "rtt_sum", "rtt_n", "max_cwnd",
        "bytes_acked", "cnt_acc", "in_cwr", "cwr_end", "prr_delivered", "prr_out", "prior_cwnd",
        # per-CC state
        "fb_cubic", "lx_cubic", "prague",
        # dctcp
        "alpha", "win_end", "win_acked", "win_ce", "delivered", "delivered_ce", "pace_next", "paced",
        "pace_armed", "is_cwnd_limited", "max_out", "cwnd_usage_seq",
        # receiver
        "rcv_nxt", "ooo", "ack_pending", "ce_pending", "ts_recent", "delack_at", "ce_received", "bytes_rcvd",
        "ce_state", "ce_ack_now", "cwr_pending", "lx_alpha", "lx_next_seq", "lx_old_delivered", "lx_old_ce",
        # iperf3 samples
        "samples", "interval_ns", "next_sample",
    )

    def __init__(self, fid: int, cc: str, ecn: bool, start_ns: int, end_ns: int, sim, access, *,
                 stack: str = "freebsd", size_segs: int = 0, extra_delay_ns: int = 0):
        """``size_segs`` > 0: a short flow that ends once that many segments are acked (iperf3 ``-n``).
        ``extra_delay_ns``: added to every data packet's way to the router (a per-flow/host dummynet pipe)."""
        self.fid = fid
        self.cc = CC_CODES[cc]
        self.linux = stack == "linux"
        if self.cc == CC_PRAGUE or (self.cc == CC_DCTCP and not self.linux):
            # Prague asks for ECT(1) (TCP_CONG_ECT_1_NEGOTIATION); FreeBSD's DCTCP sends ECT(1) with
            # net.inet.tcp.cc.dctcp.ect1=1, which the vagrant plan sets
            self.ecn_cp = ECT1
        elif self.cc == CC_DCTCP:
            # Linux's DCTCP sends ECT(0): tcp_dctcp.c flags it TCP_CONG_NEEDS_ECN only, so tcp_ecn_send_syn and
            # tcp_ecn_send (tcp_output.c) call INET_ECN_xmit / INET_ECN_xmit_ect_1_negotiation, which set ECT(0)
            # unless the CC has TCP_CONG_ECT_1_NEGOTIATION (include/net/tcp_ecn.h); ECN is on whatever the scenario
            # says (TCP_CONG_NEEDS_ECN requests it)
            self.ecn_cp = ECT0
        else:
            self.ecn_cp = ECT0 if ecn else NOT_ECT
        # retransmissions: FreeBSD never marks them ECT (tcp_ecn_output_established: new data only); Linux
        # clears ECT on them unless the CC needs ECN (tcp_ecn_send: tcp_ca_needs_ecn for DCTCP and Prague)
        self.rtx_cp = self.ecn_cp if (self.linux and self.cc in (CC_DCTCP, CC_PRAGUE)) else NOT_ECT
        self.classic_ecn = self.ecn_cp == ECT0 and self.cc != CC_DCTCP
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.sim = sim
        self.access = access
        self.size_segs = size_segs
        self.done_ns = 0
        self.extra_ns = extra_delay_ns
        self.snd_una = 0
        self.snd_nxt = 0
        self.high_tx = 0
        self.cwnd = INIT_CWND
        self.ssthresh = 1e12
        self.in_rec = False
        self.recover = 0
        self.fack = 0
        self.sacked: set = set()
        self.rtx_next = 0
        self.rtx_out: dict = {}
        """Retransmitted segments in flight -> snd_nxt when they were resent (lost-retransmission detection)."""
        self.srtt = 0
        self.rttvar = 0
        self.rto = INIT_RTO_NS
        self.backoff = 1
        self.rto_at = 0
        self.timer_at = 0
        self.ecn_recover = 0
        self.retrans = 0
        self.ce_acked = 0
        self.marked_rtts = 0
        self.rtt_min = 1 << 62
        self.rtt_max = 0
        self.rtt_sum = 0
        self.rtt_n = 0
        self.max_cwnd = INIT_CWND
        self.bytes_acked = 0
        self.cnt_acc = 0
        self.in_cwr = False
        self.cwr_end = 0
        self.prr_delivered = 0
        self.prr_out = 0
        self.prior_cwnd = INIT_CWND
        self.fb_cubic = FreeBsdCubic(INIT_CWND) if self.cc == CC_CUBIC and not self.linux else None
        self.lx_cubic = LinuxCubic() if self.cc == CC_CUBIC and self.linux else None
        self.prague = PragueV07(INIT_CWND, start_ns) if self.cc == CC_PRAGUE else None
        self.alpha = 1.0
        self.win_end = 0
        self.win_acked = 0
        self.win_ce = 0
        self.delivered = 0
        self.delivered_ce = 0
        self.pace_next = 0
        self.paced = self.cc == CC_PRAGUE
        self.pace_armed = False
        self.is_cwnd_limited = False
        self.max_out = 0
        self.cwnd_usage_seq = 0
        self.rcv_nxt = 0
        self.ooo: set = set()
        self.ack_pending = 0
        self.ce_pending = 0
        self.ts_recent = 0
        self.delack_at = 0
        self.ce_received = 0
        self.bytes_rcvd = 0
        self.ce_state = False
        self.ce_ack_now = self.linux and self.cc == CC_DCTCP
        """The server of a Linux DCTCP flow runs tcp_dctcp too (iperf3 sets -C on the accepted socket): it ACKs at
        once when the CE state changes (tcp_dctcp.h dctcp_ece_ack_update)."""
        self.cwr_pending = False
        self.lx_alpha = DCTCP_MAX_ALPHA
        self.lx_next_seq = 0
        self.lx_old_delivered = 0
        self.lx_old_ce = 0
        self.samples: list = []
        self.interval_ns = 1_000_000_000
        self.next_sample = 0

    # ================================================================== sender

    def start(self, now: int) -> None:
        if self.prague is not None:
            self.prague.alpha_stamp = now
        self.sample(now)
        self.send(now)

    def send(self, now: int) -> None:
        """Transmit what cwnd (and recovery state) allows, through the host's NIC FIFO."""
        if now >= self.end_ns:
            return
        sim = self.sim
        heap = sim.heap
        counter = sim.counter
        access = self.access
        fid = self.fid
        cwnd = self.cwnd
        in_rec = self.in_rec
        limit = self.size_segs or (1 << 62)
        reducing = self.linux and (in_rec or self.in_cwr)
        sent = False
        paced = self.paced and self.srtt > 0
        if paced:
            # Prague's pacing rate and GSO burst (PragueV07.update_pacing, after every ACK); the pacing timer
            # (EDT: tcp_wstamp_ns) advances by each burst's length at that rate. The fq qdisc holds each burst
            # until its departure time; TCP small queues let at most max(2 packets, rate x 2^-10 s) wait there
            # (tcp_small_queue_check, sk_pacing_shift 10)
            pr = self.prague
            if not pr.pacing:
                pr.update_pacing(now, cwnd, self.ssthresh, self.srtt, self.snd_nxt - self.snd_una)
            gap = int(PKT_BYTES * 1e9 / pr.pacing)
            tso = pr.tso
            tsq_ns = max(2 * gap, 976_562)
        burst = 0
        burst_t = now
        extra = self.extra_ns
        cwnd_full = False
        while True:
            if paced and burst == 0:
                if self.pace_next - now > tsq_ns:
                    if not self.pace_armed:
                        self.pace_armed = True
                        heappush(heap, (self.pace_next - tsq_ns, next(counter), EV_PACE, self))
                    break
                burst = tso
                if self.pace_next < now:
                    self.pace_next = now
                burst_t = self.pace_next
            if in_rec:
                rtx_out = self.rtx_out
                pipe = self.snd_nxt - self.fack + len(rtx_out)
                if pipe >= int(cwnd):
                    cwnd_full = True
                    break
                seq = self.rtx_next
                fack = self.fack
                sacked = self.sacked
                while seq < fack and (seq in sacked or seq in rtx_out):
                    seq += 1
                if seq < fack:
                    self.rtx_next = seq + 1
                    rtx_out[seq] = self.snd_nxt
                else:
                    self.rtx_next = seq  # everything below fack is SACKed or resent: do not rescan
                    seq = self.snd_nxt
                    if seq >= limit:
                        break
                    self.snd_nxt = seq + 1
            else:
                if self.snd_nxt - self.snd_una >= int(cwnd):
                    cwnd_full = True
                    break
                if self.snd_nxt >= limit:
                    break
                seq = self.snd_nxt
                self.snd_nxt = seq + 1
            if seq < self.high_tx:
                self.retrans += 1
                cp = self.rtx_cp
            else:
                self.high_tx = seq + 1
                cp = self.ecn_cp
            if reducing:
                self.prr_out += 1
            # the packet leaves now (a paced one at its burst's departure time) through the NIC's FIFO and the
            # access link (1 Gbit/s by default) to the router, behind everything the host sent before
            rel = now
            if paced:
                rel = burst_t
                burst -= 1
                self.pace_next += gap
            heappush(heap, (access.depart(rel) + extra, next(counter), EV_ARRIVE, [0, PKT_BYTES, cp, fid, seq, rel]))
            sent = True
        if sent and not self.rto_at:
            self.arm_rto(now)
        # tcp_write_xmit / tcp_cwnd_validate: the window limited this attempt when the flight has reached cwnd
        # (whatever stopped the loop: the window, the pacing timer or the application), sticky for a round
        out = self.snd_nxt - self.snd_una
        if not cwnd_full:
            cwnd_full = (self.snd_nxt - self.fack + len(self.rtx_out) if in_rec else out) >= int(cwnd)
        if self.snd_una >= self.cwnd_usage_seq or cwnd_full or (not self.is_cwnd_limited and out > self.max_out):
            self.is_cwnd_limited = cwnd_full
            self.max_out = out
            self.cwnd_usage_seq = self.snd_nxt

    def cwnd_limited(self) -> bool:
        """Linux tcp_is_cwnd_limited: the window limited sending this round, or, in slow start, cwnd is below
        twice the most packets in flight (so a paced or application-limited flow does not grow cwnd)."""
        if self.is_cwnd_limited:
            return True
        if self.cwnd < self.ssthresh:
            return self.cwnd < 2 * self.max_out
        return False

    def on_pace(self, now: int) -> None:
        """The pacing timer: the next departure is due."""
        self.pace_armed = False
        self.send(now)

    def arm_rto(self, now: int) -> None:
        at = now + self.rto * self.backoff
        self.rto_at = at
        if not self.timer_at or self.timer_at > at:
            self.timer_at = at
            heappush(self.sim.heap, (at, next(self.sim.counter), EV_RTO, self))

    def on_timer(self, now: int) -> None:
        """The RTO timer event (lazy: re-armed deadlines move without new heap entries)."""
        if now != self.timer_at:
            return  # superseded by an earlier timer pushed later
        self.timer_at = 0
        at = self.rto_at
        if not at:
            return
        if now < at:
            self.timer_at = at
            heappush(self.sim.heap, (at, next(self.sim.counter), EV_RTO, self))
            return
        if self.snd_una >= self.high_tx or now >= self.end_ns:
            self.rto_at = 0
            return
        # retransmission timeout: cwnd = 1, ssthresh from the flight, go-back-N from snd_una
        flight = self.snd_nxt - self.snd_una
        cc = self.cc
        if self.prague is not None:
            self.prague.enter_loss(self.cwnd, self.ssthresh, self.srtt)  # CA_EVENT_LOSS
        elif self.fb_cubic is not None:
            self.ssthresh = self.fb_cubic.rto(flight)
        elif self.lx_cubic is not None:
            self.ssthresh = float(self.lx_cubic.ssthresh(int(self.cwnd)))
            self.lx_cubic.found = False
        elif self.linux:
            self.ssthresh = float(max(int(self.cwnd) >> 1, 2))  # tcp_reno_ssthresh / dctcp_react_to_loss
        else:
            # FreeBSD cc_cong_signal CC_RTO: max(2, min(wnd, cwnd) / 2 / mss) whole MSS
            self.ssthresh = float(max(2, int(min(self.cwnd, float(flight) if flight else self.cwnd)) // 2))
        if cc == CC_DCTCP and not self.linux:
            self._dctcp_alpha()  # cc_dctcp CC_RTO updates alpha
        self.cwnd = 1.0
        self.cnt_acc = 0
        self.bytes_acked = 0
        self.snd_nxt = self.snd_una
        self.in_rec = False
        self.in_cwr = False
        self.sacked.clear()
        self.rtx_out.clear()
        self.fack = self.snd_una
        self.recover = self.high_tx
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)
        self.rto_at = 0
        self.send(now)
        if not self.rto_at:
            self.arm_rto(now)

    def _loss_ssthresh(self, now: int) -> float:
        """ssthresh for a loss (fast recovery) on this stack and CC."""
        cwnd = self.cwnd
        if self.fb_cubic is not None:
            return self.fb_cubic.signal(now, cwnd)
        if self.lx_cubic is not None:
            return float(self.lx_cubic.ssthresh(int(cwnd)))
        if self.linux:
            return float(max(int(cwnd) >> 1, 2))  # tcp_reno_ssthresh; dctcp_react_to_loss on Recovery
        if self.cc == CC_DCTCP:
            return max(cwnd / 2, 2.0)  # cc_dctcp CC_NDUPACK: max(cwin / 2, 2 * mss) in bytes
        return float(max(int(cwnd) // 2, 2))  # cc_newreno: whole MSS

    def _ecn_ssthresh(self, now: int) -> float:
        """ssthresh for a CE echo (once per window) on this stack and CC (not Prague)."""
        cwnd = self.cwnd
        if self.cc == CC_DCTCP:
            if self.linux:
                c = int(cwnd)
                return float(max(c - ((c * self.lx_alpha) >> 11), 2))  # dctcp_ssthresh
            return max(cwnd * (1 - self.alpha / 2), 2.0)  # cc_dctcp CC_ECN, bytes
        return self._loss_ssthresh(now)

    def _start_reduction(self) -> None:
        """Linux tcp_init_cwnd_reduction: PRR from the current window."""
        self.prior_cwnd = self.cwnd if self.cwnd > 1 else 1.0
        self.prr_delivered = 0
        self.prr_out = 0
        self.cnt_acc = 0

    def _prr(self, delivered: int, una_advanced: bool) -> None:
        """Linux tcp_cwnd_reduction (RFC 6937 with slow-start reduction bound): cwnd = pipe + sndcnt."""
        if self.in_rec:
            pipe = self.snd_nxt - self.fack + len(self.rtx_out)
        else:
            pipe = self.snd_nxt - self.snd_una
        self.prr_delivered += delivered
        ssthresh = int(self.ssthresh)
        delta = ssthresh - pipe
        if delta < 0:
            sndcnt = -(-(ssthresh * self.prr_delivered) // int(self.prior_cwnd)) - self.prr_out
        else:
            sndcnt = self.prr_delivered - self.prr_out
            if sndcnt < delivered:
                sndcnt = delivered
            if una_advanced:
                sndcnt += 1
            if sndcnt > delta:
                sndcnt = delta
        floor = 0 if self.prr_out else 1
        if sndcnt < floor:
            sndcnt = floor
        self.cwnd = float(pipe + sndcnt)

    def on_ack(self, now: int, cum: int, sack: int, ce: int, ts_echo: int) -> None:
        # ---- RTT estimate (RFC 6298 on every ACK, from the timestamp echo)
        r = now - ts_echo
        if r > 0:
            if self.srtt == 0:
                self.srtt = r
                self.rttvar = r >> 1
            else:
                d = self.srtt - r
                self.rttvar += ((d if d > 0 else -d) - self.rttvar) >> 2
                self.srtt += (r - self.srtt) >> 3
            rto = self.srtt + 4 * self.rttvar + RTO_SLOP_NS
            if rto < RTO_MIN_NS:
                rto = RTO_MIN_NS
            elif rto > RTO_MAX_NS:
                rto = RTO_MAX_NS
            self.rto = rto
            if r < self.rtt_min:
                self.rtt_min = r
            if r > self.rtt_max:
                self.rtt_max = r
            self.rtt_sum += r
            self.rtt_n += 1
            if self.fb_cubic is not None:
                self.fb_cubic.record_rtt(self.srtt)
        cc = self.cc
        linux = self.linux
        acked = cum - self.snd_una
        new_sack = sack >= cum and sack not in self.sacked
        if acked > 0:
            self.snd_una = cum
            if self.snd_nxt < cum:
                self.snd_nxt = cum
            self.backoff = 1
            if self.fack < cum:
                self.fack = cum
            # SACKed entries below snd_una are harmless (the send loop starts at rtx_next >= snd_una)
            # and are dropped when recovery ends; pruning them per ACK would cost O(window).
            if self.rtx_out:
                self.rtx_out = {s: m for s, m in self.rtx_out.items() if s >= cum}
            if self.in_rec:
                if cum >= self.recover:
                    self._end_recovery()
                elif self.rtx_next < cum:
                    self.rtx_next = cum
            elif self.prague is not None and self.prague.in_loss and cum >= self.recover:
                self.prague.in_loss = False  # TCP_CA_Loss (after an RTO) back to Open: prague_ca_open
            # re-arm (or stop) the retransmission timer
            if cum < self.snd_nxt or cum < self.high_tx:
                self.rto_at = now + self.rto
            else:
                self.rto_at = 0
            if self.size_segs and cum >= self.size_segs and not self.done_ns:
                self._finish(now)
                return
        if r > 0 and self.lx_cubic is not None and not self.in_rec:
            # bictcp_acked runs in tcp_clean_rtx_queue, after snd_una has moved
            self.ssthresh = float(self.lx_cubic.rtt_sample(now, r, int(self.cwnd), int(min(self.ssthresh, 1 << 40)),
                                                           self.snd_una, self.snd_nxt))
        if sack >= 0:
            self.sacked.add(sack)
            if sack + 1 > self.fack:
                self.fack = sack + 1
            if self.in_rec and self.rtx_out:
                self._lost_retransmissions(now, sack)
        # ---- enter fast recovery (RFC 6582 guard: not again before `recover` is acked)
        if not self.in_rec and self.fack - self.snd_una > DUPTHRESH and self.snd_una >= self.recover:
            self._enter_recovery(now)
        # ---- congestion control on delivered data
        delivered = acked + (1 if new_sack else 0)
        if cc == CC_PRAGUE:
            if delivered > 0:
                self._prague(now, acked, delivered, ce)
        elif linux:
            if delivered > 0:
                self._linux_cc(now, acked, delivered, ce)
        elif acked > 0:
            if ce:
                self.ce_acked += ce
            if not self.in_rec:
                if cc == CC_DCTCP:
                    self._dctcp(now, acked, ce)
                elif ce and self.classic_ecn and cum > self.ecn_recover:
                    self.ecn_recover = self.snd_nxt
                    self.in_cwr = True  # FreeBSD: congestion recovery (no Linux-style PRR here)
                    self.marked_rtts += 1
                    new = self._ecn_ssthresh(now)
                    self.ssthresh = new
                    self.cwnd = new
                    self.bytes_acked = 0
                elif cum >= self.ecn_recover:
                    # FreeBSD: no growth in ECN congestion recovery (until the window sent at the reduction is
                    # acked); the ACK that ends it finds cwnd == ssthresh: slow start
                    if self.in_cwr:
                        self.in_cwr = False  # leaving congestion recovery: cubic_post_recovery's mean RTT
                        if self.fb_cubic is not None:
                            self.fb_cubic.post_recovery(False, 0, self.ssthresh, self.cwnd)
                    self._grow_freebsd(now, acked)
        self.send(now)

    def _finish(self, now: int) -> None:
        """A short flow's last segment is acked: its completion time; nothing more is sent or sampled."""
        self.done_ns = now
        self.rto_at = 0
        self.end_ns = now
        self.sample(now)

    def _enter_recovery(self, now: int) -> None:
        self.in_rec = True
        self.recover = self.high_tx
        self.rtx_next = self.snd_una
        self.ecn_recover = self.high_tx
        if self.prague is not None:
            # prague_state(TCP_CA_Recovery); cwnd follows frac_cwnd per ACK
            self.prague.enter_loss(self.cwnd, self.ssthresh, self.srtt)
            self._start_reduction()
            return
        self.ssthresh = self._loss_ssthresh(now)
        if self.linux:
            self.in_cwr = False
            self._start_reduction()
        else:
            self.cwnd = self.ssthresh  # FreeBSD: fast recovery at cwnd = ssthresh (PRR not modelled)
            self.bytes_acked = 0

    def _end_recovery(self) -> None:
        self.in_rec = False
        self.sacked.clear()
        self.rtx_out.clear()
        if self.prague is not None:
            self.prague.in_loss = False  # prague_ca_open; cwnd is prague's (cong_control)
        elif self.fb_cubic is not None:
            self.cwnd = self.fb_cubic.post_recovery(True, self.snd_nxt - self.snd_una, self.ssthresh, self.cwnd)
        elif self.linux:
            self.cwnd = self.ssthresh  # tcp_end_cwnd_reduction
        else:
            # cc_newreno post_recovery (cc_dctcp calls it): cwnd = pipe + 1 MSS when the flight is below
            # ssthresh (RFC 6582's burst guard), else ssthresh
            pipe = self.snd_nxt - self.snd_una
            self.cwnd = float(max(pipe, 1) + 1) if pipe < self.ssthresh else self.ssthresh

    def _lost_retransmissions(self, now: int, sack: int) -> None:
        """A SACK of a segment first sent after a retransmission means that retransmission was lost (no
        reordering here): resend it. FreeBSD's LRD (tcp_sack_lost_retransmission) also reduces cwnd once more
        through the CC module; Linux's RACK keeps the episode."""
        freebsd = not self.linux and self.prague is None
        if freebsd and sack < self.recover:
            return  # tcp_sack_lost_retransmission needs snd_fack beyond snd_recover: once per episode
        lost = [s for s, mark in self.rtx_out.items() if sack >= mark]
        if not lost:
            return
        for s in lost:
            del self.rtx_out[s]
        first = min(lost)
        if first < self.rtx_next:
            self.rtx_next = first
        if freebsd:
            # tcp_sack_lost_retransmission: cwnd = ssthresh, exit recovery, CC_NDUPACK again (snd_recover =
            # snd_max); FreeBSD then sets cwnd to 1 MSS for PRR/SACK processing to rebuild -- here, without
            # PRR, recovery goes on at the new ssthresh
            self.recover = self.high_tx
            self.cwnd = self.ssthresh
            self.ssthresh = self._loss_ssthresh(now)
            self.cwnd = self.ssthresh

    # ------------------------------------------------------------------ FreeBSD

    def _grow_freebsd(self, now: int, acked: int) -> None:
        cwnd = self.cwnd
        if self.fb_cubic is not None:
            cwnd = self.fb_cubic.ack(now, cwnd, self.ssthresh, acked)
        elif cwnd <= self.ssthresh:  # FreeBSD newreno: slow start while cwnd <= ssthresh, abc_l_var = 2
            cwnd += acked if acked < 2 else 2
            self.bytes_acked = 0
        else:
            # cc_newreno with ABC (rfc3465): +1 MSS once a cwnd of bytes has been acked (cc.c t_bytes_acked)
            self.bytes_acked += acked if acked < 2 else 2
            if self.bytes_acked >= cwnd:
                self.bytes_acked -= cwnd
                cwnd += 1
        self.cwnd = cwnd
        if cwnd > self.max_cwnd:
            self.max_cwnd = cwnd

    def _dctcp_alpha(self) -> None:
        self.alpha = (1 - DCTCP_G) * self.alpha + DCTCP_G * (self.win_ce / self.win_acked if self.win_acked else 0.0)
        self.win_acked = 0
        self.win_ce = 0
        self.win_end = self.snd_nxt

    def _dctcp(self, now: int, acked: int, ce: int) -> None:
        self.win_acked += acked
        self.win_ce += ce
        if self.snd_una >= self.win_end:
            self._dctcp_alpha()
        if ce and self.snd_una > self.ecn_recover:
            self.ecn_recover = self.snd_nxt
            self.marked_rtts += 1
            new = self._ecn_ssthresh(now)
            self.cwnd = new
            self.ssthresh = new
            self.bytes_acked = 0
        # FreeBSD cc_dctcp grows on every ACK, the reducing one included (cong_signal runs before
        # ack_received, which leaves congestion recovery to grow); there cwnd == ssthresh: slow start
        self._grow_freebsd(now, acked)

    # ------------------------------------------------------------------ Linux

    def _linux_cc(self, now: int, acked: int, delivered: int, ce: int) -> None:
        """tcp_ack for Reno, Cubic and DCTCP: the CC's alpha (in_ack_event), then CWR entry on ECE, then PRR
        while reducing or growth (tcp_cong_control)."""
        cc = self.cc
        if ce:
            self.ce_acked += ce
        if cc == CC_DCTCP:
            self._linux_dctcp_alpha(delivered, ce)
        if self.in_cwr and self.snd_una > self.cwr_end:
            # tcp_fastretrans_alert: CWR ends once something *above* high_seq is acked
            self.in_cwr = False
            self.cwnd = self.ssthresh  # tcp_end_cwnd_reduction
        ece = ce and (cc == CC_DCTCP or self.classic_ecn)
        if ece and not self.in_cwr and not self.in_rec:
            self.ssthresh = self._ecn_ssthresh(now)  # tcp_enter_cwr
            self.in_cwr = True
            self.cwr_end = self.snd_nxt
            self.cwr_pending = True  # tcp_ecn_queue_cwr: the next new segment carries CWR
            self.marked_rtts += 1
            self._start_reduction()
        if self.in_rec or self.in_cwr:
            self._prr(delivered, acked > 0)
            return
        if acked <= 0 or not self.cwnd_limited():  # tcp_reno_cong_avoid / cubictcp_cong_avoid
            return
        cwnd = int(self.cwnd)
        ssthresh = self.ssthresh
        if cwnd < ssthresh:  # tcp_slow_start
            new = cwnd + acked
            if new > ssthresh:
                new = int(ssthresh)
            acked -= new - cwnd
            cwnd = new
        if acked > 0 and cwnd >= ssthresh:
            if self.lx_cubic is not None:
                cwnd = self.lx_cubic.cong_avoid(now, cwnd, acked)
            else:
                cwnd = ai(self, cwnd, cwnd, acked)  # tcp_reno_cong_avoid
        self.cwnd = float(cwnd)
        if cwnd > self.max_cwnd:
            self.max_cwnd = float(cwnd)

    def _linux_dctcp_alpha(self, delivered: int, ce: int) -> None:
        """tcp_dctcp.c dctcp_update_alpha (in_ack_event), in its integer arithmetic: once snd_una passes the
        sequence sent when the last update ran, alpha -= min_not_zero(alpha, alpha >> g) -- so an alpha below
        2^g/1024 drops to 0 -- plus (delivered_ce << (10 - g)) / delivered, capped at 1024; tp->delivered counts
        SACKed segments too, delivered_ce those acked with ECE."""
        self.delivered += delivered
        self.delivered_ce += ce
        if self.snd_una < self.lx_next_seq:
            return
        alpha = self.lx_alpha
        dec = alpha >> DCTCP_SHIFT_G
        alpha -= dec if dec else alpha
        d_ce = self.delivered_ce - self.lx_old_ce
        if d_ce:
            alpha = min(alpha + (d_ce << (10 - DCTCP_SHIFT_G)) // max(1, self.delivered - self.lx_old_delivered),
                        DCTCP_MAX_ALPHA)
        self.lx_alpha = alpha
        self.alpha = alpha / DCTCP_MAX_ALPHA
        self.lx_next_seq = self.snd_nxt
        self.lx_old_delivered = self.delivered
        self.lx_old_ce = self.delivered_ce

    def _prague(self, now: int, acked: int, delivered: int, ce: int) -> None:
        """Linux TCP Prague v0.7 (see :class:`l4stb.sim.tcp_cc.PragueV07`): CWR entry on ECE (prague_state), then
        prague_cong_control: prague_update_cwnd, the round's alpha update, the pacing rate, the mode switch."""
        pr = self.prague
        srtt = self.srtt
        if ce:
            self.ce_acked += ce
        self.delivered += delivered
        self.delivered_ce += ce
        if self.in_cwr and self.snd_una > self.cwr_end:
            self.in_cwr = False
        if ce and not self.in_cwr and not self.in_rec:
            self.in_cwr = True
            self.cwr_end = self.snd_nxt
            if pr.enter_cwr(now, self.cwnd, self.ssthresh, srtt):
                self.marked_rtts += 1
        # ---- prague_update_cwnd
        cwnd = int(self.cwnd)
        grow = delivered
        if ce:
            if not pr.saw_ce:
                pr.frac = (pr.frac + 2 ** -20) / 2  # alpha_mode 0: half the window at the first mark
            pr.saw_ce = True
            grow -= ce
        early = False  # slow start used the whole ACK: prague_update_cwnd returns before the step
        if grow > 0 and not pr.in_loss and self.cwnd_limited():
            if cwnd < self.ssthresh:  # tcp_slow_start, and frac_cwnd follows the window
                new = min(cwnd + grow, int(self.ssthresh))
                grow -= new - cwnd
                cwnd = new
                pr.frac = float(cwnd)
                if grow <= 0:
                    early = True
                    pr.update_ai(srtt)
            if early:
                pass
            elif pr.rtt_indep(cwnd, self.ssthresh) and pr.rate_mode:
                vrtt_s = pr.vrtt(srtt) * 1e-9 * pr.SEC
                per_vrtt = math.ceil(pr.rate * vrtt_s / pr.MTU)
                if per_vrtt:
                    pr.rate += grow * pr.MTU / vrtt_s / per_vrtt
                pr.frac = max(pr.frac + grow * 2 ** -20, pr.rate_to_frac(srtt))
            else:
                inc = grow * pr.ai / pr.frac if pr.frac > 0 else grow
                pr.frac += inc if inc > grow * 2 ** -20 else grow * 2 ** -20
                pr.rate = max(pr.rate + grow, pr.frac_to_rate(srtt))
        if not early:
            target = pr.snd_cwnd()
            if cwnd > target:  # step-wise decrement, ssthresh follows
                cwnd -= 1
                self.ssthresh = float(cwnd)
                pr.update_ai(srtt)
            elif cwnd < target:
                cwnd += 1
                pr.update_ai(srtt)
        self.cwnd = float(cwnd)
        if cwnd > self.max_cwnd:
            self.max_cwnd = float(cwnd)
        # ---- prague_should_update_ewma / prague_update_alpha / prague_new_round
        if self.snd_una >= pr.next_seq and (not pr.rtt_indep(self.cwnd, self.ssthresh)
                                            or now - pr.alpha_stamp >= pr.RTT_TARGET_NS):
            if pr.saw_ce:
                d = self.delivered - pr.old_delivered
                f = (self.delivered_ce - pr.old_ce) / d if d > 0 else 0.0
                pr.alpha += pr.G * (f - pr.alpha)
                pr.alpha_stamp = now
            pr.hsrtt = srtt if not pr.hsrtt else pr.hsrtt + (srtt - pr.hsrtt) / 128
            pr.next_seq = self.snd_nxt
            pr.old_delivered = self.delivered
            pr.old_ce = self.delivered_ce
            if self.cwnd >= self.ssthresh:
                pr.round += 1
            pr.update_ai(srtt)
        # ---- prague_update_pacing_rate, then the window/rate mode switch at cwnd_transit packets
        pr.update_pacing(now, self.cwnd, self.ssthresh, srtt, self.snd_nxt - self.snd_una)
        if pr.saw_ce and self.cwnd <= pr.CWND_TRANSIT:
            pr.rate_mode = True
            pr.frac = pr.rate_to_frac(srtt)
        else:
            pr.rate_mode = False
            pr.rate = pr.frac_to_rate(srtt)

    # ================================================================== receiver

    def on_data(self, now: int, pkt: list) -> None:
        """A data segment reaches the server (``now`` is its arrival time there)."""
        seq = pkt[4]
        is_ce = pkt[2] == CE
        ack_now = False
        if self.ce_ack_now:
            if is_ce != self.ce_state:
                # dctcp_ece_ack_update: a CE state change forces an immediate ACK; a delayed ACK for the segments
                # before this one goes out first, echoing their (prior) state
                if self.ack_pending:
                    self._ack(now, -1, self.ts_recent)
                self.ce_state = is_ce
                ack_now = True
            if self.cwr_pending and seq >= self.cwr_end:
                # tcp_ecn_accept_cwr: a data segment carrying CWR (the first new one sent after entering CWR) is
                # ACKed at once ("its cwnd may be very low")
                self.cwr_pending = False
                ack_now = True
        if is_ce:
            self.ce_pending += 1
            self.ce_received += 1
        rcv = self.rcv_nxt
        if seq == rcv:
            rcv += 1
            self.bytes_rcvd += MSS
            if self.ooo:
                filled = False
                ooo = self.ooo
                while rcv in ooo:
                    ooo.discard(rcv)
                    rcv += 1
                    self.bytes_rcvd += MSS
                    filled = True
                self.rcv_nxt = rcv
                if filled or ooo:
                    self._ack(now, -1, pkt[5])
                    return
            self.rcv_nxt = rcv
            if self.ack_pending == 0:
                self.ts_recent = pkt[5]
            self.ack_pending += 1
            if self.ack_pending >= 2 or rcv == self.size_segs or ack_now:
                self._ack(now, -1, self.ts_recent)
            elif not self.delack_at:
                self.delack_at = now + DELACK_NS
                heappush(self.sim.heap, (self.delack_at, next(self.sim.counter), EV_DELACK, self))
        elif seq > rcv:
            if seq not in self.ooo:
                self.ooo.add(seq)
            self._ack(now, seq, self.ts_recent if self.ack_pending else pkt[5])
        else:
            self._ack(now, -1, pkt[5])

    def on_delack(self, now: int) -> None:
        if self.delack_at and now >= self.delack_at and self.ack_pending:
            self._ack(now, -1, self.ts_recent)

    def _ack(self, now: int, sack: int, ts_echo: int) -> None:
        self.ack_pending = 0
        self.delack_at = 0
        ce = self.ce_pending
        self.ce_pending = 0
        self.sim.acks.append((now + self.sim.ack_delay_ns[self.fid], self, self.rcv_nxt, sack, ce, ts_echo))

    # ================================================================== iperf3 samples

    def sample(self, now: int) -> None:
        """Record the iperf3 interval counters at ``now`` and schedule the next sample."""
        if now > self.end_ns or (self.samples and self.samples[-1][0] == now):
            return  # a short flow that has finished
        self.samples.append((now, self.snd_una, self.retrans, self.cwnd, self.srtt, self.rttvar,
                             self.rcv_nxt))
        nxt = now + self.interval_ns
        if nxt > self.end_ns:
            nxt = self.end_ns
        if now < self.end_ns:
            heappush(self.sim.heap, (nxt, next(self.sim.counter), EV_SAMPLE, self))
