"""Parse the files of one rotated log set in worker processes, one file each, merged back in rotation order.

Why: decompressing bzip2 costs more than parsing the text (libbz2 inflates about 50 MB, some 0.3M lines, per
second and core), and newsyslog's rotated files are independent streams, so one process per file uses every
core. The result is exactly the serial :class:`~l4stb.analysis.logparse.LogParser`'s -- the same rows in the
same order, the same per-file statistics, the same caps -- because each worker runs that parser on its file
(``detached``), and the one thing a file needs from the file before it, what a leading "last message repeated
N times" line refers to, is settled here in order by :func:`~l4stb.analysis.logparse.resolve_deferred`.

Memory stays bounded: a worker writes its rows (run-length form, repeats not expanded) to an Arrow IPC file in
a temporary folder, the parent maps it and expands repeats lazily as the serial parser does, and at most
``jobs + 1`` files are in flight ahead of the one being read.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa

from l4stb import interrupts
from l4stb.analysis.logparse import (ALL_FIELDS, READ_BLOCK, Batch, DeferredRepeat, FileStats, LogParser, _Last,
                                     concat_batches, resolve_deferred)
from l4stb.logfiles import order_log_files

_SCHEMA = pa.schema([*(pa.field(f"c{k}", pa.int64()) for k in range(len(ALL_FIELDS))),
                     pa.field("shape", pa.int8()), pa.field("syslog_s", pa.float64()), pa.field("copies", pa.int64())])


@dataclass
class _FileResult:
    """What a worker hands back for one file: its stats, leading repeats, last line, and where its rows are."""

    stats: FileStats
    deferred: list[DeferredRepeat]
    last: _Last
    fallback_blocks: int
    slow_lines: int
    rows_path: str


def _parse_one(path: str, spill_dir: str, index: int, fast: bool, block_size: int) -> _FileResult:
    """Worker: parse one file detached, rows to ``spill_dir`` (unexpanded), stats and state back by pickle."""
    parser = LogParser(fast=fast, block_size=block_size, detached=True)
    out = os.path.join(spill_dir, f"{index:06d}.arrow")
    with pa.OSFile(out, "wb") as sink, pa.ipc.new_file(sink, _SCHEMA) as writer:
        for batch in parser.parse_file_unexpanded(Path(path)):
            copies = batch.copies if batch.copies is not None else np.ones(len(batch), np.int64)
            writer.write_batch(pa.record_batch([*batch.columns, batch.shape, batch.syslog_s, copies], schema=_SCHEMA))
    return _FileResult(parser.stats[0], parser.deferred, parser.last, parser.fallback_blocks, parser.slow_lines, out)


def _read_rows(path: str) -> Iterator[Batch]:
    """The batches a worker wrote, memory-mapped (no copy), in the order it wrote them.

    The map is not closed here: the arrays handed out point into it, and it goes when the last of them does."""
    reader = pa.ipc.open_file(pa.memory_map(path))
    for i in range(reader.num_record_batches):
        rb = reader.get_batch(i)
        cols = [rb.column(k).to_numpy() for k in range(rb.num_columns)]
        copies = cols[-1]
        yield Batch(cols[: len(ALL_FIELDS)], cols[-3], cols[-2], None if (copies == 1).all() else copies)


class ParallelLogParser:
    """The files of one log set parsed in ``jobs`` processes; same interface and results as :class:`LogParser`."""

    def __init__(self, *, jobs: int | None = None, fast: bool = True, block_size: int = READ_BLOCK):
        self.jobs = max(1, jobs if jobs is not None else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                        else os.cpu_count() or 1)
        self.fast = fast
        self.block_size = block_size
        self.stats: list[FileStats] = []
        self.fallback_blocks = 0
        self.slow_lines = 0

    def parse_files(self, paths: list[Path], on_file: Callable[[Path], None] | None = None) -> Iterator[Batch]:
        """Batches for every file in rotation order, exactly as ``LogParser.parse_files`` gives them.

        ``on_file`` is called with each file once its rows have all been yielded (progress)."""
        ordered = order_log_files([Path(p) for p in paths])
        # a daemonic process (some pools' workers) may not start processes of its own: parse in it serially
        if self.jobs == 1 or len(ordered) == 1 or multiprocessing.current_process().daemon:
            serial = LogParser(fast=self.fast, block_size=self.block_size)
            for path in ordered:
                yield from serial.parse_file(path)
                if on_file is not None:
                    on_file(path)
            self.stats.extend(serial.stats)
            self.fallback_blocks += serial.fallback_blocks
            self.slow_lines += serial.slow_lines
            return
        with tempfile.TemporaryDirectory(prefix="l4stb-parse-") as spill, ProcessPoolExecutor(
                max_workers=min(self.jobs, len(ordered)), initializer=interrupts.die_with_parent,
                initargs=(os.getpid(),)) as pool:
            todo = deque(enumerate(ordered))
            inflight: deque[tuple[Path, Future]] = deque()

            def submit() -> None:
                while todo and len(inflight) <= self.jobs:
                    i, p = todo.popleft()
                    inflight.append((p, pool.submit(_parse_one, str(p), spill, i, self.fast, self.block_size)))

            prev = _Last()
            try:
                submit()
                while inflight:
                    path, fut = inflight.popleft()
                    res = fut.result()
                    submit()
                    head = resolve_deferred(prev, res.deferred, res.stats)
                    if res.last.kind != "deferred":
                        prev = res.last
                    self.stats.append(res.stats)
                    self.fallback_blocks += res.fallback_blocks
                    self.slow_lines += res.slow_lines
                    yield from head.expanded()
                    for batch in _read_rows(res.rows_path):
                        yield from batch.expanded()
                    os.unlink(res.rows_path)
                    if on_file is not None:
                        on_file(path)
            except BaseException:
                interrupts.stop_workers(pool)  # Ctrl-C or a failed file: no orphan keeps decompressing
                raise


def parse_log_files_parallel(paths: list[Path], *, jobs: int | None = None) -> tuple[Batch, list[FileStats]]:
    """All decisions of one log set and each file's stats, parsed in ``jobs`` processes (tests, small sets)."""
    parser = ParallelLogParser(jobs=jobs)
    batch = concat_batches(list(parser.parse_files(paths)))
    return batch, parser.stats
