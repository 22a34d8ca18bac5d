"""The parse step of a run: router logs, iperf3 JSON and udp_prague reports to data/packets.parquet, flows.parquet
and parse.json.

data/packets.parquet, one row per packet decision, in log order within each repeat:

    repeat           int16     the repeat (one repeat = one episode)
    line_format      category  the line's prefix: l4s_ecn_marking-start (paper, 24 fields),
                               dualpi2_ecn_marking-start (old, 23 fields), l4stb_aqm-start (24 + 3)
    <24 log fields>  int64     in l4stb.logformat.FIELD_NAMES order, as logged (times in us), except
    drop_probability, accumulated_probability   float64 in [0, 1] (unscaled from 2^31-1 here, at the boundary)
                               packet_length is -1 in old 23-field lines, which lack it
    timestamp_us     int64     monotonic microseconds (l4stb lines), -1 when the line format has none
    flow_id          int32     l4stb lines, -1 when none
    decided_by       int8      l4stb lines: 0 the AQM (DualPI2...), 1 the learned policy; -1 when unknown
    queue            category  "C" (queue_type 0) or "L" (queue_type 1)
    action           int8      0 forward, 1 drop, 2 mark (dequeue_action - 1)
    t_s              float64   seconds since the repeat's first decision: from timestamp_us, else from the
                               syslog timestamp (1 s resolution in RFC 3164 files), else NaN

data/flows.parquet: see :mod:`l4stb.analysis.flows`. data/parse.json: lines read, parsed and skipped by
reason (with examples), per file, per repeat and in total.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from l4stb.analysis.flows import flows_table
from l4stb.analysis.udp_prague import udp_prague_table
from l4stb.analysis.logparse import (
    ALL_FIELDS,
    SHAPE_NAMES,
    Batch,
    FileStats,
    unwrap_syslog_year,
)
from l4stb.analysis.logparse_parallel import ParallelLogParser
from l4stb.analysis.rawfiles import inventory
from l4stb.console import console
from l4stb.errors import L4stbError
from l4stb.logformat import FIELD_NAMES, L4STB_PREFIX, PROB_SCALE, PROBABILITY_FIELDS, UNKNOWN
from l4stb.manifest import load_manifest, update_manifest
from l4stb.workspace import Workspace, atomic_write_json, read_json, sha256_file, staged_folder, utc_iso
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

log = logging.getLogger(__name__)

PARSER_VERSION = 6
"""Bump when the packets/flows schema or the parser's output changes: older parses are redone."""

QUEUE_NAMES = ("C", "L")
ROW_GROUP_ROWS = 1 << 19

PACKET_SCHEMA = pa.schema(
    [("repeat", pa.int16()), ("line_format", pa.dictionary(pa.int8(), pa.string()))]
    + [(name, pa.float64() if name in PROBABILITY_FIELDS else pa.int64()) for name in FIELD_NAMES]
    + [("timestamp_us", pa.int64()), ("flow_id", pa.int32()), ("decided_by", pa.int8()), ("queue", pa.dictionary(pa.int8(), pa.string())),
       ("action", pa.int8()), ("t_s", pa.float64())]
)
PACKET_COLUMNS: tuple[str, ...] = tuple(PACKET_SCHEMA.names)

_FORMAT_DICT = pa.array(SHAPE_NAMES, pa.string())
_QUEUE_DICT = pa.array(QUEUE_NAMES, pa.string())
_L4STB_SHAPE = SHAPE_NAMES.index(L4STB_PREFIX)
_POS = {name: i for i, name in enumerate(ALL_FIELDS)}


@dataclass
class ParseResult:
    """What the parse step wrote (or found up to date)."""

    run_id: str
    packets: int
    flows: int
    lines_read: int
    parsed: int
    skipped: dict[str, int] = field(default_factory=dict)
    repeats: list[int] = field(default_factory=list)
    reused: bool = False
    wall_s: float = 0.0

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


class _RepeatClock:
    """Turns a repeat's timestamps into seconds since its first decision."""

    def __init__(self) -> None:
        self.t0_us: int | None = None
        self.t0_sys: float | None = None
        self.last_sys = float("nan")

    def t_s(self, batch: Batch) -> np.ndarray:
        out = np.full(len(batch), np.nan)
        has_us = batch.shape == _L4STB_SHAPE
        if has_us.any():
            ts_us = batch.column("timestamp_us")
            if self.t0_us is None:
                self.t0_us = int(ts_us[np.flatnonzero(has_us)[0]])
            out[has_us] = (ts_us[has_us] - self.t0_us) / 1e6
        rest = ~has_us
        if rest.any():
            sys_s, self.last_sys = unwrap_syslog_year(batch.syslog_s[rest], self.last_sys)
            finite = np.isfinite(sys_s)
            if finite.any():
                if self.t0_sys is None:
                    self.t0_sys = float(sys_s[np.flatnonzero(finite)[0]])
                out[rest] = sys_s - self.t0_sys
        return out


def batch_to_record_batch(batch: Batch, repeat: int, t_s: np.ndarray) -> pa.RecordBatch:
    """Typed columns of :data:`PACKET_SCHEMA` from a parser batch (probabilities unscaled here)."""
    n = len(batch)
    arrays = [pa.array(np.full(n, repeat, np.int16)),
              pa.DictionaryArray.from_arrays(pa.array(batch.shape, pa.int8()), _FORMAT_DICT)]
    for name in FIELD_NAMES:
        col = batch.column(name)
        unknown = col == UNKNOWN  # a field the logger could not observe (real-Linux captures): stored as null
        mask = unknown if unknown.any() else None
        arrays.append(pa.array(col / PROB_SCALE, mask=mask) if name in PROBABILITY_FIELDS else pa.array(col, mask=mask))
    arrays.append(pa.array(batch.column("timestamp_us")))
    arrays.append(pa.array(batch.column("flow_id").astype(np.int32)))
    arrays.append(pa.array(batch.column("decided_by").astype(np.int8)))
    arrays.append(pa.DictionaryArray.from_arrays(pa.array(batch.column("queue_type").astype(np.int8)), _QUEUE_DICT))
    arrays.append(pa.array((batch.column("dequeue_action") - 1).astype(np.int8)))
    arrays.append(pa.array(t_s))
    return pa.RecordBatch.from_arrays(arrays, schema=PACKET_SCHEMA)


def _up_to_date(ws: Workspace, run_id: str, manifest, raw_files: list[Path]) -> bool:
    step = manifest.steps.get("parse", {})
    if not isinstance(step, dict) or step.get("status") != "done" or step.get("parser_version") != PARSER_VERSION:
        return False
    outputs = [ws.packets_file(run_id), ws.flows_file(run_id), ws.parse_stats_file(run_id)]
    if not all(p.is_file() for p in outputs):
        return False
    newest_raw = max((p.stat().st_mtime for p in raw_files), default=0.0)
    if min(p.stat().st_mtime for p in outputs) < newest_raw or step.get("raw_files") != len(raw_files):
        return False
    return _outputs_intact(ws, run_id)


def _outputs_intact(ws: Workspace, run_id: str) -> bool:
    return not damaged_outputs(ws, run_id)


def damaged_outputs(ws: Workspace, run_id: str) -> list[str]:
    """The files of data/ that differ from what parse.json (written last) recorded of them: size and sha256.

    A truncated, replaced or bit-flipped parquet file of the same size is caught here (parquet carries no
    checksum of its own), so it is parsed again from raw/ instead of being read as data."""
    stats = ws.parse_stats_file(run_id)
    try:
        doc = json.loads(stats.read_text())
        recorded = doc["outputs"]
        if not isinstance(doc.get("skipped"), dict) or not recorded:
            return [stats.name]
        damaged = []
        for name, rec in recorded.items():
            path = ws.data_dir(run_id) / name
            if not path.is_file() or path.stat().st_size != rec["size"] or _sha256_once(path) != rec["sha256"]:
                damaged.append(name)
        return damaged
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return [stats.name]


_DIGESTS: dict[str, tuple[tuple[int, int, int], str]] = {}
"""sha256 of parsed files this process hashed, by path, with the (inode, size, mtime) it was taken at: one
command checks the same data several times (pool, closed loop, report), and a large run's packets.parquet
costs seconds to hash."""


def _sha256_once(path: Path) -> str:
    st = path.stat()
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    seen = _DIGESTS.get(str(path))
    if seen is None or seen[0] != key:
        seen = _DIGESTS[str(path)] = (key, sha256_file(path))
    return seen[1]


def _sum_stats(stats: list[FileStats]) -> dict:
    total = {"files": len(stats), "bytes": 0, "lines_read": 0, "parsed": 0, "repeat_lines": 0, "repeated_copies": 0,
             "unrelated": 0, "blank": 0, "skipped": {}, "skipped_total": 0, "examples": {}, "line_formats": {}}
    for s in stats:
        j = s.to_json()
        for key in ("bytes", "lines_read", "parsed", "repeat_lines", "repeated_copies", "unrelated", "blank",
                    "skipped_total"):
            total[key] += j[key]
        for reason, n in j["skipped"].items():
            total["skipped"][reason] = total["skipped"].get(reason, 0) + n
        for fmt, n in j["line_formats"].items():
            total["line_formats"][fmt] = total["line_formats"].get(fmt, 0) + n
        for reason, ex in j["examples"].items():
            bucket = total["examples"].setdefault(reason, [])
            bucket.extend(f"{Path(s.file).name} {e}" for e in ex[: max(0, 3 - len(bucket))])
    total["skipped"] = dict(sorted(total["skipped"].items()))
    return total


def ensure_parsed(ws: Workspace, run_id: str, progress: Progress | None = None, *, force: bool = False,
                  jobs: int | None = None) -> ParseResult:
    """Parse a run's raw files into data/ unless the outputs are newer than every raw file (idempotent).

    A repeat's rotated log files are parsed in ``jobs`` processes (default: the CPUs this process may use), one
    file each, with exactly the serial parser's result (:mod:`l4stb.analysis.logparse_parallel`)."""
    manifest = load_manifest(ws, run_id)
    inv = inventory(ws, run_id, manifest)
    raw_files = inv.all_files()
    if not raw_files:
        fetch_step = manifest.steps.get("fetch")
        fetched = fetch_step.get("status") if isinstance(fetch_step, dict) else None
        hint = ("its fetch did not finish: run `l4stb fetch-logs --run " + run_id + "`" if fetched != "done"
                else f"raw/ holds no router logs (host '{inv.router_host}') and no iperf3 JSON")
        raise L4stbError(f"run {run_id} has nothing to parse: {hint}.")
    if not force and _up_to_date(ws, run_id, manifest, raw_files):
        stats = read_json(ws.parse_stats_file(run_id), "parse statistics")
        return ParseResult(run_id, stats.get("packets", 0), stats.get("flows", 0), stats.get("lines_read", 0),
                           stats.get("parsed", 0), stats.get("skipped", {}),
                           sorted(int(r) for r in stats.get("repeats", {})), reused=True)

    t_start = time.perf_counter()
    update_manifest(ws, run_id, lambda m: m.steps.__setitem__("parse", {"status": "running", "started": utc_iso(),
                                                                        "parser_version": PARSER_VERSION}))
    own_progress = progress is None
    if own_progress:
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                            TextColumn("{task.fields[what]}"), TimeElapsedColumn(), console=console, transient=True)
    log_bytes = sum(p.stat().st_size for ps in inv.logs.values() for p in ps)
    all_stats: list[FileStats] = []
    repeat_json: dict[str, dict] = {}
    file_json: list[dict] = []
    n_packets = 0
    fallbacks = 0
    # data/ is one output set: packets, flows and parse.json (written last, naming the others' sizes and
    # sha256) are built in a staging folder and swapped in together, so no reader sees old and new mixed.
    with progress if own_progress else nullcontext(), staged_folder(ws.data_dir(run_id)) as stage:
        task = progress.add_task(f"parse {run_id}", total=max(1, log_bytes), what="router logs")
        # dictionary pages only for the two categories: hashing 24 int columns costs more than it saves
        with pq.ParquetWriter(stage / ws.packets_file(run_id).name, PACKET_SCHEMA, compression="zstd",
                              use_dictionary=["line_format", "queue"]) as writer:
            pending: list[pa.RecordBatch] = []
            pending_rows = 0
            for repeat in sorted(inv.logs):
                parser = ParallelLogParser(jobs=jobs)
                clock = _RepeatClock()
                n_rep = 0

                def file_done(path: Path, repeat: int = repeat) -> None:
                    progress.update(task, advance=path.stat().st_size, what=f"repeat {repeat}: {inv.rel(path)}")

                progress.update(task, what=f"repeat {repeat}: {len(inv.logs[repeat])} log files")
                for batch in parser.parse_files(inv.logs[repeat], on_file=file_done):
                    rb = batch_to_record_batch(batch, repeat, clock.t_s(batch))
                    pending.append(rb)
                    pending_rows += rb.num_rows
                    n_rep += rb.num_rows
                    if pending_rows >= ROW_GROUP_ROWS:
                        writer.write_table(pa.Table.from_batches(pending), row_group_size=pending_rows)
                        pending, pending_rows = [], 0
                fallbacks += parser.fallback_blocks
                for s in parser.stats:
                    s.file = inv.rel(Path(s.file))
                    file_json.append({"repeat": repeat, **s.to_json()})
                all_stats.extend(parser.stats)
                repeat_json[str(repeat)] = {**_sum_stats(parser.stats), "packets": n_rep}
                n_packets += n_rep
            if pending:
                writer.write_table(pa.Table.from_batches(pending), row_group_size=pending_rows)
        progress.update(task, what="iperf3 JSON")
        flows, iperf_stats = flows_table(inv.iperf3, rel=inv.rel)
        for err in iperf_stats.errors:  # said once, when the files are parsed; parse.json keeps them all
            log.warning("run %s: iperf3 file %s: %s", run_id, err["file"], err["error"])
        prague_flows, prague_stats = udp_prague_table(inv.udp_prague, rel=inv.rel)
        flows = pa.concat_tables([flows, prague_flows])
        pq.write_table(flows, stage / ws.flows_file(run_id).name, compression="zstd")
        doc = _parse_doc(run_id, inv, all_stats, repeat_json, file_json, n_packets, flows, iperf_stats, prague_stats,
                         fallbacks, round(time.perf_counter() - t_start, 3))
        doc["outputs"] = {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
                          for p in (stage / ws.packets_file(run_id).name, stage / ws.flows_file(run_id).name)}
        atomic_write_json(stage / ws.parse_stats_file(run_id).name, doc)
    totals, wall = doc["totals"], doc["wall_s"]
    if not inv.logs:
        log.warning("run %s: no router log files under raw/%s/", run_id, inv.router_host)
    step = {"status": "done", "parser_version": PARSER_VERSION, "finished": doc["finished"], "wall_s": wall,
            "packets": n_packets, "flows": flows.num_rows, "lines_read": totals["lines_read"],
            "skipped_total": totals["skipped_total"], "raw_files": len(raw_files)}
    update_manifest(ws, run_id, lambda m: m.steps.__setitem__("parse", step))
    return ParseResult(run_id, n_packets, flows.num_rows, totals["lines_read"], totals["parsed"], doc["skipped"],
                       sorted(inv.logs), reused=False, wall_s=wall)


def _parse_doc(run_id, inv, all_stats, repeat_json, file_json, n_packets, flows, iperf_stats, prague_stats,
               fallbacks: int, wall: float) -> dict:
    """parse.json: what `l4stb summary` and the report read about a parse."""
    totals = _sum_stats(all_stats)
    skipped_all = dict(totals["skipped"])
    for key in ("unrelated", "blank"):
        if totals[key]:
            skipped_all[key] = totals[key]
    return {
        # lines read, decisions parsed, skipped lines by reason (unrelated kernel messages and blank lines
        # included; "errors" holds the garbled reasons alone)
        "lines_read": totals["lines_read"],
        "parsed": totals["parsed"],
        "skipped": dict(sorted(skipped_all.items())),
        "errors": totals["skipped"],
        "examples": totals["examples"],
        "repeat_lines": totals["repeat_lines"],
        "repeated_copies": totals["repeated_copies"],
        "run_id": run_id,
        "parser_version": PARSER_VERSION,
        "router_host": inv.router_host,
        "packets": n_packets,
        "flows": flows.num_rows,
        "totals": totals,
        "repeats": repeat_json,
        "files": file_json,
        "iperf3": iperf_stats.to_json(),
        "udp_prague": prague_stats.to_json(),
        "ignored_files": [inv.rel(p) for p in inv.ignored],
        "fallback_blocks": fallbacks,
        "wall_s": wall,
        "finished": utc_iso(),
    }


def read_packets(ws: Workspace, run_id: str, columns: list[str] | None = None) -> pd.DataFrame:
    """data/packets.parquet as a DataFrame (categories for line_format and queue)."""
    path = ws.packets_file(run_id)
    if not path.is_file():
        raise L4stbError(f"run {run_id} is not parsed yet ({path} is missing).")
    return pq.read_table(path, columns=columns).to_pandas()


def read_flows(ws: Workspace, run_id: str, columns: list[str] | None = None) -> pd.DataFrame:
    path = ws.flows_file(run_id)
    if not path.is_file():
        raise L4stbError(f"run {run_id} is not parsed yet ({path} is missing).")
    return pq.read_table(path, columns=columns).to_pandas()
