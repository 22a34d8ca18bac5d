"""Read a mahimahi link trace into the piecewise-constant rate schedule the simulator and dummynet both follow.

mahimahi's ``mm-link`` trace format: one line per delivery opportunity of one MTU-sized (1500-byte)
packet, the line holding the opportunity's time in whole milliseconds from the start; several lines may
share a millisecond, and the trace repeats once its last line is reached (mahimahi's
src/packet/link_queue.cc reads it this way). dummynet cannot follow per-packet opportunities, only a
pipe bandwidth that ``ipfw pipe N config bw`` changes at run time, so the trace is turned into one rate
per ``bin_us``: the bytes of that bin's opportunities over the bin. The simulator runs the same schedule,
so both providers see the same network.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from l4stb.errors import L4stbError

MTU_BYTES = 1500
MAX_STEPS = 100_000


def read_trace_ms(path: str) -> tuple[int, ...]:
    """The opportunity times (ms) of a mahimahi trace file, checked: integers, non-decreasing, not empty."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError as exc:
        raise L4stbError(f"bottleneck.rate_trace = {path}: cannot read it ({exc.strerror}). Give the path of a "
                         "mahimahi trace file (one millisecond timestamp per line).") from None
    return _parse_trace(str(p), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=8)
def _parse_trace(path: str, _mtime_ns: int, _size: int) -> tuple[int, ...]:
    """Parsed once per file version (path, modification time, size)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise L4stbError(f"bottleneck.rate_trace = {path}: cannot read it ({exc}). Give the path of a mahimahi "
                         "trace file (one millisecond timestamp per line).") from None
    times = []
    last = 0
    for n, line in enumerate(text.splitlines(), start=1):
        word = line.strip()
        if not word:
            continue
        if not word.isdigit():
            raise L4stbError(f"bottleneck.rate_trace = {path}, line {n}: {word!r} is not a whole number of "
                             "milliseconds; a mahimahi trace holds one timestamp per line.")
        t = int(word)
        if t < last:
            raise L4stbError(f"bottleneck.rate_trace = {path}, line {n}: {t} ms comes before {last} ms; "
                             "a mahimahi trace's timestamps never decrease.")
        last = t
        times.append(t)
    if not times or times[-1] == 0:
        raise L4stbError(f"bottleneck.rate_trace = {path}: no timestamps after 0 ms; a mahimahi trace needs at "
                         "least one delivery opportunity and a period longer than 0 ms.")
    return tuple(times)


def trace_schedule(path: str, bin_us: int, horizon_us: int) -> list[tuple[int, int]]:
    """``[(at_us, rate_bps), ...]`` from 0 until ``horizon_us`` (the trace looping), one step per bin.

    A bin with no opportunity gets 100 kbit/s (the lowest rate a scenario may set, and more than dummynet's
    0 = unlimited): an idle stretch of a cellular trace stays a near-outage, not a fast link. Consecutive
    equal rates are merged into one step.
    """
    times = read_trace_ms(path)
    period_us = times[-1] * 1000
    counts: dict[int, int] = {}
    for t in times:
        b = (t * 1000 % period_us) // bin_us  # the last line (t = period) opens the next loop
        counts[b] = counts.get(b, 0) + 1
    n_bins = max(1, -(-period_us // bin_us))
    out: list[tuple[int, int]] = []
    at = 0
    while at < horizon_us and len(out) < MAX_STEPS:
        for b in range(n_bins):
            start = at + b * bin_us
            if start >= horizon_us:
                break
            width = min(bin_us, period_us - b * bin_us)
            rate = max(100_000, counts.get(b, 0) * MTU_BYTES * 8 * 1_000_000 // max(1, width))
            if not out or out[-1][1] != rate:
                out.append((start, rate))
        at += period_us
    return out
