"""Figures written in worker processes while the caller draws the next one.

Writing a figure three times (PNG; SVG; PDF, whose TrueType fonts fontTools subsets for every file) is about
three quarters of a report's time, and no figure depends on another. So a report section draws its figures
here, hands each one over pickled, and a pool of worker processes writes them while the section draws on.
``with figure_batch() as batch`` returns the files' paths at once and waits for every write when the block
ends, so a section never returns, and an output set is never published, before its figures are on disk. A
failed write raises in the caller.

The pool is started once per command (``spawn``: the caller may have used torch's OpenMP threads, which a
fork does not survive; see :mod:`l4stb.workers`) and only where there are two cores or more. With one core,
or with ``L4STB_FIGURE_WORKERS=0``, figures are written in the calling process, as before. A pickled figure
draws the same bytes as the original (tested).
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import pickle
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from matplotlib.figure import Figure

from l4stb import interrupts
from l4stb.analysis.plots import FigureData, FigureFiles, save_figure
from l4stb.errors import L4stbError
from l4stb.workers import available_cores

MAX_WORKERS = 2
"""More writers than two rarely help: a section draws only a handful of figures."""

_pool: ProcessPoolExecutor | None = None


def figure_workers() -> int:
    """How many processes write figures: ``L4STB_FIGURE_WORKERS`` if set, else 2 with two cores or more, else 0."""
    raw = os.environ.get("L4STB_FIGURE_WORKERS", "").strip()
    if raw:
        if not raw.isdigit():
            raise L4stbError(f"L4STB_FIGURE_WORKERS must be a whole number of processes (0 writes figures in this "
                             f"process), got {raw!r}.")
        return int(raw)
    return MAX_WORKERS if available_cores() >= 2 else 0


class FigureBatch:
    """Figures handed to the writer pool; :meth:`wait` returns once all are written (or raises the first failure)."""

    def __init__(self, workers: int):
        self._workers = workers
        self._pending: list[Future] = []

    def save(self, fig: Figure, base: Path, data: FigureData | None = None) -> FigureFiles:
        """The files ``save_figure(fig, base, data)`` writes; written here or by a worker before :meth:`wait` ends."""
        if self._workers <= 0:
            return save_figure(fig, base, data)
        payload = pickle.dumps(fig, protocol=pickle.HIGHEST_PROTOCOL)
        self._pending.append(_writer_pool(self._workers).submit(_save_pickled, payload, Path(base), data))
        return FigureFiles.planned(Path(base), data is not None)

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        errors = [exc for exc in (fut.exception() for fut in pending) if exc is not None]
        if errors:
            raise errors[0]

    def cancel(self) -> None:
        for fut in self._pending:
            fut.cancel()
        for fut in self._pending:
            if not fut.cancelled():
                fut.exception()  # let a write in progress finish before the caller cleans up its folder
        self._pending = []


@contextmanager
def figure_batch() -> Iterator[FigureBatch]:
    """A batch whose figures are all written when the block ends (see the module docstring)."""
    batch = FigureBatch(figure_workers())
    try:
        yield batch
    except BaseException:
        batch.cancel()
        raise
    batch.wait()


def _writer_pool(workers: int) -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=interrupts.die_with_parent, initargs=(os.getpid(),))
        atexit.register(_shutdown)
    return _pool


def _shutdown() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None


def _save_pickled(payload: bytes, base: Path, data: FigureData | None) -> None:
    save_figure(pickle.loads(payload), base, data)
