"""Router log parser: rotated syslog files (plain/.bz2/.gz/.xz) to typed per-decision columns, skipped lines counted.

What it reads: the three line shapes of :data:`l4stb.logformat.LINE_SHAPES` behind any
syslog prefix (any hostname, '-' included), "last message repeated N times" lines (expanded into N more
copies of the previous logged line), interleaved unrelated kernel messages (skipped, counted, not
errors), and truncated or garbled lines (skipped, counted by reason, a few kept as examples). A
well-formed line is never dropped.

How it is fast: each block of about 4 MiB of text goes through Arrow's C++ CSV reader as a whole -- the
syslog prefix (which holds no comma) is column 0, the integers follow, ``end`` is last -- and is checked
with vectorised operations on the resulting columns. Lines that do not have the block's column count
(unrelated messages, repeat lines, other shapes, glued or truncated lines) come back through Arrow's
invalid-row handler with their line number and are classified one by one in Python; a block Arrow
cannot read (a non-integer in a field, bytes that are not UTF-8 in an odd line) falls back to that
per-line path entirely. Both paths give identical results; the tests check that.
"""

from __future__ import annotations

import datetime as _dt
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from l4stb.logfiles import open_log, order_log_files
from l4stb.logformat import (ACTION_FORWARD, ACTION_MARK, FIELD_RANGES, L4STB_FIELD_NAMES, L4STB_PREFIX,
                             LEGACY_L4STB_FIELD_NAMES, LINE_SHAPES)

# -------------------------------------------------------------------------------------------------
# Shapes
# -------------------------------------------------------------------------------------------------

SHAPE_NAMES: tuple[str, ...] = tuple(LINE_SHAPES)
"""Line-format names (the prefixes), in a fixed order; a row's ``shape`` code indexes this tuple."""

ALL_FIELDS: tuple[str, ...] = L4STB_FIELD_NAMES
"""Every integer field any shape carries; a field a shape lacks is -1 in its rows."""

_PREFIXES: tuple[bytes, ...] = tuple(p.encode() for p in SHAPE_NAMES)
_PREFIX_COMMA: tuple[bytes, ...] = tuple(p + b"," for p in _PREFIXES)
_SHAPE_FIELDS: tuple[tuple[str, ...], ...] = tuple(LINE_SHAPES[p] for p in SHAPE_NAMES)
_SHAPE_NFIELDS: tuple[int, ...] = tuple(len(f) for f in _SHAPE_FIELDS)
_LEGACY_NFIELDS: tuple[int, ...] = tuple(len(LEGACY_L4STB_FIELD_NAMES) if p == L4STB_PREFIX else -1 for p in SHAPE_NAMES)
"""An l4stb line written before ``decided_by`` existed has one field fewer; it is read with ``decided_by`` = -1."""
_FIELD_POS: dict[str, int] = {name: i for i, name in enumerate(ALL_FIELDS)}
_SHAPE_COLS: tuple[np.ndarray, ...] = tuple(np.array([_FIELD_POS[n] for n in f], dtype=np.intp) for f in _SHAPE_FIELDS)
_SHAPE_RANGES: tuple[tuple[tuple[int, int], ...], ...] = tuple(tuple(FIELD_RANGES[n] for n in f) for f in _SHAPE_FIELDS)
_END = b"end"
_START_MARK = b"-start"
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

READ_BLOCK = 4 << 20
"""Bytes of decompressed text handed to one parse step (measured best for Arrow's CSV reader: bench/)."""

SKIP_REASONS = ("truncated", "field_count", "not_integer", "empty_field", "out_of_range", "bad_action",
                "bad_queue_type", "bad_prefix", "bad_end", "repeat_of_nothing", "repeat_over_cap", "line_too_long",
                "decompression_bomb")
"""Why a line that looks like a decision line was skipped (counted in parse.json)."""

MAX_EXAMPLES = 3

SYSLOGD_REPEAT_WINDOW_S = 600 + 30
"""The longest a "last message repeated N times" line can cover: FreeBSD syslogd flushes a repeat count at
the latest ``repeatinterval[MAXREPEAT]`` = 600 s after the last write, checked every TIMERINTVL = 30 s
(usr.sbin/syslogd/syslogd.c: ``repeatinterval[] = { 30, 120, 600 }``, ``TIMERINTVL 30``)."""
MAX_DECISIONS_PER_S = 10 * 10**9 // (8 * 40)
"""The most decisions a router can log per second: the fastest pipe a scenario may set (10 Gbit/s,
:class:`l4stb.config.Bottleneck`) full of the smallest TCP/IP packets (40 bytes)."""
MAX_REPEAT_COUNT = SYSLOGD_REPEAT_WINDOW_S * MAX_DECISIONS_PER_S
"""A repeat count syslogd cannot emit: the line is skipped as ``repeat_over_cap``, its copies never made."""
EXPAND_ROWS = 1 << 16
"""Repeated copies are made lazily, at most this many rows at a time, so a tiny file cannot cost gigabytes."""
MAX_LINE_BYTES = 64 << 10
"""Longer than any line syslogd writes (MAXLINE, 8 KiB in syslogd.c): the rest of such a line is skipped."""
MIN_DECOMPRESSED_LIMIT = 64 << 20
MAX_COMPRESSION_RATIO = 100
"""A compressed log may expand to 100 times its size or 64 MiB, whichever is larger (newsyslog rotates at
``rotate_size``, and these logs compress about 10:1); beyond that the file is a decompression bomb and the
rest of it is skipped as ``decompression_bomb``."""

_REPEAT_RE = re.compile(rb"last message repeated (\d+) times?")
_RFC3164_RE = re.compile(rb"\s*(?:<\d{1,3}>)?([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?\s")
_ISO_RE = re.compile(rb"\s*(?:<\d{1,3}>1? ?)?(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,9})?)(Z|[+-]\d\d:?\d\d)?\s")
_MONTHS = {m.encode(): i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_YEAR_S = 366 * 86400


# -------------------------------------------------------------------------------------------------
# Files: how far a compressed one may expand (their order and opening: l4stb.logfiles)
# -------------------------------------------------------------------------------------------------

def decompressed_limit(path: Path) -> int | None:
    """How many bytes a compressed log may expand to (None for a plain file, read as it is)."""
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith((b"BZh", b"\x1f\x8b", b"\xfd7zXZ\x00")):
        return max(MIN_DECOMPRESSED_LIMIT, MAX_COMPRESSION_RATIO * path.stat().st_size)
    return None


def iter_blocks(fh: BinaryIO, block_size: int = READ_BLOCK, limit: int | None = None) -> Iterator[bytes]:
    """Blocks of about ``block_size`` bytes of whole lines; the last may lack its final newline (a truncated line).

    A line is finished with at most :data:`MAX_LINE_BYTES` more (the rest comes as the next block's first,
    garbled line), and reading stops after ``limit`` bytes (the caller counts the file as a bomb).
    """
    total = 0
    while limit is None or total < limit:
        chunk = fh.read(block_size if limit is None else min(block_size, limit - total))
        if not chunk:
            return
        if not chunk.endswith(b"\n"):
            chunk += fh.readline(MAX_LINE_BYTES)  # finish the line (one copy, no search)
        total += len(chunk)
        yield chunk


# -------------------------------------------------------------------------------------------------
# Statistics
# -------------------------------------------------------------------------------------------------


@dataclass
class FileStats:
    """What one file held: lines read, decisions parsed, and every skipped line counted by reason."""

    file: str
    lines: int = 0
    decisions: int = 0
    repeat_lines: int = 0
    repeated_copies: int = 0
    unrelated: int = 0
    blank: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    shapes: Counter = field(default_factory=Counter)
    bytes: int = 0

    def skip(self, reason: str, line_no: int, text: bytes | str, n: int = 1) -> None:
        self.skipped[reason] += n
        ex = self.examples.setdefault(reason, [])
        if len(ex) < MAX_EXAMPLES:
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            text = text.rstrip("\r\n")
            ex.append(f"line {line_no}: {text[:200]}{'...' if len(text) > 200 else ''}")

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def to_json(self) -> dict:
        return {
            "file": self.file, "bytes": self.bytes, "lines_read": self.lines, "parsed": self.decisions,
            "repeat_lines": self.repeat_lines, "repeated_copies": self.repeated_copies,
            "unrelated": self.unrelated, "blank": self.blank, "skipped": dict(sorted(self.skipped.items())),
            "skipped_total": self.skipped_total, "examples": dict(sorted(self.examples.items())),
            "line_formats": {SHAPE_NAMES[k]: v for k, v in sorted(self.shapes.items())},
        }


# -------------------------------------------------------------------------------------------------
# Syslog timestamps
# -------------------------------------------------------------------------------------------------

_CUM_DAYS = np.cumsum([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30])  # a leap year, so Feb 29 parses


def syslog_seconds(head: bytes) -> float:
    """Seconds from a syslog line's timestamp: RFC 3164 (``Dec 30 10:00:00``, seconds into a leap year) or
    ISO 8601 / RFC 5424 (epoch seconds); NaN when the line has none. Only differences are used."""
    m = _RFC3164_RE.match(head)
    if m:
        mon = _MONTHS.get(m.group(1))
        if mon is None:
            return float("nan")
        day, hh, mm, ss = int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5))
        frac = float(b"0." + m.group(6)) if m.group(6) else 0.0
        return float((_CUM_DAYS[mon - 1] + day - 1) * 86400 + hh * 3600 + mm * 60 + ss) + frac
    m = _ISO_RE.match(head)
    if m:
        text = m.group(1).decode().replace(" ", "T")
        tz = (m.group(2) or b"").decode()
        if tz == "Z":
            tz = "+00:00"
        elif tz and ":" not in tz:
            tz = tz[:3] + ":" + tz[3:]
        if "." in text:  # fromisoformat takes at most 6 fractional digits on 3.10
            main, frac = text.split(".")
            text = f"{main}.{frac[:6]}"
        try:
            t = _dt.datetime.fromisoformat(text + tz)
        except ValueError:
            return float("nan")
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        return t.timestamp()
    return float("nan")


# -------------------------------------------------------------------------------------------------
# One line, slowly (the reference path; the fast path must agree with it)
# -------------------------------------------------------------------------------------------------

# events: ("blank",) ("repeat", n) ("unrelated",) ("garbled", reason) ("decision", shape, values, syslog_s)


_PREFIX_STARTS = tuple((p[:6], p) for p in _PREFIXES)  # no prefix holds its own first 6 bytes again
_MARKERS: tuple[bytes, ...] = (*(start for start, _ in _PREFIX_STARTS), _START_MARK, b"last message repeated")
"""A line holding none of these is blank or unrelated whatever else it holds (see :func:`classify_line`)."""


def _partial_prefix_at_end(s: bytes) -> bool:
    """Whether ``s`` ends with at least the first 6 bytes of a known prefix (a line cut inside its prefix)."""
    for start, p in _PREFIX_STARTS:
        i = s.rfind(start)
        if i >= 0 and p.startswith(s[i:]):
            return True
    return False


def _prefix_hits(s: bytes) -> list[tuple[int, int]]:
    """(position, shape) of every known prefix followed by a comma, in line order."""
    hits = []
    for shape, pc_ in enumerate(_PREFIX_COMMA):
        start = 0
        while (i := s.find(pc_, start)) >= 0:
            hits.append((i, shape))
            start = i + 1
    hits.sort()
    return hits


def classify_line(line: bytes) -> list[tuple]:
    """Events for one physical line: usually one; a line holding glued fragments gives one per fragment."""
    s = line.rstrip()
    if not s:
        return [("blank",)]
    hits = _prefix_hits(s)
    if not hits:
        m = _REPEAT_RE.search(s)
        if m:
            return [("repeat", int(m.group(1)))]
        if _partial_prefix_at_end(s) or any(p in s for p in _PREFIXES):
            return [("garbled", "truncated")]
        if _START_MARK in s and (b"_marking" in s or b"_aqm" in s):
            return [("garbled", "bad_prefix")]
        return [("unrelated",)]
    events: list[tuple] = []
    seg_start = 0
    for k, (pos, shape) in enumerate(hits):
        stop = hits[k + 1][0] if k + 1 < len(hits) else len(s)
        head = s[seg_start:pos]
        # a "-start" before this prefix is a line cut short before its first comma, glued to this one
        events.extend([("garbled", "truncated")] * head.count(_START_MARK))
        body_at = pos + len(_PREFIX_COMMA[shape])
        body = s[body_at:stop]
        end_at = body.find(b",end")
        if end_at < 0:
            events.append(("garbled", "truncated"))
            seg_start = stop
            continue
        if k + 1 == len(hits) and body[end_at + 4:].strip():
            events.append(("garbled", "bad_end"))
            seg_start = stop
            continue
        events.append(_decision_from_payload(shape, body[:end_at], head))
        seg_start = body_at + end_at + 4
    return events


def _parse_int(p: bytes) -> int | None:
    """A field as the kernel prints it (%u, %lu, %d); surrounding blanks allowed, as Arrow allows them."""
    t = p.strip(b" \t")
    neg = t.startswith(b"-")
    body = t[1:] if neg else t
    if body.isdigit():
        v = int(body)
    elif body[:2] in (b"0x", b"0X") and body[2:] and all(c in b"0123456789abcdefABCDEF" for c in body[2:]):
        v = int(body[2:], 16)  # Arrow's integer parser accepts hex; keep both paths identical
    else:
        return None
    return -v if neg else v


def _decision_from_payload(shape: int, payload: bytes, head: bytes) -> tuple:
    parts = payload.split(b",")
    if len(parts) != _SHAPE_NFIELDS[shape]:
        if len(parts) != _LEGACY_NFIELDS[shape]:
            return ("garbled", "field_count")
        parts.append(b"-1")  # decided_by: unknown
    values = []
    for p in parts:
        if not p:
            return ("garbled", "empty_field")
        v = _parse_int(p)
        if v is None:
            return ("garbled", "not_integer" if p.strip() else "empty_field")
        if v < _INT64_MIN or v > _INT64_MAX:
            return ("garbled", "out_of_range")
        values.append(v)
    fields = _SHAPE_FIELDS[shape]
    action = values[fields.index("dequeue_action")]
    if not ACTION_FORWARD <= action <= ACTION_MARK:
        return ("garbled", "bad_action")
    if values[fields.index("queue_type")] not in (0, 1):
        return ("garbled", "bad_queue_type")
    if any(not lo <= v <= hi for v, (lo, hi) in zip(values, _SHAPE_RANGES[shape])):
        return ("garbled", "out_of_range")
    return ("decision", shape, values, syslog_seconds(head))


# -------------------------------------------------------------------------------------------------
# Parser state and output
# -------------------------------------------------------------------------------------------------


@dataclass
class Batch:
    """Decisions in log order: ``columns`` is one int64 array per field of :data:`ALL_FIELDS` (-1 where the
    line's shape lacks the field), ``shape`` int8 indexes :data:`SHAPE_NAMES`, ``syslog_s`` float64 is the
    syslog timestamp in seconds (NaN where the line has none)."""

    columns: list[np.ndarray]
    shape: np.ndarray
    syslog_s: np.ndarray
    copies: np.ndarray | None = None
    """Run-length form: row i stands for ``copies[i]`` identical decisions (a repeat line); None = 1 each."""

    def __len__(self) -> int:
        return len(self.shape)

    def expanded(self, max_rows: int = EXPAND_ROWS) -> Iterator["Batch"]:
        """The decisions one by one, in batches of at most ``max_rows`` copies where repeats are expanded."""
        if self.copies is None:
            if len(self):
                yield self
            return
        counts = self.copies
        if int(counts.sum()) <= max_rows:
            yield self._take(np.repeat(np.arange(len(counts)), counts))
            return
        idx: list[int] = []
        cnt: list[int] = []
        room = max_rows
        for j, c in enumerate(counts.tolist()):
            while c > 0:
                take = min(c, room)
                idx.append(j)
                cnt.append(take)
                c -= take
                room -= take
                if room == 0:
                    yield self._take(np.repeat(np.asarray(idx), cnt))
                    idx, cnt, room = [], [], max_rows
        if idx:
            yield self._take(np.repeat(np.asarray(idx), cnt))

    def _take(self, rows: np.ndarray) -> "Batch":
        return Batch([c[rows] for c in self.columns], self.shape[rows], self.syslog_s[rows])

    def column(self, name: str) -> np.ndarray:
        return self.columns[_FIELD_POS[name]]

    def rows(self) -> np.ndarray:
        """[n, 26] int64, for tests and small data."""
        return np.stack(self.columns, axis=1) if len(self) else np.empty((0, len(ALL_FIELDS)), np.int64)


def _empty_batch() -> Batch:
    return Batch([np.empty(0, np.int64) for _ in ALL_FIELDS], np.empty(0, np.int8), np.empty(0, np.float64))


@dataclass
class _Last:
    """The last real (not blank, not a repeat) line seen: what a following repeat line refers to."""

    kind: str = "none"  # none | decision | garbled | unrelated | deferred (a file parsed on its own: see LogParser)
    reason: str = ""
    text: bytes = b""
    row: np.ndarray | None = None  # [26] int64, for a decision kept as values
    fast_index: int = -1  # for a decision that is a fast row of the current block
    shape: int = -1
    syslog_s: float = float("nan")


@dataclass
class _ExtraRows:
    """The decisions of one block that are not fast rows, in line order: per-line decisions, and the copies a
    repeat line stands for (of a fast row, by its index, or of a row kept as values)."""

    rows: list = field(default_factory=list)  # [26] int64 values, or None for a copy of a fast row
    src: list[int] = field(default_factory=list)  # the fast row copied, else -1 (the values are in rows)
    shape: list[int] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    line: list[int] = field(default_factory=list)
    copies: list[int] = field(default_factory=list)  # how many decisions each entry stands for (a repeat's count)

    def add(self, row, src: int, shape: int, ts: float, line: int, copies: int) -> None:
        self.rows.append(row)
        self.src.append(src)
        self.shape.append(shape)
        self.ts.append(ts)
        self.line.append(line)
        self.copies.append(copies)


@dataclass
class DeferredRepeat:
    """A repeat line that came before any real line of a file parsed detached from the files before it."""

    file_index: int
    """Which of the parser's files (an index into its ``stats``)."""
    line_no: int
    text: bytes
    count: int
    examples_before: dict[str, int]
    """How many examples each skip reason held when the line was read: where a skip it turns into goes."""


def resolve_deferred(prev: _Last, deferred: list[DeferredRepeat], stats: FileStats) -> Batch:
    """Settle a detached file's leading repeat lines against ``prev``, the last real line before the file.

    Does to ``stats`` exactly what the serial parser does when it meets these lines (counts, and examples in the
    place they would have taken), and returns the copies they stand for, which come before the file's own rows.
    """
    rows: list[np.ndarray] = []
    shapes: list[int] = []
    stamps: list[float] = []
    counts: list[int] = []
    inserted: Counter = Counter()
    for d in deferred:
        if prev.kind == "decision":
            stats.repeated_copies += d.count
            stats.decisions += d.count
            stats.shapes[prev.shape] += d.count
            rows.append(prev.row)
            shapes.append(prev.shape)
            stamps.append(prev.syslog_s)
            counts.append(d.count)
            continue
        if prev.kind == "unrelated":
            stats.unrelated += d.count
            continue
        reason, line_no, text, n = ((prev.reason, d.line_no, prev.text, d.count) if prev.kind == "garbled"
                                    else ("repeat_of_nothing", d.line_no, d.text, 1))
        # the serial parser's skip(): the count, and an example at the place it had when this line was read
        stats.skipped[reason] += n
        at = d.examples_before.get(reason, 0) + inserted[reason]
        probe = FileStats("")
        probe.skip(reason, line_no, text)
        ex = stats.examples.setdefault(reason, [])
        if at < MAX_EXAMPLES:
            ex.insert(at, probe.examples[reason][0])
            del ex[MAX_EXAMPLES:]
            inserted[reason] += 1
    if not rows:
        return _empty_batch()
    return Batch([np.ascontiguousarray(c) for c in np.stack(rows).T], np.asarray(shapes, np.int8),
                 np.asarray(stamps, np.float64), np.asarray(counts, np.int64))


def _unify(shape: int, values: list[int]) -> np.ndarray:
    row = np.full(len(ALL_FIELDS), -1, dtype=np.int64)
    row[_SHAPE_COLS[shape]] = values
    return row


class LogParser:
    """Parses one log set (the files of one repeat, oldest first) into :class:`Batch` es, with per-file stats.

    ``fast=False`` forces the per-line reference path (the tests check that both agree).
    ``detached=True`` parses files without knowing what came before them (a worker process given one rotated
    file): a repeat line before the file's first real line is not resolved but kept in :attr:`deferred`, and
    :func:`resolve_deferred` settles it later against the previous file's last line, as the serial parser would.
    """

    def __init__(self, *, fast: bool = True, block_size: int = READ_BLOCK, detached: bool = False):
        self.fast = fast
        self.block_size = block_size
        self.last = _Last("deferred" if detached else "none")
        self.deferred: list[DeferredRepeat] = []
        self.stats: list[FileStats] = []
        self.fallback_blocks = 0
        self.slow_lines = 0
        """Lines the per-line classifier decided (odd lines, and every line of a block Arrow could not read):
        a log whose decision lines land here is off the fast path (the bench's lines are tested not to)."""
        self._invalid: list[tuple[int | None, str]] = []
        self._options: dict[int, tuple] = {}

    def _on_invalid(self, row) -> str:
        self._invalid.append((row.number, row.text))
        return "skip"

    def _arrow_options(self, shape: int) -> tuple:
        """Arrow CSV options for one shape, built once: the syslog prefix, the fields, ``end``."""
        if shape not in self._options:
            fields = _SHAPE_FIELDS[shape]
            types = {n: pa.int64() for n in fields}
            types["_head"] = pa.binary()
            types["_end"] = pa.binary()
            self._options[shape] = (
                pacsv.ReadOptions(use_threads=False, column_names=["_head", *fields, "_end"],
                                  block_size=2 * self.block_size + (1 << 16)),
                pacsv.ParseOptions(delimiter=",", quote_char=False, escape_char=False, double_quote=False,
                                   newlines_in_values=False, ignore_empty_lines=False,
                                   invalid_row_handler=self._on_invalid),
                pacsv.ConvertOptions(column_types=types, null_values=[""], check_utf8=False,
                                     strings_can_be_null=False, quoted_strings_can_be_null=False),
            )
        return self._options[shape]

    # -- files ------------------------------------------------------------------------------------
    def parse_files(self, paths: list[Path], on_bytes=None) -> Iterator[Batch]:
        """Batches for every file in ``paths`` taken in rotation order; repeat state carries across files."""
        for path in order_log_files([Path(p) for p in paths]):
            yield from self.parse_file(path, on_bytes=on_bytes)

    def parse_file(self, path: Path, on_bytes=None) -> Iterator[Batch]:
        """Batches of one file, repeats expanded at most :data:`EXPAND_ROWS` copies at a time."""
        for batch in self.parse_file_unexpanded(path, on_bytes):
            yield from batch.expanded()

    def parse_file_unexpanded(self, path: Path, on_bytes=None) -> Iterator[Batch]:
        """Batches of one file, one per block, in run-length form (a repeat line is one row with its count)."""
        stats = FileStats(str(path))
        self.stats.append(stats)
        limit = decompressed_limit(Path(path))
        with open_log(path) as fh:
            line_no = 0
            for block in iter_blocks(fh, self.block_size, limit):
                stats.bytes += len(block)
                batch, nlines = self.parse_block(block, stats, line_no)
                line_no += nlines
                if on_bytes is not None:
                    on_bytes(len(block))
                yield batch
            if limit is not None and stats.bytes >= limit and fh.read(1):
                stats.skip("decompression_bomb", line_no, f"expands past {limit:,} bytes; the rest is not read")

    def iter_bytes(self, data: bytes, name: str = "<bytes>") -> Iterator[Batch]:
        """Batches of an in-memory text parsed as one file (benchmarks, tests)."""
        stats = FileStats(name, bytes=len(data))
        self.stats.append(stats)
        line_no = 0
        for block in iter_blocks(io.BytesIO(data), self.block_size):
            batch, n = self.parse_block(block, stats, line_no)
            line_no += n
            yield from batch.expanded()

    def parse_bytes(self, data: bytes, name: str = "<bytes>") -> Batch:
        """Parse an in-memory text (tests) as one file, all decisions in one batch."""
        return concat_batches(list(self.iter_bytes(data, name)))

    # -- one block --------------------------------------------------------------------------------
    def parse_block(self, block: bytes, stats: FileStats, line_offset: int) -> tuple[Batch, int]:
        """Parse a block of whole lines; returns its decisions and its number of lines."""
        result = None
        if self.fast:
            if not any(m in block for m in _MARKERS):
                return self._quiet_block(block, stats)
            shape = _first_shape(block)
            # a lone CR would be a line break to Arrow but not to us: such blocks go the per-line way
            if shape >= 0 and (b"\r" not in block or block.count(b"\r") == block.count(b"\r\n")):
                result = self._fast_block(block, shape, stats, line_offset)
                if result is None:
                    self.fallback_blocks += 1
        if result is None:
            result = self._slow_block(block, stats, line_offset)
        return result

    def _quiet_block(self, block: bytes, stats: FileStats) -> tuple[Batch, int]:
        """A block without any byte sequence a decision, a repeat or a garbled decision line needs (no prefix,
        not even its first bytes, no "-start", no "last message repeated"): every line is blank or unrelated,
        which :func:`classify_line` would say one by one -- counted here at C speed, so a small compressed
        file that expands to millions of short lines costs seconds, not minutes."""
        lines = block.split(b"\n")
        if block.endswith(b"\n"):
            lines.pop()
        unrelated = sum(map(bool, map(bytes.rstrip, lines)))
        stats.lines += len(lines)
        stats.blank += len(lines) - unrelated
        stats.unrelated += unrelated
        if unrelated:
            self.last = _Last("unrelated")
        return _empty_batch(), len(lines)

    def _slow_block(self, block: bytes, stats: FileStats, line_offset: int) -> tuple[Batch, int]:
        lines = block.split(b"\n")
        if block.endswith(b"\n"):
            lines.pop()
        stats.lines += len(lines)
        self.slow_lines += len(lines)
        seen: dict[bytes, list[tuple]] = {}  # a line's events depend on its bytes alone; floods repeat lines
        events = [(i + 1, line, seen[line] if line in seen else seen.setdefault(line, classify_line(line)))
                  for i, line in enumerate(lines)]
        return self._assemble(None, -1, None, np.empty(0, np.int64), events, stats, line_offset), len(lines)

    def _fast_block(self, block: bytes, shape: int, stats: FileStats,
                    line_offset: int) -> tuple[Batch, int] | None:
        fields = _SHAPE_FIELDS[shape]
        names = ["_head", *fields, "_end"]
        read_opts, parse_opts, convert_opts = self._arrow_options(shape)
        self._invalid = invalid = []
        try:
            table = pacsv.read_csv(pa.BufferReader(block), read_options=read_opts, parse_options=parse_opts,
                                   convert_options=convert_opts)
        except (pa.ArrowInvalid, UnicodeDecodeError):
            return None  # a non-integer in a field, or bytes that are not UTF-8 in an odd line
        n = table.num_rows
        nlines = n + len(invalid)
        if any(num is None or not 0 < num <= nlines for num, _ in invalid):
            return None
        if invalid:
            inv_nums = np.fromiter((num for num, _ in invalid), dtype=np.int64, count=len(invalid))
            row_line = np.delete(np.arange(1, nlines + 1, dtype=np.int64), inv_nums - 1)
        else:
            row_line = np.arange(1, n + 1, dtype=np.int64)
        stats.lines += nlines

        ints = [_one_chunk(table.column(i)) for i in range(1, len(names) - 1)]
        has_null = None
        for a in ints:
            if a.null_count:
                m = a.is_null().to_numpy(zero_copy_only=False)
                has_null = m if has_null is None else has_null | m
        cols = [_int64_numpy(a) for a in ints]

        # head: must end with this shape's prefix; holds the syslog timestamp; an extra "-start" in it is a
        # line cut short before its first comma and glued to this one (counted as truncated, the row is kept)
        hd = _one_chunk(table.column(0)).dictionary_encode()
        h_idx = _index_numpy(hd.indices)
        prefix = _PREFIXES[shape]
        uniq = hd.dictionary.to_pylist()
        h_ok = np.fromiter((u.endswith(prefix) for u in uniq), dtype=bool, count=len(uniq))
        h_ts = np.fromiter((syslog_seconds(u) if ok else np.nan for u, ok in zip(uniq, h_ok)), dtype=np.float64,
                           count=len(uniq))
        h_glued = np.fromiter((u.count(_START_MARK) - 1 if ok else 0 for u, ok in zip(uniq, h_ok)), dtype=np.int64,
                              count=len(uniq))
        ed = _one_chunk(table.column(len(names) - 1)).dictionary_encode()
        e_ok = np.fromiter((u.rstrip() == _END for u in ed.dictionary.to_pylist()), dtype=bool)
        action = cols[fields.index("dequeue_action")]
        queue = cols[fields.index("queue_type")]
        ok = (action >= ACTION_FORWARD) & (action <= ACTION_MARK) & ((queue == 0) | (queue == 1))
        for col, (lo, hi) in zip(cols, _SHAPE_RANGES[shape]):  # every field against logformat.FIELD_RANGES
            ok &= (col >= lo) & (col <= hi)
        if not h_ok.all():
            ok &= h_ok[h_idx]
        if not e_ok.all():
            ok &= e_ok[_index_numpy(ed.indices)]
        if has_null is not None:
            ok &= ~has_null

        # every row that is not a good decision is decided by the per-line classifier, like odd lines
        events = []
        seen: dict[bytes, list[tuple]] = {}  # a line's events depend on its bytes alone; floods repeat lines
        all_good = bool(ok.all())
        if not all_good:
            for j in np.flatnonzero(~ok):
                text = _row_text(table, int(j))
                events.append((int(row_line[j]), text, seen[text] if text in seen else
                               seen.setdefault(text, classify_line(text))))
        if h_glued.any():
            glued = h_glued[h_idx]
            for j in np.flatnonzero(ok & (glued > 0)):
                stats.skip("truncated", line_offset + int(row_line[j]), _row_text(table, int(j)), int(glued[j]))
        for num, text in invalid:
            raw = text.encode("utf-8", "surrogateescape")
            events.append((num, raw, seen[raw] if raw in seen else seen.setdefault(raw, classify_line(raw))))
        events.sort(key=lambda e: e[0])
        self.slow_lines += len(events)

        ts = h_ts[h_idx] if len(uniq) > 1 else np.full(n, h_ts[0] if len(uniq) else np.nan)
        columns = _full_columns(shape, cols, n)
        if not all_good:
            g = np.flatnonzero(ok)
            columns, ts, row_line = [c[g] for c in columns], ts[g], row_line[g]
        return self._assemble(columns, shape, ts, row_line, events, stats, line_offset), nlines

    # -- ordering, repeats, counting ----------------------------------------------------------------
    def _assemble(self, fast_cols, fast_shape: int, fast_ts, fast_line, events, stats: FileStats,
                  line_offset: int) -> Batch:
        """Merge fast rows with per-line events in line order, expanding repeat lines; count everything."""
        n_fast = 0 if fast_cols is None else len(fast_line)
        stats.decisions += n_fast
        if n_fast:
            stats.shapes[fast_shape] += n_fast
        extra = _ExtraRows()
        last_event: tuple[int, _Last] | None = None

        def last_before(ln: int) -> _Last:
            j = int(np.searchsorted(fast_line, ln)) - 1 if n_fast else -1
            fast_ln = int(fast_line[j]) if j >= 0 else -1
            ev_ln = last_event[0] if last_event is not None else -1
            if fast_ln < 0 and ev_ln < 0:
                return self.last
            if fast_ln > ev_ln:
                return _Last("decision", fast_index=j, shape=fast_shape, syslog_s=float(fast_ts[j]))
            return last_event[1]

        for ln, text, evs in events:
            for ev in evs:
                kind = ev[0]
                if kind == "blank":
                    stats.blank += 1
                elif kind == "unrelated":
                    stats.unrelated += 1
                    last_event = (ln, _Last("unrelated"))
                elif kind == "garbled":
                    stats.skip(ev[1], line_offset + ln, text)
                    last_event = (ln, _Last("garbled", reason=ev[1], text=text))
                elif kind == "decision":
                    _, shape, values, sts = ev
                    row = _unify(shape, values)
                    extra.add(row, -1, shape, sts, ln, 1)
                    stats.decisions += 1
                    stats.shapes[shape] += 1
                    last_event = (ln, _Last("decision", row=row, shape=shape, syslog_s=sts))
                elif kind == "repeat":
                    count = ev[1]
                    stats.repeat_lines += 1
                    prev = last_before(ln)
                    if count > MAX_REPEAT_COUNT:
                        stats.skip("repeat_over_cap", line_offset + ln, text)
                    elif prev.kind == "decision":
                        stats.repeated_copies += count
                        stats.decisions += count
                        stats.shapes[prev.shape] += count
                        extra.add(prev.row, prev.fast_index if prev.row is None else -1, prev.shape, prev.syslog_s,
                                  ln, count)
                    elif prev.kind == "garbled":
                        stats.skip(prev.reason, line_offset + ln, prev.text, count)
                    elif prev.kind == "unrelated":
                        stats.unrelated += count
                    elif prev.kind == "deferred":
                        self.deferred.append(DeferredRepeat(
                            len(self.stats) - 1, line_offset + ln, text, count,
                            {r: len(e) for r, e in stats.examples.items()}))
                    else:
                        stats.skip("repeat_of_nothing", line_offset + ln, text)

        # what a repeat line at the start of the next block or file refers to
        last_fast_ln = int(fast_line[-1]) if n_fast else -1
        last_ev_ln = last_event[0] if last_event is not None else -1
        if last_fast_ln > last_ev_ln:
            self.last = _Last("decision", row=np.array([c[-1] for c in fast_cols], dtype=np.int64),
                              shape=fast_shape, syslog_s=float(fast_ts[-1]))
        elif last_event is not None:
            self.last = last_event[1]
        return _merge(fast_cols, fast_shape, fast_ts, fast_line, n_fast, extra)


def _merge(fast_cols, fast_shape: int, fast_ts, fast_line, n_fast: int, extra: _ExtraRows) -> Batch:
    """One block's batch: its fast rows and its other decisions, in line order."""
    if not extra.line:
        if n_fast == 0:
            return _empty_batch()
        return Batch(fast_cols, np.full(n_fast, fast_shape, np.int8), fast_ts)
    m = len(extra.line)
    ev_vals = np.empty((m, len(ALL_FIELDS)), dtype=np.int64)
    src = np.asarray(extra.src, dtype=np.int64)
    from_fast = src >= 0
    if from_fast.any():
        pick = src[from_fast]
        for k in range(len(ALL_FIELDS)):
            ev_vals[from_fast, k] = fast_cols[k][pick]
    if not from_fast.all():
        ev_vals[~from_fast] = np.stack([extra.rows[k] for k in np.flatnonzero(~from_fast)])
    ev_shape = np.asarray(extra.shape, dtype=np.int8)
    ev_ts = np.asarray(extra.ts, dtype=np.float64)
    ev_copies = np.asarray(extra.copies, dtype=np.int64)
    copies = ev_copies if (ev_copies != 1).any() else None
    if n_fast == 0:
        return Batch([np.ascontiguousarray(ev_vals[:, k]) for k in range(len(ALL_FIELDS))], ev_shape, ev_ts, copies)
    order = np.argsort(np.concatenate([fast_line, np.asarray(extra.line, dtype=np.int64)]), kind="stable")
    if copies is not None:
        copies = np.concatenate([np.ones(n_fast, np.int64), ev_copies])[order]
    return Batch([np.concatenate([fast_cols[k], ev_vals[:, k]])[order] for k in range(len(ALL_FIELDS))],
                 np.concatenate([np.full(n_fast, fast_shape, np.int8), ev_shape])[order],
                 np.concatenate([fast_ts, ev_ts])[order], copies)


def _first_shape(block: bytes) -> int:
    """The shape of the block's first decision line (-1 when it has none): the block's main shape."""
    start = 0
    while (i := block.find(b"-start,", start)) >= 0:
        for shape, pc_ in enumerate(_PREFIX_COMMA):
            if block.startswith(pc_, i + 7 - len(pc_)):
                return shape
        start = i + 1
    return -1


def _int64_numpy(a: pa.Array) -> np.ndarray:
    """An int64 Arrow array as numpy without a copy (``to_numpy`` is slow per call); nulls become 0."""
    if a.null_count:
        a = pc.fill_null(a, 0)
    return np.frombuffer(a.buffers()[1], dtype=np.int64, count=len(a), offset=a.offset * 8)


def _index_numpy(a: pa.Array) -> np.ndarray:
    return np.frombuffer(a.buffers()[1], dtype=np.int32, count=len(a), offset=a.offset * 4)


def _full_columns(shape: int, cols: list[np.ndarray], n: int) -> list[np.ndarray]:
    out: list[np.ndarray | None] = [None] * len(ALL_FIELDS)
    for k, c in enumerate(cols):
        out[_SHAPE_COLS[shape][k]] = c
    missing = None
    for k in range(len(ALL_FIELDS)):
        if out[k] is None:
            if missing is None:
                missing = np.full(n, -1, dtype=np.int64)
            out[k] = missing
    return out  # type: ignore[return-value]


def _one_chunk(col: pa.ChunkedArray) -> pa.Array:
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


def _row_text(table: pa.Table, j: int) -> bytes:
    """A row's text rebuilt from its columns (for rows Arrow read but that are not good decisions)."""
    parts = [col[j].as_py() for col in table.columns]
    if all(v is None or v == b"" for v in parts):
        return b""
    return b",".join(b"" if v is None else v if isinstance(v, bytes) else str(v).encode() for v in parts)


def concat_batches(batches: list[Batch]) -> Batch:
    batches = [b for b in batches if len(b)]
    if not batches:
        return _empty_batch()
    if len(batches) == 1:
        return batches[0]
    return Batch([np.concatenate([b.columns[k] for b in batches]) for k in range(len(ALL_FIELDS))],
                 np.concatenate([b.shape for b in batches]), np.concatenate([b.syslog_s for b in batches]))


def unwrap_syslog_year(seconds: np.ndarray, last: float) -> tuple[np.ndarray, float]:
    """RFC 3164 timestamps have no year: add a year each time they jump back by more than half a year."""
    if not len(seconds):
        return seconds, last
    s = seconds.copy()
    finite = np.isfinite(s)
    if not finite.any():
        return s, last
    vals = s[finite]
    prev = np.concatenate(([last if np.isfinite(last) else vals[0]], vals[:-1]))
    wraps = np.cumsum((vals - prev) < -_YEAR_S / 2)
    vals = vals + wraps * float(_YEAR_S)
    s[finite] = vals
    return s, float(vals[-1])


def parse_log_files(paths: list[Path], *, fast: bool = True) -> tuple[Batch, list[FileStats]]:
    """All decisions of one log set (files in rotation order) and each file's stats."""
    parser = LogParser(fast=fast)
    batch = concat_batches(list(parser.parse_files(paths)))
    return batch, parser.stats
