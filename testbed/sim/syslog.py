"""An emulation of FreeBSD syslogd writing kernel lines to a file and newsyslog rotating it by size, streamed to disk.

What a simulated router's log file looks like, line by line, is what the real router's would:

* **syslogd**: each kernel message becomes ``Mmm dd HH:MM:SS <host> kernel: <tag>: <message>`` (the
  day padded with a space, as syslogd's ctime-style stamp; no year). The clock is *simulated*: a fixed
  epoch plus the simulated time, so the same scenario and seed give byte-identical files.
* **Repeats**: a message identical to the previous one is not written again; syslogd counts it and,
  when a different message arrives (or the file is closed), writes ``... last message repeated N times``
  (or the message itself once more when N == 1), like FreeBSD syslogd's ``f_prevcount`` handling.
* **newsyslog**: when the next line would take the file past ``rotate_size`` bytes, the file is
  rotated the way ``newsyslog`` does for a size-triggered entry with flags ``J``/``Z``/``X`` (or
  none): ``file.(N-1).ext`` is removed, ``file.i.ext`` -> ``file.(i+1).ext``, ``file`` -> ``file.0``
  which is then compressed to ``file.0.bz2`` (``.gz``, ``.xz``), and a new ``file`` starts with
  newsyslog's banner line ``... newsyslog[pid]: logfile turned over due to size>NK``. Real newsyslog
  checks from cron (hourly by default); the emulation checks at every line, which is what a
  ``*/1``-minute cron entry approaches. ``rotate_count`` is newsyslog's ``count``: files kept besides
  the live one.
* **Sampling**: with ``sample_every`` N > 1 only every N-th AQM decision becomes a line (the 1st, N+1-th, ...),
  as the kernel module's ``log_every`` sysctl does before log(9); other kernel messages are never sampled.
* **Streaming**: lines are buffered in memory in batches and appended to the file; memory does not
  grow with the run. Compression time is accounted separately (``compress_wall_s``).

Everything written is ASCII, so string lengths are byte counts.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import time
from pathlib import Path

from l4stb.logformat import L4STB_FIELD_NAMES, L4STB_PREFIX, LINE_END, SYSLOG_TAG

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
COMPRESS_EXT = {"bzip2": ".bz2", "gzip": ".gz", "xz": ".xz", "none": ""}
NEWSYSLOG_PID = 1027
"""A fixed pid for newsyslog's banner (determinism)."""
FLUSH_LINES = 4096


def syslog_stamp(epoch_s: int) -> str:
    """``Mmm dd HH:MM:SS`` for a UTC epoch second (the day padded with a space)."""
    tm = time.gmtime(epoch_s)
    return f"{MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"


class SyslogFile:
    """syslogd + newsyslog for one log file on one simulated host."""

    __slots__ = ("path", "hostname", "epoch_s", "rotate_size", "rotate_count", "ext", "compress", "kernel_prefix",
                 "line_fmt", "fh", "buf", "size", "lines", "module_lines", "rotations", "compress_wall_s",
                 "compress_cpu_s", "files_written", "_sec", "_stamp", "_stamp_prefix", "_prev_msg", "_prev_count",
                 "_prev_sec", "sample_every", "decisions")

    def __init__(self, path: str | os.PathLike, *, hostname: str, epoch_s: int, rotate_size: int,
                 rotate_count: int, compress: str = "bzip2", tag: str = SYSLOG_TAG, sample_every: int = 1):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hostname = hostname
        self.epoch_s = int(epoch_s)
        self.rotate_size = int(rotate_size)
        self.rotate_count = int(rotate_count)
        self.ext = COMPRESS_EXT[compress]
        self.compress = compress
        self.kernel_prefix = f" {hostname} kernel: {tag}: "
        self.line_fmt = f"{L4STB_PREFIX}," + ",".join(["%d"] * len(L4STB_FIELD_NAMES)) + f",{LINE_END}\n"
        self.fh = open(self.path, "w", encoding="ascii", newline="\n")
        self.buf: list[str] = []
        self.size = 0
        self.lines = 0
        self.sample_every = int(sample_every)
        """Only every N-th decision is logged (``logging.sample_every``), as the module's ``log_every`` does."""
        if self.sample_every < 1:
            raise ValueError(f"sample_every must be >= 1, got {sample_every}")
        self.decisions = 0
        """Decisions offered to :meth:`emit_fields`, logged or sampled out: the module's ``decisions`` counter."""
        self.module_lines = 0
        """Decisions logged through :meth:`emit_fields`: the module's ``log_lines`` counter (``l4stb check``)."""
        self.rotations = 0
        self.compress_wall_s = 0.0
        self.compress_cpu_s = 0.0
        self.files_written = 0
        self._sec = -1
        self._stamp_prefix = ""
        self._prev_msg = None
        self._prev_count = 0
        self._prev_sec = 0

    # ------------------------------------------------------------------ stamping

    def _prefix(self, sec: int) -> str:
        if sec != self._sec:
            self._sec = sec
            self._stamp = syslog_stamp(self.epoch_s + sec)
            self._stamp_prefix = self._stamp + self.kernel_prefix
        return self._stamp_prefix

    # ------------------------------------------------------------------ writing

    def emit_fields(self, fields: tuple) -> None:
        """Log one AQM decision: ``fields`` are the 27 values of :func:`l4stb.logformat.format_line`.

        The text is exactly ``format_line(fields) + "\\n"`` (built with one %-format for speed; a test
        checks they agree). With ``sample_every`` N only the 1st, N+1-th, 2N+1-th, ... decision is written, the
        ones freebsd_module/dn_sched_dualpi2.c's dualpi2_log() picks with ``log_every`` N.
        """
        n = self.decisions
        self.decisions = n + 1
        if n % self.sample_every:
            return
        self.module_lines += 1
        msg = self.line_fmt % fields
        sec = fields[24] // 1_000_000
        if msg == self._prev_msg:
            self._prev_count += 1
            self._prev_sec = sec
            return
        if self._prev_count:
            self._flush_repeats()
        self._prev_msg = msg
        line = (self._stamp_prefix if sec == self._sec else self._prefix(sec)) + msg
        n = len(line)
        if self.size + n > self.rotate_size and self.size > 0:
            self._rotate()
        buf = self.buf
        buf.append(line)
        self.size += n
        self.lines += 1
        if len(buf) >= FLUSH_LINES:
            self.fh.write("".join(buf))
            buf.clear()

    def emit_message(self, now_us: int, message: str) -> None:
        """Log any kernel message text (without the tag) at simulated time ``now_us``."""
        msg = message.rstrip("\n") + "\n"
        sec = now_us // 1_000_000
        if msg == self._prev_msg:
            self._prev_count += 1
            self._prev_sec = sec
            return
        if self._prev_count:
            self._flush_repeats()
        self._prev_msg = msg
        self._write(self._prefix(sec) + msg)

    def _flush_repeats(self) -> None:
        n = self._prev_count
        self._prev_count = 0
        if n == 1:
            self._write(self._prefix(self._prev_sec) + self._prev_msg)
        else:
            self._write(f"{syslog_stamp(self.epoch_s + self._prev_sec)} {self.hostname} "
                        f"last message repeated {n} times\n")

    def _write(self, line: str) -> None:
        n = len(line)
        if self.size + n > self.rotate_size and self.size > 0:
            self._rotate()
        self.buf.append(line)
        self.size += n
        self.lines += 1
        if len(self.buf) >= FLUSH_LINES:
            self.fh.write("".join(self.buf))
            self.buf.clear()

    # ------------------------------------------------------------------ rotation

    def _name(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}{self.ext}")

    def _rotate(self) -> None:
        if self.buf:
            self.fh.write("".join(self.buf))
            self.buf.clear()
        self.fh.close()
        keep = self.rotate_count
        oldest = self._name(keep - 1)
        if oldest.exists():
            oldest.unlink()
        for i in range(keep - 2, -1, -1):
            src = self._name(i)
            if src.exists():
                os.replace(src, self._name(i + 1))
        plain0 = self.path.with_name(f"{self.path.name}.0")
        os.replace(self.path, plain0)
        t0, c0 = time.perf_counter(), time.process_time()
        self._compress(plain0)
        self.compress_wall_s += time.perf_counter() - t0
        self.compress_cpu_s += time.process_time() - c0
        self.rotations += 1
        self.fh = open(self.path, "w", encoding="ascii", newline="\n")
        self.size = 0
        banner = (f"{self._prefix(self._sec if self._sec >= 0 else 0)[:15]} {self.hostname} "
                  f"newsyslog[{NEWSYSLOG_PID}]: logfile turned over due to size>{self.rotate_size // 1000}K\n")
        self.buf.append(banner)
        self.size += len(banner)
        self.lines += 1

    def _compress(self, plain: Path) -> None:
        if self.compress == "none":
            return
        target = plain.with_name(plain.name + self.ext)
        tmp = target.with_name(target.name + ".tmp")
        with open(plain, "rb") as src:
            data = src.read()
        if self.compress == "bzip2":
            blob = bz2.compress(data, 9)
        elif self.compress == "xz":
            blob = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6)
        else:  # gzip, with a deterministic header (name and the simulated mtime)
            out = io.BytesIO()
            with gzip.GzipFile(filename=plain.name, mode="wb", fileobj=out, mtime=self.epoch_s + max(self._sec, 0)) as gz:
                gz.write(data)
            blob = out.getvalue()
        with open(tmp, "wb") as dst:
            dst.write(blob)
        os.replace(tmp, target)
        plain.unlink()

    def close(self) -> list[Path]:
        """Flush pending repeats and buffered lines; return the log set, live file first then .0, .1, ..."""
        if self._prev_count:
            self._flush_repeats()
        if self.buf:
            self.fh.write("".join(self.buf))
            self.buf.clear()
        self.fh.close()
        files = [self.path]
        for i in range(self.rotate_count):
            p = self._name(i)
            if p.exists():
                files.append(p)
        return files
