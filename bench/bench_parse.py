"""Router log parser throughput, plain and .bz2, serial and in parallel: prints a table, asserts nothing.

    python bench/bench_parse.py [--lines 1000000] [--jobs 2]

Inputs are generated here, never hand-written, so they cannot drift from the format again:

* **l4stb lines** -- one value per field of :data:`l4stb.logformat.L4STB_FIELD_NAMES` (plausible values for the
  fields this bench knows, the low end of :data:`~l4stb.logformat.FIELD_RANGES` for any field added later),
  written by the simulator's own syslogd/newsyslog emulation (:class:`l4stb.sim.syslog.SyslogFile`): the same
  syslog prefix, the 10 MB rotation and the bzip2 -9 rotated files a simulated or real router produces
  (tests/test_bench_parse.py fails if these lines leave the parser's fast path);
* **paper lines** (24 fields, the FreeBSD L4S data) and a messy file (unrelated kernel messages, repeat lines,
  truncated lines) for the rows kept from earlier versions.

Rows:

* ``arrow csv only``  -- Arrow's CSV reader on the same blocks, nothing else: the floor of this design;
* ``bzip2 only``      -- decompressing the rotated .bz2 files, nothing else (libbz2 through Python's bz2);
* ``parser serial``   -- LogParser as the parse step ran it before (one process);
* ``parser parallel`` -- ParallelLogParser: one process per rotated file, ``--jobs`` at a time, merged in order
  (exactly the serial result: tests/test_logparse_parallel.py);
* ``parser (per-line)`` -- the reference path the fast one is tested against (on a tenth of the lines);
* ``parse step``      -- ensure_parsed on a run folder: parallel parser + typed columns + zstd parquet writing;
* ``64 MiB bomb``     -- a few kB of bzip2 that expand to the decompression cap of very short lines (blank,
  unrelated, truncated, repeat lines): what a hostile or broken file costs before the cap stops it.

The process is pinned to ``--jobs`` CPUs. CPU time counts this process and its workers, so on a busy shared
machine ``M lines/s (CPU)`` is the fairer number for serial rows; wall time is what the parallel rows buy.
"""

from __future__ import annotations

import argparse
import bz2
import io
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from l4stb.analysis.logparse import READ_BLOCK, LogParser, iter_blocks
from l4stb.logfiles import open_log, order_log_files
from l4stb.analysis.logparse_parallel import ParallelLogParser
from l4stb.logformat import FIELD_NAMES, FIELD_RANGES, L4STB_FIELD_NAMES, PAPER_PREFIX, PROB_SCALE
from l4stb.manifest import Manifest, RepeatRecord, save_manifest
from l4stb.sim.syslog import SyslogFile
from l4stb.workspace import Workspace

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def l4stb_values(n: int, seed: int = 2) -> np.ndarray:
    """[n, len(L4STB_FIELD_NAMES)] values in the format's field order, like a 100 Mbit/s DualPI2 run's.

    Built from the field list: a field this function has no model for gets the low end of its range, so a field
    added to logformat changes the lines here with it."""
    rng = np.random.default_rng(seed)
    idx = np.arange(n, dtype=np.int64)
    known = {
        "queue_type": lambda: rng.integers(0, 2, n),
        "qdelay_reference": lambda: np.full(n, 15_000), "tupdate": lambda: np.full(n, 16_000),
        "max_ecn_threshold": lambda: np.full(n, PROB_SCALE // 4), "alpha_coefficient": lambda: np.full(n, 160),
        "beta_coefficient": lambda: np.full(n, 3200), "flags": lambda: np.full(n, 5),
        "drop_probability": lambda: 70_000_000 + (idx // 50) * 997 % 5_000_000,
        "current_queue_delay": lambda: rng.integers(40_000, 60_000, n),
        "previous_queue_delay": lambda: 50_000 + (idx // 120) % 3000,
        "accumulated_probability": lambda: 388_000_000 + (idx // 120) * 31 % 1_000_000,
        "measurement_start_time": lambda: idx * 120 // 16_000 * 16_000,
        "dequeue_count": lambda: idx % 2000, "status_flags": lambda: np.full(n, 3),
        "total_packets": lambda: idx // 2, "total_bytes": lambda: idx // 2 * 1500,
        "queue_length": lambda: rng.integers(600, 700, n),
        "length_in_bytes": lambda: rng.integers(600, 700, n) * 1500, "total_drops": lambda: idx // 200,
        "packet_length": lambda: np.full(n, 1500), "dequeue_action": lambda: rng.choice([1] * 95 + [2] * 2 + [3] * 3, n),
        "timestamp_us": lambda: idx * 120, "flow_id": lambda: rng.integers(0, 9, n),
        "decided_by": lambda: np.zeros(n, np.int64),
    }
    cols = []
    for name in L4STB_FIELD_NAMES:
        lo, hi = FIELD_RANGES[name]
        col = known[name]() if name in known else np.full(n, max(lo, 0))
        cols.append(np.clip(col, max(lo, 0), hi).astype(np.int64))
    return np.stack(cols, axis=1)


def write_l4stb_log_set(folder: Path, n: int, *, compress: str = "bzip2", rotate_size: int = 10_000_000,
                        seed: int = 2) -> list[Path]:
    """The log set the simulator's syslogd and newsyslog write for ``n`` decisions: live file + rotated files."""
    log = SyslogFile(folder / "dualpi2.log", hostname="router", epoch_s=1_700_000_000, rotate_size=rotate_size,
                     rotate_count=1000, compress=compress)
    for row in l4stb_values(n, seed).tolist():
        log.emit_fields(tuple(row))
    return log.close()


def _fields(n: int, rng: np.random.Generator) -> np.ndarray:
    """[n, 24] plausible field values (paper order)."""
    idx = np.arange(n, dtype=np.int64)
    cols = {name: np.zeros(n, dtype=np.int64) for name in FIELD_NAMES}
    cols["queue_type"] = rng.integers(0, 2, n)
    cols["qdelay_reference"][:] = 15000
    cols["tupdate"][:] = 15000
    cols["max_burst"][:] = 150000
    cols["max_ecn_threshold"][:] = 819
    cols["alpha_coefficient"][:] = 1024
    cols["beta_coefficient"][:] = 10240
    cols["flags"][:] = 3
    cols["burst_allowance"] = rng.choice([0, 0, 0, 30000, 150000], n)
    cols["drop_probability"] = rng.integers(0, PROB_SCALE // 4, n)
    cols["current_queue_delay"] = rng.integers(0, 60, n) * 10000
    cols["previous_queue_delay"] = rng.integers(0, 60, n) * 10000
    cols["accumulated_probability"] = rng.integers(0, 20 * PROB_SCALE, n)
    cols["measurement_start_time"] = 1_000_000 + idx * 1200
    cols["dequeue_count"] = idx % 5000
    cols["status_flags"][:] = 1
    cols["total_packets"] = 100_000 + idx
    cols["total_bytes"] = 150_000_000 + idx * 1400
    cols["queue_length"] = rng.integers(0, 300, n)
    cols["length_in_bytes"] = rng.integers(0, 450_000, n)
    cols["total_drops"] = idx // 150
    cols["packet_length"] = rng.choice([66, 1500, 1514], n)
    cols["dequeue_action"] = rng.choice([1] * 90 + [2] * 8 + [3] * 2, n)
    return np.stack([cols[name] for name in FIELD_NAMES], axis=1)


def _stamps(n: int, per_second: int = 800) -> list[str]:
    out = []
    for s in range((n + per_second - 1) // per_second):
        day, rem = divmod(s, 86400)
        stamp = f"{MONTHS[11]} {29 + day:2d} {rem // 3600:02d}:{rem // 60 % 60:02d}:{rem % 60:02d}"
        out.extend([stamp] * per_second)
    return out[:n]


def paper_text(n: int, seed: int = 1) -> bytes:
    v = _fields(n, np.random.default_rng(seed))
    stamps = _stamps(n)
    rows = (",".join(map(str, r)) for r in v.tolist())
    return "".join(f"{t} dummynet-VM1 kernel: {PAPER_PREFIX},{r},end \n" for t, r in zip(stamps, rows)).encode()


def messy_text(n: int, seed: int = 3) -> bytes:
    rng = np.random.default_rng(seed)
    lines = paper_text(n, seed).split(b"\n")[:-1]
    out = []
    for line, u in zip(lines, rng.random(len(lines))):
        if u < 0.03:
            out.append(b"Dec 29 00:00:00 dummynet-VM1 kernel: em1: link state changed to UP")
        elif u < 0.04:
            out.append(b"Dec 29 00:00:00 dummynet-VM1 last message repeated 3 times")
        elif u < 0.045:
            out.append(line[: len(line) // 2])
            continue
        out.append(line)
    return b"\n".join(out) + b"\n"


def arrow_only(data: bytes, fields: tuple[str, ...]) -> int:
    names = ["_head", *fields, "_end"]
    types = {n: pa.int64() for n in fields}
    types["_head"] = pa.binary()
    types["_end"] = pa.binary()
    ro = pacsv.ReadOptions(use_threads=False, column_names=names, block_size=2 * READ_BLOCK + (1 << 16))
    po = pacsv.ParseOptions(delimiter=",", quote_char=False, ignore_empty_lines=False,
                            invalid_row_handler=lambda row: "skip")
    co = pacsv.ConvertOptions(column_types=types, null_values=[""], check_utf8=False)
    rows = 0
    for block in iter_blocks(io.BytesIO(data)):
        rows += pacsv.read_csv(pa.BufferReader(block), read_options=ro, parse_options=po, convert_options=co).num_rows
    return rows


def _cpu_s() -> float:
    """CPU seconds of this process and of its finished child processes (the parallel parser's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn, repeats: int = 3) -> tuple[float, float, object]:
    """Best wall and best CPU seconds over ``repeats`` runs, and the last result."""
    best_wall = best_cpu = float("inf")
    out = None
    for _ in range(repeats):
        w, c = time.perf_counter(), _cpu_s()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, _cpu_s() - c)
    return best_wall, best_cpu, out


def parse_bytes(data: bytes, fast: bool = True) -> int:
    """Decisions of an in-memory log, streamed batch by batch as the parse step consumes them."""
    return sum(len(b) for b in LogParser(fast=fast).iter_bytes(data))


def parse_serial(paths: list[Path]) -> int:
    return sum(len(b) for b in LogParser().parse_files(paths))


def parse_parallel(paths: list[Path], jobs: int) -> int:
    return sum(len(b) for b in ParallelLogParser(jobs=jobs).parse_files(paths))


def bzip2_only(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        with open_log(p) as fh:
            while chunk := fh.read(READ_BLOCK):
                total += len(chunk)
    return total


SHORT_LINES = {
    "blank lines": b"\n",
    "short unrelated lines": b"x\n",
    "truncated decision lines": b"l4stb_aqm-start,\n",
    "repeat lines of nothing": b"Dec 30 10:00:00 r1 last message repeated 2 times\n",
}
"""Small .bz2 files that expand to the decompression cap (64 MiB) of very short lines: the worst case per byte."""


def short_line_bomb(path: Path, line: bytes) -> int:
    """A .bz2 of concatenated 1 MiB streams (bzip2 reads them as one) just past the cap; returns its line count
    up to the cap."""
    from l4stb.analysis.logparse import MIN_DECOMPRESSED_LIMIT

    mib = line * ((1 << 20) // len(line))
    stream = bz2.compress(mib)
    path.write_bytes(stream * (MIN_DECOMPRESSED_LIMIT // len(mib) + 2))
    return MIN_DECOMPRESSED_LIMIT // len(line)


def parse_step(root: Path, files: list[Path]) -> int:
    from l4stb.analysis.packets import ensure_parsed

    ws = Workspace.at(root / f"ws{time.perf_counter_ns()}")
    save_manifest(ws, Manifest(run_id="bench", provider="sim", steps={"fetch": {"status": "done"}},
                               repeats={"1": RepeatRecord(repeat=1, seed=1, status="ok")}))
    folder = ws.raw_dir("bench") / "router" / "r01"
    folder.mkdir(parents=True)
    for f in files:
        os.link(f, folder / f.name)
    return ensure_parsed(ws, "bench").packets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000, help="l4stb decisions in the generated log set")
    ap.add_argument("--jobs", type=int, default=2, help="CPUs to pin to and worker processes for the parallel rows")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--inputs", default=None,
                    help="keep the generated l4stb log set in this folder and reuse it when it is there already")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(allowed[: args.jobs]))
    n = args.lines
    rows: list[tuple[str, str, int, int, float, float]] = []

    def add(what: str, inp: str, lines: int, nbytes: int, fn, repeats: int = args.repeats) -> None:
        wall, cpu, out = timed(fn, repeats)
        rows.append((what, inp, lines, nbytes, wall, cpu))

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        kept = Path(args.inputs) / f"l4stb-{n}" if args.inputs else None
        if kept is None:
            bz2_set = order_log_files(write_l4stb_log_set(root / "bz2", n))
        else:
            if not kept.is_dir():  # written beside, then renamed: an interrupted run leaves no half set
                partial = kept.with_name(kept.name + ".partial")
                shutil.rmtree(partial, ignore_errors=True)
                write_l4stb_log_set(partial, n)
                os.replace(partial, kept)
            bz2_set = order_log_files(list(kept.iterdir()))
        plain_set = [root / "plain" / p.name.removesuffix(".bz2") for p in bz2_set]
        (root / "plain").mkdir()
        for src, dst in zip(bz2_set, plain_set):
            with open(src, "rb") as fh:
                dst.write_bytes(bz2.decompress(fh.read()) if src.suffix == ".bz2" else fh.read())
        paper = paper_text(n // 2)
        messy = messy_text(n // 2)
        small = paper_text(max(1, n // 20))
        gen_s = time.perf_counter() - t0
        plain_bytes = sum(p.stat().st_size for p in plain_set)
        bz2_bytes = sum(p.stat().st_size for p in bz2_set)
        lines = sum(1 for p in plain_set for _ in open(p, "rb"))
        live = max(plain_set, key=lambda p: p.stat().st_size).read_bytes()
        label = f"l4stb {len(L4STB_FIELD_NAMES)}-field"

        add("arrow csv only", f"{label}, one file", live.count(b"\n"), len(live),
            lambda: arrow_only(live, L4STB_FIELD_NAMES))
        add("parser serial", f"{label}, plain set", lines, plain_bytes, lambda: parse_serial(plain_set))
        add("parser parallel", f"{label}, plain set", lines, plain_bytes,
            lambda: parse_parallel(plain_set, args.jobs))
        add("bzip2 only", f"{label}, .bz2 set", lines, bz2_bytes, lambda: bzip2_only(bz2_set), 1)
        add("parser serial", f"{label}, .bz2 set", lines, bz2_bytes, lambda: parse_serial(bz2_set), 1)
        add("parser parallel", f"{label}, .bz2 set", lines, bz2_bytes,
            lambda: parse_parallel(bz2_set, args.jobs), 1)
        add("parser serial", "paper 24-field", paper.count(b"\n"), len(paper), lambda: parse_bytes(paper))
        add("parser serial", "messy (5% odd lines)", messy.count(b"\n"), len(messy), lambda: parse_bytes(messy))
        add("parser (per-line)", "paper 24-field", small.count(b"\n"), len(small),
            lambda: parse_bytes(small, fast=False), 1)
        add("parse step", ".bz2 set -> parquet", lines, bz2_bytes, lambda: parse_step(root, bz2_set), 1)
        for what, line in SHORT_LINES.items():
            bomb = root / "bomb.bz2"
            nl = short_line_bomb(bomb, line)
            add("parser serial", f"64 MiB bomb: {what}", nl, bomb.stat().st_size, lambda bomb=bomb: parse_serial([bomb]), 1)

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"router log parsing on {args.jobs} CPUs ({n:,} l4stb decisions in {len(bz2_set)} files, "
                        f"{bz2_bytes / 1e6:.1f} MB as .bz2; inputs generated in {gen_s:.0f} s)")
    for col in ("what", "input", "lines", "MB", "wall s", "CPU s", "M lines/s (wall)", "M lines/s (CPU)"):
        table.add_column(col, justify="left" if col in ("what", "input") else "right")
    for what, inp, nl, nbytes, wall, cpu in rows:
        table.add_row(what, inp, f"{nl:,}", f"{nbytes / 1e6:.1f}", f"{wall:.2f}", f"{cpu:.2f}",
                      f"{nl / wall / 1e6:.2f}", f"{nl / cpu / 1e6:.2f}")
    Console(width=150).print(table)
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; "
          f"python {sys.version.split()[0]}, pyarrow {pa.__version__}, numpy {np.__version__}")


if __name__ == "__main__":
    main()
