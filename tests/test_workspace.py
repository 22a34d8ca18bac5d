"""Workdir safety: atomic writes never leave half files, the lock keeps two commands apart, names are validated."""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest

from l4stb.errors import L4stbError
from l4stb.manifest import Manifest, RepeatRecord, load_manifest, save_manifest, update_manifest
from l4stb.workspace import Workspace, atomic_path, atomic_write_bytes, atomic_write_text, validate_name


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "file.json"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]


def test_failed_write_keeps_the_old_content(tmp_path, monkeypatch):
    target = tmp_path / "file.txt"
    atomic_write_text(target, "old")

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_atomic_path_discards_the_temp_file_on_error(tmp_path):
    target = tmp_path / "fig.png"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("interrupted")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def _hold_lock(root: str, ready, release) -> None:
    with Workspace.at(root).locked("run"):
        ready.set()
        release.wait(10)


def test_lock_stops_a_second_command(tmp_path):
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(L4stbError, match=r"busy: `l4stb run` \(pid \d+\) holds its lock"):
            with Workspace.at(tmp_path).locked("fetch-logs"):
                pass
    finally:
        release.set()
        holder.join(10)
    with Workspace.at(tmp_path).locked("fetch-logs"):
        pass


def test_lock_is_released_when_the_holder_dies(tmp_path):
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    assert ready.wait(10)
    holder.kill()
    holder.join(10)
    with Workspace.at(tmp_path).locked("run"):
        pass


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", ".hidden", "x y", "a;b", "$(id)"])
def test_path_names_are_validated(bad):
    with pytest.raises(L4stbError):
        validate_name(bad, "run id")


def test_run_ids_are_unique_and_sorted_by_creation(tmp_path):
    ws = Workspace.at(tmp_path)
    first = ws.new_run_id("dctcp-8mbps")
    save_manifest(ws, Manifest(run_id=first, created="2026-01-01T00:00:00+00:00"))
    second = ws.new_run_id("dctcp-8mbps")
    assert second != first
    save_manifest(ws, Manifest(run_id=second, created="2026-01-02T00:00:00+00:00"))
    assert ws.run_ids() == [first, second] and ws.resolve_run(None) == second


def test_unknown_run_is_a_user_error(tmp_path):
    ws = Workspace.at(tmp_path)
    with pytest.raises(L4stbError, match="no runs"):
        ws.resolve_run(None)
    with pytest.raises(L4stbError, match="not found"):
        ws.resolve_run("nope")


def test_manifest_round_trips_and_tracks_pending_repeats(tmp_path):
    ws = Workspace.at(tmp_path)
    m = Manifest(run_id="r1", repeats={str(i): RepeatRecord(repeat=i, seed=i) for i in (1, 2, 3)})
    save_manifest(ws, m)
    update_manifest(ws, "r1", lambda mm: setattr(mm.repeat(2), "status", "ok"))
    loaded = load_manifest(ws, "r1")
    assert loaded.pending_repeats() == [1, 3] and loaded.ok_repeats() == [2]


def test_corrupt_manifest_is_a_user_error(tmp_path):
    ws = Workspace.at(tmp_path)
    ws.run_dir("r1").mkdir(parents=True)
    ws.manifest_file("r1").write_text("{not json")
    with pytest.raises(L4stbError, match="not valid JSON"):
        load_manifest(ws, "r1")


def test_the_default_run_is_the_latest_experiment_not_a_closed_loop_series(tmp_path):
    ws = Workspace.at(tmp_path)
    save_manifest(ws, Manifest(run_id="exp", created="2026-01-01T00:00:00+00:00"))
    save_manifest(ws, Manifest(run_id="exp-cl-llm-n10", kind="closed-loop", created="2026-01-01T00:05:00+00:00"))
    assert ws.resolve_run(None) == "exp"
    assert ws.resolve_run("exp-cl-llm-n10") == "exp-cl-llm-n10"


def test_what_killed_commands_left_staged_is_removed_under_the_lock(tmp_path):
    """Staging folders of dead commands go, wherever an output set is staged: a run's data, a pool, a
    model, a sweep report, a comparison. A live command's staging folder stays."""
    ws = Workspace.at(tmp_path / "work")
    dead = 2**22 + 1  # above Linux's PID_MAX_LIMIT (include/linux/threads.h): never a live process
    left = [ws.root / "runs" / "r1" / f".data.staging{dead}", ws.root / "pools" / f".p.staging{dead}",
            ws.root / "sweeps" / "s1" / f".report.staging{dead}", ws.root / "compare" / f".a-vs-b.staging{dead}"]
    live = ws.root / "sweeps" / "s1" / f".report.staging{os.getpid()}"
    for folder in (*left, live):
        (folder / "figures").mkdir(parents=True)
    with ws.locked("test"):
        pass
    assert not [p for p in left if p.exists()] and live.is_dir()


def test_a_run_is_found_by_a_unique_prefix_and_a_typo_gets_a_suggestion(tmp_path):
    ws = Workspace.at(tmp_path)
    save_manifest(ws, Manifest(run_id="dctcp-8mbps-20260101T000000Z", created="2026-01-01T00:00:00+00:00"))
    save_manifest(ws, Manifest(run_id="dctcp-8mbps-20260102T000000Z", created="2026-01-02T00:00:00+00:00"))
    save_manifest(ws, Manifest(run_id="prague-8mbps-20260103T000000Z", created="2026-01-03T00:00:00+00:00"))
    assert ws.resolve_run("prague") == "prague-8mbps-20260103T000000Z"
    assert ws.resolve_run("dctcp-8mbps-20260102") == "dctcp-8mbps-20260102T000000Z"
    with pytest.raises(L4stbError, match="ambiguous: 2 runs start with it"):
        ws.resolve_run("dctcp")
    with pytest.raises(L4stbError, match="Did you mean prague-8mbps-20260103T000000Z"):
        ws.resolve_run("prauge-8mbps-20260103T000000Z")


def test_stored_paths_are_relative_and_old_absolute_ones_are_migrated(tmp_path):
    ws = Workspace.at(tmp_path / "moved")
    model = ws.model_dir("r1", "tiny")
    model.mkdir(parents=True)
    assert ws.stored(model) == "runs/r1/model/tiny"
    assert ws.from_stored("runs/r1/model/tiny") == model
    assert ws.from_stored("/old/place/l4stb-work/runs/r1/model/tiny") == model  # what an older l4stb stored
    assert ws.stored("/models/llama") == "/models/llama"  # a path outside the workdir stays absolute
    assert ws.from_stored("/models/llama").as_posix() == "/models/llama"
