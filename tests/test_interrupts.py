"""Ctrl-C and SIGTERM: the first one unwinds the command, a second one during that clean-up changes nothing.

A user who presses Ctrl-C twice, or a supervisor that sends SIGTERM and then SIGTERM again, used to get a
traceback from wherever the interpreter was in the clean-up (a ``finally`` block, a weakref callback at exit).
"""

from __future__ import annotations

import os
import signal

import pytest

from l4stb import interrupts


@pytest.fixture
def handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    interrupts.install_sigterm()
    yield
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.mark.parametrize("first, again", [(signal.SIGTERM, signal.SIGTERM), (signal.SIGINT, signal.SIGINT),
                                          (signal.SIGTERM, signal.SIGINT)])
def test_a_second_signal_during_the_clean_up_is_ignored(handlers, first, again):
    cleaned = False
    with pytest.raises(KeyboardInterrupt) as raised:
        try:
            os.kill(os.getpid(), first)  # the handler runs as soon as os.kill returns
        finally:
            os.kill(os.getpid(), again)  # the second signal arrives while the finally block runs
            cleaned = True
    assert cleaned
    assert isinstance(raised.value, interrupts.Terminated) == (first == signal.SIGTERM)
    assert interrupts.exit_status(raised.value) == 128 + first


def test_each_command_starts_with_its_first_signal_unspent(handlers):
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
    interrupts.install_sigterm()  # the next command in this process
    with pytest.raises(interrupts.Terminated):
        os.kill(os.getpid(), signal.SIGTERM)
