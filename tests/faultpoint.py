"""Run one l4stb command and signal it at an exact point of its work: the N-th call of a named function.

    python tests/faultpoint.py MODULE:ATTR[.ATTR] N SIGNAL before|after -- l4stb arguments...

A wall-clock kill lands wherever the command happens to be; a fault point lands, reproducibly, between two
writes of an output set (before the 2nd of 3 pool splits is saved, after the 5th file of a fetch...), which
is where atomicity is won or lost. The process signals itself (``os.kill``), so SIGINT and SIGTERM take the
command's own clean-up path and SIGKILL leaves exactly what was on disk at that call. Before the signal it
prints ``faultpoint: fired`` on stderr, so a test knows the point was reached.

With ``FAULTPOINT_NO_RENAME_EXCHANGE=1`` in the environment the command swaps output sets in as on a filesystem
without ``renameat2(RENAME_EXCHANGE)`` (exfat, SMB: see :func:`l4stb.workspace._rename_exchange`): two renames,
the old set aside first, so a test can signal between them.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys


def arm(target: str, nth: int, sig: signal.Signals, when: str) -> None:
    """Replace ``target`` (``module:function`` or ``module:Class.method``) by a wrapper that counts its calls."""
    module_name, _, attr_path = target.partition(":")
    owner = importlib.import_module(module_name)
    *parents, name = attr_path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    original = getattr(owner, name)
    calls = 0

    def fire() -> None:
        sys.stderr.write(f"faultpoint: fired {sig.name} {when} call {nth} of {target}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), sig)

    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == nth and when == "before":
            fire()
        result = original(*args, **kwargs)
        if calls == nth and when == "after":
            fire()
        return result

    setattr(owner, name, wrapper)


def main(argv: list[str]) -> None:
    target, nth, sig_name, when, sep, *l4stb_args = argv
    assert sep == "--" and when in ("before", "after"), __doc__
    from l4stb.cli import main as l4stb_main

    if os.environ.get("FAULTPOINT_NO_RENAME_EXCHANGE") == "1":
        import l4stb.workspace

        l4stb.workspace._rename_exchange = lambda a, b: False
    arm(target, int(nth), signal.Signals[sig_name], when)
    l4stb_main(l4stb_args)


if __name__ == "__main__":
    main(sys.argv[1:])
