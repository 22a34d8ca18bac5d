"""The parallel parser (one process per rotated file) gives exactly the serial parser's rows and statistics:
repeat lines that refer across files, garbled lines, a decompression bomb, files with no real line at all."""

from __future__ import annotations

import bz2

import numpy as np
import pytest
from l4stb.analysis.logparse import MIN_DECOMPRESSED_LIMIT, LogParser, concat_batches
from l4stb.analysis.logparse_parallel import ParallelLogParser
from l4stb.logformat import FIELD_NAMES, format_line
from logfixtures import paper_line, syslog, values, write_log

REPEAT = "Dec 30 10:00:02 r1 last message repeated {} times"


def _good(start: int, n: int) -> list[str]:
    """l4stb lines as the module writes them today (every field of the format, so they take the fast path)."""
    return [syslog(tag="dualpi2: ") + format_line([*(values(i)[f] for f in FIELD_NAMES), 1000 * i, i % 3, 0])
            for i in range(start, start + n)]


def _cut(i: int) -> str:
    return paper_line(values(i), syslog())[:70]


def _serial(paths, block_size):
    p = LogParser(block_size=block_size)
    return concat_batches(list(p.parse_files(paths))), p.stats, p.fallback_blocks


def _parallel(paths, block_size, jobs=2):
    p = ParallelLogParser(jobs=jobs, block_size=block_size)
    return concat_batches(list(p.parse_files(paths))), p.stats, p.fallback_blocks


def _assert_same(a, b):
    (ba, sa, fa), (bb, sb, fb) = a, b
    assert np.array_equal(ba.rows(), bb.rows())
    assert np.array_equal(ba.shape, bb.shape)
    assert np.array_equal(ba.syslog_s, bb.syslog_s, equal_nan=True)
    assert [s.to_json() for s in sa] == [s.to_json() for s in sb]
    assert fa == fb


@pytest.fixture
def messy_set(tmp_path):
    """A rotated set whose files lean on each other: every cross-file case of a repeat line, garbled lines."""
    d = tmp_path / "logs"
    d.mkdir()
    # oldest: decisions, garbled and unrelated lines; ends with a decision
    write_log(d / "dualpi2.log.4", [*_good(0, 50), _cut(1), "Dec 30 10:00:00 r1 kernel: em1: link state changed",
                                    REPEAT.format(2), paper_line(values(3, action=9), syslog()), *_good(50, 30)],
              ".bz2")
    # starts with repeats of .4's last decision; ends with a truncated line
    write_log(d / "dualpi2.log.3", [REPEAT.format(5), "", REPEAT.format(2), *_good(80, 40), _cut(4)], ".bz2")
    # nothing but repeats: they refer through this file to .3's truncated last line
    write_log(d / "dualpi2.log.2", [REPEAT.format(3), REPEAT.format(4)], ".bz2")
    # leading repeats of that truncated line again, then more truncated lines of its own (example order)
    write_log(d / "dualpi2.log.1", [REPEAT.format(2), *[_cut(i) for i in range(5)], *_good(120, 20),
                                    "Dec 30 10:00:00 r1 kernel: em1: link state changed to UP"], ".gz")
    # leading repeat of an unrelated message, a repeat over syslogd's cap, a glued line
    write_log(d / "dualpi2.log.0", [REPEAT.format(7), REPEAT.format(10**13), _cut(9) + _good(140, 1)[0],
                                    *_good(141, 30)], ".bz2")
    write_log(d / "dualpi2.log", [REPEAT.format(1), *_good(171, 10), REPEAT.format(70_000)])
    return sorted(d.iterdir())


@pytest.mark.parametrize("block_size", [512, 1 << 20])
def test_parallel_parse_equals_serial_rows_and_stats(messy_set, block_size):
    serial = _serial(messy_set, block_size)
    stats = {s.file.rsplit("/", 1)[-1]: s for s in serial[1]}
    # the set does hit each cross-file case (else this test would prove nothing)
    assert stats["dualpi2.log.3.bz2"].repeated_copies == 7
    assert stats["dualpi2.log.2.bz2"].skipped["truncated"] == 7
    assert stats["dualpi2.log.1.gz"].skipped["truncated"] == 7 and len(stats["dualpi2.log.1.gz"].examples["truncated"]) == 3
    assert stats["dualpi2.log.0.bz2"].skipped["repeat_over_cap"] == 1 and stats["dualpi2.log.0.bz2"].unrelated == 7
    assert stats["dualpi2.log"].repeated_copies == 70_001
    _assert_same(serial, _parallel(messy_set, block_size))


def test_first_file_starting_with_a_repeat_is_a_repeat_of_nothing_in_both(tmp_path):
    write_log(tmp_path / "m.1", [REPEAT.format(4), *_good(0, 3)], ".bz2")
    write_log(tmp_path / "m.0", [REPEAT.format(2), *_good(3, 3)], ".bz2")
    paths = [tmp_path / "m.1.bz2", tmp_path / "m.0.bz2"]
    serial = _serial(paths, 1 << 20)
    assert serial[1][0].skipped == {"repeat_of_nothing": 1}
    _assert_same(serial, _parallel(paths, 1 << 20))


@pytest.mark.slow
def test_parallel_parse_equals_serial_with_a_decompression_bomb(tmp_path):
    # a few kB of bzip2 that expand past the 64 MiB cap: the rest is skipped as a bomb in both, and the next
    # file's leading repeat refers to the last line read before the cap
    line = (_good(7, 1)[0] + "\n").encode()
    stream = bz2.compress(line * ((1 << 20) // len(line)))  # 1 MiB; bzip2 reads concatenated streams as one
    bomb = tmp_path / "dualpi2.log.1.bz2"
    bomb.write_bytes(stream * (MIN_DECOMPRESSED_LIMIT // (1 << 20) + 8))
    assert bomb.stat().st_size * 100 < MIN_DECOMPRESSED_LIMIT
    write_log(tmp_path / "dualpi2.log.0", [REPEAT.format(3), *_good(0, 5)], ".bz2")
    write_log(tmp_path / "dualpi2.log.2", [*_good(0, 5), _cut(3)], ".bz2")
    paths = sorted(tmp_path.glob("dualpi2.log.*"))
    serial = _serial(paths, 1 << 20)
    assert serial[1][1].skipped["decompression_bomb"] == 1
    _assert_same(serial, _parallel(paths, 1 << 20))


def test_one_job_is_the_serial_parser(messy_set):
    _assert_same(_serial(messy_set, 4096), _parallel(messy_set, 4096, jobs=1))
