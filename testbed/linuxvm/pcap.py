"""Read a classic pcap file (tcpdump -w) into per-packet IPv4/TCP/UDP header columns, in pure Python and numpy.

Contract (what the capture reader of :mod:`l4stb.linuxvm.capture_log` relies on):

* **File format**: classic libpcap only (not pcapng: tcpdump writes classic pcap unless told otherwise). Both
  timestamp precisions -- magic ``0xa1b2c3d4`` (microseconds, tcpdump's default) and ``0xa1b23c4d``
  (nanoseconds, ``--time-stamp-precision=nano``) -- in either byte order. Timestamps become integer nanoseconds
  since the Unix epoch. The link layer's FCS bits in the header's link-type word are masked off.
* **Link types**: ``EN10MB`` (1, Ethernet, one 802.1Q tag allowed), ``RAW`` (101) and ``IPV4`` (228), and Linux
  cooked captures ``LINUX_SLL`` (113) and ``LINUX_SLL2`` (276, what ``tcpdump -i any`` writes). Anything else is
  refused with a clear error.
* **Packets kept**: IPv4 packets whose captured bytes hold the IP header and, for TCP and UDP, the L4 header up
  to the fields read (TCP: 16 bytes to the flags; UDP: 8). Other packets (ARP, IPv6, ICMP keeps no ports,
  later IP fragments, snaplen too small) are counted in :class:`PcapStats`, never silently lost. A snaplen of
  96 bytes holds Ethernet + IPv4 + a TCP header with 40 bytes of options.
* **Truncated file**: a last record whose header or data is cut short (a capture killed mid-write) is counted
  as ``truncated_tail`` and reading stops there; everything before it is kept. A record that claims more than
  :data:`MAX_RECORD` bytes anywhere else means a corrupt file: :class:`~l4stb.errors.L4stbError` naming the
  file and byte offset.

Field layouts are RFC 791 (IPv4), RFC 9293 (TCP), RFC 768 (UDP) and the pcap file format of
https://www.tcpdump.org/manpages/pcap-savefile.5.html (the nanosecond magic 0xa1b23c4d and LINKTYPE values from
https://www.tcpdump.org/linktypes.html).

:func:`read_pcap` returns one :class:`PacketTable` of numpy columns (fast; what the matcher uses);
:func:`iter_packets` yields one :class:`Packet` record per packet for callers who want objects.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from l4stb.errors import L4stbError

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
MAGIC_PCAPNG = 0x0A0D0D0A
LINKTYPE_EN10MB, LINKTYPE_RAW, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_LINUX_SLL2 = 1, 101, 113, 228, 276
ETHERTYPE_IPV4, ETHERTYPE_VLAN = 0x0800, 0x8100
PROTO_TCP, PROTO_UDP = 6, 17
MAX_RECORD = 262_144
"""The largest record libpcap writes (MAXIMUM_SNAPLEN); a larger length is corruption, not a packet."""
_PAD = 128
"""Zero bytes appended to the file image so that fixed-offset reads past a short record stay in bounds."""

# link type -> (offset of the 16-bit ethertype/protocol field or -1 when the payload is always IPv4,
#               offset of the network header)
_LINK_LAYOUT = {
    LINKTYPE_EN10MB: (12, 14),
    LINKTYPE_RAW: (-1, 0),
    LINKTYPE_IPV4: (-1, 0),
    LINKTYPE_LINUX_SLL: (14, 16),   # sll_protocol at 14 (https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL.html)
    LINKTYPE_LINUX_SLL2: (0, 20),   # protocol type first (https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL2.html)
}


@dataclass
class PcapStats:
    """What reading one file kept and skipped, by reason."""

    records: int = 0
    ipv4: int = 0
    not_ipv4: int = 0
    short_capture: int = 0
    fragment: int = 0
    truncated_tail: int = 0


@dataclass
class PacketTable:
    """One row per kept IPv4 packet, in file order; integer columns, addresses as host-order uint32.

    ``sport``/``dport``/``tcp_seq``/``tcp_flags`` are 0 for protocols other than TCP (ports also UDP);
    ``payload_len`` is the L4 payload (IP total length minus the IP and TCP/UDP headers; for other protocols
    the IP payload)."""

    ts_ns: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    proto: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    ip_id: np.ndarray
    ecn: np.ndarray
    ip_len: np.ndarray
    tcp_seq: np.ndarray
    tcp_flags: np.ndarray
    payload_len: np.ndarray
    stats: PcapStats = field(default_factory=PcapStats)
    path: str = ""

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    def take(self, idx: np.ndarray) -> "PacketTable":
        """The rows ``idx`` (an index or boolean array), same stats."""
        cols = {name: getattr(self, name)[idx] for name in COLUMNS}
        return PacketTable(**cols, stats=self.stats, path=self.path)


COLUMNS = ("ts_ns", "src", "dst", "proto", "sport", "dport", "ip_id", "ecn", "ip_len", "tcp_seq", "tcp_flags",
           "payload_len")


@dataclass(frozen=True)
class Packet:
    """One packet's header fields (see :class:`PacketTable` for their meaning)."""

    ts_ns: int
    src: str
    dst: str
    proto: int
    sport: int
    dport: int
    ip_id: int
    ecn: int
    ip_len: int
    tcp_seq: int
    tcp_flags: int
    payload_len: int


def ip_to_int(addr: str) -> int:
    """Dotted IPv4 text -> host-order integer (the form the table's ``src``/``dst`` hold)."""
    parts = addr.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise ValueError(f"not an IPv4 address: {addr!r}")
    a, b, c, d = (int(p) for p in parts)
    return (a << 24) | (b << 16) | (c << 8) | d


def int_to_ip(v: int) -> str:
    v = int(v)
    return f"{v >> 24 & 255}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}"


def _header(data: bytes, where: str) -> tuple[str, int, int]:
    """(struct byte-order prefix, nanoseconds per fractional unit, link type) from the 24-byte file header."""
    if len(data) < 24:
        raise L4stbError(f"{where}: {len(data)} bytes, shorter than a pcap file header (24 bytes): the capture "
                         "never started or was cut at once; re-run the capture.")
    for order in ("<", ">"):
        magic = struct.unpack_from(order + "I", data, 0)[0]
        if magic in (MAGIC_US, MAGIC_NS):
            link = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
            return order, (1000 if magic == MAGIC_US else 1), link
    if struct.unpack_from("<I", data, 0)[0] == MAGIC_PCAPNG:
        raise L4stbError(f"{where}: a pcapng file; l4stb reads classic pcap: capture with `tcpdump -w FILE` "
                         "(classic pcap is tcpdump's default) or convert with `editcap -F pcap`.")
    raise L4stbError(f"{where}: not a pcap file (magic 0x{struct.unpack_from('>I', data, 0)[0]:08x}); expected "
                     "0xa1b2c3d4 or 0xa1b23c4d in either byte order, as `tcpdump -w` writes.")


def _walk(data: bytes, order: str, frac_ns: int, where: str, stats: PcapStats):
    """Offsets, captured lengths and timestamps (ns) of every complete record."""
    rec = struct.Struct(order + "IIII")
    unpack = rec.unpack_from
    n = len(data)
    pos = 24
    offs: list[int] = []
    caps: list[int] = []
    secs: list[int] = []
    fracs: list[int] = []
    while pos + 16 <= n:
        sec, frac, incl, _orig = unpack(data, pos)
        if incl > MAX_RECORD:
            if pos + 16 + incl > n and pos + 16 + MAX_RECORD >= n:
                break  # the last record: its header was cut mid-write
            raise L4stbError(f"{where}: record at byte {pos} claims {incl} bytes (more than {MAX_RECORD}): the "
                             "file is corrupt; capture again.")
        if pos + 16 + incl > n:
            break
        offs.append(pos + 16)
        caps.append(incl)
        secs.append(sec)
        fracs.append(frac)
        pos += 16 + incl
    if pos < n:
        stats.truncated_tail = 1
    stats.records = len(offs)
    ts = np.array(secs, dtype=np.int64) * 1_000_000_000 + np.array(fracs, dtype=np.int64) * frac_ns
    return np.array(offs, dtype=np.int64), np.array(caps, dtype=np.int64), ts


def _be16(buf: np.ndarray, at: np.ndarray) -> np.ndarray:
    return (buf[at].astype(np.int64) << 8) | buf[at + 1]


def _be32(buf: np.ndarray, at: np.ndarray) -> np.ndarray:
    return (_be16(buf, at) << 16) | _be16(buf, at + 2)


def read_pcap(path: str | Path) -> PacketTable:
    """Every IPv4 packet of a classic pcap file as numpy columns (see the module docstring for what is kept)."""
    where = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise L4stbError(f"{where}: cannot read the capture ({exc.strerror}); check that the file was "
                         "fetched.") from exc
    order, frac_ns, link = _header(data, where)
    if link not in _LINK_LAYOUT:
        raise L4stbError(f"{where}: link type {link} is not read by l4stb (Ethernet 1, raw IPv4 101/228, Linux "
                         "cooked 113/276): capture on the router's Ethernet (veth) interfaces.")
    stats = PcapStats()
    offs, caps, ts = _walk(data, order, frac_ns, where, stats)
    buf = np.frombuffer(data + bytes(_PAD), dtype=np.uint8)
    type_at, net_at = _LINK_LAYOUT[link]
    net = offs + net_at
    if type_at >= 0:
        etype = _be16(buf, offs + type_at)
        if link == LINKTYPE_EN10MB:
            vlan = etype == ETHERTYPE_VLAN
            etype = np.where(vlan, _be16(buf, offs + 16), etype)
            net = np.where(vlan, net + 4, net)
        is_ip = etype == ETHERTYPE_IPV4
    else:
        is_ip = (buf[net] >> 4) == 4
    is_ip &= (buf[net] >> 4) == 4
    stats.not_ipv4 = int((~is_ip).sum())
    ihl = (buf[net] & 15).astype(np.int64) * 4
    end = offs + caps  # first byte past the captured data
    ok = is_ip & (ihl >= 20) & (net + ihl <= end)
    proto = buf[net + 9].astype(np.int64)
    frag_off = _be16(buf, net + 6) & 0x1FFF
    later_fragment = ok & (frag_off != 0)
    l4 = net + ihl
    need = np.where(proto == PROTO_TCP, 16, np.where(proto == PROTO_UDP, 8, 0))
    l4_ok = l4 + need <= end
    short = is_ip & ~(ok & (later_fragment | l4_ok))
    keep = ok & ~later_fragment & l4_ok
    stats.fragment = int(later_fragment.sum())
    stats.short_capture = int(short.sum())
    stats.ipv4 = int(keep.sum())
    net, l4, proto, ihl, ts = net[keep], l4[keep], proto[keep], ihl[keep], ts[keep]
    tcp = proto == PROTO_TCP
    ports = tcp | (proto == PROTO_UDP)
    ip_len = _be16(buf, net + 2)
    doff = (buf[l4 + 12] >> 4).astype(np.int64) * 4
    hdr = np.where(tcp, doff, np.where(proto == PROTO_UDP, 8, 0))
    zero = np.zeros_like(ip_len)
    return PacketTable(
        ts_ns=ts,
        src=_be32(buf, net + 12).astype(np.uint32),
        dst=_be32(buf, net + 16).astype(np.uint32),
        proto=proto.astype(np.uint8),
        sport=np.where(ports, _be16(buf, l4), zero).astype(np.uint16),
        dport=np.where(ports, _be16(buf, l4 + 2), zero).astype(np.uint16),
        ip_id=_be16(buf, net + 4).astype(np.uint16),
        ecn=(buf[net + 1] & 3).astype(np.uint8),
        ip_len=ip_len.astype(np.int32),
        tcp_seq=np.where(tcp, _be32(buf, l4 + 4), zero).astype(np.uint32),
        tcp_flags=np.where(tcp, buf[l4 + 13], zero).astype(np.uint8),
        payload_len=np.maximum(ip_len - ihl - hdr, 0).astype(np.int32),
        stats=stats,
        path=where,
    )


def iter_packets(path: str | Path) -> Iterator[Packet]:
    """One :class:`Packet` per kept packet of ``path``, in file order."""
    t = read_pcap(path)
    cols = [getattr(t, name).tolist() for name in COLUMNS]
    for ts, src, dst, *rest in zip(*cols):
        yield Packet(ts, int_to_ip(src), int_to_ip(dst), *rest)
