"""One congestion-control object per (sender stack, CC) for the simulated TCP sender: FreeBSD 14.1 or Linux.

:func:`sender_cc` builds one when a :class:`l4stb.sim.tcp.TcpFlow` is created; the flow keeps the sequence
space, the SACK scoreboard, the timers and the receiver, and calls the object at each congestion decision.
Every class has the interface of :class:`SenderCC`:

* attributes, fixed at creation: ``stack``, ``name``, ``ecn_cp`` / ``rtx_cp`` (the ECN codepoint of new data and
  of retransmissions), ``classic_ecn`` (RFC 3168 reaction to echoed CE), ``paced``, ``prr`` (segments sent while
  reducing count in ``prr_out``: Linux's PRR, FreeBSD's in ECN congestion recovery), ``lrd`` (a lost
  retransmission reduces cwnd once more), ``ce_ack_now`` (the receiver ACKs at once on a CE state change), ``tracks_srtt`` / ``samples_rtt`` (whether :meth:`~SenderCC.on_srtt` /
  :meth:`~SenderCC.on_rtt_sample` are called);
* methods: ``start``, ``on_srtt``, ``on_rtt_sample``, ``on_ack`` (the CC's step on delivered data),
  ``enter_recovery``, ``end_recovery``, ``on_rto``, ``loss_ssthresh``, ``ecn_ssthresh``, ``leave_loss``.

Where the stacks differ (each row is an attribute or a method of :class:`FreeBsdSender` and :class:`LinuxSender`
or of their CC subclasses):

==================  =====================================================  ====================================================
                    FreeBSD 14.1                                           Linux
==================  =====================================================  ====================================================
ECN codepoint       DCTCP ECT(1) (net.inet.tcp.cc.dctcp.ect1=1, set by      DCTCP ECT(0): tcp_dctcp.c is TCP_CONG_NEEDS_ECN only,
(``ecn_cp``)        the vagrant plan); classic CCs ECT(0) with ECN on      so INET_ECN_xmit (include/net/tcp_ecn.h) sets ECT(0);
                                                                            Prague ECT(1) (L4STeam tcp_prague.c)
ECN on retransmits  Not-ECT for every retransmission (tcp_ecn.c,            Not-ECT, except when the CC needs ECN (DCTCP, Prague
(``rtx_cp``)        tcp_ecn_output_established: ECT on new data only)      keep their codepoint): tcp_output.c tcp_ecn_send
slow start          while cwnd <= ssthresh, <= 2 segments per ACK           while cwnd < ssthresh, cwnd = min(cwnd + acked,
(``on_ack``)        (cc_newreno / abc_l_var = 2)                            ssthresh), the rest goes to CA (tcp_slow_start)
CE / loss response  CE (NewReno, Cubic): the CC module's cut, then PRR    PRR from cwnd down to ssthresh (tcp_input.c
(``on_ack``,        walks cwnd from the flight down to ssthresh per ACK     tcp_cwnd_reduction, SSRB), no growth until the
``enter_recovery``) (tcp_input.c IN_CONGRECOVERY: "always use PRR-SSRB");  window sent at the reduction is acked
                    no growth until th_ack passes snd_max + 1, nor on that
                    ACK; a loss in that episode keeps its ssthresh. Loss:
                    cwnd = ssthresh at once
NewReno CA          +1 MSS once a cwnd of bytes is acked (ABC,              tcp_cong_avoid_ai(cwnd): +1 per cwnd segments acked
                    cc_newreno.c); ssthresh floor(cwnd/2) whole MSS         ssthresh max(cwnd/2, 2)
DCTCP               grows in congestion recovery (cc_dctcp.c                 tcp_dctcp.c: ssthresh = cwnd - (cwnd alpha >> 11), CWR
                    ack_received leaves it), so the reducing ACK takes       with PRR, no growth in CWR; alpha in 1/1024 per window
                    a slow-start step (cwnd == ssthresh); no PRR walk:       from 1024, integer EWMA (below 16/1024 it drops to 0)
                    14.0-STABLE's dctcp_ack_received re-enters
                    congestion recovery, which would let PRR walk DCTCP
                    too, but the l4s SIFTR traces show its CE cuts
                    immediate (the fq_codel 10 Mbit/s one a 10-30 ms
                    walk: docs/freebsd-siftr.md item 7). Integer alpha
                    from 1024; below 16/1024 it stops decaying
ECN receiver        one ECE bit. A cc_dctcp receiver (ecnpkt_handler;     the CE count per ACK (the model's simplification);
(``ece_echo``,      iperf3 -C dctcp puts the server's socket on it): ECE     a DCTCP receiver (``ce_ack_now``, dctcp_ece_ack_update
``ce_ack_now``)     is the CE state of the last segment, and a change is     in tcp_dctcp.h) ACKs at once on every CE state change,
                    ACKed at once with it; any other (tcp_ecn.c              the delayed ACK for the prior segments first
                    tcp_ecn_input_segment, RFC 3168): ECE from a CE until
                    the sender's CWR segment. Both ACK a CWR segment at
                    once; the sender sets CWR at each cut
Cubic               cc_cubic.c: K = cbrt(W_max 0.3 / C) from W_max alone,  tcp_cubic.c: bictcp_update (origin W_max, t + min RTT,
                    cwnd jumps to W_cubic(t + mean RTT) or W_est =          cnt per ACK, Reno-friendly tcp_cwnd at 3(1-b)/(1+b)),
                    0.7 W_max + 0.53 t/mean RTT, ssthresh cwnd/2 at the    beta 717/1024, fast convergence, HyStart (ACK train
                    first congestion event then 0.7 cwnd, fast             and delay, from cwnd 16)
                    convergence 217/256; post-recovery cwnd from W_max
Prague              not in FreeBSD: ``cc: prague`` runs udp_prague          L4STeam tcp_prague.c v0.7 (commit 893e147, modelled
                    (:mod:`l4stb.sim.udp_prague`); a TCP Prague here is    whole: alpha from 0 and half the window at the first
                    the Linux model (``prague_transport: tcp``)             mark, frac_cwnd, rate mode below 4 packets, RTT
                                                                            independence after 4 rounds, pacing +-3 %)
lost retransmits    LRD (tcp_sack.c tcp_sack_lost_retransmission): a SACK  RACK marks it lost the same way on a path that never
(``lrd``)           above a retransmission's send point resends it and     reorders; the recovery episode goes on
                    reduces cwnd once more
==================  =====================================================  ====================================================

The arithmetic of Cubic (both stacks) and Prague is in :mod:`l4stb.sim.tcp_cc`. DCTCP on both stacks: alpha EWMA
with g = 1/16 per window of data, in 1/1024 from 1024 in each kernel's integer arithmetic; FreeBSD cuts
cwnd = ssthresh = cwnd - (cwnd alpha >> 11) in bytes, Linux ssthresh = cwnd - (cwnd alpha_1024 >> 11) then PRR;
both halve on loss.

The methods take the flow ``f`` and read or set its shared sender state (``cwnd``, ``ssthresh``, ``in_cwr``,
``snd_una`` ...); what only one CC keeps (Cubic's curve, DCTCP's alpha, Prague's frac_cwnd) lives on the object.
"""

from __future__ import annotations

import math

from l4stb.sim.packet import ECT0, ECT1, NOT_ECT
from l4stb.sim.tcp_cc import FreeBsdCubic, LinuxCubic, PragueV07, ai

MSS_BYTES = 1448
"""The payload of a segment (tcp_maxseg: t_maxseg less the timestamp option), the unit of cwnd here."""
T_MAXSEG = 1460
"""FreeBSD's raw ``t_maxseg`` (no option bytes taken off): cc_dctcp.c's ECE-edge correction uses it."""

INIT_CWND = 10.0
DCTCP_SHIFT_G = 4
DCTCP_MAX_ALPHA = 1024
"""Linux tcp_dctcp.c: alpha in 1/1024 (DCTCP_MAX_ALPHA), g = 2^-dctcp_shift_g, dctcp_alpha_on_init = 1024."""

TCP_CCS = ("newreno", "cubic", "dctcp", "prague")
"""The TCP congestion controls both stacks model: every name of ``config.CC_NAMES`` but ``udp``."""


class SenderCC:
    """The interface every (stack, CC) object has; the defaults are 'this CC does not take part'."""

    __slots__ = ("ecn_cp", "rtx_cp", "classic_ecn")

    stack = ""
    name = ""
    paced = False
    prr = False
    lrd = False
    ce_ack_now = False
    ece_echo = "count"
    """How the flow's receiver (the server runs the sender's stack) tells CE back: ``count`` (the model's Linux
    receivers: each ACK carries how many CE segments it covers), ``latch`` or ``state`` (FreeBSD's one ECE bit:
    see :data:`l4stb.sim.tcp.ECE_LATCH`); the FreeBSD flow chooses by its server's CC (:class:`l4stb.sim.tcp.TcpFlow`)."""
    tracks_srtt = False
    samples_rtt = False
    rack_tlp = False
    """Linux only: RACK's reorder timer and the tail loss probe (:class:`l4stb.sim.tcp.TcpFlow`)."""
    quickack = False
    """Linux only: the receiver (the server runs the sender's stack) ACKs every segment in quick-ACK mode."""
    iperf3_cookie = False
    """Linux only: the flow starts with iperf3's 37-byte cookie and its ACK (:attr:`l4stb.sim.tcp.TcpFlow.cookie`)."""
    in_loss = False
    """Prague only: the CA state is Loss (after an RTO) until the ACK that passes ``recover``."""

    def __init__(self, ecn_cp: int, rtx_cp: int):
        self.ecn_cp = ecn_cp
        self.rtx_cp = rtx_cp
        self.classic_ecn = ecn_cp == ECT0 and self.name != "dctcp"

    def start(self, f, now: int) -> None:
        """The flow starts sending at ``now``."""

    def on_srtt(self, srtt: int) -> None:
        """A new smoothed RTT, before the ACK is processed (only when ``tracks_srtt``)."""

    def on_rtt_sample(self, f, now: int, rtt: int) -> None:
        """The CC's RTT sample of an ACK that acknowledged new data, outside recovery (only when ``samples_rtt``):
        Linux's ``ca_rtt_us``, from the newest acknowledged segment's send time (:meth:`l4stb.sim.tcp.TcpFlow._ca_rtt`)."""

    def on_ack(self, f, now: int, cum: int, acked: int, delivered: int, ce: int) -> None:
        """The CC's step on an ACK that delivered ``delivered`` segments (``acked`` of them cumulatively)."""
        raise NotImplementedError

    def loss_ssthresh(self, f, now: int) -> float:
        """ssthresh for a loss (fast recovery)."""
        raise NotImplementedError

    def ecn_ssthresh(self, f, now: int) -> float:
        """ssthresh for a CE echo (once per window)."""
        return self.loss_ssthresh(f, now)

    def enter_recovery(self, f, now: int) -> None:
        """Fast recovery starts (the flow has set in_rec, recover and rtx_next)."""
        raise NotImplementedError

    def end_recovery(self, f) -> None:
        """Fast recovery ends (the flow has cleared the scoreboard): the window to go on with."""
        raise NotImplementedError

    def on_rto(self, f, now: int, flight: int) -> None:
        """A retransmission timeout: ssthresh and the CC's state (the flow then sets cwnd = 1)."""
        raise NotImplementedError

    def leave_loss(self) -> None:
        """Prague only: back from Loss to Open."""


# ================================================================================================ FreeBSD 14.1


class FreeBsdSender(SenderCC):
    """FreeBSD 14.1's sender with cc_newreno (the base of the FreeBSD CCs): ABC slow start and growth, the CC
    module's cut on a loss or CE echo, PRR (RFC 6937) walking cwnd down in ECN congestion recovery, no growth
    in recovery nor while cwnd is above the receiver's advertised window (tcp_input.c cc_ack_received sets
    CCF_CWND_LIMITED only while snd_cwnd <= snd_wnd; :mod:`l4stb.sim.rcvwnd`), LRD.

    The sources are FreeBSD 14's ``sys/netinet`` (read in ilnp/ilnp-freebsd14, 14.0-STABLE at
    __FreeBSD_version 1400507, the closest stored tree to 14.1's 1401000; no releng/14.1 tree is stored):
    ``net.inet.tcp.do_prr`` defaults to 1 (tcp_input.c ``VNET_DEFINE(int, tcp_do_prr) = 1``; 14 has no
    ``do_prr_conservative``: tcp_do_prr_ack always uses the slow-start reduction bound); the CC_ECN / CC_NDUPACK
    cuts are cc.c ``newreno_cc_cong_signal``. ``recover_fs`` is tcp_var.h's ``sackhint.recover_fs``, the flight
    the proportional part of PRR divides by.

    LRD stays on although that same 14.0-STABLE tcp_input.c has ``VNET_DEFINE(int, tcp_do_lrd) = 0`` (as does
    the stored freebsd/freebsd-src snapshot of that era), because a later tree (FreeBSD main after D42851, which
    moved the knob to tcp_sack.c as ``net.inet.tcp.sack.lrd``) has ``tcp_do_lrd = 1``, and no stored source says
    which of the two releng/14.1 shipped (docs/freebsd-siftr.md, "What the model does not settle").
    """

    __slots__ = ("recover_fs",)

    stack = "freebsd"
    name = "newreno"
    lrd = True
    prr = True
    """tcp_output.c counts every segment sent while IN_RECOVERY (fast or congestion recovery) in prr_out."""

    def __init__(self, ecn_cp, rtx_cp):
        super().__init__(ecn_cp, rtx_cp)
        self.recover_fs = 0

    ece_echo = "latch"
    """With its own CC on the server (iperf3 -C): tcp_ecn.c's RFC 3168 receiver (:data:`l4stb.sim.tcp.ECE_LATCH`)."""

    def on_ack(self, f, now, cum, acked, delivered, ce):
        if acked <= 0:
            return
        if ce:
            f.ce_acked += acked  # ``ce`` is the ACK's ECE bit: the segments it acks are what the sender learns
        if f.in_rec:
            return
        if ce and self.classic_ecn and cum > f.ecn_recover:
            # tcp_ecn_input_segment -> cc_cong_signal(CC_ECN) (tcp_input.c): a new episode once th_ack reached
            # snd_recover = snd_max + 1; the CC module (cc_newreno.c / cc_cubic.c CC_ECN) sets ssthresh and
            # cwnd and enters congestion recovery. PRR runs on this same ACK (below).
            f.ecn_recover = f.snd_nxt
            self.signal_cwr(f)
            f.in_cwr = True
            f.marked_rtts += 1
            new = self.ecn_ssthresh(f, now)
            f.ssthresh = new
            f.cwnd = new
            f.bytes_acked = 0
            self.congestion_prr(f, cum, acked)
        elif f.in_cwr:
            if cum <= f.ecn_recover:
                self.congestion_prr(f, cum, acked)  # th_ack < snd_recover: still reducing
            else:
                # th_ack >= snd_recover: cc_post_recovery, then EXIT_RECOVERY in process_ACK -- after
                # cc_ack_received, which sees IN_RECOVERY and does not grow on this ACK (tcp_input.c)
                f.in_cwr = False
                self.post_congestion_recovery(f)
                self.reset_prr(f)
        elif f.cwnd <= f.snd_wnd_mss:
            # tcp_input.c cc_ack_received: CCF_CWND_LIMITED only while snd_cwnd <= snd_wnd; cc_newreno.c and
            # cc_cubic.c ack_received grow only with it (the receive window: l4stb.sim.rcvwnd)
            self.grow(f, now, acked)

    def signal_cwr(self, f) -> None:
        """tcp_input.c cc_cong_signal (CC_ECN episode, CC_NDUPACK, CC_RTO): with ECN negotiated, TF2_ECN_SND_CWR,
        so the next new data segment carries CWR (tcp_ecn.c tcp_ecn_output_established: new data only); its
        receiver ACKs that segment at once (:meth:`l4stb.sim.tcp.TcpFlow.on_data`)."""
        if self.ecn_cp != NOT_ECT:
            f.cwr_pending = True
            f.cwr_seq = f.high_tx

    def congestion_prr(self, f, cum: int, acked: int) -> None:
        """tcp_input.c tcp_do_segment, the ``IN_CONGRECOVERY`` branch ("During ECN cwnd reduction always use
        PRR-SSRB"): delivered_data = the bytes this ACK acks, then tcp_do_prr_ack sets cwnd = pipe - del_data
        + snd_cnt, so cwnd walks from the flight down to ssthresh over about a round trip instead of dropping
        at once. pipe is tcp_compute_pipe before snd_una moves (snd_max - snd_una; no SACK scoreboard here)."""
        una_before = cum - acked
        pipe = f.high_tx - una_before
        cnt = self.prr_count(f, acked, pipe, una_before, False)
        f.cwnd = float(max(pipe - acked + cnt, 1))  # imax(maxseg, snd_cwnd)

    def prr_count(self, f, del_data: int, pipe: int, una_before: int, new_loss: bool) -> int:
        """tcp_input.c tcp_do_prr_ack: the segments PRR lets this ACK send (snd_cnt). Above ssthresh the
        proportional part, ceil(prr_delivered x ssthresh / recover_fs) - prr_out, rounded up to whole segments;
        below it the slow-start reduction bound, min(ssthresh - pipe, max(prr_delivered - prr_out, del_data) + 1)
        (only prr_delivered - prr_out when the ACK reports a new hole: the 6937bis heuristic). recover_fs is
        set to the flight only when 0: an ECN episode reuses the one the last loss recovery set."""
        f.prr_delivered += del_data
        ssthresh = f.ssthresh
        if pipe >= ssthresh:
            if not self.recover_fs:
                self.recover_fs = max(1, f.snd_nxt - una_before)
            cnt = math.ceil(f.prr_delivered * ssthresh / self.recover_fs - f.prr_out)
        else:
            if new_loss:
                limit = f.prr_delivered - f.prr_out
            else:
                limit = max(f.prr_delivered - f.prr_out, del_data) + 1
            cnt = int(min(ssthresh - pipe, limit))
        return cnt if cnt > 0 else 0

    @staticmethod
    def reset_prr(f) -> None:
        """tcp_input.c cc_post_recovery: prr_delivered and prr_out start again at 0 (only here: an RTO
        leaves them as they were)."""
        f.prr_delivered = 0
        f.prr_out = 0

    def post_congestion_recovery(self, f) -> None:
        """Leaving ECN congestion recovery (cc_newreno: nothing to do)."""

    def grow(self, f, now: int, acked: int) -> None:
        """cc_newreno ack_received: slow start while cwnd <= ssthresh (abc_l_var = 2), else ABC."""
        cwnd = f.cwnd
        if cwnd <= f.ssthresh:  # FreeBSD newreno: slow start while cwnd <= ssthresh, abc_l_var = 2
            cwnd += acked if acked < 2 else 2
            f.bytes_acked = 0
        else:
            # cc_newreno with ABC (rfc3465): +1 MSS once a cwnd of bytes has been acked (cc.c t_bytes_acked)
            f.bytes_acked += acked if acked < 2 else 2
            if f.bytes_acked >= cwnd:
                f.bytes_acked -= cwnd
                cwnd += 1
        f.cwnd = cwnd
        if cwnd > f.max_cwnd:
            f.max_cwnd = cwnd

    def loss_ssthresh(self, f, now):
        return float(max(int(f.cwnd) // 2, 2))  # cc_newreno: whole MSS

    def enter_recovery(self, f, now):
        # cc_newreno.c / cc_cubic.c CC_NDUPACK: a loss in ECN congestion recovery keeps that episode's
        # ssthresh (the window was already cut for this round)
        if not f.in_cwr:
            f.ssthresh = self.loss_ssthresh(f, now)
        self.enter_fast_recovery(f)

    def enter_fast_recovery(self, f) -> None:
        """The CC-independent part of entering fast recovery, once ssthresh is set."""
        self.signal_cwr(f)  # cc_cong_signal CC_NDUPACK
        # tcp_input.c, enter_recovery with do_prr: recover_fs = the flight now; the next ECN episodes' PRR
        # divides by it (nothing else resets it; LRD's adjustment of it is not modelled)
        self.recover_fs = max(1, f.snd_nxt - f.snd_una)
        f.cwnd = f.ssthresh  # FreeBSD: fast recovery at cwnd = ssthresh (PRR in loss recovery not modelled)
        f.bytes_acked = 0

    def end_recovery(self, f):
        # cc_newreno post_recovery (cc_dctcp calls it): cwnd = pipe + 1 MSS when the flight is below
        # ssthresh (RFC 6582's burst guard), else ssthresh
        pipe = f.snd_nxt - f.snd_una
        f.cwnd = float(max(pipe, 1) + 1) if pipe < f.ssthresh else f.ssthresh
        self.end_episode(f)

    def end_episode(self, f) -> None:
        """Leaving fast recovery: process_ACK's EXIT_RECOVERY clears congestion recovery too, and
        cc_post_recovery resets PRR's counters (tcp_input.c)."""
        f.in_cwr = False
        self.reset_prr(f)

    def on_rto(self, f, now, flight):
        self.signal_cwr(f)  # cc_cong_signal CC_RTO
        # FreeBSD cc_cong_signal CC_RTO: max(2, min(wnd, cwnd) / 2 / mss) whole MSS
        f.ssthresh = float(max(2, int(min(f.cwnd, float(flight) if flight else f.cwnd)) // 2))


class FreeBsdCubicCC(FreeBsdSender):
    """FreeBSD 14.1 cc_cubic (the curve: :class:`l4stb.sim.tcp_cc.FreeBsdCubic`)."""

    __slots__ = ("cubic",)

    name = "cubic"
    tracks_srtt = True

    def __init__(self, ecn_cp, rtx_cp):
        super().__init__(ecn_cp, rtx_cp)
        self.cubic = FreeBsdCubic(INIT_CWND)

    def on_srtt(self, srtt):
        self.cubic.record_rtt(srtt)

    def post_congestion_recovery(self, f):
        self.cubic.post_recovery(False, 0, f.ssthresh, f.cwnd)  # cubic_post_recovery's mean RTT

    def grow(self, f, now, acked):
        cwnd = self.cubic.ack(now, f.cwnd, f.ssthresh, acked)
        f.cwnd = cwnd
        if cwnd > f.max_cwnd:
            f.max_cwnd = cwnd

    def loss_ssthresh(self, f, now):
        return self.cubic.signal(now, f.cwnd)

    def end_recovery(self, f):
        f.cwnd = self.cubic.post_recovery(True, f.snd_nxt - f.snd_una, f.ssthresh, f.cwnd)
        self.end_episode(f)

    def on_rto(self, f, now, flight):
        f.ssthresh = self.cubic.rto(flight)


class FreeBsdDctcp(FreeBsdSender):
    """FreeBSD 14's cc_dctcp.c, in its integer arithmetic (read in sobomax/freebsd14_vendor at 0f7ff342, a
    FreeBSD 14 tree: t_flags2, tcp_maxseg(ccv->ccvc.tcp)): alpha in 1/1024 from 1024 (``V_dctcp_alpha`` =
    MAX_ALPHA_VALUE), ``dctcp_update_alpha`` once th_ack passes ``save_sndnxt`` and when congestion recovery ends
    (``dctcp_post_recovery``): alpha - (alpha >> 4) + (bytes_ecn << 6) / bytes_total, so an alpha below 16 never
    decays (15/1024 is its floor once reached); CC_ECN cwnd = ssthresh = max(cwnd - (cwnd alpha >> 11), 2 mss) in
    bytes, once per episode (``snd_recover``); newreno's growth on every ACK (the reducing one included).

    The sender has only the ECE bit of each ACK: ``dctcp_ack_received`` counts the bytes an ECE ACK acks as
    marked, less one ``t_maxseg`` on the first ECE ACK after unmarked ones and plus one on the first unmarked
    ACK after marked ones (a DCTCP receiver's ACK at a CE change covers one segment of the other state). What
    the bit means depends on the receiver: :data:`l4stb.sim.tcp.ECE_STATE` for a cc_dctcp receiver,
    :data:`l4stb.sim.tcp.ECE_LATCH` (set from a CE until the sender's CWR arrives) for any other."""

    __slots__ = ("alpha", "alpha_1024", "win_end", "bytes_total", "bytes_ecn", "ece_prev", "congrec", "cwnd_prev")

    name = "dctcp"
    ece_echo = "state"
    """With cc_dctcp on the server too (iperf3 -C dctcp): dctcp_ecnpkt_handler's echo (:data:`l4stb.sim.tcp.ECE_STATE`)."""

    def __init__(self, ecn_cp, rtx_cp):
        super().__init__(ecn_cp, rtx_cp)
        self.alpha_1024 = DCTCP_MAX_ALPHA
        self.alpha = 1.0
        self.win_end = 0
        """``save_sndnxt`` in segments: alpha is updated once cum passes it (SEQ_GT)."""
        self.bytes_total = 0
        self.bytes_ecn = 0
        self.ece_prev = False
        self.congrec = False
        """TF_CONGRECOVERY: from a CE cut until th_ack reaches snd_recover (or a loss recovery's end)."""
        self.cwnd_prev = 0.0
        """``snd_cwnd_prev``: cwnd at the last ECE ACK (CC_ECN), which a loss in congestion recovery halves."""

    def update_alpha(self, f) -> None:
        """cc_dctcp.c dctcp_update_alpha."""
        a = self.alpha_1024
        a = min(a - (a >> DCTCP_SHIFT_G) + (self.bytes_ecn << (10 - DCTCP_SHIFT_G)) // max(self.bytes_total, 1),
                DCTCP_MAX_ALPHA)
        self.alpha_1024 = a
        self.alpha = a / DCTCP_MAX_ALPHA
        self.bytes_ecn = 0
        self.bytes_total = 0
        self.win_end = f.snd_nxt

    def count(self, acked: int, ece: bool) -> None:
        """dctcp_ack_received's byte counts (``ece_curr``/``ece_prev``, t_maxseg = 1460 against 1448-byte
        segments, as the real stack does)."""
        b = acked * MSS_BYTES
        self.bytes_total += b
        if ece:
            self.bytes_ecn += b - T_MAXSEG if (not self.ece_prev and b > T_MAXSEG) else b
        elif self.ece_prev and b > T_MAXSEG:
            self.bytes_ecn += T_MAXSEG
        self.ece_prev = ece

    def on_ack(self, f, now, cum, acked, delivered, ce):
        if acked <= 0:
            return
        ece = ce > 0
        if ece:
            f.ce_acked += acked
        if f.in_rec:
            # fast recovery sets TF_CONGRECOVERY too (ENTER_RECOVERY): no CE cut; dctcp_ack_received still
            # counts, but newreno does not grow (IN_FASTRECOVERY) and alpha waits (!IN_FASTRECOVERY)
            self.count(acked, ece)
            return
        if ece:
            self.cwnd_prev = f.cwnd
            if not self.congrec or cum > f.ecn_recover:
                # tcp_input.c cc_cong_signal(CC_ECN), run before the ACK is processed: a new episode
                # (snd_recover = snd_max + 1, CWR); dctcp_cong_signal cuts and enters congestion recovery
                f.ecn_recover = f.snd_nxt
                self.signal_cwr(f)
                f.marked_rtts += 1
                new = self.ecn_ssthresh(f, now)
                f.cwnd = new
                f.ssthresh = new
                f.bytes_acked = 0
                self.congrec = True
        elif self.congrec and cum > f.ecn_recover:
            # th_ack >= snd_recover ends congestion recovery: cc_post_recovery -> dctcp_post_recovery updates alpha
            self.update_alpha(f)
            self.congrec = False
        # dctcp_ack_received: newreno's growth (congestion recovery left around it; the reducing ACK finds
        # cwnd == ssthresh: slow start), only while cwnd <= snd_wnd (CCF_CWND_LIMITED, cc_ack_received); then
        # the counts, and alpha once th_ack passes save_sndnxt
        if f.cwnd <= f.snd_wnd_mss:
            self.grow(f, now, acked)
        self.count(acked, ece)
        if cum > self.win_end:
            self.update_alpha(f)

    def loss_ssthresh(self, f, now):
        return max(f.cwnd / 2, 2.0)  # cc_dctcp CC_NDUPACK: max(cwin / 2, 2 * mss) in bytes

    def enter_recovery(self, f, now):
        # cc_dctcp CC_NDUPACK: in congestion recovery, from snd_cwnd_prev (the window before the CE cut)
        f.ssthresh = max(self.cwnd_prev / 2, 2.0) if self.congrec else self.loss_ssthresh(f, now)
        self.congrec = True
        self.enter_fast_recovery(f)

    def end_recovery(self, f):
        super().end_recovery(f)  # dctcp_post_recovery: newreno's post_recovery, then alpha
        self.update_alpha(f)
        self.congrec = False

    def ecn_ssthresh(self, f, now):
        cwin = int(f.cwnd * MSS_BYTES)  # cc_dctcp CC_ECN, bytes
        return max(cwin - ((cwin * self.alpha_1024) >> (10 + 1)), 2 * MSS_BYTES) / MSS_BYTES

    def on_rto(self, f, now, flight):
        super().on_rto(f, now, flight)
        self.update_alpha(f)  # cc_dctcp CC_RTO updates alpha
        self.congrec = False  # cc_cong_signal CC_RTO: EXIT_RECOVERY


# ================================================================================================ Linux


class LinuxSender(SenderCC):
    """Linux's sender with Reno (tcp_cong.c): tcp_ack's CWR entry on ECE, PRR while reducing (tcp_cwnd_reduction),
    tcp_slow_start and tcp_cong_avoid_ai, growth only when cwnd-limited; RACK keeps a recovery episode going."""

    __slots__ = ()

    stack = "linux"
    name = "newreno"
    prr = True
    rack_tlp = True
    quickack = True
    iperf3_cookie = True
    """iperf3 writes a 37-byte cookie on each data connection before any data (iperf_tcp_connect), and the client
    starts the data once the server has the stream; the kernel passes the cookie's ACK to the congestion control
    as its first RTT sample (tcp_clean_rtx_queue -> pkts_acked), so Cubic's HyStart takes delay_min from an
    unloaded path before its initial window meets any queue. Seen in the real kernel's captures (an 89-byte
    packet per stream, then the data a round trip later). Modelled for the Linux stack, which the real kernel
    calibrates; the FreeBSD model keeps starting with the data, so its published results stay as they are."""

    def ece_reacts(self) -> bool:
        return self.classic_ecn

    def on_ack(self, f, now, cum, acked, delivered, ce):
        """tcp_ack for Reno, Cubic and DCTCP: the CC's alpha (in_ack_event, in the DCTCP subclass), then CWR entry
        on ECE, then PRR while reducing or growth (tcp_cong_control)."""
        if ce:
            f.ce_acked += ce
        if f.in_cwr and f.snd_una > f.cwr_end:
            # tcp_fastretrans_alert: CWR ends once something *above* high_seq is acked
            f.in_cwr = False
            f.cwnd = f.ssthresh  # tcp_end_cwnd_reduction
        if ce and self.ece_reacts() and not f.in_cwr and not f.in_rec:
            f.ssthresh = self.ecn_ssthresh(f, now)  # tcp_enter_cwr
            f.in_cwr = True
            f.cwr_end = f.snd_nxt
            f.cwr_pending = True  # tcp_ecn_queue_cwr: the next new segment carries CWR
            f.marked_rtts += 1
            f.start_reduction()
        if f.in_rec or f.in_cwr:
            f.prr_step(delivered, acked > 0)
            return
        if acked <= 0 or not f.cwnd_limited():  # tcp_reno_cong_avoid / cubictcp_cong_avoid
            return
        cwnd = int(f.cwnd)
        ssthresh = f.ssthresh
        if cwnd < ssthresh:  # tcp_slow_start
            new = cwnd + acked
            if new > ssthresh:
                new = int(ssthresh)
            acked -= new - cwnd
            cwnd = new
        if acked > 0 and cwnd >= ssthresh:
            cwnd = self.cong_avoid(f, now, cwnd, acked)
        f.cwnd = float(cwnd)
        if cwnd > f.max_cwnd:
            f.max_cwnd = float(cwnd)

    def cong_avoid(self, f, now: int, cwnd: int, acked: int) -> int:
        return ai(f, cwnd, cwnd, acked)  # tcp_reno_cong_avoid

    def loss_ssthresh(self, f, now):
        return float(max(int(f.cwnd) >> 1, 2))  # tcp_reno_ssthresh; dctcp_react_to_loss on Recovery

    def enter_recovery(self, f, now):
        f.ssthresh = self.loss_ssthresh(f, now)
        f.in_cwr = False
        f.start_reduction()

    def end_recovery(self, f):
        f.cwnd = f.ssthresh  # tcp_end_cwnd_reduction

    def on_rto(self, f, now, flight):
        f.ssthresh = float(max(int(f.cwnd) >> 1, 2))  # tcp_reno_ssthresh / dctcp_react_to_loss


class LinuxCubicCC(LinuxSender):
    """Linux tcp_cubic (bictcp and HyStart: :class:`l4stb.sim.tcp_cc.LinuxCubic`)."""

    __slots__ = ("cubic",)

    name = "cubic"
    samples_rtt = True

    def __init__(self, ecn_cp, rtx_cp):
        super().__init__(ecn_cp, rtx_cp)
        self.cubic = LinuxCubic()

    def on_rtt_sample(self, f, now, rtt):
        # bictcp_acked runs in tcp_clean_rtx_queue, after snd_una has moved
        f.ssthresh = float(self.cubic.rtt_sample(now, rtt, int(f.cwnd), int(min(f.ssthresh, 1 << 40)),
                                                 f.snd_una, f.snd_nxt))

    def cong_avoid(self, f, now, cwnd, acked):
        return self.cubic.cong_avoid(now, cwnd, acked)

    def loss_ssthresh(self, f, now):
        return float(self.cubic.ssthresh(int(f.cwnd)))

    def on_rto(self, f, now, flight):
        f.ssthresh = float(self.cubic.ssthresh(int(f.cwnd)))
        self.cubic.found = False


class LinuxDctcp(LinuxSender):
    """Linux tcp_dctcp: integer alpha per window (dctcp_update_alpha), dctcp_ssthresh on ECE, and its receiver's
    immediate ACK on a CE state change (dctcp_ece_ack_update)."""

    __slots__ = ("alpha", "alpha_1024", "next_seq", "old_delivered", "old_ce")

    name = "dctcp"
    ce_ack_now = True
    """The server of a Linux DCTCP flow runs tcp_dctcp too (iperf3 sets -C on the accepted socket): it ACKs at
    once when the CE state changes (tcp_dctcp.h dctcp_ece_ack_update)."""

    def __init__(self, ecn_cp, rtx_cp):
        super().__init__(ecn_cp, rtx_cp)
        self.alpha = 1.0
        self.alpha_1024 = DCTCP_MAX_ALPHA
        self.next_seq = 0
        self.old_delivered = 0
        self.old_ce = 0

    def ece_reacts(self) -> bool:
        return True

    def on_ack(self, f, now, cum, acked, delivered, ce):
        self.update_alpha(f, delivered, ce)
        LinuxSender.on_ack(self, f, now, cum, acked, delivered, ce)

    def update_alpha(self, f, delivered: int, ce: int) -> None:
        """tcp_dctcp.c dctcp_update_alpha (in_ack_event), in its integer arithmetic: once snd_una passes the
        sequence sent when the last update ran, alpha -= min_not_zero(alpha, alpha >> g) -- so an alpha below
        2^g/1024 drops to 0 -- plus (delivered_ce << (10 - g)) / delivered, capped at 1024; tp->delivered counts
        SACKed segments too, delivered_ce those acked with ECE."""
        f.delivered += delivered
        f.delivered_ce += ce
        if f.snd_una < self.next_seq:
            return
        alpha = self.alpha_1024
        dec = alpha >> DCTCP_SHIFT_G
        alpha -= dec if dec else alpha
        d_ce = f.delivered_ce - self.old_ce
        if d_ce:
            alpha = min(alpha + (d_ce << (10 - DCTCP_SHIFT_G)) // max(1, f.delivered - self.old_delivered),
                        DCTCP_MAX_ALPHA)
        self.alpha_1024 = alpha
        self.alpha = alpha / DCTCP_MAX_ALPHA
        self.next_seq = f.snd_nxt
        self.old_delivered = f.delivered
        self.old_ce = f.delivered_ce

    def ecn_ssthresh(self, f, now):
        c = int(f.cwnd)
        return float(max(c - ((c * self.alpha_1024) >> 11), 2))  # dctcp_ssthresh


class LinuxPrague(LinuxSender):
    """Linux TCP Prague v0.7 (the state and its arithmetic: :class:`l4stb.sim.tcp_cc.PragueV07`): CWR entry on ECE
    (prague_state), prague_cong_control per ACK, paced; its own window on loss and RTO (no PRR step)."""

    __slots__ = ("pr",)

    name = "prague"
    paced = True

    def __init__(self, ecn_cp, rtx_cp, start_ns: int):
        super().__init__(ecn_cp, rtx_cp)
        self.pr = PragueV07(INIT_CWND, start_ns)

    @property
    def in_loss(self) -> bool:
        return self.pr.in_loss

    def leave_loss(self):
        self.pr.in_loss = False  # TCP_CA_Loss (after an RTO) back to Open: prague_ca_open

    def start(self, f, now):
        self.pr.alpha_stamp = now

    def enter_recovery(self, f, now):
        # prague_state(TCP_CA_Recovery); cwnd follows frac_cwnd per ACK
        self.pr.enter_loss(f.cwnd, f.ssthresh, f.srtt)
        f.start_reduction()

    def end_recovery(self, f):
        self.pr.in_loss = False  # prague_ca_open; cwnd is prague's (cong_control)

    def on_rto(self, f, now, flight):
        self.pr.enter_loss(f.cwnd, f.ssthresh, f.srtt)  # CA_EVENT_LOSS

    def on_ack(self, f, now, cum, acked, delivered, ce):
        """CWR entry on ECE (prague_state), then prague_cong_control: prague_update_cwnd, the round's alpha update,
        the pacing rate, the mode switch."""
        pr = self.pr
        srtt = f.srtt
        if ce:
            f.ce_acked += ce
        f.delivered += delivered
        f.delivered_ce += ce
        if f.in_cwr and f.snd_una > f.cwr_end:
            f.in_cwr = False
        if ce and not f.in_cwr and not f.in_rec:
            f.in_cwr = True
            f.cwr_end = f.snd_nxt
            if pr.enter_cwr(now, f.cwnd, f.ssthresh, srtt):
                f.marked_rtts += 1
        # ---- prague_update_cwnd
        cwnd = int(f.cwnd)
        grow = delivered
        if ce:
            if not pr.saw_ce:
                pr.frac = (pr.frac + 2 ** -20) / 2  # alpha_mode 0: half the window at the first mark
            pr.saw_ce = True
            grow -= ce
        early = False  # slow start used the whole ACK: prague_update_cwnd returns before the step
        if grow > 0 and not pr.in_loss and f.cwnd_limited():
            if cwnd < f.ssthresh:  # tcp_slow_start, and frac_cwnd follows the window
                new = min(cwnd + grow, int(f.ssthresh))
                grow -= new - cwnd
                cwnd = new
                pr.frac = float(cwnd)
                if grow <= 0:
                    early = True
                    pr.update_ai(srtt)
            if early:
                pass
            elif pr.rtt_indep(cwnd, f.ssthresh) and pr.rate_mode:
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
                f.ssthresh = float(cwnd)
                pr.update_ai(srtt)
            elif cwnd < target:
                cwnd += 1
                pr.update_ai(srtt)
        f.cwnd = float(cwnd)
        if cwnd > f.max_cwnd:
            f.max_cwnd = float(cwnd)
        # ---- prague_should_update_ewma / prague_update_alpha / prague_new_round
        if f.snd_una >= pr.next_seq and (not pr.rtt_indep(f.cwnd, f.ssthresh)
                                         or now - pr.alpha_stamp >= pr.RTT_TARGET_NS):
            if pr.saw_ce:
                d = f.delivered - pr.old_delivered
                frac = (f.delivered_ce - pr.old_ce) / d if d > 0 else 0.0
                pr.alpha += pr.G * (frac - pr.alpha)
                pr.alpha_stamp = now
            pr.hsrtt = srtt if not pr.hsrtt else pr.hsrtt + (srtt - pr.hsrtt) / 128
            pr.next_seq = f.snd_nxt
            pr.old_delivered = f.delivered
            pr.old_ce = f.delivered_ce
            if f.cwnd >= f.ssthresh:
                pr.round += 1
            pr.update_ai(srtt)
        # ---- prague_update_pacing_rate, then the window/rate mode switch at cwnd_transit packets
        pr.update_pacing(now, f.cwnd, f.ssthresh, srtt, f.snd_nxt - f.snd_una)
        if pr.saw_ce and f.cwnd <= pr.CWND_TRANSIT:
            pr.rate_mode = True
            pr.frac = pr.rate_to_frac(srtt)
        else:
            pr.rate_mode = False
            pr.rate = pr.frac_to_rate(srtt)


# ================================================================================================ the factory

_CLASSES = {("freebsd", "newreno"): FreeBsdSender, ("freebsd", "cubic"): FreeBsdCubicCC,
            ("freebsd", "dctcp"): FreeBsdDctcp, ("linux", "newreno"): LinuxSender, ("linux", "cubic"): LinuxCubicCC,
            ("linux", "dctcp"): LinuxDctcp}


def sender_cc(stack: str, cc: str, ecn: bool, start_ns: int) -> SenderCC:
    """The congestion-control object of a ``cc`` flow on ``stack`` (``ecn``: the scenario enables classic ECN)."""
    if cc == "prague":
        # Prague asks for ECT(1) (TCP_CONG_ECT_1_NEGOTIATION) and keeps it on retransmissions (tcp_ecn_send:
        # tcp_ca_needs_ecn); a TCP Prague on a FreeBSD host (prague_transport: tcp) is the Linux model with
        # FreeBSD's Not-ECT retransmissions (tcp_ecn_output_established: ECT on new data only)
        return LinuxPrague(ECT1, ECT1 if stack == "linux" else NOT_ECT, start_ns)
    if cc == "dctcp":
        if stack == "linux":
            # Linux's DCTCP sends ECT(0): tcp_dctcp.c flags it TCP_CONG_NEEDS_ECN only, so tcp_ecn_send_syn and
            # tcp_ecn_send (tcp_output.c) call INET_ECN_xmit / INET_ECN_xmit_ect_1_negotiation, which set ECT(0)
            # unless the CC has TCP_CONG_ECT_1_NEGOTIATION (include/net/tcp_ecn.h); ECN is on whatever the scenario
            # says (TCP_CONG_NEEDS_ECN requests it); retransmissions keep it (tcp_ecn_send: tcp_ca_needs_ecn)
            return LinuxDctcp(ECT0, ECT0)
        # FreeBSD's DCTCP sends ECT(1) with net.inet.tcp.cc.dctcp.ect1=1, which the vagrant plan sets; never on
        # retransmissions (tcp_ecn_output_established: new data only)
        return FreeBsdDctcp(ECT1, NOT_ECT)
    # classic CCs: ECT(0) when the scenario enables ECN; retransmissions Not-ECT on both stacks (FreeBSD:
    # tcp_ecn_output_established; Linux: tcp_ecn_send clears ECT unless the CC needs ECN)
    return _CLASSES[stack, cc](ECT0 if ecn else NOT_ECT, NOT_ECT)
