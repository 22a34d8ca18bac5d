"""fetch-logs: copy a run's files from every testbed host into runs/<id>/raw/<host>/, verified by sha256, resumably.

For each host of the run's topology, everything under ``layout.remote_run_dir(run_id)`` is listed and
copied to ``raw/<host>/<path under the run folder>`` through the provider's host API (a folder for the
sim, SFTP for FreeBSD VMs). Each copy goes to a temp name beside the target, is hashed, compared with the
host's own ``sha256 -q`` of the file, and only then renamed into place and recorded in the manifest
(``files``: host, remote path, size, sha256). A file already recorded whose local and remote hashes still
match is skipped, so a re-run resumes an interrupted fetch and an extra run changes nothing.

Log rotation during a fetch: a file that vanishes between listing and copying, or whose hash changes
while it is copied, sends the host back to a fresh listing; the host is done only when a listing finds
every file verified and a second listing right after shows the same files. Remote files are deleted only
with ``clean_remote``, after that final verification, and only those whose hash matched.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from l4stb.console import console
from l4stb.errors import L4stbError
from l4stb.layout import remote_run_dir
from l4stb.manifest import FileRecord, Manifest, load_manifest, save_manifest
from l4stb.providers import get_provider
from l4stb.providers.base import Host, RemoteFile, TestbedInfo
from l4stb.workspace import Workspace, sha256_file, utc_iso
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn

log = logging.getLogger(__name__)

MAX_PASSES = 20
"""Listings per host before giving up on a folder that never stops changing (a run still writing into it)."""
MAX_COPY_TRIES = 3

_SAFE_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}$")


@dataclass
class FetchResult:
    """Files of the run now held under raw/ (all of them, fetched now or before) and what this call did."""

    files: int
    bytes: int
    new: int
    skipped: int
    bytes_fetched: int = 0
    removed_remote: int = 0


class _Vanished(Exception):
    """A listed file was gone (or changed) when we came to copy it: list the host again."""


def _local_rel(remote_path: str, base: str) -> str:
    """The path under the run folder, checked so that it cannot leave raw/<host>/."""
    rel = posixpath.relpath(posixpath.normpath(remote_path), base)
    parts = rel.split("/")
    if rel.startswith("../") or rel == ".." or not all(_SAFE_PART_RE.match(p) for p in parts):
        raise L4stbError(f"refusing to fetch {remote_path!r}: its name is not a plain relative path under {base}.")
    return rel


def _hosts_of(manifest: Manifest, testbed: TestbedInfo) -> list[str]:
    if manifest.topology:
        try:
            return list(manifest.run_topology().hosts)
        except Exception:
            pass
    return list(testbed.hosts)


def _host_sha(host: Host, base: str, remote: str) -> str | None:
    """The host's own sha256 of a file (``sha256 -q`` on FreeBSD), or None when the file is gone."""
    try:
        digest = host.sha256(remote).strip().lower()
    except (L4stbError, OSError):
        if not _exists(host, base, remote):
            return None
        raise
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise L4stbError(f"{host.name}: `sha256 -q {remote}` printed {digest[:80]!r}, not a sha256 digest.")
    return digest


def _exists(host: Host, base: str, remote: str) -> bool:
    return any(f.path == remote for f in host.list(base))


class _Fetcher:
    def __init__(self, ws: Workspace, manifest: Manifest, progress: Progress, task):
        self.ws = ws
        self.manifest = manifest
        self.progress = progress
        self.task = task
        self.new = 0
        self.skipped = 0
        self.bytes_fetched = 0
        self.verified: dict[str, tuple[Host, str, str]] = {}  # key -> (host, remote path, sha) verified now
        self.running: dict | None = None
        """The fetch step's "running" record, set on the first new file of a run that was fetched before."""

    def key(self, host: str, rel: str) -> str:
        return f"raw/{host}/{rel}"

    def fetch_host(self, host: Host, base: str) -> None:
        seen_before: dict[str, bool] = {}
        for _ in range(MAX_PASSES):
            listing = host.list(base)
            try:
                for f in listing:
                    self._one(host, base, f, seen_before)
            except _Vanished as exc:
                log.info("%s: %s changed during the fetch (log rotation?); listing again", host.name, exc)
                continue
            again = host.list(base)
            if _signature(again) == _signature(listing):
                return
            log.info("%s: the run folder changed during the fetch; listing again", host.name)
        raise L4stbError(
            f"{host.name}: the files under {base} kept changing over {MAX_PASSES} listings; is a run still writing "
            "there? Wait for it to finish, then run `l4stb fetch-logs` again (what was verified is kept)."
        )

    def _one(self, host: Host, base: str, f: RemoteFile, seen_before: dict[str, bool]) -> None:
        rel = _local_rel(f.path, base)
        key = self.key(host.name, rel)
        local = self.ws.run_dir(self.manifest.run_id) / key
        record = self.manifest.files.get(key)
        first_sight = key not in seen_before
        seen_before[key] = True
        if record is not None and record.remote_path == f.path and record.size == f.size and local.is_file() \
                and local.stat().st_size == f.size:
            remote_sha = _host_sha(host, base, f.path)
            if remote_sha is None:
                raise _Vanished(f.path)
            if remote_sha == record.sha256 and (key in self.verified or sha256_file(local) == record.sha256):
                if key not in self.verified and first_sight:
                    self.skipped += 1
                    self.progress.advance(self.task, f.size)
                self.verified[key] = (host, f.path, remote_sha)
                return
        self._copy(host, base, f, key, local)

    def _copy(self, host: Host, base: str, f: RemoteFile, key: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.part")
        remote_seen: set[str] = set()
        for _ in range(MAX_COPY_TRIES):
            try:
                try:
                    host.get(f.path, tmp)
                except (L4stbError, OSError):
                    if not _exists(host, base, f.path):
                        raise _Vanished(f.path) from None
                    raise
                local_sha = sha256_file(tmp)
                remote_sha = _host_sha(host, base, f.path)
                if remote_sha is None:
                    raise _Vanished(f.path)
                if remote_sha != local_sha:
                    remote_seen.add(remote_sha)
                    continue  # changed while copied (a live log), or a bad transfer: copy again
                size = tmp.stat().st_size
                os.replace(tmp, local)
            finally:
                tmp.unlink(missing_ok=True)
            self.manifest.files[key] = FileRecord(host=host.name, remote_path=f.path, size=size, sha256=local_sha)
            if self.running is not None:  # a run fetched before gets a new file: its fetch is running again
                self.manifest.steps["fetch"] = self.running
            save_manifest(self.ws, self.manifest)  # each verified file is recorded at once: resumable
            self.verified[key] = (host, f.path, local_sha)
            self.new += 1
            self.bytes_fetched += size
            self.progress.advance(self.task, size)
            return
        if len(remote_seen) == 1:  # the host's file stayed the same: the copies themselves are wrong
            raise L4stbError(
                f"{host.name}: {MAX_COPY_TRIES} copies of {f.path} did not match the host's sha256 "
                f"({next(iter(remote_seen))[:16]}...); the transfer corrupts data. Nothing was kept for this file; "
                "check the connection and run `l4stb fetch-logs` again."
            )
        raise _Vanished(f.path)


def _signature(listing: list[RemoteFile]) -> list[tuple[str, int, float]]:
    return sorted((f.path, f.size, f.mtime) for f in listing)


def fetch_run(ws: Workspace, run_id: str, *, clean_remote: bool = False,
              progress: Progress | None = None) -> FetchResult:
    """Fetch every host's files of ``run_id`` into runs/<id>/raw/, verified, resumable, idempotent."""
    manifest = load_manifest(ws, run_id)
    if manifest.kind == "imported":
        total = sum(r.size for r in manifest.files.values())
        return FetchResult(files=len(manifest.files), bytes=total, new=0, skipped=len(manifest.files))
    testbed = TestbedInfo.load(ws)
    if testbed.provider != manifest.provider:
        raise L4stbError(
            f"run {run_id} was made on the {manifest.provider} testbed but the testbed up in {ws.root} is "
            f"{testbed.provider}; bring the {manifest.provider} testbed up to fetch its files."
        )
    provider = get_provider(testbed.provider, ws)
    base = remote_run_dir(run_id)
    hosts = _hosts_of(manifest, testbed)
    previous = manifest.steps.get("fetch")
    fetched_before = isinstance(previous, dict) and previous.get("status") == "done"
    running = {"status": "running", "started": utc_iso(), "hosts": hosts}
    if not fetched_before:  # a run fetched before keeps its record unless this fetch changes something
        manifest.steps["fetch"] = running
        save_manifest(ws, manifest)

    own = progress is None
    if own:
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                            TransferSpeedColumn(), TimeElapsedColumn(), console=console, transient=True)
    removed = 0
    with progress if own else nullcontext():
        task = progress.add_task(f"fetch {run_id}", total=None)
        fetcher = _Fetcher(ws, manifest, progress, task)
        fetcher.running = running if fetched_before else None
        expected = 0
        for name in hosts:
            host = provider.host(name)
            expected += sum(f.size for f in host.list(base))
            progress.update(task, description=f"fetch {run_id} from {name}", total=expected)
            fetcher.fetch_host(host, base)
        if clean_remote:
            for key, (host, remote, sha) in sorted(fetcher.verified.items()):
                record = manifest.files.get(key)
                if record is not None and record.sha256 == sha and _host_sha(host, base, remote) == sha:
                    host.remove(remote)
                    removed += 1

    prefixes = tuple(f"raw/{h}/" for h in hosts)
    mine = [r for k, r in manifest.files.items() if k.startswith(prefixes)]
    result = FetchResult(files=len(mine), bytes=sum(r.size for r in mine), new=fetcher.new, skipped=fetcher.skipped,
                         bytes_fetched=fetcher.bytes_fetched, removed_remote=removed)
    if fetched_before and not fetcher.new and not removed and previous.get("files") == result.files:
        return result  # nothing changed: the record of the fetch that brought these files stands, untouched
    manifest.steps["fetch"] = {
        "status": "done", "finished": utc_iso(), "hosts": hosts, "files": result.files, "bytes": result.bytes,
        "new": result.new, "skipped": result.skipped, "clean_remote": clean_remote,
        "removed_remote": removed,
        "verified": "sha256 (host) == sha256 (local)",
    }
    save_manifest(ws, manifest)
    return result
