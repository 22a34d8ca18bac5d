"""The SSH layer the FreeBSD VMs use (l4stb.providers.freebsd.remote.SshHost), driven against a throwaway sshd on 127.0.0.1."""

from __future__ import annotations

import bz2
import getpass
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from l4stb.errors import L4stbError
from l4stb.providers.base import RemoteCommandError
from l4stb.providers.freebsd.remote import SshHost, SshParams

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
SSH_KEYGEN = shutil.which("ssh-keygen")

pytestmark = [
    pytest.mark.ssh,
    pytest.mark.skipif(SSHD is None or SSH_KEYGEN is None,
                       reason="needs OpenSSH's sshd and ssh-keygen (apt-get install openssh-server)"),
]


@dataclass
class LocalSshd:
    proc: subprocess.Popen
    port: int
    user: str
    key: Path
    root: Path

    def params(self, **kw) -> SshParams:
        return SshParams("127.0.0.1", self.port, self.user, str(self.key), **kw)

    def session_pids(self) -> list[int]:
        """Every descendant of the listening sshd: the per-connection processes (ours, by pid)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            for child in children.get(pid, []):
                out.append(child)
                todo.append(child)
        return out

    def kill_all(self) -> None:
        """The host dies: the listener and every session process, SIGKILL, by pid."""
        pids = self.session_pids()
        for pid in [self.proc.pid, *pids]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path: Path):
    """A private sshd: generated host and user keys, 127.0.0.1 on a free port, key auth for the current user."""
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege-separation dir Debian's sshd expects
    d = tmp_path / "sshd"
    d.mkdir()
    host_key, user_key = d / "host_ed25519", d / "user_ed25519"
    for key in (host_key, user_key):
        subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (d / "authorized_keys").write_text((d / "user_ed25519.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    user = getpass.getuser()
    port = _free_port()
    cfg = d / "sshd_config"
    cfg.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"PidFile {d / 'sshd.pid'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}", "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", f"AllowUsers {user}",
        "PermitRootLogin prohibit-password", "Subsystem sftp internal-sftp", "LogLevel ERROR", "",
    ]))
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 15
    while True:
        if proc.poll() is not None:
            pytest.skip(f"sshd did not start: {proc.stderr.read().decode(errors='replace')[-300:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.time() > deadline:
                proc.kill()
                pytest.skip("sshd did not listen within 15 s")
            time.sleep(0.1)
    server = LocalSshd(proc, port, user, user_key, tmp_path)
    yield server
    if proc.poll() is None:
        for pid in server.session_pids():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def host(sshd: LocalSshd):
    h = SshHost("testhost", sshd.params())
    yield h
    h.close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_connect_and_run_returns_stdout_and_exit_code(host: SshHost):
    res = host.run(["sh", "-c", 'echo "$1 world"; exit 3', "sh", "hello"], check=False, step="greet")
    assert res.exit_code == 3
    assert res.stdout.strip() == "hello world"
    assert host.os_name() == "Linux"


def test_arguments_with_shell_metacharacters_arrive_verbatim(host: SshHost):
    nasty = "a b; echo pwned $(id) `id` 'q' \"dq\" \n newline"
    res = host.run(["printf", "%s", nasty], step="echo")
    assert res.stdout == nasty


def test_failing_command_names_host_step_command_and_stderr(host: SshHost):
    with pytest.raises(RemoteCommandError) as err:
        host.run(["ls", "/nonexistent-l4stb-dir"], step="list a missing folder")
    msg = str(err.value)
    assert "testhost" in msg and "list a missing folder" in msg and "ls /nonexistent-l4stb-dir" in msg
    assert "No such file" in msg
    assert err.value.exit_code != 0


def test_command_past_its_timeout_fails_clearly(host: SshHost):
    t0 = time.monotonic()
    with pytest.raises(RemoteCommandError) as err:
        host.run(["sleep", "5"], timeout=1, step="nap")
    assert time.monotonic() - t0 < 4.5
    assert "timed out after 1 s" in str(err.value) and "sleep 5" in str(err.value)
    # the host is still usable afterwards (a fresh channel/connection)
    assert host.run(["echo", "still here"]).stdout.strip() == "still here"


def test_a_timeout_invoke_did_not_see_fire_is_still_a_timeout(host: SshHost, monkeypatch):
    """Under load invoke's timer can still be running when invoke asks whether it fired (the race behind a
    flaky run): the command then comes back with no exit status instead of CommandTimedOut."""
    import invoke.runners

    monkeypatch.setattr(invoke.runners.Runner, "timed_out", property(lambda self: False))
    with pytest.raises(RemoteCommandError) as err:
        host.run(["sleep", "5"], timeout=1, step="nap")
    assert "timed out after 1 s" in str(err.value) and err.value.exit_code == 124
    assert host.run(["echo", "still here"]).stdout.strip() == "still here"


def test_script_failure_names_the_command_that_failed(host: SshHost):
    script = "set -eux\necho fine\nfalse_cmd_l4stb --flag\necho never\n"
    with pytest.raises(RemoteCommandError) as err:
        host.run_script(script, step="provision")
    msg = str(err.value)
    assert "false_cmd_l4stb --flag" in msg and "provision" in msg and "not found" in msg
    assert "echo never" not in msg


def test_put_and_get_roundtrip_byte_identical(host: SshHost, tmp_path: Path):
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(300_000))
    remote = str(tmp_path / "remote" / "sub" / "payload.bin")
    host.put(src, remote)
    assert Path(remote).read_bytes() == src.read_bytes()
    assert oct(Path(remote).stat().st_mode & 0o777) == "0o644"
    assert host.sha256(remote) == _sha(src)
    back = tmp_path / "local" / "payload.bin"
    host.get(remote, back)
    assert back.read_bytes() == src.read_bytes()
    assert not list((tmp_path / "local").glob(".*part*"))


def test_list_reports_every_file_with_size_and_mtime(host: SshHost, tmp_path: Path):
    root = tmp_path / "runs" / "r01"
    (root / "deep").mkdir(parents=True)
    (root / "a.json").write_text("{}")
    (root / "deep" / "b name.txt").write_text("12345")
    files = host.list(str(tmp_path / "runs"))
    assert [(Path(f.path).name, f.size) for f in files] == [("a.json", 2), ("b name.txt", 5)]
    assert all(abs(f.mtime - time.time()) < 300 for f in files)
    assert host.list(str(tmp_path / "does-not-exist")) == []


def test_fetch_a_rotated_log_set(host: SshHost, tmp_path: Path):
    """dualpi2.log plus newsyslog's .0.bz2 and .1.bz2, listed, fetched and verified by sha256."""
    remote_dir = tmp_path / "var" / "l4stb" / "runs" / "dctcp-8mbps-20250101T000000Z" / "r01"
    remote_dir.mkdir(parents=True)
    line = "Jan  1 00:00:00 router kernel: dualpi2: l4stb_aqm-start," + ",".join(["1"] * 26) + ",end\n"
    (remote_dir / "dualpi2.log").write_text(line * 10)
    (remote_dir / "dualpi2.log.0.bz2").write_bytes(bz2.compress((line * 1000).encode()))
    (remote_dir / "dualpi2.log.1.bz2").write_bytes(bz2.compress((line * 2000).encode()))
    listed = host.list(str(remote_dir))
    assert sorted(Path(f.path).name for f in listed) == ["dualpi2.log", "dualpi2.log.0.bz2", "dualpi2.log.1.bz2"]
    dest = tmp_path / "raw" / "router"
    for f in listed:
        local = dest / Path(f.path).name
        host.get(f.path, local)
        assert local.stat().st_size == f.size
        assert _sha(local) == host.sha256(f.path)
    assert bz2.decompress((dest / "dualpi2.log.1.bz2").read_bytes()).decode().count("\n") == 2000


def test_remove_deletes_a_remote_file(host: SshHost, tmp_path: Path):
    victim = tmp_path / "victim.txt"
    victim.write_text("x")
    host.remove(str(victim))
    assert not victim.exists()
    host.remove(str(victim))  # removing twice is fine


def test_missing_remote_file_is_a_clear_error(host: SshHost, tmp_path: Path):
    with pytest.raises(L4stbError, match="does not exist"):
        host.get(str(tmp_path / "nope.log"), tmp_path / "nope.log")
    assert not (tmp_path / "nope.log").exists()


@pytest.mark.slow
# paramiko's SFTP prefetch thread dies with EOFError when the host goes away; SshHost reports it (below).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_host_dying_mid_transfer_leaves_nothing_at_the_destination(sshd: LocalSshd, tmp_path: Path):
    big = tmp_path / "big.log"
    with open(big, "wb") as fh:
        for _ in range(96):
            fh.write(os.urandom(1 << 20))
    dest = tmp_path / "fetched" / "big.log"
    host = SshHost("router", sshd.params(connect_timeout_s=5))
    killed = []

    def progress(done: int, total: int) -> None:
        if not killed and done > (2 << 20):
            killed.append(done)
            sshd.kill_all()

    t0 = time.monotonic()
    with pytest.raises(L4stbError) as err:
        host.get(str(big), dest, progress=progress)
    assert killed, "the transfer finished before the host could be killed"
    assert time.monotonic() - t0 < 60
    msg = str(err.value)
    assert "router" in msg and str(big) in msg and "nothing was written" in msg
    assert not dest.exists()
    assert not any(dest.parent.iterdir()), "a partial/temp file was left behind"
    with pytest.raises(L4stbError, match="cannot connect"):
        host.run(["true"])
    host.close()


def test_unreachable_host_is_a_clear_error(tmp_path: Path):
    host = SshHost("server", SshParams("127.0.0.1", _free_port(), "vagrant", None, connect_timeout_s=3))
    with pytest.raises(L4stbError) as err:
        host.run(["true"])
    assert "server" in str(err.value) and "cannot connect" in str(err.value)


def test_ssh_params_come_from_vagrant_ssh_config():
    conf = {"HostName": "127.0.0.1", "User": "vagrant", "Port": "2222",
            "IdentityFile": '"/home/me/.vagrant.d/insecure_private_key"', "StrictHostKeyChecking": "no"}
    p = SshParams.from_ssh_config(conf)
    assert (p.hostname, p.port, p.user, p.identity_file) == ("127.0.0.1", 2222, "vagrant",
                                                             "/home/me/.vagrant.d/insecure_private_key")
    assert SshParams.from_json(p.to_json()) == p
    with pytest.raises(L4stbError):
        SshParams.from_ssh_config({"HostName": "127.0.0.1", "User": "vagrant; rm -rf /", "Port": "22"})
    with pytest.raises(L4stbError):
        SshParams.from_ssh_config({"HostName": "127.0.0.1", "User": "vagrant"})
