"""The workdir: every path inside it, atomic writes, the lock, testbed.json and run manifests.

Layout (ARCHITECTURE §3)::

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

import datetime as _dt
import errno
import fcntl
import hashlib
import json
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from l4stb.errors import L4stbError

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
NAME_RE = RUN_ID_RE


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file beside ``path`` then ``os.replace``: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
        raise L4stbError(f"{path} ({what}) is not valid JSON ({exc}). Move it aside and re-run the command that writes it.")


@dataclass(frozen=True)
class Workspace:
    """All paths inside one workdir come from here."""

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike) -> "Workspace":
        return cls(Path(root).expanduser().resolve())

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
                if kinds is None or data.get("kind", "run") in kinds:
                    found.append((data.get("created", ""), d.name))
        return [name for _, name in sorted(found)]

    def resolve_run(self, run_id: str | None) -> str:
        """The given run, or the latest one; a clear error when there is none."""
        ids = self.run_ids()
        # The default is the latest experiment the user ran or imported, never a closed-loop series of one.
        own = self.run_ids(kinds=("run", "imported"))
        if run_id:
            if run_id not in ids:
                hint = f" Known runs: {', '.join(ids[-5:])}." if ids else " There are no runs yet: `l4stb run --scenario NAME`."
                raise L4stbError(f"run '{run_id}' not found under {self.runs_dir}.{hint}")
            return run_id
        if not own:
            raise L4stbError(
                f"no runs in {self.runs_dir}. Start one with `l4stb up` then `l4stb run --scenario dctcp-8mbps`, "
                "or point --workdir at the workdir that has them."
            )
        return own[-1]

    # -- lock ---------------------------------------------------------------------------------
    @contextmanager
    def locked(self, command: str) -> Iterator[None]:
        """An exclusive advisory lock: two commands never write one workdir at once."""
        self.root.mkdir(parents=True, exist_ok=True)
        fh = open(self.lock_file, "a+")
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                fh.seek(0)
                holder = fh.read().strip() or "another l4stb command"
                raise L4stbError(
                    f"the workdir {self.root} is busy: {holder} holds its lock. Wait for it to finish, "
                    "or use another --workdir."
                ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"`l4stb {command}` (pid {os.getpid()})")
            fh.flush()
            yield
        finally:
            fh.close()


def validate_name(value: str, what: str) -> str:
    """Names that become path components: letters, digits, '.', '_' and '-', not starting with '.'."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value) or value in (".", ".."):
        raise L4stbError(
            f"invalid {what} {value!r}: use letters, digits, '.', '_' and '-' only, starting with a letter or digit."
        )
    return value
