"""The workdir: every path inside it, atomic writes, the lock, testbed.json and run manifests.

Layout::

    testbed.json
    hosts/<host>/...                  (sim provider only)
    runs/<run-id>/manifest.json
    runs/<run-id>/raw/<host>/...
    runs/<run-id>/data/{packets,flows}.parquet
    runs/<run-id>/pool/<name>/
    runs/<run-id>/model/<name>/
    runs/<run-id>/report/
    pools/<name>/, models/<name>/     (pools and models outside any run)
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import difflib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from l4stb.console import err_console, safe
from l4stb.errors import L4stbError, explain_environment_error
from l4stb.interrupts import interrupts_deferred

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
NAME_RE = RUN_ID_RE


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file beside ``path`` then ``os.replace``: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp{os.getpid()}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for writers that need a filename (parquet, savefig, torch.save)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def utc_stamp(now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ")


def utc_iso(now: _dt.datetime | None = None) -> str:
    return (now or _dt.datetime.now(_dt.timezone.utc)).isoformat(timespec="seconds")


def read_json(path: Path, what: str) -> Any:
    """Read a JSON file the workdir owns; a corrupt one gets a user error, not a traceback."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise L4stbError(f"{path} ({what}) is not valid JSON ({exc}). Move it aside and re-run the command that "
                         "writes it.") from None


TOP_FOLDERS: tuple[str, ...] = ("runs", "models", "pools", "sweeps", "compare", "hosts")
"""The workdir's top-level folders: where a stored path written by an older l4stb is re-anchored."""


def stored_path(root: Path, path: str | os.PathLike) -> str:
    """How a workdir's records store ``path``: relative to the workdir ``root`` (posix) when it lies inside it, so
    the workdir can be moved, copied or archived; absolute only for a path outside it (a model the user named)."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        return str(absolute)


def path_from_stored(root: Path, text: str) -> Path:
    """A path a record stored, as a path in the workdir ``root``: a relative one from the workdir. An absolute one
    inside ``root`` stays; one elsewhere (an older l4stb stored absolute paths, and this workdir may since have been
    copied or moved) is migrated to the same place under ``root``, from its last top-level workdir folder
    (:data:`TOP_FOLDERS`) on, when that exists here; otherwise it is kept (a path outside any workdir)."""
    path = Path(text)
    if not path.is_absolute():
        return root / path
    try:
        path.relative_to(root)
        return path
    except ValueError:
        pass
    parts = path.parts
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] in TOP_FOLDERS:
            candidate = root.joinpath(*parts[i:])
            if candidate.exists():
                return candidate
    return path


@dataclass(frozen=True)
class Workspace:
    """All paths inside one workdir come from here."""

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike) -> "Workspace":
        return cls(Path(root).expanduser().resolve())

    def stored(self, path: str | os.PathLike) -> str:
        """``path`` as a record stores it (:func:`stored_path`)."""
        return stored_path(self.root, path)

    def from_stored(self, text: str) -> Path:
        """A stored path read back in this workdir (:func:`path_from_stored`)."""
        return path_from_stored(self.root, text)

    # -- testbed ------------------------------------------------------------------------------
    @property
    def testbed_file(self) -> Path:
        return self.root / "testbed.json"

    @property
    def hosts_dir(self) -> Path:
        return self.root / "hosts"

    def host_dir(self, host: str) -> Path:
        return self.hosts_dir / validate_name(host, "host name")

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    # -- runs ---------------------------------------------------------------------------------
    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / validate_name(run_id, "run id")

    def manifest_file(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "manifest.json"

    def raw_dir(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "raw"

    def data_dir(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "data"

    def packets_file(self, run_id: str) -> Path:
        return self.data_dir(run_id) / "packets.parquet"

    def flows_file(self, run_id: str) -> Path:
        return self.data_dir(run_id) / "flows.parquet"

    def parse_stats_file(self, run_id: str) -> Path:
        return self.data_dir(run_id) / "parse.json"

    def pool_dir(self, run_id: str | None, name: str) -> Path:
        base = self.run_dir(run_id) / "pool" if run_id else self.root / "pools"
        return base / validate_name(name, "pool name")

    def model_dir(self, run_id: str | None, name: str) -> Path:
        base = self.run_dir(run_id) / "model" if run_id else self.root / "models"
        return base / validate_name(name, "model name")

    def report_dir(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "report"

    def new_run_id(self, scenario: str, now: _dt.datetime | None = None) -> str:
        base = f"{scenario}-{utc_stamp(now)}"
        run_id, n = base, 1
        while self.run_dir(run_id).exists():
            n += 1
            run_id = f"{base}-{n}"
        return run_id

    def run_ids(self, *, kinds: tuple[str, ...] | None = None) -> list[str]:
        """Runs that have a manifest, oldest first (by creation time, then name); optionally only some kinds."""
        self.ensure_usable()
        if not self.runs_dir.is_dir():
            return []
        found = []
        for d in self.runs_dir.iterdir():
            m = d / "manifest.json"
            if m.is_file():
                try:
                    data = json.loads(m.read_text())
                except (json.JSONDecodeError, UnicodeDecodeError):
                    data = {}
                if not isinstance(data, dict):  # a damaged manifest: listed, and named when it is read
                    data = {}
                if not isinstance(data.get("created", ""), str):
                    data["created"] = ""
                if kinds is None or data.get("kind", "run") in kinds:
                    found.append((data.get("created", ""), d.name))
        return [name for _, name in sorted(found)]

    def resolve_run(self, run_id: str | None) -> str:
        """The given run (its full id, or a prefix only one run id starts with), or the latest one; a clear error
        naming the closest run ids when there is no such run, or every match when a prefix is ambiguous."""
        ids = self.run_ids()
        # The default is the latest experiment the user ran or imported, never a closed-loop series of one.
        own = self.run_ids(kinds=("run", "imported"))
        if run_id:
            if run_id in ids:
                return run_id
            matches = [i for i in ids if i.startswith(run_id)]
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise L4stbError(f"run '{run_id}' is ambiguous: {len(matches)} runs start with it "
                                 f"({', '.join(matches[:8])}{', ...' if len(matches) > 8 else ''}). Give more of the id.")

            close = difflib.get_close_matches(run_id, ids, n=3, cutoff=0.6)
            hint = (f" Did you mean {' or '.join(close)}?" if close else
                    f" Known runs: {', '.join(ids[-5:])}." if ids else " There are no runs yet: `l4stb run --scenario NAME`.")
            raise L4stbError(f"run '{run_id}' not found under {self.runs_dir}.{hint} `l4stb status` lists them all.")
        if not own:
            raise L4stbError(
                f"no runs in {self.runs_dir}. Start one with `l4stb up` then `l4stb run --scenario dctcp-8mbps`, "
                "or point --workdir at the workdir that has them."
            )
        return own[-1]

    # -- lock ---------------------------------------------------------------------------------
    @contextmanager
    def locked(self, command: str) -> Iterator[None]:
        """An exclusive lock: two commands never write one workdir at once.

        A POSIX record lock (``lockf``), not ``flock``: record locks are not inherited across fork(2)
        (Linux fcntl(2), "Record locks are not inherited by a child created via fork"), so a worker
        process that outlives a killed command cannot keep the workdir busy. The file is opened with
        O_NOFOLLOW and must be a regular file: a ``.lock`` symlink is refused, never followed.
        """
        self.ensure_usable()
        created = not self.root.exists()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # e.g. under /proc or /sys, where no folder can be made
            if explain_environment_error(exc) is not None:  # read-only, no space, no permission: said as such
                raise
            raise L4stbError(f"cannot create the workdir {self.root} ({exc.strerror}): its parent does not take new "
                             "folders (a system folder such as /proc or /sys, or one that is read-only). Point "
                             "--workdir (or L4STB_WORKDIR) at a folder of your own.") from None
        key = str(self.lock_file)
        if key in _HELD_LOCKS:
            raise L4stbError(f"the workdir {self.root} is busy: this l4stb command already holds its lock.")
        fd = _open_lock_file(self.lock_file)
        try:
            previous = _read_all(fd)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                holder = previous or "another l4stb command"
                raise L4stbError(
                    f"the workdir {self.root} is busy: {holder} holds its lock. Wait for it to finish, "
                    "or use another --workdir."
                ) from None
            if previous:  # a holder that ended without releasing: it was killed
                _warn(f"took over the stale lock of {previous} in {self.root}: that process is gone; "
                      "what it left unfinished is marked in its run's manifest.")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"`l4stb {command}` (pid {os.getpid()})".encode(), 0)
            _HELD_LOCKS.add(key)
            try:
                clean_stale_staging(self)
                yield
            finally:
                _HELD_LOCKS.discard(key)
                os.ftruncate(fd, 0)  # a clean release leaves the lock empty; a killed holder leaves its name
        finally:
            os.close(fd)
            if created:
                self._remove_if_untouched()

    def _remove_if_untouched(self) -> None:
        """A command that failed before writing anything leaves no workdir behind (only its lock was there)."""
        try:
            if {p.name for p in self.root.iterdir()} <= {".lock"}:
                self.lock_file.unlink(missing_ok=True)
                self.root.rmdir()
        except OSError:
            pass

    def ensure_usable(self) -> None:
        """The workdir is a folder (or does not exist yet); a file there is a user error, not a traceback."""
        if self.root.exists() and not self.root.is_dir():
            raise L4stbError(f"the workdir {self.root} is a file, not a folder. Point --workdir (or L4STB_WORKDIR) "
                             "at a folder, or move the file aside.")


_HELD_LOCKS: set[str] = set()
"""Lock files this process holds (a record lock does not exclude its own process, so this does)."""


def _open_lock_file(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise L4stbError(f"{path} is a symbolic link; l4stb refuses to follow it. Remove it "
                             "(`rm` the link, not its target) and re-run.") from None
        if exc.errno == errno.EISDIR:
            raise L4stbError(f"{path} is a folder, but l4stb keeps its lock there as a file. Remove the folder "
                             "and re-run.") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise L4stbError(f"{path} is not a regular file (a FIFO, device or socket), so it cannot be the "
                         "workdir's lock. Remove it and re-run.")
    return fd


def _read_all(fd: int) -> str:
    data = os.pread(fd, 4096, 0)
    return data.decode("utf-8", "replace").strip()


def _warn(message: str) -> None:
    err_console.print("[yellow]note:[/] " + safe(message), soft_wrap=True)


# -- staging ----------------------------------------------------------------------------------------

_STAGING_RE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>staging|old|tmp)(?P<pid>\d+)(?:\..*)?$")


def staging_path(target: Path, kind: str = "staging") -> Path:
    """The hidden name beside ``target`` that this process stages it under (cleaned up when it dies)."""
    return target.with_name(f".{target.name}.{kind}{os.getpid()}")


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Build a multi-file output in an empty staging folder; on success swap it in for ``target`` at once.

    Readers see the old set or the new set, never a mix: the swap is one ``renameat2(RENAME_EXCHANGE)``
    on Linux (include/uapi/linux/fs.h), else two renames (:func:`_swap_in`). On an error or an interrupt
    before the swap the staging folder is removed and the old output is untouched; SIGINT or SIGTERM during
    the swap is held until it is done (:func:`l4stb.interrupts.interrupts_deferred`), so the command stops with
    the new output whole. Only SIGKILL can cut the two renames apart, and the next command repairs that gap (see
    :func:`clean_stale_staging`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(target)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        _swap_in(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(staging: Path, target: Path) -> None:
    """Put ``staging`` in place of ``target``, with SIGINT and SIGTERM held until both are where they belong."""
    old = None
    try:
        with interrupts_deferred():
            if not target.exists():
                os.rename(staging, target)
                return
            if _rename_exchange(staging, target):
                return  # staging now holds the old output; the caller removes it
            old = staging_path(target, "old")
            shutil.rmtree(old, ignore_errors=True)
            _move_aside(target, old)
            os.rename(staging, target)
    finally:
        if old is not None and target.exists():  # else the old output stays aside for clean_stale_staging
            shutil.rmtree(old, ignore_errors=True)


def _move_aside(target: Path, old: Path) -> None:
    """The first of the two renames of a swap without RENAME_EXCHANGE: the old output to its hidden name (until
    the second rename, ``target`` does not exist; the fault tests signal here)."""
    os.rename(target, old)


_RENAME_EXCHANGE = 2
"""renameat2(2) flag: atomically exchange the two paths (Linux include/uapi/linux/fs.h)."""
_AT_FDCWD = -100
"""Relative to the current directory (Linux include/uapi/linux/fcntl.h)."""


def _rename_exchange(a: Path, b: Path) -> bool:
    """One atomic exchange of two paths; False where the platform or the filesystem has none (filesystems whose
    rename takes no flag but RENAME_NOREPLACE answer EINVAL: ``if (flags & ~RENAME_NOREPLACE) return -EINVAL`` in
    Linux fs/exfat/namei.c exfat_rename and fs/smb/client/inode.c cifs_rename2)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_staging(ws: "Workspace") -> list[Path]:
    """Remove what killed commands left half made (staging folders, temp files) and put back an output
    whose swap was cut between its two renames. Runs under the lock, so no live command owns them."""
    roots = [ws.root, ws.root / "pools", ws.root / "models", ws.runs_dir, ws.root / "compare"]
    if (ws.root / "sweeps").is_dir():  # sweeps/<id>/report is staged beside itself
        roots += [s for s in (ws.root / "sweeps").iterdir() if s.is_dir() and not s.is_symlink()]
    if ws.runs_dir.is_dir():
        for run in ws.runs_dir.iterdir():
            if run.is_dir() and not run.is_symlink():
                roots += [run, run / "pool", run / "model", run / "data"]
                if (run / "model").is_dir():
                    roots += [m for m in (run / "model").iterdir() if m.is_dir() and not m.is_symlink()]
    if (ws.root / "models").is_dir():
        roots += [m for m in (ws.root / "models").iterdir() if m.is_dir() and not m.is_symlink()]
    removed = []
    for folder in roots:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            m = _STAGING_RE.match(entry.name)
            if not m or pid_alive(int(m.group("pid"))):
                continue
            target = entry.with_name(m.group("name"))
            if m.group("kind") == "old" and not target.exists():
                os.rename(entry, target)  # the new output never arrived: the old one is the truth
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def validate_name(value: str, what: str) -> str:
    """Names that become path components: letters, digits, '.', '_' and '-', not starting with '.'."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value) or value in (".", ".."):
        raise L4stbError(
            f"invalid {what} {value!r}: use letters, digits, '.', '_' and '-' only, starting with a letter or digit."
        )
    return value
