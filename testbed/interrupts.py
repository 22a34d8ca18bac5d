"""Signals and process lifetimes: SIGTERM behaves like Ctrl-C, and worker processes die with the command that started them."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal a process gets when its parent thread dies (Linux include/uapi/linux/prctl.h)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would raise KeyboardInterrupt so the same clean-up runs."""


_unwinding = False
"""True once a signal has started the command's unwind: its ``finally`` blocks are running."""


def _on_signal(signum, frame):  # noqa: ARG001 - signal handler signature
    """The first SIGINT or SIGTERM unwinds the command; a second one, while the clean-up runs, is ignored.

    Python's own SIGINT handler raises ``KeyboardInterrupt`` wherever the interpreter is, including inside a
    ``finally`` block or a weakref callback at exit, where it prints a traceback and can leave a manifest
    half-updated. The clean-up is bounded (``stop_workers`` waits at most 5 s per worker), so the second
    signal is not needed to stop; SIGKILL still stops the command at once, and every output is written
    atomically, so even that loses nothing that was finished.
    """
    global _unwinding
    if _unwinding:
        return
    _unwinding = True
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def install_sigterm() -> None:
    """Make SIGTERM unwind the command like Ctrl-C: ``finally`` blocks run, the manifest says what is incomplete.

    Both signals go through :func:`_on_signal`, so a second Ctrl-C or SIGTERM during that clean-up is ignored.
    """
    global _unwinding
    _unwinding = False
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs, then act on the first that came, as if it came just after.

    For a step that must not be cut in two: the renames that swap an output set in
    (:func:`l4stb.workspace.staged_folder`). A signal in the middle would leave the old set moved aside and
    the new one not yet in place; held, it lands after the swap, and the command stops with the new set whole.
    Python runs signal handlers in the main thread only, so a block in another thread runs as is (a signal
    lands after it anyway, in the main thread). SIGKILL cannot be held: the next command repairs what it cuts
    (:func:`l4stb.workspace.clean_stale_staging`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum, frame):  # noqa: ARG001 - signal handler signature
        held.append(signum)

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in saved:
        signal.signal(s, hold)
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        if held:
            signal.raise_signal(held[0])  # the command's own handler now: KeyboardInterrupt or Terminated


def exit_status(exc: BaseException) -> int:
    """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


def die_with_parent(parent_pid: int) -> None:
    """Worker-process initializer: be killed when the command dies, even by SIGKILL, and leave Ctrl-C to it.

    On Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` asks the kernel to kill this process when its parent
    exits; elsewhere the parent's own clean-up (``stop_workers``) is what ends the workers. A worker never
    handles SIGINT itself: the command does, and records what finished before it stops the workers.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl in this libc: the parent's clean-up still applies
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def stop_workers(pool) -> None:
    """Cancel what has not started and end the pool's worker processes now (on an interrupt or an error)."""
    processes = list(getattr(pool, "_processes", {}).values())  # the executor keeps its workers here
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.kill()
    for proc in processes:
        proc.join(timeout=5)
