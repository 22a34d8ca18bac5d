"""Router log parser throughput on one core: prints a table (lines/s, wall and CPU time), asserts nothing.

    python bench/bench_parse.py [--lines 1000000] [--cpu 0]

Inputs are generated here: the paper's 24-field lines behind RFC 3164 syslog prefixes (about 800 lines
per second of log time, like a 10 Mbit/s bottleneck), l4stb's 26-field lines as the simulator writes them,
a messy file (unrelated kernel messages, repeat lines, truncated and garbled lines), and the clean paper
file compressed with bzip2, gzip and xz. Rows:

* ``arrow csv only``  -- Arrow's CSV reader on the same blocks, nothing else: the floor of this design;
* ``parser (fast)``   -- LogParser as the parse step runs it (validation, timestamps, repeats, counting);
* ``parser (per-line)`` -- the reference path the fast one is tested against (on a tenth of the lines);
* ``parse step``      -- ensure_parsed on a run folder: parser + typed columns + zstd parquet writing.

The process is pinned to one CPU and Arrow runs single-threaded. CPU time is this process's own, so it is
the fairer number on a busy shared machine; the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import lzma
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from l4stb.analysis.logparse import READ_BLOCK, LogParser, iter_blocks
from l4stb.logformat import FIELD_NAMES, L4STB_PREFIX, PAPER_PREFIX, PROB_SCALE
from l4stb.manifest import Manifest, RepeatRecord, save_manifest
from l4stb.workspace import Workspace

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


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


def l4stb_text(n: int, seed: int = 2) -> bytes:
    v = _fields(n, np.random.default_rng(seed))
    stamps = _stamps(n)
    ts = np.arange(n, dtype=np.int64) * 1250
    rows = (",".join(map(str, r)) for r in v.tolist())
    return "".join(f"{t} router kernel: dualpi2: {L4STB_PREFIX},{r},{u},{u % 7},end\n"
                   for t, r, u in zip(stamps, rows, ts.tolist())).encode()


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


def arrow_only(data: bytes) -> int:
    names = ["_head", *FIELD_NAMES, "_end"]
    types = {n: pa.int64() for n in FIELD_NAMES}
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


def timed(fn, repeats: int = 3) -> tuple[float, float, object]:
    """Best wall and best CPU seconds over ``repeats`` runs, and the last result."""
    best_wall = best_cpu = float("inf")
    out = None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best_wall, best_cpu, out


def parse_bytes(data: bytes, fast: bool = True) -> int:
    """Decisions of an in-memory log, streamed batch by batch as the parse step consumes them."""
    return sum(len(b) for b in LogParser(fast=fast).iter_bytes(data))


def parse_file(path: Path) -> int:
    p = LogParser()
    return sum(len(b) for b in p.parse_files([path]))


def parse_step(root: Path, text: bytes) -> int:
    from l4stb.analysis.packets import ensure_parsed

    ws = Workspace.at(root / f"ws{time.perf_counter_ns()}")
    save_manifest(ws, Manifest(run_id="bench", provider="sim", steps={"fetch": {"status": "done"}},
                               repeats={"1": RepeatRecord(repeat=1, seed=1, status="ok")}))
    log = ws.raw_dir("bench") / "router" / "r01" / "dualpi2.log"
    log.parent.mkdir(parents=True)
    log.write_bytes(text)
    return ensure_parsed(ws, "bench").packets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the first allowed one)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
    n = args.lines
    t0 = time.perf_counter()
    paper, l4stb, messy = paper_text(n), l4stb_text(n), messy_text(n)
    small = paper_text(max(1, n // 10))
    gen_s = time.perf_counter() - t0

    rows: list[tuple[str, str, int, int, float, float]] = []

    def add(what: str, inp: str, lines: int, nbytes: int, fn, repeats: int = args.repeats) -> None:
        wall, cpu, out = timed(fn, repeats)
        rows.append((what, inp, lines, nbytes, wall, cpu))

    add("arrow csv only", "paper 24-field", n, len(paper), lambda: arrow_only(paper))
    add("parser (fast)", "paper 24-field", n, len(paper), lambda: parse_bytes(paper))
    add("parser (fast)", "l4stb 26-field", n, len(l4stb), lambda: parse_bytes(l4stb))
    add("parser (fast)", "messy (5% odd lines)", messy.count(b"\n"), len(messy), lambda: parse_bytes(messy))
    add("parser (per-line)", "paper 24-field", small.count(b"\n"), len(small),
        lambda: parse_bytes(small, fast=False), 1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sub = paper[: len(paper) // 4]
        sub = sub[: sub.rfind(b"\n") + 1]
        for ext, comp in ((".bz2", bz2.compress), (".gz", gzip.compress), (".xz", lzma.compress)):
            path = root / f"dualpi2.log.0{ext}"
            path.write_bytes(comp(sub))
            add("parser (fast)", f"paper, {ext[1:]} file", sub.count(b"\n"), path.stat().st_size,
                lambda path=path: parse_file(path), 1)
        add("parse step", "paper -> parquet", n, len(paper), lambda: parse_step(root, paper), 1)

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"router log parsing, one core ({n:,} lines; inputs generated in {gen_s:.1f} s)")
        for col in ("what", "input", "lines", "MB", "wall s", "CPU s", "M lines/s (wall)", "M lines/s (CPU)"):
            table.add_column(col, justify="left" if col in ("what", "input") else "right")
        for what, inp, lines, nbytes, wall, cpu in rows:
            table.add_row(what, inp, f"{lines:,}", f"{nbytes / 1e6:.1f}", f"{wall:.2f}", f"{cpu:.2f}",
                          f"{lines / wall / 1e6:.2f}", f"{lines / cpu / 1e6:.2f}")
        Console().print(table)
    except ImportError:  # pragma: no cover
        for r in rows:
            print(*r, sep="\t")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; "
          f"python {sys.version.split()[0]}, "
          f"pyarrow {pa.__version__}, numpy {np.__version__}")


if __name__ == "__main__":
    main()
