"""The FreeBSD receiver's advertised window (l4stb.sim.rcvwnd) and what it does to the sender, each against the
FreeBSD 14 source named in the docstring."""

from __future__ import annotations


import pytest
from sim_fakes import FakeSim

from l4stb.sim.link import AccessLink
from l4stb.sim.rcvwnd import AUTORCVBUF_MAX, FreeBsdRcvWnd
from l4stb.sim.tcp import MSS, NO_WND, TcpFlow




def flow(cc: str, stack: str = "freebsd") -> TcpFlow:
    return TcpFlow(0, cc, True, 0, 10**12, FakeSim(), AccessLink("c", 10**9, 50), stack=stack,
                   handshake_rtt_ns=20_000_000)


def test_a_freebsd_receiver_advertises_recvspace_rounded_to_whole_maxseg_and_the_scale_unit():
    """tcp_input.c: recvspace 65536; tcp_mss rounds it up to 45 x 1460 = 65700; tcp_output.c rounds the window
    up to the wscale-6 unit of 64 bytes: 65728, which holds 45 whole 1448-byte segments."""
    w = FreeBsdRcvWnd(20_000_000)
    assert w.hiwat == 65700
    assert w.window() == 65728
    f = flow("newreno")
    assert (f.snd_wnd, f.wnd_segs) == (65728, 45)
    assert flow("cubic", "linux").snd_wnd == NO_WND


def _deliver(w: FreeBsdRcvWnd, rate_segs_per_ms: int, ms: int, t0_ms: int = 1) -> int:
    """In-order segments at a steady rate, an ACK every second one (tcp_output.c sets rfbuf_ts at each)."""
    rcv = 0
    for t in range(t0_ms, t0_ms + ms):
        for k in range(rate_segs_per_ms):
            rcv += 1
            now = t * 1_000_000 + k * 1_000_000 // rate_segs_per_ms
            w.on_in_order(now, MSS, rcv)
            if rcv % 2 == 0:
                w.on_ack_sent(now)
    return rcv


def test_the_buffer_grows_by_half_when_three_eighths_of_it_arrive_within_half_an_srtt():
    """tcp_autorcvbuf: with a 20 ms handshake (srtt 21 ticks, half 10), more than 3/8 x 65700 = 24636 bytes in
    10 ms is 1.97 Mbyte/s. 3 segments per ms bring 33 x 1448 = 47784 bytes per 11-tick period: above 3/8 of
    65700 and of 98550, so it grows by half twice (98550, 147825), not above 3/8 x 147825 = 55434: it stops
    there, far below recvbuf_max (the buffer follows the rate, not the other way round)."""
    w = FreeBsdRcvWnd(20_000_000)
    _deliver(w, 3, 200)
    sizes = [65700]
    for _, wnd in w.grown:
        sizes.append(wnd)
    assert w.grown[0][1] == 98560  # 65700 + 32850 = 98550, rounded up to 64
    assert all(b > a for a, b in zip(sizes, sizes[1:]))
    assert w.hiwat == 147825 < AUTORCVBUF_MAX
    _deliver(w, 60, 300, t0_ms=201)  # twenty times faster (660 segments per period): on up to the cap
    assert w.hiwat == AUTORCVBUF_MAX


def test_the_buffer_stays_at_recvspace_when_the_stream_is_slower_than_three_eighths_per_half_srtt():
    """One segment per ms (1448 kbyte/s, 11.6 Mbit/s) brings 11 x 1448 = 15928 bytes per 11-tick period, below
    24636: never grows. This is why the 8 and 10 Mbit/s cells' receivers keep 45 segments."""
    w = FreeBsdRcvWnd(20_000_000)
    _deliver(w, 1, 2000)
    assert w.grown == [] and w.window() == 65728


def test_new_data_stops_at_the_advertised_window_whatever_cwnd_says():
    """tcp_output.c: sendwin = min(snd_wnd, snd_cwnd); a cwnd of 100 segments sends 45."""
    f = flow("newreno")
    f.cwnd = 100.0
    f.send(0)
    assert f.snd_nxt - f.snd_una == 45


def test_a_freebsd_cc_does_not_grow_cwnd_above_the_window():
    """tcp_input.c cc_ack_received: CCF_CWND_LIMITED only while snd_cwnd <= snd_wnd; newreno_ack_received grows
    only with it. cwnd 46 > 45.4 segments: an ACK leaves it; cwnd 45 grows (slow start, +2)."""
    f = flow("newreno")
    f.cwnd = 46.0
    f.snd_nxt = f.high_tx = 45
    f.on_ack(1_000_000, 2, -1, 0, 0)
    assert f.cwnd == 46.0
    f.cwnd = 45.0
    f.on_ack(2_000_000, 4, -1, 0, 0)
    assert f.cwnd == 47.0


def test_the_sender_hears_a_grown_window_from_the_first_ack_sent_after_it():
    """The window rides on ACKs: one with cum below the growth point still carries the old window."""
    f = flow("newreno")
    f.rwnd.grown.append((10, 98560))
    f.snd_nxt = f.high_tx = 20
    f.on_ack(1_000_000, 9, -1, 0, 0)
    assert f.snd_wnd == 65728
    f.on_ack(2_000_000, 10, -1, 0, 0)
    assert (f.snd_wnd, f.wnd_segs) == (98560, 68)
    assert f.snd_wnd_mss == pytest.approx(98560 / MSS)


def test_the_receivers_rtt_sample_holds_the_queue_the_handshake_met_and_counts_in_kern_hz_ticks():
    """tcp_xmit_timer(tp, TCP_TS_TO_TICKS(t) + 1) for the ACK of the SYN-ACK, which waits behind the
    bottleneck's backlog: a 20 ms path and 300 ms of queue give 320 ms; at kern.hz = 100 that is 32 + 1 ticks,
    and tcp_autorcvbuf waits more than 16 of them (160 ms) per period."""
    sim = FakeSim()
    sim.queue_wait_ns = lambda: 300_000_000
    f = TcpFlow(0, "cubic", True, 0, 10**12, sim, AccessLink("c", 10**9, 50), stack="freebsd",
                handshake_rtt_ns=20_000_000, kern_hz=100)
    assert f.rwnd.half_srtt_ticks == 1  # (2 + 1) // 2 before the flow starts
    f.start(0)
    assert f.rwnd.half_srtt_ticks == 16
    w = f.rwnd
    w.on_ack_sent(1_000_000)  # rfbuf_ts = 1 ms
    w.on_in_order(160_000_000, 30_000, 1)  # 15.9 ticks later: still counting
    assert w.rfbuf_cnt == 30_000 and not w.grown
    w.on_in_order(171_000_000, MSS, 2)  # 17 ticks: 30000 > 3/8 x 65700 = 24636 -> grows
    assert w.grown == [(2, 98560)] and w.rfbuf_cnt == 0
