"""Fault injection: SIGINT, SIGTERM and SIGKILL at points of run, fetch-logs, pool import, import-logs and
train-and-report; a lock left by a dead process; a full disk.

After each: exit 2 with one paragraph (or the interrupt's own message and status) or a clean recovery;
nothing lost (re-running completes with outputs identical to an uninterrupted run); no file outside the
workdir touched; no worker process left behind.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from functools import partial
from pathlib import Path

import psutil
import pytest

from hostile import (PEAK_MEMORY_BOUND_MB, TINY, assert_user_error, env_for, l4stb_argv, make_fetched_run, manifest_of,
                     only_run, peak_rss_mb, run_cli, run_files, snapshot)

INTERRUPTED = "interrupted: what was finished is saved"
LONG = ("--scenario", "dctcp-8mbps", "--set", "duration=6s", "--repeats", "6", "--jobs", "2")
"""Six repeats, two at a time, each long enough to interrupt while others are done."""


def _start(workdir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(l4stb_argv(*args), env=env_for(workdir), cwd=workdir.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout: float = 120, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _ok_repeats(workdir: Path) -> int:
    runs = workdir / "runs"
    for m in runs.glob("*/manifest.json") if runs.is_dir() else []:
        try:
            return sum(r["status"] == "ok" for r in json.loads(m.read_text())["repeats"].values())
        except (ValueError, KeyError):
            return 0
    return 0


def _workers_of(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _assert_gone(processes: list[psutil.Process], timeout: float = 10) -> None:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    assert not alive, f"worker processes outlived the command: {[p.pid for p in alive]}"


@pytest.fixture
def testbed(l4stb, workdir):
    assert l4stb("up").exit_code == 0
    return workdir


def _reference_files(l4stb, tmp_path, *run_args) -> dict[str, str]:
    """The fetched files of an uninterrupted run with the same arguments, in a workdir of its own."""
    ref = tmp_path / "reference"
    return run_files(ref, make_fetched_run(ref, *run_args))


# ---- the lock ------------------------------------------------------------------------------------------


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_note(l4stb, workdir):
    dead = subprocess.Popen(["true"])
    dead.wait()
    workdir.mkdir()
    (workdir / ".lock").write_text(f"`l4stb run` (pid {dead.pid})")
    result = l4stb("up")
    assert result.exit_code == 0, result.stderr
    assert "stale lock" in result.stderr and f"pid {dead.pid}" in result.stderr
    assert (workdir / ".lock").read_text() == ""  # released cleanly this time


def test_a_lock_held_by_a_live_command_is_reported_busy(l4stb, workdir):
    workdir.mkdir()
    holder = subprocess.Popen(
        ["python", "-c", "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
         "os.write(fd, b'`l4stb run` (pid %d)' % os.getpid()); fcntl.lockf(fd, fcntl.LOCK_EX)\n"
         "print('held', flush=True); time.sleep(60)", str(workdir / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert_user_error(l4stb("up"), "busy", f"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert l4stb("up").exit_code == 0  # the kernel released the dead holder's lock


# ---- run -------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_parallel_run_keeps_its_finished_repeats_and_resumes_identically(
        l4stb, testbed, tmp_path, outside, sig):
    before = snapshot(outside)
    proc = _start(testbed, "run", *LONG)
    _wait_for(lambda: _ok_repeats(testbed) >= 1, what="a finished repeat")
    workers = _workers_of(proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr
    assert INTERRUPTED in stderr and "Traceback" not in stderr
    _assert_gone(workers)
    run_id = only_run(testbed)
    manifest = manifest_of(testbed, run_id)
    kept = [k for k, r in manifest["repeats"].items() if r["status"] == "ok"]
    assert kept and manifest["status"] == "incomplete"
    assert "busy" not in l4stb("status").output
    code, peak_mb, stderr = peak_rss_mb(testbed, "run", "--resume", run_id)
    assert code == 0, stderr
    assert peak_mb < PEAK_MEMORY_BOUND_MB, f"the resumed run peaked at {peak_mb:.0f} MB"
    manifest = manifest_of(testbed, run_id)
    assert manifest["status"] == "complete" and all(manifest["repeats"][k]["finished"] for k in kept)
    assert l4stb("fetch-logs").exit_code == 0
    assert run_files(testbed, run_id) == _reference_files(l4stb, tmp_path, *LONG)
    assert snapshot(outside) == before


@pytest.mark.slow
def test_a_killed_parallel_run_leaves_no_workers_and_shows_as_interrupted(l4stb, testbed):
    proc = _start(testbed, "run", *LONG)
    _wait_for(lambda: _ok_repeats(testbed) >= 1, what="a finished repeat")
    workers = _workers_of(proc)
    assert workers, "the run has worker processes"
    proc.kill()
    proc.wait()
    _assert_gone(workers)
    run_id = only_run(testbed)
    status = l4stb("status")
    assert status.exit_code == 0 and "interrupted" in status.stdout
    resumed = l4stb("run", "--resume", run_id)
    assert resumed.exit_code == 0, resumed.stderr
    assert "stale lock" in resumed.stderr  # the killed command's lock is reported, then taken over
    assert manifest_of(testbed, run_id)["status"] == "complete"


@pytest.mark.slow
def test_a_repeat_run_again_replaces_what_an_earlier_fetch_copied_of_it(l4stb, testbed, tmp_path):
    """Repeat 2 failed and its files were fetched; `run --resume` runs it again from empty folders, and what
    the earlier fetch copied of it is dropped, so the run ends identical to one that never failed."""
    import hashlib

    assert l4stb("run", *TINY).exit_code == 0
    run_id = only_run(testbed)
    assert l4stb("fetch-logs").exit_code == 0
    path = testbed / "runs" / run_id / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["repeats"]["2"]["status"], manifest["status"] = "failed", "incomplete"
    stale = testbed / "runs" / run_id / "raw" / "client1" / "r02" / "client1-cubic-g9-c1.json"
    stale.write_text("{}")
    manifest["files"]["raw/client1/r02/client1-cubic-g9-c1.json"] = {
        "host": "client1", "remote_path": f"/var/l4stb/runs/{run_id}/r02/client1-cubic-g9-c1.json", "size": 2,
        "sha256": hashlib.sha256(b"{}").hexdigest()}
    path.write_text(json.dumps(manifest))

    resumed = l4stb("run", "--resume", run_id)
    assert resumed.exit_code == 0, resumed.stderr
    assert not stale.exists()
    assert l4stb("fetch-logs").exit_code == 0
    assert run_files(testbed, run_id) == _reference_files(l4stb, tmp_path, *TINY)


# ---- fetch-logs ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_fetch_killed_at_random_points_completes_identically_when_rerun(l4stb, testbed, outside):
    before = snapshot(outside)
    assert l4stb("run", *TINY).exit_code == 0
    run_id = only_run(testbed)
    rng = random.Random(14)
    for _ in range(3):
        proc = _start(testbed, "fetch-logs")
        time.sleep(rng.uniform(0.3, 2.0))
        proc.kill()
        proc.wait()
    result = l4stb("fetch-logs")
    assert result.exit_code == 0, result.stderr
    hosts = testbed / "hosts"
    fetched = run_files(testbed, run_id)
    assert fetched
    for key, _digest in fetched.items():
        local = testbed / "runs" / run_id / key
        assert local.is_file() and local.stat().st_size > 0
    assert not list((testbed / "runs" / run_id / "raw").rglob(".*.part*"))
    assert hosts.is_dir() and snapshot(outside) == before


# ---- pool import and import-logs -----------------------------------------------------------------------


@pytest.mark.slow
def test_a_pool_import_killed_over_an_existing_pool_leaves_one_whole_pool(l4stb, workdir, tmp_path):
    from test_hostile_pickles import write_pool_pickle

    from l4stb.analysis.pool import load_pool

    small = write_pool_pickle(tmp_path / "small.pkl", 300)
    big = write_pool_pickle(tmp_path / "big.pkl", 20_000)
    assert l4stb("pool", "import", str(small), "--name", "p").exit_code == 0
    rng = random.Random(3)
    for _ in range(3):
        proc = _start(workdir, "pool", "import", str(big), "--name", "p")
        time.sleep(rng.uniform(0.5, 3.0))
        proc.kill()
        proc.wait()
        splits = load_pool(workdir / "pools" / "p")  # old or new, never a mix: the loader would refuse one
        assert sum(splits.meta.sizes.values()) in (300, 20_000)
    assert l4stb("pool", "import", str(big), "--name", "p").exit_code == 0
    assert sum(load_pool(workdir / "pools" / "p").meta.sizes.values()) == 20_000
    assert not [p for p in (workdir / "pools").iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_an_import_killed_midway_leaves_no_half_run_and_no_hidden_copy(l4stb, workdir, tmp_path):
    from logfixtures import sim_log_lines

    log = tmp_path / "messages"
    lines = "\n".join(sim_log_lines(2000)) + "\n"
    with open(log, "w") as fh:
        for _ in range(150):  # about 60 MB: the copy and its sha256 take a while
            fh.write(lines)
    proc = _start(workdir, "import-logs", "--router-log", str(log), "--name", "imp")
    _wait_for(lambda: any(p.name.startswith(".imp.") for p in (workdir / "runs").glob(".*"))
              if (workdir / "runs").is_dir() else False, what="the import's staging folder")
    proc.kill()
    proc.wait()
    assert not (workdir / "runs" / "imp").exists()
    result = l4stb("import-logs", "--router-log", str(log), "--name", "imp")
    assert result.exit_code == 0, result.stderr
    assert not [p for p in (workdir / "runs").iterdir() if p.name.startswith(".")]


# ---- full disk ------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, where root may mount one; skipped cleanly elsewhere."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_is_a_user_error_and_the_old_pool_survives(small_disk, tmp_path):
    from test_hostile_pickles import write_pool_pickle

    from l4stb.analysis.pool import load_pool

    workdir = small_disk / "work"
    cli = partial(run_cli, workdir)
    assert cli("pool", "import", str(write_pool_pickle(tmp_path / "a.pkl", 300)), "--name", "p").returncode == 0
    big = write_pool_pickle(tmp_path / "big.pkl", 120_000)  # about 6 MB of arrays: more than the disk holds
    result = cli("pool", "import", str(big), "--name", "p")
    assert result.returncode == 2 and "disk is full" in result.stderr and "Traceback" not in result.stderr
    assert sum(load_pool(workdir / "pools" / "p").meta.sizes.values()) == 300
    assert not [p for p in (workdir / "pools").iterdir() if p.name.startswith(".")]


def test_a_run_on_a_full_disk_is_a_user_error_naming_the_file(small_disk):
    workdir = small_disk / "work"
    cli = partial(run_cli, workdir)
    assert cli("up").returncode == 0
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    result = cli("run", *TINY)
    assert result.returncode == 2, result.stderr
    assert "disk is full" in result.stderr and "Traceback" not in result.stderr


# ---- train-and-report ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_and_report_is_not_redone_when_up_to_date(l4stb, workdir, tmp_path):
    """Interruptions of a retrain are in test_hostile_faultpoints.py, at exact points of the training."""
    from test_hostile_pickles import write_pool_pickle

    assert l4stb("pool", "import", str(write_pool_pickle(tmp_path / "p.pkl", 400)), "--name", "p").exit_code == 0
    options = ("train-and-report", "--pool", "p", "--epochs", "1", "--max-train-windows", "40")
    first = l4stb(*options)
    assert first.exit_code == 0, first.stderr
    model = workdir / "models" / "p-tiny-gpt2"
    before = snapshot(model)
    again = l4stb(*options)
    assert again.exit_code == 0 and "up to date" in again.stdout
    assert snapshot(model) == before, "an up-to-date model is not trained again"
    forced = l4stb(*options, "--force")
    assert forced.exit_code == 0 and "up to date" not in forced.stdout
    assert snapshot(model) != before, "--force trains again"
