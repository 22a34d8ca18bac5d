"""fetch-logs on the sim provider: byte-identical verified copies, idempotence, resume, --clean-remote, rotation."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from l4stb.fetch import fetch_run
from l4stb.analysis.packets import ensure_parsed, read_packets
from l4stb.errors import L4stbError
from l4stb.layout import remote_repeat_dir, remote_run_dir
from l4stb.manifest import load_manifest
from l4stb.providers.sim import SimHost
from logfixtures import sim_log_lines, sim_run, sim_testbed, write_log

RUN = "dctcp-8mbps-20250101T000000Z"


@pytest.fixture
def run(tmp_path):
    ws = sim_testbed(tmp_path / "work")
    sim_run(ws, RUN, repeats=(1, 2))
    return ws


def remote_files(ws) -> dict[str, Path]:
    """raw/<host>/<rel> -> the file on the simulated host."""
    out = {}
    base = remote_run_dir(RUN).lstrip("/")
    for host in ("client1", "client2", "router", "server"):
        root = ws.host_dir(host) / base
        for p in root.rglob("*"):
            if p.is_file():
                out[f"raw/{host}/{p.relative_to(root).as_posix()}"] = p
    return out


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_fetch_copies_every_file_byte_identical_and_records_its_sha256(run):
    ws = run
    result = fetch_run(ws, RUN)
    remote = remote_files(ws)
    assert result.files == len(remote) == 2 * (3 + 2 + 1) and result.new == len(remote) and result.skipped == 0
    m = load_manifest(ws, RUN)
    for key, src in remote.items():
        local = ws.run_dir(RUN) / key
        assert local.read_bytes() == src.read_bytes()
        rec = m.files[key]
        assert rec.sha256 == sha(src) and rec.size == src.stat().st_size
        assert rec.remote_path == "/" + src.relative_to(ws.host_dir(rec.host)).as_posix()
    assert m.steps["fetch"]["status"] == "done"
    assert result.bytes == sum(p.stat().st_size for p in remote.values())


def test_fetch_is_idempotent(run):
    ws = run
    fetch_run(ws, RUN)
    before = {k: v.model_dump() for k, v in load_manifest(ws, RUN).files.items()}
    mtimes = {p: p.stat().st_mtime_ns for p in ws.raw_dir(RUN).rglob("*") if p.is_file()}
    again = fetch_run(ws, RUN)
    assert again.new == 0 and again.skipped == again.files == len(before)
    assert {k: v.model_dump() for k, v in load_manifest(ws, RUN).files.items()} == before
    assert {p: p.stat().st_mtime_ns for p in ws.raw_dir(RUN).rglob("*") if p.is_file()} == mtimes


def test_fetch_resumes_after_an_interruption(run, monkeypatch):
    ws = run
    real_get = SimHost.get
    calls = {"n": 0}

    def flaky_get(self, remote, local):
        calls["n"] += 1
        if calls["n"] == 5:
            Path(local).write_bytes(b"half a fi")  # the connection dies mid-file
            raise KeyboardInterrupt
        return real_get(self, remote, local)

    monkeypatch.setattr(SimHost, "get", flaky_get)
    with pytest.raises(KeyboardInterrupt):
        fetch_run(ws, RUN)
    m = load_manifest(ws, RUN)
    assert len(m.files) == 4 and m.steps["fetch"]["status"] == "running"
    assert not [p for p in ws.raw_dir(RUN).rglob("*") if p.name.endswith(".part")]
    monkeypatch.setattr(SimHost, "get", real_get)
    result = fetch_run(ws, RUN)
    assert result.skipped == 4 and result.new == result.files - 4
    for key, src in remote_files(ws).items():
        assert (ws.run_dir(RUN) / key).read_bytes() == src.read_bytes()


def test_a_corrupted_local_copy_is_fetched_again(run):
    ws = run
    fetch_run(ws, RUN)
    victim = ws.raw_dir(RUN) / "router" / "r01" / "dualpi2.log"
    data = bytearray(victim.read_bytes())
    data[10] ^= 0xFF
    victim.write_bytes(bytes(data))
    result = fetch_run(ws, RUN)
    assert result.new == 1
    assert sha(victim) == load_manifest(ws, RUN).files["raw/router/r01/dualpi2.log"].sha256


def test_fetch_refuses_a_copy_that_never_matches_the_hosts_sha256(run, monkeypatch):
    ws = run
    real_get = SimHost.get

    def corrupting_get(self, remote, local):
        real_get(self, remote, local)
        with open(local, "ab") as fh:
            fh.write(b"!")

    monkeypatch.setattr(SimHost, "get", corrupting_get)
    with pytest.raises(L4stbError, match="did not match the host's sha256"):
        fetch_run(ws, RUN)
    assert not [p for p in ws.raw_dir(RUN).rglob("*") if p.is_file()] if ws.raw_dir(RUN).exists() else True
    assert load_manifest(ws, RUN).files == {}


def test_fetch_keeps_remote_files_unless_clean_remote(run):
    ws = run
    remote = remote_files(ws)
    fetch_run(ws, RUN)
    assert all(p.is_file() for p in remote.values())
    result = fetch_run(ws, RUN, clean_remote=True)
    assert result.removed_remote == len(remote)
    assert not any(p.exists() for p in remote.values())
    # the local copies and their records stay; a later fetch finds nothing new and loses nothing
    later = fetch_run(ws, RUN)
    assert later.files == len(remote) and later.new == 0
    for key in remote:
        assert (ws.run_dir(RUN) / key).is_file()


def test_clean_remote_spares_a_file_that_changed_after_it_was_verified(run, monkeypatch):
    ws = run
    fetch_run(ws, RUN)
    live = ws.host_dir("router") / remote_repeat_dir(RUN, 2).lstrip("/") / "dualpi2.log"
    real_sha = SimHost.sha256
    calls: dict[str, int] = {}

    def sha256(self, remote):
        calls[remote] = calls.get(remote, 0) + 1
        if remote.endswith("/r02/dualpi2.log") and calls[remote] == 2:  # between verification and removal
            with open(live, "ab") as fh:
                fh.write(b"Nov 21 10:00:00 router kernel: a late line\n")
        return real_sha(self, remote)

    monkeypatch.setattr(SimHost, "sha256", sha256)
    result = fetch_run(ws, RUN, clean_remote=True)
    assert result.removed_remote == result.files - 1
    assert live.is_file() and live.read_bytes().endswith(b"a late line\n")
    assert [p.name for p in (live.parent).iterdir()] == ["dualpi2.log"]


def _rotate(folder: Path, new_lines: list[str]) -> None:
    """newsyslog on the simulated router: .1 -> .2, .0 -> .1, live -> .0.bz2, a new live file."""
    for n in (1, 0):
        src = folder / f"dualpi2.log.{n}.bz2"
        if src.exists():
            os.replace(src, folder / f"dualpi2.log.{n + 1}.bz2")
    live = folder / "dualpi2.log"
    write_log(folder / "dualpi2.log.0", live.read_text().splitlines(), ".bz2")
    write_log(live, new_lines)


def test_fetch_survives_a_log_rotation_during_the_fetch(run, monkeypatch):
    ws = run
    folder = ws.host_dir("router") / remote_repeat_dir(RUN, 1).lstrip("/")
    real_get = SimHost.get
    state = {"rotated": False}

    def get_with_rotation(self, remote, local):
        # the first router file requested triggers a rotation: a listed name vanishes (.1 -> .2), others change
        if self.name == "router" and not state["rotated"] and "/r01/" in remote:
            state["rotated"] = True
            _rotate(folder, sim_log_lines(40, start=500_000))
        return real_get(self, remote, local)

    monkeypatch.setattr(SimHost, "get", get_with_rotation)
    fetch_run(ws, RUN)
    assert state["rotated"]
    remote = remote_files(ws)
    local_r01 = sorted(p.name for p in (ws.raw_dir(RUN) / "router" / "r01").iterdir())
    assert local_r01 == ["dualpi2.log", "dualpi2.log.0.bz2", "dualpi2.log.1.bz2", "dualpi2.log.2.bz2"]
    for key, src in remote.items():
        assert (ws.run_dir(RUN) / key).read_bytes() == src.read_bytes(), key
    m = load_manifest(ws, RUN)
    assert {k for k in m.files if k.startswith("raw/router/r01/")} == {f"raw/router/r01/{n}" for n in local_r01}
    # every line logged before and after the rotation is parsed exactly once, in order
    ensure_parsed(ws, RUN)
    df = read_packets(ws, RUN)
    r1 = df[df.repeat == 1]["dequeue_count"].tolist()
    assert r1 == list(range(100_000, 100_300)) + list(range(500_000, 500_040))


def test_a_file_that_vanishes_between_listing_and_copy_is_relisted_and_its_successor_fetched(run, monkeypatch):
    ws = run
    folder = ws.host_dir("router") / remote_repeat_dir(RUN, 1).lstrip("/")
    real_get = SimHost.get
    seen = []

    def get(self, remote, local):
        seen.append(remote)
        if remote.endswith("/r01/dualpi2.log.1.bz2") and not (folder / "dualpi2.log.2.bz2").exists():
            os.replace(folder / "dualpi2.log.1.bz2", folder / "dualpi2.log.2.bz2")  # rotated away under us
        return real_get(self, remote, local)

    monkeypatch.setattr(SimHost, "get", get)
    fetch_run(ws, RUN)
    names = sorted(p.name for p in (ws.raw_dir(RUN) / "router" / "r01").iterdir())
    assert names == ["dualpi2.log", "dualpi2.log.0.bz2", "dualpi2.log.2.bz2"]
    assert "raw/router/r01/dualpi2.log.1.bz2" not in load_manifest(ws, RUN).files
    assert sum(r.endswith("/r01/dualpi2.log.1.bz2") for r in seen) == 1


def test_fetch_of_a_run_made_on_another_provider_is_refused(run):
    ws = run
    path = ws.manifest_file(RUN)
    doc = json.loads(path.read_text())
    doc["provider"] = "vagrant"
    path.write_text(json.dumps(doc))
    with pytest.raises(L4stbError, match="vagrant"):
        fetch_run(ws, RUN)


def test_cli_fetch_logs_fetches_the_latest_run(run, l4stb):
    result = l4stb("fetch-logs")
    assert result.exit_code == 0, result.output
    assert "12 files" in result.stdout and "12 new" in result.stdout
    again = l4stb("fetch-logs", "--run", RUN)
    assert again.exit_code == 0 and "12 already there" in again.stdout


def test_fetch_reports_the_bytes_fetched_on_a_caller_progress(run):
    from rich.console import Console
    from rich.progress import Progress

    ws = run
    with Progress(console=Console(file=open(os.devnull, "w"))) as progress:
        progress.add_task("something else", total=1)
        result = fetch_run(ws, RUN, progress=progress)
        task = progress.tasks[-1]
    assert task.completed == result.bytes_fetched == result.bytes and task.total == result.bytes
