"""A testbed host reached over SSH with Fabric: run commands with timeouts, move files by SFTP, list, hash, remove.

The vagrant provider builds one :class:`SshHost` per VM from ``vagrant ssh-config`` (HostName, User,
Port, IdentityFile); the tests drive the same class against a throwaway sshd on 127.0.0.1. Every
failure becomes an :class:`~l4stb.errors.L4stbError` that names the host (and, for commands, the step,
the command and the tail of stderr: :class:`~l4stb.providers.base.RemoteCommandError`).
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import socket
import stat
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from l4stb.errors import L4stbError
from l4stb.providers.freebsd.facts import LIMITS
from l4stb.providers.base import CommandResult, Host, RemoteCommandError, RemoteFile, quote_argv

log = logging.getLogger(__name__)

REMOTE_PATH = "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin"
"""PATH for every remote command: non-login SSH sessions and sudo do not always include the sbin folders."""

MAX_COMMAND_BYTES = LIMITS["ssh_packet"].value - 4096
"""The longest command l4stb sends: the SSH packet limit (l4stb.providers.freebsd.facts.LIMITS, openssh packet.c) less room
for the channel request's own fields."""

TIMEOUT_EXIT = 124
"""Exit code reported for a command that ran past its timeout (as timeout(1) does)."""

_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.:_-]{1,253}$")

ProgressCallback = Callable[[int, int], None]
"""Called with (bytes transferred, total bytes) during put/get."""


@dataclass(frozen=True)
class SshParams:
    """How to reach one host: the fields of ``vagrant ssh-config`` that matter, validated."""

    hostname: str
    port: int
    user: str
    identity_file: str | None = None
    connect_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not _HOST_RE.fullmatch(str(self.hostname)):
            raise L4stbError(f"invalid SSH host name {self.hostname!r} (from vagrant ssh-config or testbed.json)")
        if not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise L4stbError(f"invalid SSH port {self.port!r} for {self.hostname}")
        if not _USER_RE.fullmatch(str(self.user)):
            raise L4stbError(f"invalid SSH user name {self.user!r} for {self.hostname}")

    @classmethod
    def from_ssh_config(cls, conf: Mapping[str, Any], **kwargs: Any) -> "SshParams":
        """From python-vagrant's ``Vagrant.conf(vm_name=...)`` dict (``Port`` is a string there)."""
        missing = [k for k in ("HostName", "User", "Port") if not conf.get(k)]
        if missing:
            raise L4stbError(f"vagrant ssh-config lacks {', '.join(missing)}; is the VM running? (`l4stb status`)")
        try:
            port = int(str(conf["Port"]))
        except ValueError:
            raise L4stbError(f"vagrant ssh-config gives a port that is not a number: {conf['Port']!r}") from None
        identity = conf.get("IdentityFile")
        identity_file = str(identity).strip('"') if identity else None
        return cls(str(conf["HostName"]), port, str(conf["User"]), identity_file, **kwargs)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SshParams":
        keys = ("hostname", "port", "user", "identity_file", "connect_timeout_s")
        return cls(**{k: data[k] for k in keys if k in data})


class SshHost(Host):
    """One host over SSH (Fabric ``Connection`` + paramiko SFTP). Thread-safe enough for one thread per host.

    ``sudo``: prefix commands with ``sudo -n`` (the Vagrant user has NOPASSWD sudo; the tests log in as root).
    """

    def __init__(self, name: str, params: SshParams, *, sudo: bool = False):
        self.name = name
        self.params = params
        self.sudo = sudo
        self._conn = None
        self._os: str | None = None
        self._lock = threading.RLock()

    # -- connection ----------------------------------------------------------------------------
    def _connection(self):
        with self._lock:
            if self._conn is not None and self._conn.is_connected:
                return self._conn
            # lazy: fabric is slow to import
            from fabric import Config, Connection

            p = self.params
            connect_kwargs: dict[str, Any] = {"look_for_keys": False, "allow_agent": False, "banner_timeout": 30,
                                              "auth_timeout": 30}
            if p.identity_file:
                connect_kwargs["key_filename"] = [os.path.expanduser(p.identity_file)]
            conn = Connection(p.hostname, user=p.user, port=p.port, connect_timeout=int(max(1, p.connect_timeout_s)),
                              connect_kwargs=connect_kwargs,
                              config=Config(overrides={"load_ssh_configs": False, "run": {"in_stream": False}}))
            try:
                conn.open()
            except Exception as exc:  # paramiko raises many kinds: auth, socket, protocol
                raise L4stbError(
                    f"{self.name}: cannot connect over SSH to {p.user}@{p.hostname}:{p.port} ({type(exc).__name__}: "
                    f"{exc}). Is the host up (`l4stb status`)? For VMs, `vagrant ssh-config {self.name}` shows what "
                    "l4stb uses."
                ) from None
            self._conn = conn
            return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:  # noqa: BLE001 - closing a dead connection may raise anything
                    pass
                self._conn = None

    def _drop_connection(self) -> None:
        """Forget a connection that failed mid-operation so the next call reconnects."""
        self.close()

    # -- commands ------------------------------------------------------------------------------
    def _wrap(self, command: str) -> str:
        wrapped = f"env PATH={REMOTE_PATH} {command}"
        return f"sudo -n {wrapped}" if self.sudo else wrapped

    def run(self, argv: list[str], *, timeout: float | None = 60, check: bool = True,
            step: str = "command") -> CommandResult:
        # lazy: invoke is slow to import
        from invoke.exceptions import CommandTimedOut

        command = quote_argv(argv)
        size = len(self._wrap(command).encode())
        if size > MAX_COMMAND_BYTES:
            raise L4stbError(f"{self.name}: the command of step '{step}' is {size:,} bytes, "
                             f"more than one SSH packet carries ({MAX_COMMAND_BYTES:,}); l4stb uploads long inputs as "
                             "files instead, so this is a bug: please report it with the scenario.")
        conn = self._connection()
        log.info("%s: [%s] %s", self.name, step, command if len(command) < 200 else command[:200] + "...")
        limit = None if timeout is None else max(1, int(round(timeout)))
        t0 = time.monotonic()
        try:
            res = conn.run(self._wrap(command), hide=True, warn=True, pty=False, in_stream=False, timeout=limit)
        except CommandTimedOut as exc:
            return self._timed_out(step, command, timeout, exc.result, check)
        except (OSError, EOFError, socket.error) as exc:
            self._drop_connection()
            raise L4stbError(f"{self.name}: the SSH connection broke during step '{step}' running `{command}` "
                             f"({type(exc).__name__}: {exc}).") from None
        except Exception as exc:  # paramiko.SSHException and friends
            if type(exc).__module__.startswith("paramiko"):
                self._drop_connection()
                raise L4stbError(f"{self.name}: SSH failed during step '{step}' running `{command}` "
                                 f"({type(exc).__name__}: {exc}).") from None
            raise
        if limit is not None and res.exited in (None, -1) and time.monotonic() - t0 >= limit:
            # invoke's timer closed the channel but was still running when invoke asked whether it had fired
            # (Runner.timed_out in invoke/runners.py is `not self._timer.is_alive()`), so no CommandTimedOut
            # came; paramiko reports -1 for a channel closed without an exit status. It is the same timeout.
            return self._timed_out(step, command, timeout, res, check)
        exit_code = res.exited if res.exited is not None else -1
        out = CommandResult(self.name, command, exit_code, res.stdout, res.stderr)
        if check and not out.ok:
            raise RemoteCommandError(self.name, step, command, exit_code, res.stderr or res.stdout)
        return out

    def _timed_out(self, step: str, command: str, timeout: float, result, check: bool) -> CommandResult:
        """A command past its timeout: the connection is dropped (its channel was closed), exit 124."""
        self._drop_connection()
        note = f"\n(timed out after {timeout:g} s; the SSH channel was closed)"
        out = CommandResult(self.name, command, TIMEOUT_EXIT, result.stdout or "", (result.stderr or "") + note)
        if check:
            raise RemoteCommandError(self.name, step, command, TIMEOUT_EXIT,
                                     f"timed out after {timeout:g} s" + _tail_hint(result.stderr))
        return out

    def run_script(self, script: str, *, timeout: float | None = 600, check: bool = True,
                   step: str = "script") -> CommandResult:
        """Run a rendered template with ``sh -c``. On failure the error names the command that failed (from the
        script's ``set -x`` trace) instead of the whole script, and keeps the script's own stderr lines."""
        res = self.run(["sh", "-c", script], timeout=timeout, check=False, step=step)
        if check and not res.ok:
            failing, stderr = split_xtrace(res.stderr)
            command = failing or f"sh -c <the '{step}' script, {len(script.splitlines())} lines>"
            raise RemoteCommandError(self.name, step, command, res.exit_code, stderr or res.stdout)
        return res

    def os_name(self) -> str:
        """``uname -s`` of the host (FreeBSD on the testbed, Linux in the tests), cached."""
        if self._os is None:
            self._os = self.run(["uname", "-s"], step="detect OS").stdout.strip() or "unknown"
        return self._os

    # -- files ---------------------------------------------------------------------------------
    def _sftp(self):
        conn = self._connection()
        try:
            return conn.sftp()
        except Exception as exc:  # noqa: BLE001
            self._drop_connection()
            raise L4stbError(f"{self.name}: cannot open an SFTP session ({type(exc).__name__}: {exc}).") from None

    def put(self, local: Path, remote: str, *, mode: int = 0o644, progress: ProgressCallback | None = None) -> None:
        """Upload ``local`` to ``remote`` atomically (temp name, then rename); with sudo, via a temp file in /tmp."""
        local = Path(local)
        _check_remote_path(self.name, remote)
        if not local.is_file():
            raise L4stbError(f"{self.name}: cannot upload {local}: no such file")
        sftp = self._sftp()
        tag = uuid.uuid4().hex
        tmp = (f"/tmp/.l4stb-put-{tag}" if self.sudo
               else posixpath.join(posixpath.dirname(remote), f".{posixpath.basename(remote)}.part-{tag[:8]}"))
        try:
            if not self.sudo:
                self.run(["mkdir", "-p", posixpath.dirname(remote)], step=f"upload {local.name}")
            sftp.put(str(local), tmp, callback=progress, confirm=True)
            sftp.chmod(tmp, mode)
            if self.sudo:
                self.run(["sh", "-c", 'mkdir -p "$(dirname "$2")" && mv -f "$1" "$2"', "sh", tmp, remote],
                         step=f"upload {local.name}")
            else:
                sftp.posix_rename(tmp, remote)
        except L4stbError:
            self._try_remove(tmp)
            raise
        except Exception as exc:  # noqa: BLE001 - paramiko/socket errors of every kind
            self._drop_connection()
            self._try_remove(tmp)
            raise L4stbError(f"{self.name}: uploading {local} to {remote} failed "
                             f"({type(exc).__name__}: {exc}).") from None

    def get(self, remote: str, local: Path, *, progress: ProgressCallback | None = None) -> None:
        """Download ``remote`` to ``local``: into a temp file beside it, size-checked, then renamed.

        If the host or the connection dies mid-transfer, nothing is left at ``local`` (nor the temp file).
        """
        local = Path(local)
        _check_remote_path(self.name, remote)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.part-{uuid.uuid4().hex[:8]}")
        try:
            sftp = self._sftp()
            try:
                st = sftp.lstat(remote)  # lstat: a symlink is refused, never followed out of the run folder
                if st.st_mode is not None and not stat.S_ISREG(st.st_mode):
                    raise L4stbError(f"{self.name}: {remote} is not a regular file (a symbolic link, FIFO or device); "
                                     "l4stb fetches only regular files. Remove it on the host and fetch again.")
                expected = st.st_size
            except FileNotFoundError:
                raise L4stbError(f"{self.name}: {remote} does not exist") from None
            except PermissionError:
                raise L4stbError(f"{self.name}: {remote} is not readable by {self.params.user}") from None
            sftp.get(remote, str(tmp), callback=progress, prefetch=True)
            got = tmp.stat().st_size
            if expected is not None and got != expected:
                raise L4stbError(f"{self.name}: fetching {remote} stopped at {got} of {expected} bytes; "
                                 "nothing was written to the destination.")
            os.replace(tmp, local)
        except L4stbError:
            tmp.unlink(missing_ok=True)
            raise
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            self._drop_connection()
            _join_prefetch_threads()
            raise L4stbError(
                f"{self.name}: fetching {remote} failed mid-transfer "
                f"({type(exc).__name__}: {exc or 'connection lost'}); "
                f"nothing was written to {local}. Check the host (`l4stb status`) and fetch again."
            ) from None

    def list(self, remote_dir: str) -> list[RemoteFile]:
        """Files under ``remote_dir`` (recursively) with size and mtime, via find(1) and stat(1)."""
        _check_remote_path(self.name, remote_dir)
        fmt = ["-f", "%z %m %N"] if self.os_name() == "FreeBSD" else ["-c", "%s %Y %n"]
        script = '[ -d "$1" ] || exit 0; d=$1; shift; exec find "$d" -type f -exec stat "$@" {} +'
        res = self.run(["sh", "-c", script, "sh", remote_dir, *fmt], step=f"list {remote_dir}")
        out = []
        for line in res.stdout.splitlines():
            parts = line.split(" ", 2)
            if len(parts) != 3:
                continue
            try:
                out.append(RemoteFile(parts[2], int(parts[0]), float(parts[1])))
            except ValueError:
                continue
        return sorted(out, key=lambda f: f.path)

    def sha256(self, remote: str) -> str:
        _check_remote_path(self.name, remote)
        if self.os_name() == "FreeBSD":
            out = self.run(["sha256", "-q", remote], step="sha256").stdout
        else:
            out = self.run(["sha256sum", remote], step="sha256").stdout
        digest = out.split()[0] if out.split() else ""
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise L4stbError(f"{self.name}: sha256 of {remote} printed {out.strip()!r}, not a digest")
        return digest

    def remove(self, remote: str) -> None:
        _check_remote_path(self.name, remote)
        self.run(["rm", "-f", remote], step="remove")

    def _try_remove(self, remote: str) -> None:
        try:
            self.run(["rm", "-f", remote], step="clean up", timeout=15)
        except L4stbError:
            pass


def _join_prefetch_threads(timeout_s: float = 3.0) -> None:
    """Let paramiko's SFTP prefetch threads of a dead connection finish (they end with EOFError)."""
    for t in threading.enumerate():
        if t is not threading.current_thread() and "_prefetch_thread" in t.name:
            t.join(timeout_s)


def split_xtrace(stderr: str) -> tuple[str | None, str]:
    """Split ``set -x`` output from real stderr: (the last traced command, stderr without trace lines)."""
    last = None
    rest = []
    for line in (stderr or "").splitlines():
        if line.startswith("+ "):
            last = line[2:].strip()
        else:
            rest.append(line)
    return last, "\n".join(rest)


def _check_remote_path(host: str, path: str) -> None:
    if not isinstance(path, str) or not path.startswith("/") or "\n" in path or "\0" in path:
        raise L4stbError(f"{host}: remote path {path!r} must be absolute and on one line")


def _tail_hint(stderr: str | None) -> str:
    tail = "\n".join((stderr or "").strip().splitlines()[-5:])
    return f"; stderr so far: {tail}" if tail else ""
