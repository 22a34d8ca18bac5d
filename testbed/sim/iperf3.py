"""iperf3 3.17 ``-J`` output for simulated connections, shaped field for field like real FreeBSD 14.1 clients write it.

A connection is one iperf3 client process (``-P`` streams, one :class:`~l4stb.sim.tcp.TcpFlow` each).
The JSON has ``start`` (connected sockets, version, system_info, timestamp, cookie, tcp_mss_default,
buffer sizes, test_start), ``intervals`` (one per second: per stream ``socket, start, end, seconds,
bytes, bits_per_second, retransmits, snd_cwnd, snd_wnd, rtt, rttvar, pmtu, omitted, sender`` and a
``sum``) and ``end`` (per stream sender/receiver summaries with max_snd_cwnd, max_snd_wnd, max_rtt,
min_rtt, mean_rtt; sum_sent, sum_received, cpu_utilization_percent, sender_tcp_congestion,
receiver_tcp_congestion), as in shared/realdata/iperf3-freebsd-10mbps-20ms.

How the values are made:

* **bytes** are what the iperf3 process wrote to its socket. It writes whole 128 KiB blocks
  (``blksize`` 131072), a write completing once the socket buffer has room for it, so interval bytes
  are multiples of 131072 as in the real files. We take the socket buffer as
  ``max(32 KiB, 2 x cwnd)`` (FreeBSD's send-buffer auto-tuning follows cwnd): written(t) =
  floor((acked bytes + buffer) / blksize) x blksize. The receiver summary uses the bytes delivered
  in order, and the optional server JSON carries exact per-second received bytes.
* **snd_cwnd** is cwnd in bytes; **rtt**/**rttvar** the smoothed RTT and its variation in us (tcp_info
  units); **retransmits** the segments sent again in the interval; **pmtu** is -1 (FreeBSD's tcp_info
  has no PMTU); **snd_wnd** the receive window the sender last heard: a FreeBSD receiver's autoscaled buffer
  (:mod:`l4stb.sim.rcvwnd`); a Linux receiver's window is not modelled and is reported as 2 MiB.
* CPU figures are fixed small numbers (a simulator has no CPU load to report).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from l4stb.sim.tcp import MSS, NO_WND

LINUX_WND_BYTES = 2 * 1024 * 1024
"""snd_wnd reported for a Linux receiver, whose window the simulator does not model (it never limits)."""

BLKSIZE = 131072
VERSION = "iperf 3.17.1"
SNDBUF_MIN = 32768


@dataclass(frozen=True)
class Conn:
    """One iperf3 client process and what the JSON needs to know about it."""

    host: str
    system_name: str
    cc: str
    port: int
    local_ip: str
    server_ip: str
    epoch_s: int
    duration_s: int
    seed: int
    size: int = 0
    """iperf3 -n bytes (short flows), 0 for -t."""


def system_info(host: str) -> str:
    return f"FreeBSD {host} 14.1-RELEASE FreeBSD 14.1-RELEASE l4stb-sim GENERIC amd64"


def cookie(seed: int, port: int, side: str) -> str:
    h = hashlib.sha256(f"{seed}:{port}:{side}".encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "".join(alphabet[b % 32] for b in h[:36])


def _wnd(sample: tuple) -> int:
    """The snd_wnd iperf3 reports (bytes) at a sample: a TCP sender's 8th field is the window it heard (a FreeBSD
    receiver's only grows, so the last sample's is the maximum); :data:`LINUX_WND_BYTES` where none is modelled
    (a Linux receiver, or a UDP sender, whose samples have 7 fields)."""
    wnd = sample[7] if len(sample) > 7 else NO_WND
    return LINUX_WND_BYTES if wnd == NO_WND else wnd


def _stamp(epoch_s: int) -> dict:
    return {"time": time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime(epoch_s)), "timesecs": int(epoch_s)}


def _written(acked_segs: int, cwnd: float) -> int:
    buf = max(SNDBUF_MIN, int(2 * cwnd * MSS))
    return ((acked_segs * MSS + buf) // BLKSIZE) * BLKSIZE


def _local_port(seed: int, port: int, stream: int) -> int:
    return 49152 + (seed * 7919 + port * 131 + stream * 977) % 16000


def _test_start(conn, n_streams: int) -> dict:
    """iperf3's ``start.test_start`` block, the same in client and server output."""
    return {"protocol": "UDP" if conn.cc == "udp" else "TCP", "num_streams": n_streams, "blksize": BLKSIZE,
            "omit": 0, "duration": 0 if conn.size else conn.duration_s, "bytes": conn.size, "blocks": 0, "reverse": 0, "tos": 0,
            "target_bitrate": 0, "bidir": 0, "fqrate": 0, "interval": 1}


def client_json(conn: Conn, flows) -> dict:
    """The ``iperf3 -c ... -J`` document of one client process whose streams are ``flows``."""
    sockets = [5 + i for i in range(len(flows))]
    start_s = flows[0].start_ns / 1e9
    start = {
        "connected": [{"socket": s, "local_host": conn.local_ip, "local_port": _local_port(conn.seed, conn.port, i),
                       "remote_host": conn.server_ip, "remote_port": conn.port} for i, s in enumerate(sockets)],
        "version": VERSION,
        "system_info": system_info(conn.system_name),
        "timestamp": _stamp(conn.epoch_s + int(start_s)),
        "connecting_to": {"host": conn.server_ip, "port": conn.port},
        "cookie": cookie(conn.seed, conn.port, "c"),
        "tcp_mss_default": 1460,
        "target_bitrate": 0,
        "fq_rate": 0,
        "sock_bufsize": 0,
        "sndbuf_actual": SNDBUF_MIN,
        "rcvbuf_actual": 65536,
        "test_start": _test_start(conn, len(flows)),
    }
    n_int = min(len(f.samples) for f in flows) - 1
    # TCP: whole 128 KiB writes as the socket buffer frees up; UDP (iperf3 -u): one 1448-byte datagram each
    written = (lambda sent, _cwnd: sent * MSS) if conn.cc == "udp" else _written
    intervals = []
    for k in range(n_int):
        streams = []
        for s, f in zip(sockets, flows):
            t0, una0, rtx0, cw0 = f.samples[k][:4]
            t1, una1, rtx1, cw1, srtt, rttvar = f.samples[k + 1][:6]
            w0 = 0 if k == 0 else written(una0, cw0)
            w1 = written(una1, cw1)
            sec = (t1 - t0) / 1e9
            b = max(0, w1 - w0)
            streams.append({
                "socket": s, "start": round((t0 - f.start_ns) / 1e9, 6), "end": round((t1 - f.start_ns) / 1e9, 6),
                "seconds": sec, "bytes": b, "bits_per_second": b * 8 / sec if sec > 0 else 0.0,
                "retransmits": rtx1 - rtx0, "snd_cwnd": int(cw1 * MSS), "snd_wnd": _wnd(f.samples[k + 1]),
                "rtt": srtt // 1000, "rttvar": rttvar // 1000, "pmtu": -1, "omitted": False, "sender": True,
            })
        intervals.append({"streams": streams, "sum": _sum(streams, sender=True)})
    end_streams = []
    for s, f in zip(sockets, flows):
        t_end = f.samples[-1][0]
        sec = (t_end - f.start_ns) / 1e9
        sent = written(f.samples[-1][1], f.samples[-1][3])
        rcvd = f.samples[-1][6] * MSS
        mean_rtt = f.rtt_sum // f.rtt_n // 1000 if f.rtt_n else 0
        end_streams.append({
            "sender": {"socket": s, "start": 0, "end": sec, "seconds": sec, "bytes": sent,
                       "bits_per_second": sent * 8 / sec if sec > 0 else 0.0, "retransmits": f.retrans,
                       "max_snd_cwnd": int(f.max_cwnd * MSS), "max_snd_wnd": _wnd(f.samples[-1]),
                       "max_rtt": f.rtt_max // 1000, "min_rtt": (f.rtt_min // 1000) if f.rtt_n else 0,
                       "mean_rtt": mean_rtt, "sender": True},
            "receiver": {"socket": s, "start": 0, "end": sec, "seconds": sec, "bytes": rcvd,
                         "bits_per_second": rcvd * 8 / sec if sec > 0 else 0.0, "sender": True},
        })
    sum_sent = _sum([e["sender"] for e in end_streams], sender=True, end=True)
    sum_sent["retransmits"] = sum(e["sender"]["retransmits"] for e in end_streams)
    sum_received = _sum([e["receiver"] for e in end_streams], sender=True, end=True)
    sum_received.pop("retransmits", None)
    end = {
        "streams": end_streams,
        "sum_sent": sum_sent,
        "sum_received": sum_received,
        "cpu_utilization_percent": {"host_total": 0.5, "host_user": 0.05, "host_system": 0.45,
                                    "remote_total": 0.9, "remote_user": 0.03, "remote_system": 0.87},
        # iperf3 sets -C on the accepted socket too (iperf_server_api.c: setsockopt TCP_CONGESTION with
        # test->congestion from the client's parameters), so the receiving side runs the client's CC
        "sender_tcp_congestion": conn.cc,
        "receiver_tcp_congestion": conn.cc,
    }
    return {"start": start, "intervals": intervals, "end": end}


def server_json(conn: Conn, flows, server_name: str) -> dict:
    """The ``iperf3 -s -1 -J`` document of the server process listening on ``conn.port``."""
    sockets = [5 + i for i in range(len(flows))]
    start = {
        "connected": [{"socket": s, "local_host": conn.server_ip, "local_port": conn.port,
                       "remote_host": conn.local_ip, "remote_port": _local_port(conn.seed, conn.port, i)}
                      for i, s in enumerate(sockets)],
        "version": VERSION,
        "system_info": system_info(server_name),
        "sock_bufsize": 0,
        "sndbuf_actual": SNDBUF_MIN,
        "rcvbuf_actual": 65536,
        "timestamp": _stamp(conn.epoch_s + int(flows[0].start_ns / 1e9)),
        "accepted_connection": {"host": conn.local_ip, "port": _local_port(conn.seed, conn.port, 99)},
        "cookie": cookie(conn.seed, conn.port, "c"),
        "tcp_mss_default": 1460,
        "fq_rate": 0,
        "target_bitrate": 0,
        "test_start": _test_start(conn, len(flows)),
    }
    n_int = min(len(f.samples) for f in flows) - 1
    intervals = []
    for k in range(n_int):
        streams = []
        for s, f in zip(sockets, flows):
            t0, t1 = f.samples[k][0], f.samples[k + 1][0]
            b = (f.samples[k + 1][6] - f.samples[k][6]) * MSS
            sec = (t1 - t0) / 1e9
            streams.append({"socket": s, "start": round((t0 - f.start_ns) / 1e9, 6),
                            "end": round((t1 - f.start_ns) / 1e9, 6), "seconds": sec, "bytes": b,
                            "bits_per_second": b * 8 / sec if sec > 0 else 0.0, "omitted": False, "sender": False})
        intervals.append({"streams": streams, "sum": _sum(streams, sender=False)})
    end_streams = []
    for s, f in zip(sockets, flows):
        sec = (f.samples[-1][0] - f.start_ns) / 1e9
        rcvd = f.samples[-1][6] * MSS
        end_streams.append({
            "sender": {"socket": s, "start": 0, "end": sec, "seconds": sec, "bytes": rcvd,
                       "bits_per_second": rcvd * 8 / sec if sec > 0 else 0.0, "retransmits": f.retrans, "sender": False},
            "receiver": {"socket": s, "start": 0, "end": sec, "seconds": sec, "bytes": rcvd,
                         "bits_per_second": rcvd * 8 / sec if sec > 0 else 0.0, "sender": False},
        })
    end = {
        "streams": end_streams,
        "sum_sent": _sum([e["sender"] for e in end_streams], sender=False, end=True),
        "sum_received": _sum([e["receiver"] for e in end_streams], sender=False, end=True),
        "cpu_utilization_percent": {"host_total": 0.9, "host_user": 0.03, "host_system": 0.87,
                                    "remote_total": 0.5, "remote_user": 0.05, "remote_system": 0.45},
        # iperf3 sets -C on the accepted socket too (iperf_server_api.c: setsockopt TCP_CONGESTION with
        # test->congestion from the client's parameters), so the receiving side runs the client's CC
        "sender_tcp_congestion": conn.cc,
        "receiver_tcp_congestion": conn.cc,
    }
    return {"start": start, "intervals": intervals, "end": end}


def _sum(streams: list[dict], *, sender: bool, end: bool = False) -> dict:
    first = streams[0]
    total = sum(s["bytes"] for s in streams)
    sec = first["seconds"]
    out = {"start": first["start"], "end": first["end"], "seconds": sec, "bytes": total,
           "bits_per_second": total * 8 / sec if sec > 0 else 0.0}
    if "retransmits" in first:
        out["retransmits"] = sum(s.get("retransmits", 0) for s in streams)
    if not end:
        out["omitted"] = False
    out["sender"] = sender
    return out


def dumps(doc: dict) -> str:
    """Serialise like iperf3 (cJSON indents with tabs); keys stay in the order iperf3 writes them."""
    return json.dumps(doc, indent="\t") + "\n"
