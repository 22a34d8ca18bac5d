"""iperf3 ``-J`` output to typed per-interval, per-stream rows (data/flows.parquet).

Only client-side files are read (``start.connecting_to`` present): a server's file describes the same
streams from the other end. One row per interval per stream:

    repeat int16, host str, cc str, file str, group int16, connection int32, stream int32 (the socket),
    start_s float64, end_s float64, bytes int64, throughput_mbps float64, retransmits int64 (-1: not
    reported), snd_cwnd int64 (bytes, -1), rtt_us int64 (-1), rttvar_us int64 (-1), omitted bool,
    sender bool

A flow is identified by (repeat, host, file, stream). ``group``/``connection`` come from l4stb's own file
names (``client1-cubic-g0-c1.json``); for other names ``group`` is -1 and ``connection`` numbers the files
of a host and repeat in name order.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

KNOWN_CCS = ("cubic", "newreno", "dctcp", "prague", "reno", "bbr", "htcp", "cdg", "vegas", "chd", "hd")
_L4STB_NAME_RE = re.compile(r"^(?P<host>[a-z][a-z0-9-]*)-(?P<cc>[a-z0-9]+)-g(?P<g>\d+)-c(?P<c>\d+)\.json$")

FLOW_SCHEMA = pa.schema([
    ("repeat", pa.int16()),
    ("host", pa.string()),
    ("cc", pa.string()),
    ("file", pa.string()),
    ("group", pa.int16()),
    ("connection", pa.int32()),
    ("stream", pa.int32()),
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("bytes", pa.int64()),
    ("throughput_mbps", pa.float64()),
    ("retransmits", pa.int64()),
    ("snd_cwnd", pa.int64()),
    ("rtt_us", pa.int64()),
    ("rttvar_us", pa.int64()),
    ("omitted", pa.bool_()),
    ("sender", pa.bool_()),
])


@dataclass
class Iperf3Stats:
    files: int = 0
    client_files: int = 0
    server_files: int = 0
    rows: int = 0
    errors: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"files": self.files, "client_files": self.client_files, "server_files_skipped": self.server_files,
                "rows": self.rows, "errors": self.errors}


def cc_from_name(name: str) -> str:
    """The congestion control named in a file name (``..._cubic_3_l4s.json`` -> cubic), else ``unknown``."""
    for token in re.split(r"[-_.]", name.lower()):
        if token in KNOWN_CCS:
            return token
    return "unknown"


def hostname_of(doc: dict) -> str | None:
    """The host name iperf3 recorded in ``start.system_info`` (the output of ``uname -a``)."""
    info = _dict(doc.get("start")).get("system_info")
    if isinstance(info, str):
        parts = info.split()
        if len(parts) >= 2:
            return parts[1]
    return None


_INT64 = (-(1 << 63), (1 << 63) - 1)
_INT32 = (-(1 << 31), (1 << 31) - 1)
_CC_RE = re.compile(r"^[a-z0-9_-]{1,32}$")
MAX_IPERF3_BYTES = 256 << 20
"""An hour of 1 s intervals of 128 streams is about 100 MB of iperf3 JSON; a larger file is not one."""


def _dict(v) -> dict:
    """A JSON object where iperf3 writes one; anything else (a list, a number) reads as empty."""
    return v if isinstance(v, dict) else {}


def _list(v) -> list:
    return v if isinstance(v, list) else []


def _int(v, default: int = -1) -> int:
    """An integer field within int64; a bool, a string, NaN/inf or a number past int64 is ``default``."""
    if isinstance(v, bool) or v is None:
        return default
    if isinstance(v, int):
        return v if _INT64[0] <= v <= _INT64[1] else default
    if isinstance(v, float) and np.isfinite(v) and _INT64[0] <= v <= _INT64[1]:
        return int(v)
    return default


def _float(v) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        try:
            return float(v)
        except OverflowError:  # an integer past the float range
            return float("nan")
    return float("nan")


KERNEL_CC_NAMES = {"reno": "newreno"}
"""Kernel names for l4stb's congestion controls: Linux registers NewReno as "reno" (net/ipv4/tcp_cong.c,
tcp_reno), FreeBSD as "newreno". Other names pass through; "dctcp-reno" (tcp_dctcp.c: DCTCP without ECN falls
back to Reno) stays as it is, so a run where ECN was not negotiated says so."""


def cc_name(value, fallback: str) -> str:
    """A congestion-control name as plain lowercase text, or ``fallback``: a name from a file never carries
    markup, control characters or matplotlib math text into a table or a figure."""
    return value if isinstance(value, str) and _CC_RE.fullmatch(value) else fallback


def read_iperf3(path: Path) -> dict:
    """Load an iperf3 JSON file; a file that is not JSON raises ValueError with the reason."""
    size = Path(path).stat().st_size
    if size > MAX_IPERF3_BYTES:
        raise ValueError(f"{size:,} bytes is too large for iperf3 -J output (at most {MAX_IPERF3_BYTES:,})")
    try:
        doc = json.loads(Path(path).read_bytes(), object_pairs_hook=_no_duplicate_keys)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    except RecursionError:
        raise ValueError("nested too deeply to be iperf3 -J output") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("start"), dict):
        raise ValueError("not iperf3 -J output (no 'start' section)")
    return doc


class _DuplicateKeys(dict):
    """A JSON object that repeated a key: json keeps the last value; the reader says so (see :func:`_iperf3_rows`)."""

    duplicates: list[str]


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    """``object_pairs_hook`` of the iperf3 reader: a dict, marked when a key came twice (iperf3 never writes that)."""
    out = dict(pairs)
    if len(out) == len(pairs):
        return out
    seen: set[str] = set()
    marked = _DuplicateKeys(out)
    marked.duplicates = sorted({k for k, _ in pairs if k in seen or seen.add(k)})  # type: ignore[func-returns-value]
    return marked


def _duplicates(doc) -> list[str]:
    """Every key that came twice in an object anywhere in ``doc``."""
    found: list[str] = []
    stack = [doc]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            found += getattr(v, "duplicates", [])
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return sorted(set(found))


class FlowRows:
    """Columns of :data:`FLOW_SCHEMA` filled one interval at a time, then typed into an Arrow table."""

    def __init__(self):
        self.cols: dict[str, list] = {f.name: [] for f in FLOW_SCHEMA}

    def append(self, **row) -> None:
        for name, value in row.items():
            self.cols[name].append(value)

    def table(self) -> pa.Table:
        return pa.table({f.name: pa.array(self.cols[f.name], type=f.type) for f in FLOW_SCHEMA}, schema=FLOW_SCHEMA)


class ConnectionNumbers:
    """(group, connection) of a client file: from l4stb's own file name, else numbered per (repeat, host)
    in the order the files are read (name order)."""

    def __init__(self):
        self.seq: dict[tuple[int, str], int] = {}

    def of(self, match: re.Match | None, repeat: int, host: str) -> tuple[int, int]:
        if match:
            return int(match.group("g")), int(match.group("c"))
        self.seq[(repeat, host)] = self.seq.get((repeat, host), 0) + 1
        return -1, self.seq[(repeat, host)]


def rows_from_files(files: list[tuple[int, str, Path]], rel, read, add_rows) -> tuple[pa.Table, Iperf3Stats]:
    """The loop every flow-file reader shares: files in name order per (repeat, host), a file that cannot
    be read becomes an error naming it, ``add_rows(rows, stats, numbers, repeat, host, path, content)`` does
    the rest (it counts the file as a client or server file)."""
    rows = FlowRows()
    stats = Iperf3Stats()
    numbers = ConnectionNumbers()
    for repeat, host, path in sorted(files, key=lambda t: (t[0], t[1], t[2].name)):
        stats.files += 1
        try:
            content = read(path)
        except (ValueError, OSError) as exc:
            stats.errors.append({"file": rel(path), "error": str(exc)})
            continue
        add_rows(rows, stats, numbers, repeat, host, path, content, rel)
    table = rows.table()
    stats.rows = table.num_rows
    return table, stats


def flows_table(files: list[tuple[int, str, Path]], rel=str) -> tuple[pa.Table, Iperf3Stats]:
    """Rows for every client-side iperf3 file; ``files`` holds (repeat, host, path); ``rel`` names a file."""
    return rows_from_files(files, rel, read_iperf3, _iperf3_rows)


def _iperf3_rows(rows: FlowRows, stats: Iperf3Stats, numbers: ConnectionNumbers, repeat: int, host: str,
                 path: Path, doc: dict, rel) -> None:
    if "connecting_to" not in _dict(doc.get("start")):
        stats.server_files += 1
        return
    stats.client_files += 1
    if doc.get("error"):
        stats.errors.append({"file": rel(path), "error": f"iperf3 reported: {str(doc['error'])[:200]}"})
    m = _L4STB_NAME_RE.match(path.name)
    group, connection = numbers.of(m, repeat, host)
    named = m.group("cc") if m else cc_from_name(path.name)
    reported = _dict(doc.get("end")).get("sender_tcp_congestion")
    cc = cc_name(reported, named) if reported else named
    if reported and cc != reported:
        stats.errors.append({"file": rel(path), "error": "end.sender_tcp_congestion is not a congestion-control name; "
                                                         f"using '{named}' from the file name"})
    cc = KERNEL_CC_NAMES.get(cc, cc)
    dup = _duplicates(doc)
    if dup:
        stats.errors.append({"file": rel(path), "error": f"keys given twice in one object ({', '.join(dup[:5])}); "
                                                         "the last value of each is used"})
    bad: set[str] = set()
    for interval in _list(doc.get("intervals")):
        for s in _list(_dict(interval).get("streams")):
            if not isinstance(s, dict):
                continue
            socket = _int(s.get("socket"))
            if not _INT32[0] <= socket <= _INT32[1] or (s.get("socket") is not None and socket == -1):
                bad.add("intervals.streams.socket (not a socket number: -1 is used)")
                socket = -1
            nbytes, bps = _int(s.get("bytes"), 0), _float(s.get("bits_per_second"))
            if nbytes < 0:
                bad.add("intervals.streams.bytes (negative: 0 is used)")
                nbytes = 0
            if bps < 0:
                bad.add("intervals.streams.bits_per_second (negative: left empty)")
                bps = float("nan")
            rows.append(
                repeat=repeat, host=host, cc=cc, file=path.name, group=group, connection=connection,
                stream=socket, start_s=_float(s.get("start")), end_s=_float(s.get("end")),
                bytes=nbytes, throughput_mbps=bps / 1e6,
                retransmits=_int(s.get("retransmits")), snd_cwnd=_int(s.get("snd_cwnd")),
                rtt_us=_int(s.get("rtt")), rttvar_us=_int(s.get("rttvar")),
                omitted=bool(s.get("omitted", False)), sender=bool(s.get("sender", True)))
    for what in sorted(bad):
        stats.errors.append({"file": rel(path), "error": f"field {what}"})
