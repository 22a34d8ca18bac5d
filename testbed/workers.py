"""Worker processes that report their progress while they run: the simulator's repeats, the closed loop's series.

A task is ``fn(item, progress)``, where ``progress(fraction)`` may be called as often as the task likes; the
fractions reach ``on_progress(key, fraction)`` in the calling process, at most one per 2 % step, so a rich
progress bar follows every task. Results reach ``on_done`` in the calling process, in completion order.

On Ctrl-C, SIGTERM or a failed task the results that finished are still handed to ``on_done`` (a repeat that
ran is kept), then the workers are stopped at once: no orphan keeps writing into the workdir. Workers ignore
SIGINT and die with the command (:func:`l4stb.interrupts.die_with_parent`).

``start`` names the multiprocessing start method. Fork is the cheapest, and right for the simulator; a process
that has used torch's OpenMP threads must not fork (GNU libgomp's thread pool does not survive a fork), so the
closed loop, which runs after training, asks for ``spawn``.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Hashable, Iterable

from l4stb import interrupts

ProgressReport = Callable[[float], None]
Task = Callable[[Any, ProgressReport], Any]

_STEP = 0.02
"""The smallest progress step a worker sends: enough for a smooth bar, few enough to cost nothing."""


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS says, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_with_progress(fn: Task, items: Iterable[Any], *, jobs: int, key: Callable[[Any], Hashable],
                      on_progress: Callable[[Hashable, float], None], on_done: Callable[[Any], None],
                      start: str | None = None, init: Callable[[], None] | None = None) -> None:
    """Call ``fn(item, progress)`` for every item, in ``jobs`` worker processes (here, in order, when ``jobs`` is 1
    or there is one item). ``fn`` and ``init`` (run once in each worker) must be module-level functions, and the
    items picklable, because a worker may be a fresh interpreter."""
    items = list(items)
    if jobs <= 1 or len(items) <= 1:
        for item in items:
            item_key = key(item)
            on_done(fn(item, lambda frac: on_progress(item_key, frac)))  # noqa: B023 - called before the next item
        return
    context = multiprocessing.get_context(start)
    progress_q = context.SimpleQueue()
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(items)), mp_context=context, initializer=_worker_init,
                               initargs=(os.getpid(), progress_q, init))
    futures: list = []
    reported: set = set()
    try:
        futures = [pool.submit(_in_worker, fn, item, key(item)) for item in items]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(progress_q, on_progress)
            for fut in done:
                reported.add(fut)
                on_done(fut.result())
        _drain(progress_q, on_progress)
    except BaseException:
        # Ctrl-C, SIGTERM or an error: keep every task that finished, then stop the rest now.
        for fut in futures:
            if fut not in reported and fut.done() and not fut.cancelled() and fut.exception() is None:
                reported.add(fut)
                on_done(fut.result())
        interrupts.stop_workers(pool)
        raise
    pool.shutdown(wait=True)


_progress_q = None


def _worker_init(parent_pid: int, progress_q, init: Callable[[], None] | None) -> None:
    interrupts.die_with_parent(parent_pid)
    global _progress_q
    _progress_q = progress_q
    if init is not None:
        init()


def _in_worker(fn: Task, item: Any, key: Hashable) -> Any:
    last = [0.0]

    def progress(frac: float) -> None:
        if frac - last[0] >= _STEP or frac >= 1.0:
            last[0] = frac
            _progress_q.put((key, frac))

    return fn(item, progress)


def _drain(progress_q, on_progress: Callable[[Hashable, float], None]) -> None:
    while not progress_q.empty():
        key, frac = progress_q.get()
        on_progress(key, frac)
