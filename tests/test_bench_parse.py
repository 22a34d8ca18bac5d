"""bench/bench_parse.py measures the parser on the lines l4stb writes today: its generated log set (from the
log format's field list, through the simulator's syslog emulation) must take the parser's fast path whole."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from l4stb.analysis.logparse import ALL_FIELDS, LogParser, concat_batches

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_parse.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_parse", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_lines_take_the_fast_path_and_carry_every_field(tmp_path):
    bench = _bench()
    n = 4000
    files = bench.write_l4stb_log_set(tmp_path, n, rotate_size=200_000)
    assert len(files) > 2 and any(f.suffix == ".bz2" for f in files)  # rotated, compressed, like a real set
    parser = LogParser()
    batch = concat_batches(list(parser.parse_files(files)))
    banners = sum(s.unrelated for s in parser.stats)  # newsyslog's "logfile turned over" line, one per file
    assert banners == len(files) - 1
    assert parser.fallback_blocks == 0
    assert parser.slow_lines == banners, "the bench's decision lines went to the per-line path"
    assert sum(s.skipped_total for s in parser.stats) == 0 and len(batch) == n
    # every field of the format is written and read back (timestamps order the rows)
    expected = bench.l4stb_values(n)
    got = batch.rows()[np.argsort(batch.column("timestamp_us"), kind="stable")]
    assert got.shape[1] == len(ALL_FIELDS) and np.array_equal(got, expected)
