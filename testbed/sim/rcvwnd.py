"""The receive window a simulated FreeBSD 14 receiver advertises: its socket buffer and the buffer's autoscaling.

Why it matters: a real sender may have at most ``min(cwnd, snd_wnd)`` bytes beyond ``snd_una``
(FreeBSD tcp_output.c: ``sendwin = min(tp->snd_wnd, tp->snd_cwnd)``), and FreeBSD's CC modules grow cwnd only
while ``snd_cwnd <= snd_wnd`` (tcp_input.c cc_ack_received sets ``CCF_CWND_LIMITED`` so; cc_newreno.c and
cc_cubic.c ack_received grow only with that flag). Without a receive window a sender whose window runs away (a
stale PRR ``recover_fs``, issue 25) is held by nothing; with it, by the window a FreeBSD receiver advertises.

What a FreeBSD 14 receiver advertises for an iperf3 stream (the sources were read in ilnp/ilnp-freebsd14,
14.0-STABLE, and freebsd/freebsd-src):

* the buffer starts at ``net.inet.tcp.recvspace`` = 65536 (tcp_input.c ``VNET_DEFINE(int, tcp_recvspace) =
  1024*64``): iperf3 sets ``SO_RCVBUF`` only when ``-w`` is given (esnet/iperf src/iperf_tcp.c,
  ``if ((opt = test->settings->socket_bufsize))``), and l4stb's plans pass no ``-w``, so the buffer keeps
  ``SB_AUTOSIZE``;
* tcp_mss (tcp_input.c) rounds it up to whole ``t_maxseg`` (1460 on a 1500-byte MTU: tcp_mss_update's
  ``maxmtu - sizeof(struct tcpiphdr)``, options not counted): 45 x 1460 = 65700 bytes;
* the window scale is the smallest with ``TCP_MAXWIN << wscale >= sb_max`` (tcp_syncache.c), sb_max being
  ``kern.ipc.maxsockbuf`` = 2 MiB (sys/sys/sockbuf.h ``SB_MAX``): 6; tcp_output.c rounds the window up to
  whole units of 64 bytes ("Avoid shrinking window with window scaling", ``roundup2``);
* the application (iperf3) reads at once at these rates, so the window is the whole buffer (sbspace);
* tcp_autorcvbuf (tcp_input.c), called on the header-prediction path (an in-order segment, nothing in the
  reassembly queue): once more than ``(t_srtt >> TCP_RTT_SHIFT) / 2`` ticks have passed since
  ``rfbuf_ts``, if more than 3/8 of the buffer (``sb_hiwat / 2 / 4 * 3``) arrived meanwhile and the buffer
  is below ``net.inet.tcp.recvbuf_max`` = 2 MiB (``VNET_DEFINE(int, tcp_autorcvbuf_max) = 2*1024*1024``),
  the buffer grows by half (14 has no ``recvbuf_inc``); either way the count starts again; otherwise the
  segment's bytes are added up. tcp_output.c sets ``rfbuf_ts`` to ``tcp_ts_getticks()`` (milliseconds) when
  it sends a segment and ``rfbuf_ts`` is 0 (that is, at the receiver's next ACK);
* the receiver's ``t_srtt`` is the handshake's one sample: a bulk receiver's segments never ack new data, so
  tcp_do_segment reaches tcp_xmit_timer only for the ACK of its SYN-ACK, ``TCP_TS_TO_TICKS(t) + 1`` ticks
  (``t * hz / 1000``: the host's kern.hz, which l4stb's plans set to the scenario's ``aqm.kern_hz``);
  ``t_srtt >> TCP_RTT_SHIFT`` is that sample. That ACK crosses the bottleneck, so the sample holds whatever
  queue the flow met when it started (:meth:`l4stb.sim.engine.Engine.queue_wait_ns`). The public SIFTR traces
  show what this does: their senders' first srtt was 150-810 ms on a 10 ms path, and their receivers' windows
  climbed 65728, 98560, 147840, 221760, 332608, 748416 bytes, this ladder exactly (docs/freebsd-siftr.md).

The sender learns a new window from the first ACK sent after it (:meth:`FreeBsdRcvWnd.visible_at`); the window
never shrinks here (the buffer only grows and is always drained).

Linux receivers (the server of a Linux-stack flow) get no window here: Linux's buffer starts at
``tcp_rmem[1]`` = 131072 and grows to ``tcp_rmem[2]`` = 6 MiB (net/ipv4/tcp.c tcp_init), tcp_grow_window
opens the advertised window by 2 MSS per in-order segment (faster than slow start's 1 per segment), and
tcp_rcv_space_adjust (net/ipv4/tcp_input.c, dynamic right-sizing) resizes the buffer to twice what the
application copied in a round trip, so the window stays ahead of cwnd. Leaving it out keeps every Linux-stack
result as it was (the Linux cases of the golden corpus and ``l4stb calibrate --matrix quick`` are unchanged).
"""

from __future__ import annotations

RECVSPACE = 65536
"""net.inet.tcp.recvspace (tcp_input.c)."""
AUTORCVBUF_MAX = 2 * 1024 * 1024
"""net.inet.tcp.recvbuf_max (tcp_input.c)."""
T_MAXSEG = 1460
"""tcp_mss_update: MTU 1500 - sizeof(struct tcpiphdr); tcp_mss rounds the buffers to it."""
RCV_SCALE = 6
"""The receive window scale a FreeBSD host requests with kern.ipc.maxsockbuf = 2 MiB (tcp_syncache.c)."""
MS_NS = 1_000_000
"""tcp_ts_getticks counts milliseconds whatever kern.hz is."""


def advertised(hiwat: int) -> int:
    """The window in bytes a FreeBSD receiver with an empty buffer of ``hiwat`` bytes advertises (tcp_output.c:
    sbspace rounded up to the window scale's unit)."""
    unit = 1 << RCV_SCALE
    return -(-hiwat // unit) * unit


class FreeBsdRcvWnd:
    """One FreeBSD receiver's buffer size and tcp_autorcvbuf state; ``grown`` lists (rcv_nxt, window bytes) of
    each growth, in order, for the sender to read from the ACKs that carry it."""

    __slots__ = ("hiwat", "rfbuf_ts", "rfbuf_cnt", "handshake_rtt_ns", "hz", "half_srtt_ticks", "grown")

    def __init__(self, handshake_rtt_ns: int, hz: int = 1000):
        """``handshake_rtt_ns``: the handshake's round trip over the empty path (:meth:`set_srtt` adds what the
        queue held when the flow started); ``hz``: the receiver's kern.hz."""
        self.hiwat = -(-RECVSPACE // T_MAXSEG) * T_MAXSEG  # tcp_mss: roundup(sb_hiwat, mss)
        self.rfbuf_ts = 0
        self.rfbuf_cnt = 0
        self.handshake_rtt_ns = handshake_rtt_ns
        self.hz = hz
        self.half_srtt_ticks = 0
        self.set_srtt(handshake_rtt_ns)
        self.grown: list = []

    def set_srtt(self, rtt_ns: int) -> None:
        """The receiver's one RTT sample, the ACK of its SYN-ACK: tcp_xmit_timer(tp, TCP_TS_TO_TICKS(t) + 1)
        makes t_srtt that many ticks (<< TCP_RTT_SHIFT); tcp_autorcvbuf waits half of it."""
        self.half_srtt_ticks = ((rtt_ns // MS_NS) * self.hz // 1000 + 1) // 2

    def window(self) -> int:
        """The window the receiver advertises now, in bytes."""
        return advertised(self.hiwat)

    def on_in_order(self, now: int, nbytes: int, rcv_nxt: int) -> None:
        """tcp_autorcvbuf for an in-order segment that found the reassembly queue empty (``rcv_nxt`` after it)."""
        if self.rfbuf_ts and (now // MS_NS - self.rfbuf_ts) * self.hz // 1000 > self.half_srtt_ticks:
            hiwat = self.hiwat
            if self.rfbuf_cnt > hiwat // 2 // 4 * 3 and hiwat < AUTORCVBUF_MAX:
                self.hiwat = min(hiwat + hiwat // 2, AUTORCVBUF_MAX)
                self.grown.append((rcv_nxt, advertised(self.hiwat)))
            self.rfbuf_ts = 0
            self.rfbuf_cnt = 0
        else:
            self.rfbuf_cnt += nbytes

    def on_ack_sent(self, now: int) -> None:
        """tcp_output.c: the receive-buffer autosizing timestamp, set by the first segment sent while it is 0."""
        if not self.rfbuf_ts:
            self.rfbuf_ts = now // MS_NS
