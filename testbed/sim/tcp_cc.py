"""The Cubic (FreeBSD 14.1, Linux) and TCP Prague v0.7 arithmetic that the sender stacks keep per flow.

Windows are in segments (the kernels keep bytes or segments; the sender here counts segments), times in
integer nanoseconds. Each class names the source file it follows; the congestion-control objects of
:mod:`l4stb.sim.tcp_stacks` hold them and call them.
"""

from __future__ import annotations

import math

CUBIC_C = 0.4


class FreeBsdCubic:
    """FreeBSD 14.1 sys/netinet/cc/cc_cubic.c and cc_cubic.h (the arithmetic of the stored version 00d3b744).

    * ``K = cubic_k(W_max / mss)``: cbrt(W_max (1 - beta) / C) from W_max alone, not from the window the epoch
      starts at; ``W_cubic(t) = C (t - K)^3 + W_max`` taken at ``t + mean RTT`` (cubic_cwnd), and the
      Reno-friendly ``W_est = W_max * 179/256 + (231/435) t / mean RTT`` (tf_cwnd, with W_max, not a running
      estimate). cwnd **jumps** to W_cubic when below it, or to W_est in the friendly region; it never shrinks.
    * t counts kernel ticks (1 ms at hz = 1000) since ``t_epoch``; the epoch restarts at the first ACK in
      congestion avoidance after slow start (cubic_ack_received, CUBICFLAG_IN_SLOWSTART), so after a
      reduction (cwnd == ssthresh: one slow-start step) the curve starts from the post-recovery window.
    * cubic_ssthresh_update: fast convergence ``cwnd * 217/256`` when below W_max; W_max = that cwnd; the
      **first** congestion event sets ssthresh = cwnd/2 and W_max = cwnd * 179/256, later ones ssthresh =
      cwnd * 179/256 (at least 2 segments).
    * cubic_post_recovery (leaving fast recovery): cwnd = pipe + 1 MSS when pipe < ssthresh, else
      max(W_max * 179/256, 2); it also sets the mean RTT of the epoch (the mean of srtt over its ACKs,
      cubic_record_rtt, which ignores the first 8 samples).
    * CC_RTO: ssthresh = 0.7 of the flight in whole MSS, cwnd = 1; the first CA ACK afterwards restarts the
      curve at W_max = cwnd, K = 0 (RFC 8312 4.7 as coded).
    """

    __slots__ = ("w_max", "k", "t_epoch", "mean_rtt", "min_rtt", "sum_rtt", "n_rtt", "samples", "cong_event",
                 "in_ss", "rto_event")

    BETA = 179 / 256
    FC = 217 / 256
    TICK_NS = 1_000_000

    def __init__(self, init_cwnd: float):
        self.w_max = init_cwnd  # cubic_conn_init
        self.k = 0.0
        self.t_epoch = 0
        self.mean_rtt = 1_000  # cubic_cb_init: 1 us until measured
        self.min_rtt = 0
        self.sum_rtt = 0
        self.n_rtt = 0
        self.samples = 0
        self.cong_event = False
        self.in_ss = False
        self.rto_event = False

    @staticmethod
    def cubic_k(w_max: float) -> float:
        return math.cbrt(int(w_max) * 0.3 / CUBIC_C)  # cubic_k(W_max / mss): whole segments

    def record_rtt(self, srtt: int) -> None:
        """cubic_record_rtt: after CUBIC_MIN_RTT_SAMPLES = 8 samples, track min srtt and sum for the mean."""
        self.samples += 1
        if self.samples < 8 or srtt <= 0:
            return
        if not self.min_rtt or srtt < self.min_rtt:
            self.min_rtt = srtt
            if self.min_rtt > self.mean_rtt:
                self.mean_rtt = self.min_rtt
        self.sum_rtt += srtt
        self.n_rtt += 1

    def ack(self, now: int, cwnd: float, ssthresh: float, acked: int) -> float:
        """cubic_ack_received outside recovery: the new cwnd."""
        if cwnd <= ssthresh or not self.min_rtt:
            self.in_ss = True
            return cwnd + (acked if acked < 2 else 2)  # newreno slow start, abc_l_var = 2
        if self.rto_event and self.in_ss:
            self.rto_event = self.in_ss = False
            self.w_max = cwnd
            self.t_epoch = now
            self.k = 0.0
        elif self.in_ss:
            self.in_ss = False
            self.t_epoch = now
            self.k = self.cubic_k(self.w_max)
        t = (now - self.t_epoch) // self.TICK_NS * self.TICK_NS * 1e-9
        rtt = self.mean_rtt * 1e-9
        w_est = self.w_max * self.BETA + (231 / 435) * t / rtt
        d = t + rtt - self.k
        w_cubic = CUBIC_C * d * d * d + self.w_max
        if w_cubic < w_est:
            if cwnd < w_est:
                cwnd = w_est
        elif cwnd < w_cubic:
            cwnd = w_cubic
        if not self.cong_event and self.w_max < cwnd:
            self.w_max = cwnd
            self.k = self.cubic_k(cwnd)
        return cwnd

    def signal(self, now: int, cwnd: float) -> float:
        """cubic_cong_signal (CC_NDUPACK / CC_ECN outside recovery): update W_max and K, return ssthresh."""
        if cwnd < self.w_max:
            cwnd = cwnd * self.FC
        self.w_max = cwnd
        if not self.cong_event:
            ssthresh = cwnd / 2
            self.w_max = cwnd * self.BETA
        else:
            ssthresh = cwnd * self.BETA
        self.cong_event = True
        self.t_epoch = now
        self.k = self.cubic_k(self.w_max)
        return ssthresh if ssthresh > 2.0 else 2.0

    def post_recovery(self, fast_recovery: bool, pipe: int, ssthresh: float, cwnd: float) -> float:
        """cubic_post_recovery: the cwnd after fast recovery; the epoch's mean RTT either way."""
        if fast_recovery:
            if pipe < ssthresh:
                cwnd = float(max(pipe, 1) + 1)
            else:
                cwnd = max(self.w_max * self.BETA, 2.0)
        if self.n_rtt > 0 and self.sum_rtt >= self.n_rtt:
            self.mean_rtt = self.sum_rtt // self.n_rtt
        self.sum_rtt = 0
        self.n_rtt = 0
        return cwnd

    def rto(self, flight: int) -> float:
        """CC_RTO: ssthresh from the flight in whole MSS (cwnd becomes 1 in the caller)."""
        self.cong_event = True
        self.rto_event = True
        return float(max(2, int(flight * self.BETA)))


class LinuxCubic:
    """Linux net/ipv4/tcp_cubic.c (bictcp): beta 717/1024, C = 0.4 (bic_scale 41), fast convergence, the
    Reno-friendly ``tcp_cwnd`` (beta_scale 15: +1 segment per 1.875 windows acked, i.e. 3(1-b)/(1+b) per RTT),
    HyStart with ACK-train and delay detection from cwnd 16 (hystart_low_window).

    * bictcp_update: the epoch starts at the first CA ACK after a reduction; origin = W_max (last_max_cwnd)
      when above cwnd, else cwnd with K = 0; target at ``t + delay_min``; ``cnt = cwnd / (target - cwnd)``
      (100 cwnd when at or above target; at most 20 before any loss), lowered to ``cwnd / (tcp_cwnd - cwnd)``
      when the Reno estimate is ahead; at least 2; recomputed at most every HZ/32 (31 ms) while cwnd stays.
    * tcp_cong_avoid_ai(cnt): cwnd += 1 every ``cnt`` segments acked (integer cwnd).
    * bictcp_recalc_ssthresh: epoch reset; last_max = cwnd (1024 + 717)/2048 under fast convergence;
      ssthresh = max(cwnd * 717/1024, 2).
    * hystart_update: a new round when snd_una passes end_seq, counted from the first ACK (the round test comes
      before the cwnd >= 16 test); each sample is the newest acked segment's RTT (``ca_rtt_us``); ACK train: ACKs <= 2 ms apart, and the round
      longer than (delay_min + 1 ms)/2 (hystart_ack_delay caps at 1 ms; halved when not paced); delay: the
      round's minimum RTT over 8 samples above delay_min + clamp(delay_min/8, 4 ms, 16 ms). Either sets
      ssthresh = cwnd.
    """

    __slots__ = ("last_max", "epoch", "origin", "k", "ack_cnt", "tcp_cwnd", "cnt", "cnt_acc", "last_cwnd",
                 "last_time", "delay_min", "found", "round_start", "last_ack", "end_seq", "curr_rtt", "sample_cnt")

    BETA = 717 / 1024

    def __init__(self):
        self.last_max = 0
        self.epoch = 0
        self.origin = 0
        self.k = 0.0
        self.ack_cnt = 0
        self.tcp_cwnd = 0
        self.cnt = 0
        self.cnt_acc = 0
        self.last_cwnd = 0
        self.last_time = 0
        self.delay_min = 0
        self.found = False
        self.round_start = 0
        self.last_ack = 0
        self.end_seq = 0
        self.curr_rtt = 1 << 62
        self.sample_cnt = 0

    def reset_epoch(self) -> None:
        self.epoch = 0
        self.last_cwnd = 0

    def ssthresh(self, cwnd: int) -> int:
        self.reset_epoch()
        if cwnd < self.last_max:
            self.last_max = int(cwnd * (1024 + 717) / 2048)
        else:
            self.last_max = cwnd
        return max(int(cwnd * self.BETA), 2)

    def rtt_sample(self, now: int, rtt: int, cwnd: int, ssthresh: int, snd_una: int, snd_nxt: int) -> int:
        """bictcp_acked: delay_min, then HyStart in slow start; returns ssthresh (cwnd when HyStart exits)."""
        if self.epoch and now - self.epoch < 1_000_000_000:
            return ssthresh  # discard delay samples right after fast recovery
        if not self.delay_min or rtt < self.delay_min:
            self.delay_min = rtt
        if self.found or cwnd >= ssthresh:
            return ssthresh
        # hystart_update: a new round starts whenever snd_una passes end_seq, *before* the hystart_low_window
        # test, so rounds are counted from the first ACK and the round in progress when cwnd reaches 16 keeps its
        # start (tcp_cubic.c)
        if snd_una > self.end_seq:
            self.round_start = self.last_ack = now
            self.end_seq = snd_nxt
            self.curr_rtt = 1 << 62
            self.sample_cnt = 0
        if cwnd < 16:
            return ssthresh
        if now - self.last_ack <= 2_000_000:
            self.last_ack = now
            if now - self.round_start > (self.delay_min + 1_000_000) >> 1:
                self.found = True
                return cwnd
        if self.curr_rtt > rtt:
            self.curr_rtt = rtt
        if self.sample_cnt < 8:
            self.sample_cnt += 1
        else:
            thresh = min(max(self.delay_min >> 3, 4_000_000), 16_000_000)
            if self.curr_rtt > self.delay_min + thresh:
                self.found = True
                return cwnd
        return ssthresh

    def cong_avoid(self, now: int, cwnd: int, acked: int) -> int:
        """bictcp_update + tcp_cong_avoid_ai: the new (integer) cwnd in congestion avoidance."""
        self.ack_cnt += acked
        if not (self.last_cwnd == cwnd and now - self.last_time <= 31_250_000):
            self.last_cwnd = cwnd
            self.last_time = now
            if not self.epoch:
                self.epoch = now
                self.ack_cnt = acked
                self.tcp_cwnd = cwnd
                if self.last_max <= cwnd:
                    self.k = 0.0
                    self.origin = cwnd
                else:
                    self.k = math.cbrt((self.last_max - cwnd) / CUBIC_C)
                    self.origin = self.last_max
            t = (now - self.epoch + self.delay_min) * 1e-9
            d = t - self.k
            target = int(self.origin + CUBIC_C * d * d * d)
            cnt = cwnd // (target - cwnd) if target > cwnd else 100 * cwnd
            if self.last_max == 0 and cnt > 20:
                cnt = 20
            delta = (cwnd * 15) >> 3
            while self.ack_cnt > delta:
                self.ack_cnt -= delta
                self.tcp_cwnd += 1
            if self.tcp_cwnd > cwnd:
                max_cnt = cwnd // (self.tcp_cwnd - cwnd)
                if cnt > max_cnt:
                    cnt = max_cnt
            self.cnt = cnt if cnt > 2 else 2
        return ai(self, cwnd, self.cnt, acked)


def ai(state, cwnd: int, w: int, acked: int) -> int:
    """Linux tcp_cong_avoid_ai: +1 segment per ``w`` segments acked, carried in ``state.cnt_acc``."""
    if state.cnt_acc >= w:
        state.cnt_acc = 0
        cwnd += 1
    state.cnt_acc += acked
    if state.cnt_acc >= w:
        delta = state.cnt_acc // w
        state.cnt_acc -= delta * w
        cwnd += delta
    return cwnd


class PragueV07:
    """L4STeam/linux net/ipv4/tcp_prague.c, MODULE_VERSION 0.7, commit 893e1479793e4cd975adf062fab3ff44206f76b1,
    with its module defaults (alpha_mode 0, cwnd_mode 2 = switch, cwnd_transit 4, rtt_transition 4, target 25 ms).

    * **alpha start** (alpha_mode 0): alpha starts at 0, and the first CE echo halves frac_cwnd (prague_update_cwnd:
      "half cwnd at 1st mark"); alpha is not updated before that first CE (saw_ce). EWMA g = 1/16 per round
      (snd_una passes next_seq), at most once per 25 ms when RTT-independent.
    * **window mode**: frac_cwnd grows by ``ai_ack_increase / frac_cwnd`` per non-CE segment acked (never in
      loss, only when cwnd-limited); slow start (tcp_slow_start) sets frac_cwnd = cwnd; cwnd follows
      ``max(2, ceil(frac_cwnd))`` one segment per ACK (down: ssthresh = cwnd). CWR: frac_cwnd -= alpha/2
      frac_cwnd; loss: halved. Pacing rate = mtu / srtt x max(floor(frac_cwnd), packets in flight), at least
      100 kbit/s, doubled while cwnd < ssthresh / 2.
    * **rate mode** below ``cwnd_transit`` = 4 packets once a CE has been seen (prague_cong_control): the pacing
      rate itself is the state. Additive increase of one MTU per virtual RTT (max(25 ms, srtt)) per virtual
      RTT's worth of packets; CWR: rate -= alpha/2 rate (at least 100 kbit/s); loss: rate halved; frac_cwnd
      follows as rate x srtt (the smoothed hsrtt, gain 1/128) / mtu. The pacing rate swings +-3 % (4/128) around
      it: up in the first half of each virtual RTT since the last alpha update, down in the second.
    * **RTT independence** after 4 rounds out of slow start: ai_ack_increase = (srtt / 25 ms)^2 below 25 ms;
      CWR at most once per 25 ms.
    * GSO bursts of max(1, rate x 2^-12 s) segments (prague_tso_segs, no tcp_min_tso_segs floor in 0.7).
    * The kernel's 2^20 ~ 10^6 approximation in rate/window conversions (RTT2SEC_SHIFT) is kept (``SEC``).
    * Not modelled: the MSS reduction below 1 Mbit/s (prague_valid_mtu: packets down to 150 bytes) -- every
      packet here is 1500 bytes; the classic-ECN fallback detection is off by default in 0.7's predecessor
      and absent here.
    """

    __slots__ = ("frac", "rate", "loss_rate", "alpha", "alpha_stamp", "cwr_stamp", "round", "next_seq",
                 "old_delivered", "old_ce", "saw_ce", "in_loss", "rate_mode", "hsrtt", "ai", "pacing", "tso")

    RTT_TARGET_NS = 25_000_000
    TRANSITION_ROUNDS = 4
    CWND_TRANSIT = 4
    G = 1.0 / 16
    MTU = 1500
    MIN_RATE = 12_500.0
    """bytes/s: 100 kbit/s."""
    SEC = (1 << 20) / 1e6
    """mul_u64_u64_shr(x, rtt_us << 3, 23): x * rtt in units of 2^20 us, not 10^6."""
    RATE_OFFSET = 4 / 128

    def __init__(self, cwnd: float, now: int = 0):
        self.frac = float(cwnd)
        self.rate = self.MIN_RATE
        self.loss_rate = 0.0
        self.alpha = 0.0
        self.alpha_stamp = now
        self.cwr_stamp = -(1 << 62)
        self.round = 0
        self.next_seq = 0
        self.old_delivered = 0
        self.old_ce = 0
        self.saw_ce = False
        self.in_loss = False
        self.rate_mode = False
        self.hsrtt = 0
        self.ai = 1.0
        self.pacing = 0.0
        self.tso = 1

    # -- conversions (srtt and times in ns, rates in bytes/s, windows in packets)

    def rtt_indep(self, cwnd: float, ssthresh: float) -> bool:
        return cwnd >= ssthresh and self.round >= self.TRANSITION_ROUNDS

    def vrtt(self, srtt: int) -> int:
        return max(self.RTT_TARGET_NS, srtt)

    def rate_to_frac(self, srtt: int) -> float:
        rtt = self.hsrtt or srtt
        return self.rate * rtt * 1e-9 / self.SEC / self.MTU

    def frac_to_rate(self, srtt: int) -> float:
        if not srtt:
            return 1e12
        return max(self.MTU * 1e9 / srtt * self.frac, self.MIN_RATE)

    def update_ai(self, srtt: int) -> None:
        if self.round < self.TRANSITION_ROUNDS or not srtt or srtt > 100_000_000 or srtt >= self.RTT_TARGET_NS:
            self.ai = 1.0
        else:
            x = srtt / self.RTT_TARGET_NS
            self.ai = x * x

    def snd_cwnd(self) -> int:
        return max(2, math.ceil(self.frac - 1e-9))

    # -- state changes

    def enter_cwr(self, now: int, cwnd: float, ssthresh: float, srtt: int) -> bool:
        indep = self.rtt_indep(cwnd, ssthresh)
        if indep and now - self.cwr_stamp < self.RTT_TARGET_NS:
            return False
        self.cwr_stamp = now
        if indep and self.rate_mode:
            self.rate = max(self.rate - self.rate * self.alpha / 2, self.MIN_RATE)
            self.frac = self.rate_to_frac(srtt)
        else:
            self.frac -= self.alpha * self.frac / 2
            self.rate = self.frac_to_rate(srtt)
        return True

    def enter_loss(self, cwnd: float, ssthresh: float, srtt: int) -> None:
        self.loss_rate = self.rate
        if self.rtt_indep(cwnd, ssthresh) and self.rate_mode:
            self.rate -= self.rate / 2
            self.frac = self.rate_to_frac(srtt)
        else:
            self.frac -= self.frac / 2
            self.rate = self.frac_to_rate(srtt)
        self.in_loss = True

    def update_pacing(self, now: int, cwnd: float, ssthresh: float, srtt: int, in_flight: int) -> None:
        """prague_update_pacing_rate: the pacing rate (bytes/s) and the GSO burst size."""
        if self.rtt_indep(cwnd, ssthresh) and self.rate_mode:
            offset = self.rate * self.RATE_OFFSET
            half = (now - self.alpha_stamp) >= self.vrtt(srtt) // 2
            rate = self.rate - offset if half else self.rate + offset
        else:
            inflight = max(int(self.frac), in_flight)
            rate = max(self.MTU * 1e9 / srtt * inflight, self.MIN_RATE) if srtt else 1e12
            self.rate = rate
        if cwnd < ssthresh / 2:
            rate *= 2
        self.pacing = rate
        self.tso = min(max(1, int(rate / self.MTU) >> 12), 44)
