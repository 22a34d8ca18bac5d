"""A rate-based UDP Prague sender (after L4STeam/udp_prague's prague_cc) and its per-packet-ACK receiver.

The FreeBSD testbed runs ``udp_prague_sender`` for ``cc: prague`` (FreeBSD has no TCP Prague). This
model keeps what matters to the bottleneck: a paced, ECT(1), rate-controlled flow with a
Prague/DCTCP response, fed back per packet (like the RFC 8888-style feedback of udp_prague):

* the receiver ACKs every packet immediately with the count of packets and CE marks received;
* the sender paces at ``rate``; it estimates the CE fraction per round trip in an EWMA ``alpha``
  (g = 1/16, starting at 1); once per round trip with CE it multiplies the rate by (1 - alpha/2);
  once per round trip with loss it halves the rate; otherwise it adds one packet per virtual round
  trip of max(srtt, 25 ms) (RTT independence) -- in slow start it doubles per round trip until the
  first CE or loss;
* the rate stays within [2 packets per srtt, the host's access-link rate] (the NIC cannot send faster;
  packets leave through the host's NIC FIFO like every other packet).

It speaks the engine's flow interface (``start``, ``on_timer``, ``on_ack``, ``on_data``, ``on_delack``,
``sample``) and the counters the iperf3 writer reads, so runner and JSON code treat it like a TCP flow.
Select it with ``simulate_repeat(..., prague_transport="udp")``.
"""

from __future__ import annotations

from heapq import heappush

from l4stb.sim.datagram import DatagramSender
from l4stb.sim.packet import CE, ECT1
from l4stb.sim.tcp import EV_RTO, MSS, PKT_BYTES

G = 1.0 / 16
VIRTUAL_RTT_NS = 25_000_000
INIT_RATE_BPS = 1_000_000


class UdpPragueFlow(DatagramSender):
    __slots__ = ("fid", "start_ns", "end_ns", "sim", "access", "rate", "max_rate", "alpha", "slow_start",
                 "seq", "acked", "ce_acked", "round_end", "round_pkts", "round_ce", "round_lost", "last_cut",
                 "srtt", "rttvar", "rtt_min", "rtt_max", "rtt_sum", "rtt_n", "rcv_nxt", "rcv_ce", "high_rcv",
                 "lost", "retrans", "max_cwnd", "samples", "interval_ns", "cwnd", "ce_received", "extra_ns",
                 "size_segs", "done_ns")

    def __init__(self, fid: int, start_ns: int, end_ns: int, sim, access, *, extra_delay_ns: int = 0):
        self._init_sender(fid, start_ns, end_ns, sim, access, extra_delay_ns)
        self.rate = float(INIT_RATE_BPS)
        self.max_rate = float(access.rate_bps)
        self.alpha = 1.0
        self.slow_start = True
        self.acked = 0
        self.round_end = 0
        self.round_pkts = 0
        self.round_ce = 0
        self.round_lost = 0
        self.last_cut = -(1 << 62)
        self.rcv_ce = 0
        self.high_rcv = -1
        self.lost = 0
        self.cwnd = 2.0
        self.max_cwnd = 2.0

    # ---- sender
    def on_timer(self, now: int) -> None:
        if now >= self.end_ns:
            return
        self.emit(now, ECT1)
        gap = int(PKT_BYTES * 8e9 / self.rate)
        heappush(self.sim.heap, (now + gap, next(self.sim.counter), EV_RTO, self))

    def on_ack(self, now: int, cum: int, sack: int, ce: int, ts_echo: int) -> None:
        r = now - ts_echo
        if r > 0:
            if not self.srtt:
                self.srtt, self.rttvar = r, r >> 1
            else:
                d = self.srtt - r
                self.rttvar += ((d if d > 0 else -d) - self.rttvar) >> 2
                self.srtt += (r - self.srtt) >> 3
            self.rtt_min = min(self.rtt_min, r)
            self.rtt_max = max(self.rtt_max, r)
            self.rtt_sum += r
            self.rtt_n += 1
        newly = cum - self.acked
        if newly <= 0:
            return
        self.acked = cum
        self.ce_acked += ce
        self.round_pkts += newly
        self.round_ce += ce
        lost = sack  # the receiver reports cumulative losses in the sack slot
        new_loss = lost - self.round_lost if lost > self.round_lost else 0
        srtt = self.srtt or 10_000_000
        if ce and now - self.last_cut >= srtt:
            self.slow_start = False
            self.rate *= 1 - self.alpha / 2
            self.last_cut = now
        elif new_loss and now - self.last_cut >= srtt:
            self.slow_start = False
            self.rate *= 0.5
            self.last_cut = now
        elif self.slow_start:
            self.rate += newly * PKT_BYTES * 8e9 / srtt
        else:
            vrtt = srtt if srtt > VIRTUAL_RTT_NS else VIRTUAL_RTT_NS
            # +1 packet per virtual RTT, spread over the packets of one srtt
            pkts_per_rtt = max(1.0, self.rate * srtt / 8e9 / PKT_BYTES)
            self.rate += newly / pkts_per_rtt * PKT_BYTES * 8e9 / vrtt * (srtt / vrtt)
        self.round_lost = lost
        if now >= self.round_end:
            f = self.round_ce / self.round_pkts if self.round_pkts else 0.0
            self.alpha += G * (f - self.alpha)
            self.round_pkts = self.round_ce = 0
            self.round_end = now + srtt
        lo = 2 * PKT_BYTES * 8e9 / srtt
        self.rate = min(max(self.rate, lo), self.max_rate)
        self.cwnd = self.rate * srtt / 8e9 / MSS
        self.max_cwnd = max(self.max_cwnd, self.cwnd)

    # ---- receiver
    def on_data(self, now: int, pkt: list) -> None:
        seq = pkt[4]
        self.rcv_nxt += 1
        if pkt[2] == CE:
            self.rcv_ce += 1
            self.ce_received += 1
        if seq > self.high_rcv:
            self.high_rcv = seq
        lost = self.high_rcv + 1 - self.rcv_nxt
        ce, self.rcv_ce = self.rcv_ce, 0
        sim = self.sim
        sim.acks.append((now + sim.ack_delay_ns[self.fid], self, self.rcv_nxt, lost, ce, pkt[5]))

    def sample(self, now: int) -> None:
        self.record(now, (now, self.acked, 0, self.cwnd, self.srtt, self.rttvar, self.rcv_nxt))
