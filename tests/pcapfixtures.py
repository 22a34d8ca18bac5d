"""A tiny classic-pcap writer and IPv4/TCP/UDP frame builder for the capture tests and the capture bench."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

MAGIC_US, MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D
ECT1, ECT0, CE, NOT_ECT = 1, 2, 3, 0
ACK, PSH = 0x10, 0x08


def frame(src: str, dst: str, *, proto: str = "tcp", sport: int = 40000, dport: int = 5201, ip_id: int = 1,
          ecn: int = ECT1, seq: int = 0, payload: int = 1460, flags: int = ACK | PSH, vlan: bool = False) -> bytes:
    """An Ethernet frame carrying one IPv4 TCP or UDP packet with ``payload`` zero bytes of data."""
    if proto == "tcp":
        l4 = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0)
        pnum = 6
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8 + payload, 0)
        pnum = 17
    ip_len = 20 + len(l4) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, ecn, ip_len, ip_id & 0xFFFF, 0x4000, 64, pnum, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    eth = b"\x02" * 6 + b"\x04" * 6 + (b"\x81\x00\x00\x01" if vlan else b"") + b"\x08\x00"
    return eth + ip + l4 + bytes(payload)


def write_pcap(path: Path, records: list[tuple[int, bytes]], *, nano: bool = False, big_endian: bool = False,
               snaplen: int = 96, linktype: int = 1, cut_tail: int = 0) -> Path:
    """``records`` = [(timestamp ns since the epoch, frame)] as tcpdump -w -s snaplen writes them; ``cut_tail``
    bytes are removed from the end of the file (a capture killed mid-write)."""
    o = ">" if big_endian else "<"
    out = [struct.pack(o + "IHHiIII", MAGIC_NS if nano else MAGIC_US, 2, 4, 0, 0, snaplen, linktype)]
    for ts, fr in records:
        cap = fr[:snaplen]
        frac = ts % 1_000_000_000 if nano else (ts % 1_000_000_000) // 1000
        out.append(struct.pack(o + "IIII", ts // 1_000_000_000, frac, len(cap), len(fr)) + cap)
    data = b"".join(out)
    if cut_tail:
        data = data[:-cut_tail]
    Path(path).write_bytes(data)
    return Path(path)
