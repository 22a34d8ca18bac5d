"""Parse and print the units scenarios are written in: rates (8Mbit), durations (10ms) and sizes (1500KB)."""

from __future__ import annotations

import re

_NUM = r"(?P<num>\d+(?:\.\d+)?)\s*"

RATE_UNITS = {
    "bit": 1, "bit/s": 1,
    "kbit": 10**3, "kbit/s": 10**3,
    "mbit": 10**6, "mbit/s": 10**6,
    "gbit": 10**9, "gbit/s": 10**9,
}
AMBIGUOUS_RATE_UNITS = {"bps": 1, "kbps": 10**3, "mbps": 10**6, "gbps": 10**9}
"""Refused: tc(8) reads these as *bytes* per second whatever their case (iproute2 tc/tc_util.c, get_rate64: the
suffix table has "Bps" 8, "KBps" 8000, "MBps" 8000000, "GBps", matched with strcasecmp), while many write
"Mbps" for megabits. A rate that one tool reads 8 times larger is refused with both spellings."""
TIME_UNITS_US = {"us": 1, "ms": 1000, "s": 1_000_000}
SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 10**6, "mib": 1 << 20, "gb": 10**9, "gib": 1 << 30}

_RATE_RE = re.compile(_NUM + r"(?P<unit>[a-z/]+)$", re.I)
_UNIT_RE = re.compile(_NUM + r"(?P<unit>[a-z]*)$", re.I)


def parse_rate_bps(text: str | int) -> int:
    """'8Mbit', '8mbit/s' -> 8_000_000. A bare integer is bits per second. '8Mbps'/'8MBps' are refused (see
    :data:`AMBIGUOUS_RATE_UNITS`)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _RATE_RE.match(str(text).strip())
    if m and m["unit"].lower() in AMBIGUOUS_RATE_UNITS:
        num, scale = float(m["num"]), AMBIGUOUS_RATE_UNITS[m["unit"].lower()]
        bits = format_rate(int(round(num * scale))) if num * scale >= 1 else f"{m['num']}bit"
        as_bytes = format_rate(int(round(num * scale * 8)))
        raise ValueError(f"'{text}' is ambiguous: tc reads {m['unit']} as bytes per second, others as bits. "
                         f"Write {bits} for {m['num']} {m['unit'][0].upper() if scale > 1 else ''}bit/s, or "
                         f"{as_bytes} for {m['num']} {m['unit'][0].upper() if scale > 1 else ''}byte/s")
    if not m or m["unit"].lower() not in RATE_UNITS:
        raise ValueError(f"'{text}' is not a rate; write it like 8Mbit, 500Kbit or 1Gbit")
    return int(round(float(m["num"]) * RATE_UNITS[m["unit"].lower()]))


def parse_duration_us(text: str | int) -> int:
    """'10ms' -> 10000, '60s' -> 60_000_000, '800us' -> 800. A bare number is not accepted: say the unit."""
    m = _UNIT_RE.match(str(text).strip())
    if not m or m["unit"].lower() not in TIME_UNITS_US:
        raise ValueError(f"'{text}' is not a duration; write it with a unit, like 10ms, 800us or 60s")
    return int(round(float(m["num"]) * TIME_UNITS_US[m["unit"].lower()]))


def parse_size_bytes(text: str | int) -> int:
    """'1500KB' -> 1_500_000, '1MiB' -> 1048576. A bare integer is bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _UNIT_RE.match(str(text).strip())
    unit = (m["unit"].lower() or "b") if m else None
    if not m or unit not in SIZE_UNITS:
        raise ValueError(f"'{text}' is not a size; write it like 1500B, 100KB or 10MB")
    return int(round(float(m["num"]) * SIZE_UNITS[unit]))


def format_rate(bps: int) -> str:
    for unit, div in (("Gbit", 10**9), ("Mbit", 10**6), ("Kbit", 10**3)):
        if bps >= div and bps % (div // 1000 or 1) == 0:
            return f"{_trim(bps / div)}{unit}"
    return f"{bps}bit"


def format_duration(us: int) -> str:
    if us and us % 1_000_000 == 0:
        return f"{us // 1_000_000}s"
    if us % 1000 == 0:
        return f"{us // 1000}ms"
    return f"{us}us"


def format_size(nbytes: int) -> str:
    for unit, div in (("MB", 10**6), ("KB", 10**3)):
        if nbytes >= div and nbytes % div == 0:
            return f"{nbytes // div}{unit}"
    return f"{nbytes}B"


def _trim(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".")
