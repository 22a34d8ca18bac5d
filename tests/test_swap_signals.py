"""SIGINT or SIGTERM in the middle of swapping an output set in (a model folder, a report) is held until the swap
is done: the set at its path is always the old one or the new one, whole (issue 21: train-and-report's model).

The slow end-to-end tests in test_hostile_faultpoints.py signal a real `train-and-report` at the same points."""

from __future__ import annotations

import signal

import pytest

from l4stb import workspace
from l4stb.interrupts import Terminated, install_sigterm
from l4stb.workspace import staged_folder


@pytest.fixture()
def cli_handlers():
    """The handlers the CLI runs under (SIGTERM unwinds like Ctrl-C), restored afterwards."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    install_sigterm()
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def _set(folder, text):
    folder.mkdir()
    for name in ("config.json", "modules.safetensors", "norm.json"):
        (folder / name).write_text(f"{text} {name}")


def _contents(folder) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("sig, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
@pytest.mark.parametrize("point, exchange", [("_rename_exchange", True), ("_move_aside", False)])
def test_a_signal_during_the_swap_lands_after_it_with_the_new_set_whole(tmp_path, monkeypatch, cli_handlers, sig,
                                                                        raised, point, exchange):
    target = tmp_path / "model"
    _set(target, "old")
    if not exchange:  # a filesystem without RENAME_EXCHANGE: two renames, the old set aside first
        monkeypatch.setattr(workspace, "_rename_exchange", lambda a, b: False)
    original = getattr(workspace, point)

    def signalled(*args):  # the signal comes in the middle of the swap
        signal.raise_signal(sig)
        return original(*args)

    monkeypatch.setattr(workspace, point, signalled)
    with pytest.raises(raised):
        with staged_folder(target) as stage:
            for name in ("config.json", "modules.safetensors", "norm.json"):
                (stage / name).write_text(f"new {name}")
    assert _contents(target) == {n: f"new {n}" for n in ("config.json", "modules.safetensors", "norm.json")}
    assert [p.name for p in tmp_path.iterdir()] == ["model"], "no staging or old set left beside it"


def test_a_signal_before_the_swap_leaves_the_old_set_untouched(tmp_path, monkeypatch, cli_handlers):
    target = tmp_path / "model"
    _set(target, "old")
    original = workspace._swap_in

    def signalled(*args):  # the new set is written in full, its rename not begun
        signal.raise_signal(signal.SIGTERM)
        return original(*args)

    monkeypatch.setattr(workspace, "_swap_in", signalled)
    with pytest.raises(Terminated):
        with staged_folder(target) as stage:
            (stage / "config.json").write_text("new config.json")
    assert _contents(target) == {n: f"old {n}" for n in ("config.json", "modules.safetensors", "norm.json")}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
