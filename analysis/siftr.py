"""Read a FreeBSD SIFTR 1.3 log into one typed time series per TCP connection (cwnd, ssthresh, srtt, flight).

SIFTR (siftr(4), ``kldload siftr; sysctl net.inet.siftr.enabled=1``) writes one comma-separated line per
TCP packet that crosses the host's pfil hooks, framed by an ``enable_time_secs=...`` header and a
``disable_time_secs=...`` footer (tab-separated ``key=value`` pairs). The field order of a 1.3.x packet line
is the ``snprintf`` in ``siftr_process_pkt`` of FreeBSD's sys/netinet/siftr.c (MODVERSION 1.3.0, the
version FreeBSD 14.0 and 14.1 ship), 27 fields:

    direction (i|o), time (s.us), laddr, lport, faddr, fport, snd_ssthresh, snd_cwnd, t_flags2, snd_wnd,
    rcv_wnd, snd_scale, rcv_scale, conn_state, mss (t_maxseg), srtt, sack_enabled, t_flags, rto,
    snd_buf_hiwater, snd_buf_cc, rcv_buf_hiwater, rcv_buf_cc, sent_inflight_bytes, t_segqlen, flowid,
    flowtype

Units (siftr.c ``siftr_siftdata``): windows and thresholds in bytes; ``srtt = t_srtt * tick >>
TCP_RTT_SHIFT`` and ``rto = t_rxtcur * tick`` in microseconds, so srtt moves in steps of tick/32 (312.5 us
at kern.hz=100, 31.25 us at 1000: :func:`srtt_quantum_us` recovers it); ``sent_inflight_bytes = snd_max -
snd_una``. An ``i`` line is taken before tcp_input processes the packet, an ``o`` line in ip_output before
the segment it logs is counted in ``snd_max`` (so the flight on the line after an ACK tells what that ACK
acked, see :meth:`SiftrFlow.acked_bytes`). With TSO one ``o`` line can carry several segments: count bytes,
never lines. Older 1.2.x logs (FreeBSD 13: a hash column, srtt in ticks x 32) are refused with a message.

:func:`read_siftr` returns every connection; :func:`iperf3_flows` picks the iperf3 data connections
(skipping SSH on port 22 and iperf3's small control connection on the same port).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path

import numpy as np

from l4stb.errors import L4stbError

FIELDS_1_3 = (
    "direction", "time", "laddr", "lport", "faddr", "fport", "snd_ssthresh", "snd_cwnd", "t_flags2",
    "snd_wnd", "rcv_wnd", "snd_scale", "rcv_scale", "conn_state", "mss", "srtt", "sack_enabled", "t_flags",
    "rto", "snd_buf_hiwater", "snd_buf_cc", "rcv_buf_hiwater", "rcv_buf_cc", "sent_inflight_bytes",
    "t_segqlen", "flowid", "flowtype",
)
"""The 27 fields of a SIFTR 1.3 line, in order (sys/netinet/siftr.c, siftr_process_pkt)."""

TF_FASTRECOVERY = 0x00100000
TF_CONGRECOVERY = 0x20000000
"""t_flags bits (sys/netinet/tcp_var.h): loss (fast) recovery and ECN congestion recovery."""
SSH_PORT = 22
IPERF3_PORTS = range(5101, 5300)
"""iperf3 server ports the public FreeBSD L4S experiments use (5101, 5102, ...) and l4stb's base port region."""


@dataclass
class SiftrFlow:
    """One TCP connection's records, in log order (numpy arrays of equal length)."""

    laddr: str
    lport: int
    faddr: str
    fport: int
    t_s: np.ndarray
    """Seconds since the log's enable time."""
    inbound: np.ndarray
    """True for an ``i`` line (a packet received: on a sender, an ACK)."""
    cwnd_bytes: np.ndarray
    ssthresh_bytes: np.ndarray
    srtt_us: np.ndarray
    inflight_bytes: np.ndarray
    t_flags: np.ndarray
    """tcpcb t_flags: TF_FASTRECOVERY (0x00100000) in loss recovery, TF_CONGRECOVERY (0x20000000) in ECN
    congestion recovery (sys/netinet/tcp_var.h)."""
    mss: int
    """t_maxseg of the connection's last record (bytes; payload per segment is mss - 12 with timestamps)."""

    @property
    def records(self) -> int:
        return len(self.t_s)

    @property
    def outbound_records(self) -> int:
        return int((~self.inbound).sum())

    @property
    def name(self) -> str:
        return f"{self.laddr}:{self.lport}->{self.faddr}:{self.fport}"

    def acked_bytes(self) -> np.ndarray:
        """Bytes newly acknowledged by each record (non-zero only on ``i`` lines).

        An ``i`` line shows the flight before its ACK is processed; the next line (either direction) shows it
        after, before any segment sent in reply is counted, so the drop between the two is what the ACK
        acknowledged. snd_max never moves back (a retransmission does not raise it), so this counts each
        byte once: goodput, not sent bytes."""
        out = np.zeros(len(self.t_s), dtype=np.int64)
        if len(self.t_s) < 2:
            return out
        drop = self.inflight_bytes[:-1] - self.inflight_bytes[1:]
        mask = self.inbound[:-1] & (drop > 0)
        out[:-1][mask] = drop[mask]
        return out

    def goodput_bps(self, t0_s: float | None = None, t1_s: float | None = None) -> float:
        """Acknowledged bits per second between ``t0_s`` and ``t1_s`` (default: the flow's first and last record)."""
        t0 = self.t_s[0] if t0_s is None else t0_s
        t1 = self.t_s[-1] if t1_s is None else t1_s
        if t1 <= t0:
            return float("nan")
        sel = (self.t_s >= t0) & (self.t_s < t1)
        return float(self.acked_bytes()[sel].sum()) * 8 / (t1 - t0)


@dataclass
class SiftrLog:
    """A parsed SIFTR log: header facts, every TCP connection, and what was skipped."""

    path: str
    version: str
    """``siftrver`` of the header; "" when the log has no header line."""
    sysver: int
    """``sysver`` (__FreeBSD_version) of the header; 0 when the log has no header line."""
    enable_time_s: float
    """The header's enable time; without a header, the first record's time."""
    flows: list[SiftrFlow] = field(default_factory=list)
    skipped_lines: int = 0
    """Lines that were neither the header, the footer nor a well-formed packet line (a torn last line)."""
    footer: dict[str, str] = field(default_factory=dict)
    """The ``disable_time_secs=...`` line's key=value pairs (empty when siftr was not disabled cleanly)."""


def _bad(path, what: str) -> L4stbError:
    return L4stbError(f"{path}: {what}. A SIFTR 1.3 log starts with a line like `enable_time_secs=... "
                      "siftrver=1.3.0 sysname=FreeBSD ...` and has 27 comma-separated fields per packet line "
                      "(FreeBSD 14's siftr(4)); point l4stb at the .siftr.log file siftr wrote on the sender.")


def _parse_kv(line: str) -> dict[str, str]:
    out = {}
    for item in line.strip().split("\t"):
        key, sep, value = item.partition("=")
        if sep:
            out[key] = value
    return out


def read_siftr(path: str | Path) -> SiftrLog:
    """Parse a SIFTR 1.3 log file; every connection in it, in order of first appearance."""
    p = Path(path)
    try:
        fh = p.open("r", encoding="ascii", errors="replace", newline="")
    except FileNotFoundError:
        raise L4stbError(f"{p}: no such SIFTR log; check the path (siftr writes net.inet.siftr.logfile, "
                         "/var/log/siftr.log by default).") from None
    with fh:
        head = fh.readline()
        if head.startswith("enable_time_secs="):
            hdr = _parse_kv(head)
            version = hdr.get("siftrver", "")
            if not version.startswith("1.3."):
                raise _bad(p, f"siftrver={version or '(missing)'}: only the 1.3 line format is read here "
                              "(1.2.x, FreeBSD 13 and older, has a hash column and srtt in ticks)")
            try:
                enable = int(hdr["enable_time_secs"]) + int(hdr.get("enable_time_usecs", "0")) / 1e6
                sysver = int(hdr.get("sysver", "0"))
            except (KeyError, ValueError):
                raise _bad(p, "the header's enable_time_secs/usecs or sysver is not a number") from None
            pending = []
        else:
            # a log whose header line is missing (some public logs start mid-stream): accepted when its first
            # line is a 1.3 packet line; times count from that line, version and sysver are unknown
            parts = head.rstrip("\r\n").split(",")
            try:
                enable = float(parts[1]) if len(parts) == len(FIELDS_1_3) and parts[0] in ("i", "o") else None
            except ValueError:
                enable = None
            if enable is None:
                raise _bad(p, "the first line is not a SIFTR header")
            version, sysver = "", 0
            pending = [head]
        cols: dict[tuple, list] = {}
        order: list[tuple] = []
        skipped = 0
        footer: dict[str, str] = {}
        n = len(FIELDS_1_3)
        for line in itertools.chain(pending, fh):
            if line.startswith("disable_time_secs="):
                footer = _parse_kv(line)
                continue
            parts = line.rstrip("\r\n").split(",")
            if len(parts) != n or parts[0] not in ("i", "o") or not line.endswith("\n"):
                skipped += 1
                continue
            try:
                key = (parts[2], int(parts[3]), parts[4], int(parts[5]))
                row = (float(parts[1]), parts[0] == "i", int(parts[7]), int(parts[6]), int(parts[15]),
                       int(parts[23]), int(parts[14]), int(parts[17]))
            except ValueError:
                skipped += 1
                continue
            rows = cols.get(key)
            if rows is None:
                rows = cols[key] = []
                order.append(key)
            rows.append(row)
    flows = []
    for key in order:
        rows = cols[key]
        arr = np.array([r[:1] for r in rows], dtype=np.float64)[:, 0]
        flows.append(SiftrFlow(
            laddr=key[0], lport=key[1], faddr=key[2], fport=key[3],
            t_s=arr - enable,
            inbound=np.array([r[1] for r in rows], dtype=bool),
            cwnd_bytes=np.array([r[2] for r in rows], dtype=np.int64),
            ssthresh_bytes=np.array([r[3] for r in rows], dtype=np.int64),
            srtt_us=np.array([r[4] for r in rows], dtype=np.int64),
            inflight_bytes=np.array([r[5] for r in rows], dtype=np.int64),
            t_flags=np.array([r[7] for r in rows], dtype=np.int64),
            mss=rows[-1][6],
        ))
    return SiftrLog(path=str(p), version=version, sysver=sysver, enable_time_s=enable, flows=flows,
                    skipped_lines=skipped, footer=footer)


def server_port(flow: SiftrFlow, ports=IPERF3_PORTS) -> int | None:
    """The iperf3 server port of a connection, seen from either end (sender: foreign port; server: local)."""
    if SSH_PORT in (flow.lport, flow.fport):
        return None
    if flow.fport in ports:
        return flow.fport
    return flow.lport if flow.lport in ports else None


def iperf3_flows(log: SiftrLog, ports=IPERF3_PORTS) -> list[SiftrFlow]:
    """The iperf3 data connections of a log, one per server port, in order of first record.

    SSH (port 22 at either end) is skipped. iperf3 opens a control connection and a data connection to the
    same server port; the control one carries a few hundred bytes, so for each port the connection with the
    most records is the data stream (iperf3 ``-P 1``). On a sender's log the state is the sender's; on the
    server's log (local port = the server port) it is the receiving end's, whose cwnd means little."""
    best: dict[int, SiftrFlow] = {}
    for f in log.flows:
        port = server_port(f, ports)
        if port is None:
            continue
        cur = best.get(port)
        if cur is None or f.records > cur.records:
            best[port] = f
    return sorted(best.values(), key=lambda f: f.t_s[0])


def srtt_quantum_us(flow: SiftrFlow) -> float:
    """The step srtt moves in (tick / 32 us): 312.5 at kern.hz=100, 31.25 at kern.hz=1000.

    siftr prints ``t_srtt * tick >> 5`` truncated to whole microseconds, so the quantum is recovered from
    the greatest common divisor of 32 x srtt values rounded to the nearest tick multiple."""
    vals = np.unique(flow.srtt_us[flow.srtt_us > 0])
    if len(vals) == 0:
        return float("nan")
    for tick_us in (10_000, 4_000, 1_000):  # kern.hz 100, 250, 1000
        q = tick_us / 32
        if np.all(np.abs(vals - np.floor(np.round(vals / q) * q)) <= 1):
            g = 0
            for v in np.round(vals / q).astype(np.int64):
                g = gcd(g, int(v))
            if g == 1:
                return q
    return 1.0
