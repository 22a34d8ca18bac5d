"""TCP senders (NewReno, Cubic, DCTCP, Prague) and their receiver, modelled per segment as FreeBSD 14 behaves by default.

One :class:`TcpFlow` is one iperf3 stream: a bulk sender on a client and its receiver on the server.

Common to every sender
  * Segments of ``MSS = 1448`` payload bytes in 1500-byte IP packets (timestamps on); sequence numbers
    count segments. Initial window 10 segments (RFC 6928, FreeBSD's default), initial RTO 1 s.
  * **Full segments only**: at most ``floor(cwnd)`` segments in flight. cwnd is kept as a real number (as
    FreeBSD keeps it in bytes), but a bulk sender only sends whole MSS-sized segments (Nagle).
  * **Slow start** with appropriate byte counting, at most 2 segments per ACK (FreeBSD abc_l_var=2),
    while ``cwnd <= ssthresh`` -- FreeBSD's test, so an ACK that finds cwnd just set to ssthresh by a
    reduction takes a slow-start step too.
  * **Loss recovery**: SACK-based (FreeBSD enables SACK by default), FACK-style because the path never
    reorders: entering recovery when the highest SACKed segment is more than 3 above the cumulative ACK
    (the DupThresh of RFC 5681), then every hole below it is retransmitted once while
    ``pipe = snd_nxt - fack + retransmitted_in_flight < cwnd``; one window reduction per recovery
    episode and ``recover`` as in RFC 6582 (a new episode only starts once ``recover`` is acked);
    leaving recovery deflates cwnd to ssthresh.
  * **RTO** (RFC 6298 estimator, FreeBSD bounds): ``srtt + 4 rttvar + 200 ms`` (``rexmit_slop``),
    at least 30 ms (``rexmit_min``), doubled per consecutive timeout up to 64x; on expiry cwnd = 1,
    go-back-N from snd_una, scoreboard cleared.
  * **ECN**: classic RFC 3168 for Cubic/NewReno when the scenario enables ECN (ECT(0); one cwnd
    reduction per window on echoed CE, like a loss but without retransmission, and no growth until that
    window is acked: FreeBSD's congestion recovery); DCTCP and Prague send
    ECT(1) and get *accurate* CE counts (the receiver reports how many of the newly acked segments were
    CE-marked: DCTCP's receiver state machine / AccECN give the sender the same information).
  * **Receiver**: delayed ACKs (every 2nd in-order segment, or after 40 ms, FreeBSD delacktime); an
    immediate ACK with a SACK of the segment for every out-of-order arrival and when a hole fills;
    TSecr echoes the first unacknowledged segment's timestamp (RFC 7323), so RTT samples include the
    delayed-ACK wait. The receive window is never the limit (2 MB advertised).
  * RTT is measured on every ACK from the echoed timestamp.

Congestion controls
  * **NewReno** (RFC 5681/6582): +1 segment per RTT, halve on loss or CE.
  * **Cubic** (RFC 9438): C = 0.4, beta = 0.7, fast convergence, the Reno-friendly estimate W_est
    (alpha = 3(1-beta)/(1+beta), 1 once W_est reaches cwnd_prior, the window before the last
    reduction), target W_cubic(t + RTT) clamped to [cwnd, 1.5 cwnd]; an epoch's curves start from
    ssthresh (FreeBSD's tf_cwnd: W_max * beta + alpha t / RTT), and cwnd never shrinks to follow them.
  * **DCTCP** (RFC 8257, as FreeBSD's cc_dctcp): alpha EWMA with g = 1/16 updated once per window of
    data (alpha starts at 1), cwnd = ssthresh = cwnd (1 - alpha/2) at most once per window on CE, and
    growth on every ACK, the reducing one included (cc_dctcp leaves congestion recovery to grow, and
    that ACK finds cwnd == ssthresh: a slow-start step); slow start ends at the first CE; halve on loss.
  * **Prague** (draft-briscoe-iccrg-prague-congestion-control, as the Linux module does it): ECT(1);
    DCTCP-like alpha (g = 1/16, starting at 1, not updated before the first CE); the window change is
    accumulated in ``cwnd_cnt`` and applied one segment per ACK (CE reduction alpha/2 * cwnd at most
    once per CWR period); CE-marked segments do not grow the window; **RTT independence**
    (RTT_CONTROL_RATE, target 25 ms): after 4 rounds out of slow start, the additive increase per RTT is
    scaled by (srtt/25 ms)^2 when srtt < 25 ms, alpha is updated at most once per 25 ms and CE
    reductions are at most one per 25 ms; **pacing** at 100 % of cwnd/srtt (200 % while cwnd <
    ssthresh/2), packets leave the host no closer than that rate.
"""

from __future__ import annotations

import math
from heapq import heappush

from l4stb.sim.packet import CE, ECT0, ECT1, NOT_ECT

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
PRAGUE_RTT_TARGET_NS = 25_000_000
PRAGUE_TRANSITION_ROUNDS = 4

EV_ARRIVE, EV_RTO, EV_DELACK, EV_SAMPLE, EV_START = 0, 1, 2, 3, 4
"""Heap event kinds shared with the engine."""


class TcpFlow:
    """One TCP connection (sender + receiver). The engine calls ``start``, ``on_ack``, ``on_data``, timers."""

    __slots__ = (
        "fid", "cc", "ecn_cp", "classic_ecn", "start_ns", "end_ns", "sim", "access",
        # sender
        "snd_una", "snd_nxt", "high_tx", "cwnd", "ssthresh", "in_rec", "recover", "fack", "sacked",
        "rtx_next", "rtx_out", "srtt", "rttvar", "rto", "backoff", "rto_at", "timer_at", "ecn_recover",
        "retrans", "ce_acked", "marked_rtts", "rtt_min", "rtt_max", "rtt_sum", "rtt_n", "max_cwnd",
        # cubic
        "w_max", "k", "epoch", "w_est", "cwnd_prior",
        # dctcp / prague
        "alpha", "win_end", "win_acked", "win_ce", "saw_ce", "cwnd_cnt", "round", "next_seq",
        "alpha_stamp", "cwr_stamp", "in_cwr", "cwr_end", "delivered", "delivered_ce", "old_del", "old_ce",
        "pace_next", "paced",
        # receiver
        "rcv_nxt", "ooo", "ack_pending", "ce_pending", "ts_recent", "delack_at", "ce_received", "bytes_rcvd",
        # iperf3 samples
        "samples", "interval_ns", "next_sample",
    )

    def __init__(self, fid: int, cc: str, ecn: bool, start_ns: int, end_ns: int, sim, access):
        self.fid = fid
        self.cc = CC_CODES[cc]
        if self.cc in (CC_DCTCP, CC_PRAGUE):
            self.ecn_cp = ECT1
        else:
            self.ecn_cp = ECT0 if ecn else NOT_ECT
        self.classic_ecn = self.ecn_cp == ECT0
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.sim = sim
        self.access = access
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
        self.rtx_out: set = set()
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
        self.w_max = 0.0
        self.k = 0.0
        self.epoch = -1
        self.w_est = 0.0
        self.cwnd_prior = 0.0
        self.alpha = 1.0
        self.win_end = 0
        self.win_acked = 0
        self.win_ce = 0
        self.saw_ce = False
        self.cwnd_cnt = 0.0
        self.round = 0
        self.next_seq = 0
        self.alpha_stamp = 0
        self.cwr_stamp = -(1 << 62)
        self.in_cwr = False
        self.cwr_end = 0
        self.delivered = 0
        self.delivered_ce = 0
        self.old_del = 0
        self.old_ce = 0
        self.pace_next = 0
        self.paced = self.cc == CC_PRAGUE
        self.rcv_nxt = 0
        self.ooo: set = set()
        self.ack_pending = 0
        self.ce_pending = 0
        self.ts_recent = 0
        self.delack_at = 0
        self.ce_received = 0
        self.bytes_rcvd = 0
        self.samples: list = []
        self.interval_ns = 1_000_000_000
        self.next_sample = 0

    # ================================================================== sender

    def start(self, now: int) -> None:
        self.next_seq = 0
        self.alpha_stamp = now
        self.sample(now)
        self.send(now)

    def send(self, now: int) -> None:
        """Transmit what cwnd (and recovery state) allows."""
        if now >= self.end_ns:
            return
        sim = self.sim
        heap = sim.heap
        counter = sim.counter
        access = self.access
        fid = self.fid
        ecn_cp = self.ecn_cp
        cwnd = self.cwnd
        in_rec = self.in_rec
        sent = False
        paced = self.paced and self.srtt > 0
        if paced:
            inflight = self.snd_nxt - self.snd_una
            rate_factor = 2.0 if cwnd < self.ssthresh * 0.5 else 1.0
            # ns between packets at the pacing rate = srtt / (max(cwnd, inflight) * factor)
            gap = int(self.srtt / ((cwnd if cwnd > inflight else inflight) * rate_factor))
        while True:
            if in_rec:
                pipe = self.snd_nxt - self.fack + len(self.rtx_out)
                if pipe >= int(cwnd):
                    break
                seq = self.rtx_next
                fack = self.fack
                sacked = self.sacked
                while seq < fack and seq in sacked:
                    seq += 1
                if seq < fack:
                    self.rtx_next = seq + 1
                    self.rtx_out.add(seq)
                else:
                    self.rtx_next = seq  # everything below fack is SACKed or resent: do not rescan
                    seq = self.snd_nxt
                    self.snd_nxt = seq + 1
            else:
                if self.snd_nxt - self.snd_una >= int(cwnd):
                    break
                seq = self.snd_nxt
                self.snd_nxt = seq + 1
            if seq < self.high_tx:
                self.retrans += 1
            else:
                self.high_tx = seq + 1
            # release time from the host, then the access link (1 Gbit/s by default) to the router
            if paced:
                rel = self.pace_next
                if rel < now:
                    rel = now
                self.pace_next = rel + gap
                arrive = rel + access.ser_ns + access.prop_ns
            else:
                rel = now
                free = access.free_ns
                if free < now:
                    free = now
                free += access.ser_ns
                access.free_ns = free
                arrive = free + access.prop_ns
            heappush(heap, (arrive, next(counter), EV_ARRIVE, [0, PKT_BYTES, ecn_cp, fid, seq, rel]))
            sent = True
        if sent and not self.rto_at:
            self.arm_rto(now)

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
        # retransmission timeout
        flight = self.snd_nxt - self.snd_una
        self._congestion(now, loss=True, flight=flight)
        if self.cc == CC_CUBIC:
            self.epoch = -1
        self.ssthresh = max(min(self.cwnd, float(flight)) if flight else self.cwnd, 2.0)
        self.cwnd = 1.0
        self.cwnd_cnt = 0.0
        self.snd_nxt = self.snd_una
        self.in_rec = False
        self.sacked.clear()
        self.rtx_out.clear()
        self.fack = self.snd_una
        self.recover = self.high_tx
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)
        self.rto_at = 0
        self.send(now)
        if not self.rto_at:
            self.arm_rto(now)

    def _congestion(self, now: int, loss: bool, flight: int = 0) -> None:
        """Window reduction for a loss (or a classic CE echo): sets ssthresh and cwnd."""
        cc = self.cc
        cwnd = self.cwnd
        if cc == CC_CUBIC:
            if cwnd < self.w_max:
                self.w_max = cwnd * (1 + CUBIC_BETA) / 2
            else:
                self.w_max = cwnd
            self.cwnd_prior = cwnd
            new = cwnd * CUBIC_BETA
            self.epoch = -1
        else:
            new = cwnd * 0.5
        if new < 2.0:
            new = 2.0
        self.ssthresh = new
        self.cwnd = new
        self.cwnd_cnt = 0.0
        if self.cwnd > self.max_cwnd:
            self.max_cwnd = self.cwnd

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
        cc = self.cc
        acked = cum - self.snd_una
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
                self.rtx_out = {s for s in self.rtx_out if s >= cum}
            if self.in_rec:
                if cum >= self.recover:
                    self.in_rec = False
                    self.cwnd = self.ssthresh
                    self.sacked.clear()
                    self.rtx_out.clear()
                elif self.rtx_next < cum:
                    self.rtx_next = cum
            # re-arm (or stop) the retransmission timer
            if cum < self.snd_nxt or cum < self.high_tx:
                self.rto_at = now + self.rto
            else:
                self.rto_at = 0
        if sack >= 0:
            self.sacked.add(sack)
            if sack + 1 > self.fack:
                self.fack = sack + 1
        # ---- enter fast recovery (RFC 6582 guard: not again before `recover` is acked)
        if not self.in_rec and self.fack - self.snd_una > DUPTHRESH and self.snd_una >= self.recover:
            self.in_rec = True
            self.recover = self.high_tx
            flight = self.snd_nxt - self.snd_una
            if cc == CC_PRAGUE or cc == CC_DCTCP:
                new = self.cwnd * 0.5
                if new < 2.0:
                    new = 2.0
                self.ssthresh = new
                self.cwnd = new
                self.cwnd_cnt = 0.0
            else:
                self._congestion(now, loss=True, flight=flight)
            self.rtx_next = self.snd_una
            self.ecn_recover = self.high_tx
        # ---- congestion control on new data
        if acked > 0:
            if ce:
                self.ce_acked += ce
            if cc == CC_PRAGUE:
                self._prague(now, acked, ce)
            elif not self.in_rec:
                if cc == CC_DCTCP:
                    self._dctcp(now, acked, ce)
                else:
                    if ce and self.classic_ecn and cum > self.ecn_recover:
                        self.ecn_recover = self.snd_nxt
                        self.marked_rtts += 1
                        self._congestion(now, loss=False)
                    elif cum >= self.ecn_recover:
                        # FreeBSD: no growth in ECN congestion recovery (until the window sent at the
                        # reduction is acked); the ACK that ends it finds cwnd == ssthresh: slow start
                        self._grow(now, acked)
        self.send(now)

    def _grow(self, now: int, acked: int) -> None:
        cwnd = self.cwnd
        if cwnd <= self.ssthresh:  # FreeBSD newreno/cubic: slow start while cwnd <= ssthresh
            cwnd += acked if acked < 2 else 2
        elif self.cc == CC_CUBIC:
            cwnd = self._cubic(now, acked, cwnd)
        else:
            cwnd += acked / cwnd
        self.cwnd = cwnd
        if cwnd > self.max_cwnd:
            self.max_cwnd = cwnd

    def _cubic(self, now: int, acked: int, cwnd: float) -> float:
        if self.epoch < 0:
            # the epoch's curves start from ssthresh, the reduced window (FreeBSD: W_est = W_max * beta +
            # alpha t / RTT, K from W_max alone), not from the slow-start step taken on top of it
            self.epoch = now
            base = cwnd if cwnd < self.ssthresh else self.ssthresh
            self.w_est = base
            if self.w_max <= base:
                self.w_max = base
                self.k = 0.0
            else:
                self.k = math.cbrt((self.w_max - base) / CUBIC_C)
        t = (now - self.epoch) * 1e-9
        rtt = self.srtt * 1e-9
        alpha = CUBIC_ALPHA if self.w_est < self.cwnd_prior else 1.0
        self.w_est += alpha * acked / cwnd
        d = t - self.k
        w_t = CUBIC_C * d * d * d + self.w_max
        if w_t < self.w_est:
            return self.w_est if self.w_est > cwnd else cwnd
        d = t + rtt - self.k
        target = CUBIC_C * d * d * d + self.w_max
        if target < cwnd:
            target = cwnd
        elif target > 1.5 * cwnd:
            target = 1.5 * cwnd
        return cwnd + (target - cwnd) / cwnd * acked

    def _dctcp(self, now: int, acked: int, ce: int) -> None:
        self.win_acked += acked
        self.win_ce += ce
        if self.snd_una >= self.win_end:
            self.alpha = (1 - DCTCP_G) * self.alpha + DCTCP_G * (self.win_ce / self.win_acked if self.win_acked else 0.0)
            self.win_acked = 0
            self.win_ce = 0
            self.win_end = self.snd_nxt
        if ce and self.snd_una > self.ecn_recover:
            self.ecn_recover = self.snd_nxt
            self.marked_rtts += 1
            new = self.cwnd * (1 - self.alpha / 2)
            if new < 2.0:
                new = 2.0
            self.cwnd = new
            self.ssthresh = new
        # FreeBSD cc_dctcp grows on every ACK, the reducing one included (cong_signal runs before
        # ack_received, which leaves congestion recovery to grow); there cwnd == ssthresh: slow start
        self._grow(now, acked)

    def _prague(self, now: int, acked: int, ce: int) -> None:
        self.delivered += acked
        self.delivered_ce += ce
        if ce:
            self.saw_ce = True
        cwnd = self.cwnd
        # --- window growth (non-CE segments only)
        grow = acked - ce
        if grow > 0 and not self.in_rec:
            if cwnd < self.ssthresh:
                cwnd += grow if grow < 2 else 2
                if cwnd > self.ssthresh:
                    cwnd = float(max(int(self.ssthresh), 2))
            else:
                ai = 1.0
                if self.round >= PRAGUE_TRANSITION_ROUNDS and 0 < self.srtt < PRAGUE_RTT_TARGET_NS:
                    x = self.srtt / PRAGUE_RTT_TARGET_NS
                    ai = x * x
                self.cwnd_cnt += grow * ai / cwnd
        # --- CWR entry on CE (once per CWR period; at most once per 25 ms when RTT-independent)
        if self.in_cwr and self.snd_una >= self.cwr_end:
            self.in_cwr = False
        if ce and not self.in_cwr and not self.in_rec:
            indep = self.round >= PRAGUE_TRANSITION_ROUNDS and cwnd >= self.ssthresh
            if not (indep and now - self.cwr_stamp < PRAGUE_RTT_TARGET_NS):
                self.cwr_stamp = now
                self.in_cwr = True
                self.cwr_end = self.snd_nxt
                self.marked_rtts += 1
                self.cwnd_cnt -= self.alpha * 0.5 * cwnd
        # --- apply one segment of accumulated change per ACK (Linux prague_update_cwnd)
        if self.cwnd_cnt <= -1.0:
            self.cwnd_cnt += 1.0
            cwnd -= 1.0
            if cwnd < 2.0:
                cwnd = 2.0
                self.cwnd_cnt = 0.0
            self.ssthresh = cwnd
        elif self.cwnd_cnt >= 1.0:
            self.cwnd_cnt -= 1.0
            cwnd += 1.0
        self.cwnd = cwnd
        if cwnd > self.max_cwnd:
            self.max_cwnd = cwnd
        # --- alpha EWMA once per round (and once per 25 ms when RTT-independent)
        if self.snd_una >= self.next_seq:
            indep = self.round >= PRAGUE_TRANSITION_ROUNDS and cwnd >= self.ssthresh
            if not indep or now - self.alpha_stamp >= PRAGUE_RTT_TARGET_NS:
                if self.saw_ce:
                    d = self.delivered - self.old_del
                    f = (self.delivered_ce - self.old_ce) / d if d > 0 else 0.0
                    self.alpha += DCTCP_G * (f - self.alpha)
                    self.alpha_stamp = now
                self.next_seq = self.snd_nxt
                self.old_del = self.delivered
                self.old_ce = self.delivered_ce
                if cwnd >= self.ssthresh:
                    self.round += 1

    # ================================================================== receiver

    def on_data(self, now: int, pkt: list) -> None:
        """A data segment reaches the server (``now`` is its arrival time there)."""
        seq = pkt[4]
        if pkt[2] == CE:
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
            if self.ack_pending >= 2:
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
        self.samples.append((now, self.snd_una, self.retrans, self.cwnd, self.srtt, self.rttvar,
                             self.rcv_nxt))
        nxt = now + self.interval_ns
        if nxt > self.end_ns:
            nxt = self.end_ns
        if now < self.end_ns:
            heappush(self.sim.heap, (nxt, next(self.sim.counter), EV_SAMPLE, self))
