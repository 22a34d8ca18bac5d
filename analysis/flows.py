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
    info = doc.get("start", {}).get("system_info")
    if isinstance(info, str):
        parts = info.split()
        if len(parts) >= 2:
            return parts[1]
    return None


def _int(v, default: int = -1) -> int:
    if isinstance(v, bool) or v is None:
        return default
    if isinstance(v, (int, float)) and np.isfinite(v):
        return int(v)
    return default


def _float(v) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return float("nan")


def read_iperf3(path: Path) -> dict:
    """Load an iperf3 JSON file; a file that is not JSON raises ValueError with the reason."""
    try:
        doc = json.loads(Path(path).read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(doc, dict) or "start" not in doc:
        raise ValueError("not iperf3 -J output (no 'start' section)")
    return doc


def flows_table(files: list[tuple[int, str, Path]], rel=str) -> tuple[pa.Table, Iperf3Stats]:
    """Rows for every client-side iperf3 file; ``files`` holds (repeat, host, path); ``rel`` names a file."""
    cols: dict[str, list] = {f.name: [] for f in FLOW_SCHEMA}
    stats = Iperf3Stats()
    # connection numbers for files whose names are not l4stb's: per (repeat, host), in name order
    seq: dict[tuple[int, str], int] = {}
    for repeat, host, path in sorted(files, key=lambda t: (t[0], t[1], t[2].name)):
        stats.files += 1
        try:
            doc = read_iperf3(path)
        except (ValueError, OSError) as exc:
            stats.errors.append({"file": rel(path), "error": str(exc)})
            continue
        start = doc.get("start", {})
        if "connecting_to" not in start:
            stats.server_files += 1
            continue
        stats.client_files += 1
        if doc.get("error"):
            stats.errors.append({"file": rel(path), "error": f"iperf3 reported: {doc['error']}"})
        m = _L4STB_NAME_RE.match(path.name)
        if m:
            group, connection = int(m.group("g")), int(m.group("c"))
        else:
            seq[(repeat, host)] = seq.get((repeat, host), 0) + 1
            group, connection = -1, seq[(repeat, host)]
        cc = doc.get("end", {}).get("sender_tcp_congestion") or (m.group("cc") if m else cc_from_name(path.name))
        name = path.name
        for interval in doc.get("intervals", []) or []:
            for s in interval.get("streams", []) or []:
                cols["repeat"].append(repeat)
                cols["host"].append(host)
                cols["cc"].append(str(cc))
                cols["file"].append(name)
                cols["group"].append(group)
                cols["connection"].append(connection)
                cols["stream"].append(_int(s.get("socket")))
                cols["start_s"].append(_float(s.get("start")))
                cols["end_s"].append(_float(s.get("end")))
                cols["bytes"].append(_int(s.get("bytes"), 0))
                cols["throughput_mbps"].append(_float(s.get("bits_per_second")) / 1e6)
                cols["retransmits"].append(_int(s.get("retransmits")))
                cols["snd_cwnd"].append(_int(s.get("snd_cwnd")))
                cols["rtt_us"].append(_int(s.get("rtt")))
                cols["rttvar_us"].append(_int(s.get("rttvar")))
                cols["omitted"].append(bool(s.get("omitted", False)))
                cols["sender"].append(bool(s.get("sender", True)))
    table = pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in FLOW_SCHEMA}, schema=FLOW_SCHEMA)
    stats.rows = table.num_rows
    return table, stats
