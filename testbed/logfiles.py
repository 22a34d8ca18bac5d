"""A router log set's files: the order newsyslog's rotation gives them, and opening one whatever its compression.

Beside the log line (:mod:`l4stb.logformat`) because every reader of a log set needs it, not only the parser
(:mod:`l4stb.analysis.logparse`): the simulator's self-check counts the lines of the files it left, and the
importer reads a dataset's files. The names are newsyslog's (usr.sbin/newsyslog/newsyslog.c: ``file.0.bz2``,
``file.1.bz2``, ...; or a time stamp with the ``-t`` option); the compression is told by the magic bytes, not
the name.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
from pathlib import Path
from typing import BinaryIO

from l4stb.errors import L4stbError

_COMPRESSED_EXT = (".bz2", ".gz", ".xz", ".zst")
_ROT_NUM_RE = re.compile(r"^(?P<base>.+)\.(?P<n>\d{1,6})$")
_ROT_TS_RE = re.compile(r"^(?P<base>.+)\.(?P<ts>\d{8}T\d{6}Z?)$")


def rotation_key(path: Path) -> tuple[str, int, int, str]:
    """(base name, kind, order) for newsyslog names: file.N[.bz2] (larger N is older), file.YYYYMMDDTHHMMSS, file."""
    name = path.name
    for ext in _COMPRESSED_EXT:
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    m = _ROT_NUM_RE.match(name)
    if m:
        return (m.group("base"), 0, -int(m.group("n")), "")
    m = _ROT_TS_RE.match(name)
    if m:
        return (m.group("base"), 1, 0, m.group("ts"))
    return (name, 2, 0, "")


def order_log_files(paths: list[Path]) -> list[Path]:
    """Oldest first within each log: ``file.N`` ... ``file.1``, ``file.0``, then ``file``; logs by base name."""
    return sorted(paths, key=lambda p: (*rotation_key(Path(p)), str(p)))


def open_log(path: Path) -> BinaryIO:
    """Open a log file for reading, decompressing by its magic bytes (not its name): bzip2, gzip, xz."""
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rb")
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        raise L4stbError(f"{path} is zstd-compressed, which l4stb does not read; decompress it with `unzstd` first.")
    return open(path, "rb")
