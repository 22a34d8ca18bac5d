"""TCP senders (NewReno, Cubic, DCTCP, Prague) and their receiver, per segment, as FreeBSD 14.1 or Linux sends.

One :class:`TcpFlow` is one iperf3 stream: a bulk sender on a client (or a short flow of ``size_segs``
segments) and its receiver on the server. ``stack`` picks whose sender: ``freebsd`` (the real testbed;
every rule below unless a Linux rule is named) or ``linux``. Where the stacks differ, and how each congestion
control reacts, is one object per (stack, CC) bound once when the flow is created (:mod:`l4stb.sim.tcp_stacks`,
whose docstring holds the FreeBSD-vs-Linux table, one row per attribute or method of the stack classes).

Departures: FreeBSD's PRR (net.inet.tcp.do_prr = 1) is modelled in ECN congestion recovery only; in SACK loss
recovery FreeBSD enters fast recovery at cwnd = ssthresh here (tcp_stacks.py); HyStart++ and Linux's undo (Eifel/DSACK),
F-RTO and TSO autosizing are not modelled. A hole below the highest SACK counts as lost at once (FACK) once more
than 3 segments above it are SACKed (DupThresh, RFC 5681; Limited Transmit is not modelled on either stack).
Linux's RACK-TLP (RFC 8985) is modelled where it changes what happens at small windows: with 1 or 2 segments
SACKed above a hole, RACK's reorder timer (min_rtt/4 + 2 ms, in 4 ms jiffies) starts recovery instead of an
RTO, and a tail loss probe 2 srtt after the last send or ACK (tcp_schedule_loss_probe) sends one new segment
beyond cwnd, so a tail loss is repaired by recovery too; Linux's RTO is srtt + max(4 rttvar, 200 ms). Measured
against the real kernel (docs/real-linux.md): in the nine-flow mix at 8 Mbit/s, where each classic flow holds
about two segments, Cubic's share went from 0.245 (Reno 0.510) to 0.384 (Reno 0.389); the kernel gives 0.387 each.

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
  * **RTO** (RFC 6298 estimator, FreeBSD bounds; Linux: srtt + max(4 rttvar, 200 ms)): ``srtt + 4 rttvar + 200 ms``
    (``rexmit_slop``), at least
    30 ms (``rexmit_min``), doubled per consecutive timeout up to 64x; on expiry cwnd = 1, go-back-N from
    snd_una, scoreboard cleared.
  * **ECN**: classic RFC 3168 for Cubic/NewReno when the scenario enables ECN (ECT(0), one reduction per
    window on echoed CE); DCTCP and Prague get *accurate* CE counts (the receiver reports how many of the newly
    acked segments were CE-marked, as DCTCP's receiver state machine and AccECN do). Prague sends ECT(1); DCTCP
    ECT(1) on FreeBSD and ECT(0) on Linux (the table in :mod:`l4stb.sim.tcp_stacks`), so whether Linux's DCTCP
    uses DualPI2's L queue is the AQM's ``l4s_classifier`` (``any_ect``) choice, as with the real qdisc.
  * **Receiver** (the server; for a Linux-stack DCTCP flow the server runs Linux's DCTCP receiver, as on the
    real-Linux testbed, with the CE-change and CWR rules of that table): delayed ACKs (every 2nd in-order
    segment, or after 40 ms); an immediate ACK with a SACK for every out-of-order arrival and when a hole
    fills; TSecr echoes the first unacknowledged segment's timestamp (RFC 7323), so RTT samples include the
    delayed-ACK wait. A FreeBSD receiver advertises its socket buffer (64 KiB rounded to 45 x 1460
    bytes, autoscaled by tcp_autorcvbuf: :mod:`l4stb.sim.rcvwnd`); the sender sends new data only inside it
    (tcp_output.c sendwin = min(snd_wnd, cwnd)) and a FreeBSD CC grows cwnd only while cwnd <= snd_wnd
    (cc_ack_received's CCF_CWND_LIMITED). A Linux receiver's window is not modelled (it stays ahead of
    cwnd: tcp_rmem 131072..6 MiB with dynamic right-sizing). A Linux receiver (the server of a
    Linux-stack flow) starts in quick-ACK mode: its first 16 ACKs go out at once, one per segment
    (TCP_MAX_QUICKACKS; tcp_event_data_recv, tcp_incr_quickack), and so do 16 more after a duplicate segment or
    a receive gap longer than 200 ms; a FreeBSD receiver delays from the first segment (tcp_input.c DELAY_ACK).
    Measured on the real kernel: the first 25 ms of a Linux flow's ACKs are one per segment, and this is what
    lets HyStart see its 8 samples in a round (Cubic's slow-start exit at 8 Mbit/s).
  * **iperf3's cookie** (Linux hosts): a stream first sends iperf3's 37-byte cookie alone, as segment 0 in an
    89-byte packet, and its data after the cookie's ACK, whose RTT is Linux Cubic's first HyStart sample on an
    empty path (measured on the real kernel: docs/real-linux.md); the FreeBSD model starts with the data.
    Departure: the stream's iperf3 clock still starts at the cookie, one round trip before real iperf3's
    (which starts at TEST_RUNNING), so a Linux short flow's completion time includes that round trip.
  * **Delivered segments** count once, when first SACKed or acked (Linux's newly_acked_sacked): PRR, DCTCP's
    alpha and Prague use that count; Linux Cubic's RTT sample is the newest acknowledged segment's
    (tcp_clean_rtx_queue's ca_rtt_us), the RTT estimator's the timestamp echo.
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

Congestion-control details are in :mod:`l4stb.sim.tcp_stacks` and, for the arithmetic of Cubic and Prague,
:mod:`l4stb.sim.tcp_cc`.
"""

from __future__ import annotations

from heapq import heappush

from l4stb.sim.packet import CE
from l4stb.sim.rcvwnd import FreeBsdRcvWnd
from l4stb.sim.tcp_stacks import INIT_CWND, sender_cc

MSS = 1448
PKT_BYTES = 1500
ECE_COUNT = "count"
"""The receiver's ACK carries how many of the segments it covers were CE (the model's Linux receivers)."""
ECE_LATCH = "latch"
"""FreeBSD's RFC 3168 receiver (tcp_ecn.c tcp_ecn_input_segment, any CC but DCTCP): TF2_ECN_SND_ECE is set by a CE
segment and cleared by the sender's CWR segment, so every ACK in between carries ECE. The public SIFTR runs' DCTCP
flows had such a receiver: their server socket ran its default CC (docs/freebsd-siftr.md)."""
ECE_STATE = "state"
"""FreeBSD's cc_dctcp receiver (cc_dctcp.c dctcp_ecnpkt_handler, FreeBSD 14: read in sobomax/freebsd14_vendor at
0f7ff342): ECE is the CE state of the last segment, and a change is ACKed at once."""
ACK_BYTES = 52
INIT_RTO_NS = 1_000_000_000
RTO_MIN_NS = 30_000_000
RTO_SLOP_NS = 200_000_000
RTO_MAX_NS = 64_000_000_000
MAX_BACKOFF = 64
DELACK_NS = 40_000_000
DUPTHRESH = 3
JIFFY_NS = 4_000_000
"""One jiffy of Debian's kernel (CONFIG_HZ=250): Linux's TCP timers (RACK's reorder timer, TLP) are jiffy timers
whose timeouts usecs_to_jiffies rounds up."""
LINUX_RTO_MIN_NS = 200_000_000
"""TCP_RTO_MIN (HZ/5, include/net/tcp.h): the floor of Linux's rttvar term, and the probe's delayed-ACK allowance."""
QUICKACKS = 16
"""TCP_MAX_QUICKACKS (include/net/tcp.h): Linux's receiver ACKs every segment in quick-ACK mode, entered at the first
data segment with min(rcv_wnd / (2 rcv_mss), 16) ACKs (tcp_incr_quickack; the initial window is the whole receive
space in 7.2, tcp_select_initial_window, so 16)."""
LINUX_TIMEOUT_MIN_NS = 2_000_000
"""TCP_TIMEOUT_MIN_US (include/net/tcp.h): added to the loss probe's 2 srtt and to the reorder timer."""
COOKIE_BYTES = 37 + 52
"""iperf3's stream cookie (COOKIE_SIZE 37 bytes, src/iperf.h), the first thing a client writes on each data
connection (iperf_tcp.c iperf_tcp_connect), in an IPv4 packet with a timestamped TCP header."""
NO_WND = 1 << 62
"""The window of a receiver whose advertised window is not modelled (Linux's: see :mod:`l4stb.sim.rcvwnd`)."""

EV_ARRIVE, EV_RTO, EV_DELACK, EV_SAMPLE, EV_START, EV_RATE, EV_PACE = 0, 1, 2, 3, 4, 5, 6
"""Heap event kinds shared with the engine (EV_RATE: the bottleneck's rate changes to ``obj`` bit/s;
EV_PACE: a paced sender's next departure is due, ``obj.on_pace``)."""


class TcpFlow:
    """One TCP connection (sender + receiver). The engine calls ``start``, ``on_ack``, ``on_data``, timers."""

    __slots__ = (
        "fid", "cc", "ecn_cp", "rtx_cp", "paced", "start_ns", "end_ns", "sim", "access",
        "size_segs", "done_ns", "extra_ns",
        # sender
        "snd_una", "snd_nxt", "high_tx", "cwnd", "ssthresh", "in_rec", "recover", "fack", "sacked",
        "rtx_next", "rtx_out", "srtt", "rttvar", "rto", "backoff", "rto_at", "timer_at", "ecn_recover",
        "retrans", "ce_acked", "marked_rtts", "rtt_min", "rtt_max", "rtt_sum", "rtt_n", "max_cwnd",
        "bytes_acked", "cnt_acc", "in_cwr", "cwr_end", "prr_delivered", "prr_out", "prior_cwnd",
        "delivered", "delivered_ce", "pace_next", "pace_armed", "is_cwnd_limited", "max_out", "cwnd_usage_seq",
        "rack", "reo_at", "tlp_at", "tlp_high", "rto_loss", "tx_ns", "cookie", "snd_wnd", "snd_wnd_mss", "wnd_segs",
        "wnd_seen",
        # receiver
        "rcv_nxt", "ooo", "ack_pending", "ce_pending", "ts_recent", "delack_at", "ce_received", "bytes_rcvd",
        "ce_state", "ce_ack_now", "ece_echo", "cwr_pending", "cwr_seq", "quick", "rcv_last", "rwnd",
        # iperf3 samples
        "samples", "interval_ns", "next_sample",
    )

    def __init__(self, fid: int, cc: str, ecn: bool, start_ns: int, end_ns: int, sim, access, *,
                 stack: str = "freebsd", size_segs: int = 0, extra_delay_ns: int = 0, handshake_rtt_ns: int = 0,
                 kern_hz: int = 1000, server_cc: str = ""):
        """``size_segs`` > 0: a short flow that ends once that many segments are acked (iperf3 ``-n``).
        ``extra_delay_ns``: added to every data packet's way to the router (a per-flow/host dummynet pipe).
        ``handshake_rtt_ns``: the three-way handshake's round trip, a FreeBSD receiver's only RTT sample (its
        receive-buffer autoscaling times itself by it); ``kern_hz``: the receiver's clock tick rate; ``server_cc``:
        the congestion control of the server's socket when it is not the flow's (iperf3 without -C): a FreeBSD
        receiver's ECE echo depends on whether it runs cc_dctcp (:data:`ECE_STATE`, :data:`ECE_LATCH`)."""
        self.fid = fid
        self.cc = sender_cc(stack, cc, ecn, start_ns)
        """The stack's congestion control (:mod:`l4stb.sim.tcp_stacks`), bound once; the codepoints and pacing
        below are copied from it for the per-packet path."""
        self.ecn_cp = self.cc.ecn_cp
        self.rtx_cp = self.cc.rtx_cp
        self.paced = self.cc.paced
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
        self.delivered = 0
        self.delivered_ce = 0
        self.pace_next = 0
        self.pace_armed = False
        self.is_cwnd_limited = False
        self.max_out = 0
        self.cwnd_usage_seq = 0
        self.rack = self.cc.rack_tlp
        """Linux's RACK-TLP loss detection (tcp_recovery.c, tcp_output.c): a reorder timer and a tail loss probe."""
        self.reo_at = 0
        self.tlp_at = 0
        self.tlp_high = 0
        self.rto_loss = False
        """Linux's TCP_CA_Loss: from an RTO until ``recover`` is acked (no loss probe meanwhile)."""
        self.cookie = 1 if self.cc.iperf3_cookie and stack == "linux" else 0
        """1 when the flow starts with iperf3's cookie (:data:`COOKIE_BYTES`) as segment 0, alone: the bulk data waits
        for its ACK (iperf3 starts writing data once the server has the stream), and that ACK gives the congestion
        control its first RTT sample at the unloaded path's RTT. iperf3 counts no byte of it. Linux hosts only (a TCP
        Prague on a FreeBSD host runs the Linux model but keeps FreeBSD's start)."""
        self.tx_ns: dict | None = {} if self.cc.samples_rtt else None
        """seq -> when it was first sent (ns), -1 once retransmitted: Linux's skb timestamps, which give the CC its
        RTT sample (:meth:`_ca_rtt`); kept only for a CC that takes samples (Linux Cubic's HyStart)."""
        self.rwnd = FreeBsdRcvWnd(handshake_rtt_ns, kern_hz) if stack == "freebsd" else None
        """The receiver's buffer and its autoscaling (:mod:`l4stb.sim.rcvwnd`); None: a Linux receiver, whose
        window is not modelled."""
        self.snd_wnd = self.rwnd.window() if self.rwnd is not None else NO_WND
        """The receive window the sender last heard, in bytes (tcp_var.h snd_wnd)."""
        self.snd_wnd_mss = self.snd_wnd / MSS
        """The same in segments, as cwnd counts them: a FreeBSD CC grows cwnd only while cwnd <= snd_wnd."""
        self.wnd_segs = self.snd_wnd // MSS
        """Whole segments that fit in it: new data stops at snd_una + wnd_segs (tcp_output.c sendwin)."""
        self.wnd_seen = 0
        """How many of the receiver's window growths the sender has heard of."""
        self.rcv_nxt = 0
        self.ooo: set = set()
        self.ack_pending = 0
        self.ce_pending = 0
        self.ts_recent = 0
        self.delack_at = 0
        self.ce_received = 0
        self.bytes_rcvd = 0
        self.ce_state = False
        self.ce_ack_now = self.cc.ce_ack_now
        self.ece_echo = self.cc.ece_echo
        if server_cc and self.cc.stack == "freebsd":
            self.ece_echo = ECE_STATE if server_cc == "dctcp" else ECE_LATCH
        self.cwr_pending = False
        """A FreeBSD sender cut its window (:meth:`l4stb.sim.tcp_stacks.FreeBsdSender.signal_cwr`): the first new
        segment from ``cwr_seq`` on carries CWR."""
        self.cwr_seq = 0
        self.quick = QUICKACKS if self.cc.quickack else -1
        """Linux's receiver: immediate ACKs left in quick-ACK mode (icsk_ack.quick); -1 for a receiver without it."""
        self.rcv_last = 0
        self.samples: list = []
        self.interval_ns = 1_000_000_000
        self.next_sample = 0

    # ================================================================== sender

    def start(self, now: int) -> None:
        if self.rwnd is not None:
            # the ACK of the SYN-ACK, sent now, crosses the bottleneck's queue before it gives the receiver its
            # only RTT sample
            self.rwnd.set_srtt(self.rwnd.handshake_rtt_ns + self.sim.queue_wait_ns())
        self.cc.start(self, now)
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
        cookie = self.cookie
        limit = self.size_segs + cookie if self.size_segs else 1 << 62
        wnd_end = self.snd_una + self.wnd_segs  # new data only inside the receiver's window
        reducing = self.cc.prr and (in_rec or self.in_cwr)
        sent = False
        paced = self.paced and self.srtt > 0
        if paced:
            # Prague's pacing rate and GSO burst (PragueV07.update_pacing, after every ACK); the pacing timer
            # (EDT: tcp_wstamp_ns) advances by each burst's length at that rate. The fq qdisc holds each burst
            # until its departure time; TCP small queues let at most max(2 packets, rate x 2^-10 s) wait there
            # (tcp_small_queue_check, sk_pacing_shift 10)
            pr = self.cc.pr
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
                    if seq >= limit or seq >= wnd_end:
                        break
                    self.snd_nxt = seq + 1
            else:
                if self.snd_una < cookie <= self.snd_nxt:
                    break  # the cookie is out: the data waits for its ACK
                if self.snd_nxt - self.snd_una >= int(cwnd):
                    cwnd_full = True
                    break
                if self.snd_nxt >= limit or self.snd_nxt >= wnd_end:
                    break
                seq = self.snd_nxt
                self.snd_nxt = seq + 1
            if seq < self.high_tx:
                self.retrans += 1
                cp = self.rtx_cp
                if self.tx_ns is not None:
                    self.tx_ns[seq] = -1  # TCPCB_RETRANS: Karn, no sample from it
            else:
                self.high_tx = seq + 1
                cp = self.ecn_cp
                if self.tx_ns is not None:
                    self.tx_ns[seq] = now
            if reducing:
                self.prr_out += 1
            # the packet leaves now (a paced one at its burst's departure time) through the NIC's FIFO and the
            # access link (1 Gbit/s by default) to the router, behind everything the host sent before
            rel = now
            if paced:
                rel = burst_t
                burst -= 1
                self.pace_next += gap
            heappush(heap, (access.depart(rel) + extra, next(counter), EV_ARRIVE,
                            [0, PKT_BYTES if seq >= cookie else COOKIE_BYTES, cp, fid, seq, rel]))
            sent = True
        if sent and not self.rto_at:
            self.arm_rto(now)
        if sent and self.rack and not in_rec:
            self._arm_loss_probe(now, False)
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

    def _arm(self, at: int) -> None:
        """Make sure the flow's one timer event fires by ``at`` (lazy: later deadlines re-arm when it fires)."""
        if not self.timer_at or self.timer_at > at:
            self.timer_at = at
            heappush(self.sim.heap, (at, next(self.sim.counter), EV_RTO, self))

    def on_timer(self, now: int) -> None:
        """The flow's timer event: Linux's reorder timer and loss probe, then the RTO (lazy: re-armed deadlines
        move without new heap entries)."""
        if now != self.timer_at:
            return  # superseded by an earlier timer pushed later
        self.timer_at = 0
        if self.rack:
            if self.reo_at and now >= self.reo_at:
                self.reo_at = 0
                self._rack_timeout(now)
            if self.tlp_at and now >= self.tlp_at:
                self.tlp_at = 0
                self._loss_probe(now)
            nxt = min(t for t in (self.reo_at, self.tlp_at, self.rto_at, 1 << 62) if t)
            if not self.rto_at or nxt < self.rto_at:
                if nxt < 1 << 62:
                    self._arm(nxt)
                return
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
        self.cc.on_rto(self, now, self.snd_nxt - self.snd_una)
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
        if self.rack:
            self.rto_loss = True  # tcp_enter_loss: TCP_CA_Loss until recover is acked
            self.reo_at = self.tlp_at = self.tlp_high = 0
        self.send(now)
        if not self.rto_at:
            self.arm_rto(now)

    def _arm_loss_probe(self, now: int, advancing_rto: bool) -> None:
        """Linux tcp_schedule_loss_probe: in Open or CWR with data in flight, a probe 2 srtt (+ TCP_TIMEOUT_MIN, or
        + TCP_RTO_MIN when one segment is out, for the receiver's delayed ACK) after the last send or ACK, never
        later than the RTO; a jiffy timer."""
        out = self.snd_nxt - self.snd_una
        if self.in_rec or self.rto_loss or self.tlp_high or out <= 0 or not self.srtt:
            return  # with a probe outstanding, a later one would only re-arm the RTO (tcp_send_loss_probe)
        pto = 2 * self.srtt + (LINUX_RTO_MIN_NS if out == 1 else LINUX_TIMEOUT_MIN_NS)
        rto_left = self.rto if advancing_rto else self.rto_at - now
        if 0 < rto_left < pto:
            pto = rto_left
        pto = -(-pto // JIFFY_NS) * JIFFY_NS
        self.tlp_at = now + pto
        self._arm(self.tlp_at)

    def _loss_probe(self, now: int) -> None:
        """Linux tcp_send_loss_probe: at most one probe outstanding; a new segment even beyond cwnd
        (tcp_write_xmit's push_one == 2), else the highest segment again; the RTO restarts from the probe."""
        if self.tlp_high or self.in_rec or self.rto_loss or now >= self.end_ns or self.snd_una >= self.high_tx:
            return
        limit = self.size_segs + self.cookie if self.size_segs else 1 << 62
        self.tlp_high = 1 << 62  # no new probe is scheduled from the probe's own send
        if self.snd_nxt < limit:
            cwnd = self.cwnd
            self.cwnd = float(self.snd_nxt - self.snd_una + 1)
            self.send(now)
            self.cwnd = cwnd
        else:
            seq = self.high_tx - 1
            self.retrans += 1
            if self.tx_ns is not None:
                self.tx_ns[seq] = -1
            heappush(self.sim.heap, (self.access.depart(now) + self.extra_ns, next(self.sim.counter), EV_ARRIVE,
                                     [0, PKT_BYTES, self.rtx_cp, self.fid, seq, now]))
        self.tlp_high = self.snd_nxt
        self.rto_at = now + self.rto * self.backoff
        self._arm(self.rto_at)

    def _arm_reorder_timer(self, now: int) -> None:
        """Linux RACK (tcp_rack_detect_loss): a hole below a SACKed segment is lost once the SACKed segment's RTT
        plus the reordering window has passed since the hole was sent -- here, the window after the SACK
        (tcp_rack_reo_wnd: min_rtt/4, at most srtt, while fewer than 3 segments are SACKed) plus
        TCP_TIMEOUT_MIN, in jiffies (tcp_rack_mark_lost)."""
        reo = min(self.rtt_min >> 2, self.srtt) if self.srtt else 0
        self.reo_at = now + -(-(reo + LINUX_TIMEOUT_MIN_NS) // JIFFY_NS) * JIFFY_NS
        self._arm(self.reo_at)

    def _rack_timeout(self, now: int) -> None:
        """Linux tcp_rack_reo_timeout: the hole is lost; enter recovery, one PRR step (tcp_cwnd_reduction with
        one segment delivered), retransmit."""
        if self.in_rec or self.fack - self.snd_una <= 1 or self.snd_una < self.recover or now >= self.end_ns:
            return
        self._enter_recovery(now)
        self.prr_step(1, False)
        self.send(now)

    def start_reduction(self) -> None:
        """Linux tcp_init_cwnd_reduction: PRR from the current window."""
        self.prior_cwnd = self.cwnd if self.cwnd > 1 else 1.0
        self.prr_delivered = 0
        self.prr_out = 0
        self.cnt_acc = 0

    def prr_step(self, delivered: int, una_advanced: bool) -> None:
        """Linux tcp_cwnd_reduction (RFC 6937 with slow-start reduction bound): cwnd = pipe + sndcnt; nothing when
        the ACK delivered nothing new (``newly_acked_sacked <= 0``: tcp_input.c returns early)."""
        if delivered <= 0:
            return
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
        cc = self.cc
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
            if self.rack:
                # tcp_rtt_estimator / __tcp_set_rto: srtt + rttvar, with rttvar at least TCP_RTO_MIN
                rto = self.srtt + max(4 * self.rttvar, LINUX_RTO_MIN_NS)
            else:
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
            if cc.tracks_srtt:
                cc.on_srtt(self.srtt)
        acked = cum - self.snd_una
        new_sack = sack >= cum and sack not in self.sacked
        ca_rtt = self._ca_rtt(now, cum, acked, sack if new_sack else -1, r) if self.tx_ns is not None else -1
        # Linux's newly_acked_sacked (tcp_ack: prior_packets - packets_out + sacked_out - prior_sacked): a segment
        # counts as delivered once, when first SACKed or acked, so a cumulative ACK over segments SACKed before
        # delivers only the rest (tp->delivered, PRR's prr_delivered and DCTCP's alpha all count so)
        prior_sacked = 0
        if acked > 0 and self.sacked:
            una = self.snd_una
            prior_sacked = sum(1 for s in self.sacked if una <= s < cum)
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
            elif cc.in_loss and cum >= self.recover:
                cc.leave_loss()
            if self.rack:
                if self.tlp_high and cum >= self.tlp_high:
                    self.tlp_high = 0  # tcp_process_tlp_ack: the probe's episode is over
                if self.rto_loss and cum >= self.recover:
                    self.rto_loss = False
            # re-arm (or stop) the retransmission timer
            if cum < self.snd_nxt or cum < self.high_tx:
                self.rto_at = now + self.rto
            else:
                self.rto_at = 0
            if self.size_segs and cum >= self.size_segs + self.cookie and not self.done_ns:
                self._finish(now)
                return
        if ca_rtt >= 0 and not self.in_rec:
            cc.on_rtt_sample(self, now, ca_rtt if ca_rtt else 1)  # cubictcp_acked: a delay of 0 counts as 1 us
        if sack >= 0:
            self.sacked.add(sack)
            if sack + 1 > self.fack:
                self.fack = sack + 1
            if self.in_rec and self.rtx_out:
                self._lost_retransmissions(now, sack)
        # ---- enter fast recovery (RFC 6582 guard: not again before `recover` is acked)
        if not self.in_rec and self.snd_una >= self.recover:
            if self.fack - self.snd_una > DUPTHRESH:
                self._enter_recovery(now)
            elif self.rack and self.fack - self.snd_una > 1 and not self.reo_at:
                self._arm_reorder_timer(now)  # fewer than 3 SACKed above the hole: RACK waits its window
        # ---- congestion control on delivered data
        delivered = acked - prior_sacked + (1 if new_sack else 0)
        if acked > 0 or new_sack:
            cc.on_ack(self, now, cum, acked, delivered, ce)
        rw = self.rwnd
        if rw is not None and self.wnd_seen < len(rw.grown) and cum >= rw.grown[self.wnd_seen][0]:
            # the first ACK the receiver sent after its buffer grew carries the new window; tcp_input.c takes
            # it at step6, after cc_ack_received saw the old one
            while self.wnd_seen < len(rw.grown) and cum >= rw.grown[self.wnd_seen][0]:
                self.snd_wnd = rw.grown[self.wnd_seen][1]
                self.wnd_seen += 1
            self.snd_wnd_mss = self.snd_wnd / MSS
            self.wnd_segs = self.snd_wnd // MSS
        self.send(now)
        if self.rack and acked > 0 and not self.in_rec:
            self._arm_loss_probe(now, True)  # tcp_set_xmit_timer

    def _ca_rtt(self, now: int, cum: int, acked: int, new_sack: int, r: int) -> int:
        """Linux's RTT sample for the congestion control (tcp_input.c tcp_clean_rtx_queue, ``ca_rtt_us``, passed to
        ``pkts_acked`` as ``rate->rtt_us``): from the send time of the *newest* segment this ACK acknowledges -- the
        newest newly SACKed one when there is one, else the newest cumulatively acked one not SACKed before -- not
        from the timestamp echo, which a delayed ACK takes from the oldest. Karn: when retransmitted data is
        cumulatively acked (or all of it was SACKed before) and nothing new is SACKed, the timestamp echo ``r`` instead
        (tcp_ack_update_rtt); -1 for
        no sample (a duplicate ACK). Forgets the send times below ``cum``."""
        tx = self.tx_ns
        sample = -1
        if acked > 0:
            newest = -1
            retrans = False
            sacked = self.sacked
            for seq in range(self.snd_una, cum):
                t = tx.pop(seq, -1)
                if t < 0:
                    retrans = True
                elif seq not in sacked:
                    newest = t
            if not retrans and newest >= 0:
                sample = now - newest
            elif r > 0:
                sample = r  # no clean first_ackt: tcp_rtt_tsopt_us
        if new_sack >= 0:
            t = tx.get(new_sack, -1)
            if t >= 0:
                sample = now - t
        return sample

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
        self.cc.enter_recovery(self, now)

    def _end_recovery(self) -> None:
        self.in_rec = False
        self.sacked.clear()
        self.rtx_out.clear()
        self.cc.end_recovery(self)

    def _lost_retransmissions(self, now: int, sack: int) -> None:
        """A SACK of a segment first sent after a retransmission means that retransmission was lost (no
        reordering here): resend it. FreeBSD's LRD (tcp_sack_lost_retransmission) also reduces cwnd once more
        through the CC module; Linux's RACK keeps the episode."""
        lrd = self.cc.lrd
        if lrd and sack < self.recover:
            return  # tcp_sack_lost_retransmission needs snd_fack beyond snd_recover: once per episode
        lost = [s for s, mark in self.rtx_out.items() if sack >= mark]
        if not lost:
            return
        for s in lost:
            del self.rtx_out[s]
        first = min(lost)
        if first < self.rtx_next:
            self.rtx_next = first
        if lrd:
            # tcp_sack_lost_retransmission: cwnd = ssthresh, exit recovery, CC_NDUPACK again (snd_recover =
            # snd_max); FreeBSD then sets cwnd to 1 MSS for PRR/SACK processing to rebuild -- here, without
            # PRR, recovery goes on at the new ssthresh
            self.recover = self.high_tx
            self.cwnd = self.ssthresh
            self.ssthresh = self.cc.loss_ssthresh(self, now)
            self.cwnd = self.ssthresh

    # ================================================================== receiver

    def on_data(self, now: int, pkt: list) -> None:
        """A data segment reaches the server (``now`` is its arrival time there)."""
        seq = pkt[4]
        is_ce = pkt[2] == CE
        ack_now = False
        echo = self.ece_echo
        if echo == ECE_COUNT:
            if self.ce_ack_now:
                if is_ce != self.ce_state:
                    # dctcp_ece_ack_update: a CE state change forces an immediate ACK; a delayed ACK for the
                    # segments before this one goes out first, echoing their (prior) state
                    if self.ack_pending:
                        self._ack(now, -1, self.ts_recent)
                    self.ce_state = is_ce
                    ack_now = True
                if self.cwr_pending and seq >= self.cwr_end:
                    # tcp_ecn_accept_cwr: a data segment carrying CWR (the first new one sent after entering CWR)
                    # is ACKed at once ("its cwnd may be very low")
                    self.cwr_pending = False
                    ack_now = True
        else:
            cwr = self.cwr_pending and seq >= self.cwr_seq
            if cwr:
                # tcp_ecn.c tcp_ecn_input_segment: a segment with CWR clears TF2_ECN_SND_ECE and sets TF_ACKNOW
                # (so does cc_dctcp's ecnpkt_handler); a later segment stands in for a lost CWR one
                self.cwr_pending = False
                ack_now = True
                if echo == ECE_LATCH:
                    self.ce_state = False
            if echo == ECE_LATCH:
                if is_ce:
                    self.ce_state = True  # ... and a CE one sets it (RFC 3168)
            elif is_ce != self.ce_state:
                # cc_dctcp.c dctcp_ecnpkt_handler: ECE follows the CE state (ce_prev); a change sets CCF_ACKNOW,
                # so this segment and any delayed one are ACKed at once, with the new state
                self.ce_state = is_ce
                ack_now = True
        if is_ce:
            self.ce_pending += 1
            self.ce_received += 1
        rcv = self.rcv_nxt
        if self.quick >= 0:
            # tcp_event_data_recv: a gap longer than the RTO (the sender failed to restart its window) re-enters
            # quick-ACK mode; a duplicate segment does too (tcp_data_queue: DELAYEDACKLOST)
            if (self.rcv_last and now - self.rcv_last > LINUX_RTO_MIN_NS) or seq < rcv:
                self.quick = QUICKACKS
            self.rcv_last = now
            if self.quick:
                ack_now = True
        if seq == rcv:
            rcv += 1
            if seq >= self.cookie:
                self.bytes_rcvd += MSS
            if self.rwnd is not None and not self.ooo:
                self.rwnd.on_in_order(now, MSS, rcv)  # tcp_input.c header prediction: tcp_autorcvbuf
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
            if self.ack_pending >= 2 or rcv == self.size_segs + self.cookie or ack_now:
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
        if self.quick > 0:
            self.quick -= 1  # tcp_dec_quickack_mode
        if self.rwnd is not None:
            self.rwnd.on_ack_sent(now)
        self.ack_pending = 0
        self.delack_at = 0
        ce = self.ce_pending if self.ece_echo == ECE_COUNT else int(self.ce_state)
        self.ce_pending = 0
        self.sim.acks.append((now + self.sim.ack_delay_ns[self.fid], self, self.rcv_nxt, sack, ce, ts_echo))

    # ================================================================== iperf3 samples

    def sample(self, now: int) -> None:
        """Record the iperf3 interval counters at ``now`` and schedule the next sample."""
        if now > self.end_ns or (self.samples and self.samples[-1][0] == now):
            return  # a short flow that has finished
        c = self.cookie
        self.samples.append((now, self.snd_una - c if self.snd_una > c else 0, self.retrans, self.cwnd, self.srtt,
                             self.rttvar, self.rcv_nxt - c if self.rcv_nxt > c else 0, self.snd_wnd))
        nxt = now + self.interval_ns
        if nxt > self.end_ns:
            nxt = self.end_ns
        if now < self.end_ns:
            heappush(self.sim.heap, (nxt, next(self.sim.counter), EV_SAMPLE, self))
