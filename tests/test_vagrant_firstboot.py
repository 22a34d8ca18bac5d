"""The box's first boot (freebsd-update, packages, its reboot) is waited out before provisioning, and a
`vagrant up` that its reboot cut off is retried once, the way its VM provider can mend it."""

from __future__ import annotations

import os
import subprocess
import time
from collections import namedtuple
from pathlib import Path

import pytest

from l4stb.config import load_topology
from l4stb.errors import L4stbError
from l4stb.providers.freebsd import firstboot
from l4stb.providers.freebsd import vagrant as vagrant_mod
from l4stb.providers.freebsd.firstboot import BootState
from l4stb.providers.freebsd.vagrant import VagrantProvider
from l4stb.workspace import Workspace
from test_vagrant_provider import FakeHost, FakeVagrant, World

Status = namedtuple("Status", "name state provider")  # python-vagrant's vagrant.Status


def _scripted(states: list[BootState | None]):
    """A probe answering ``states`` in turn, and a fake clock advanced by the waits."""
    seen: list[BootState | None] = []
    now = [0.0]

    def probe():
        state = states[len(seen)] if len(seen) < len(states) else states[-1]
        seen.append(state)
        return state

    def sleep(s: float) -> None:
        now[0] += s

    return probe, sleep, (lambda: now[0]), seen


def test_first_boot_is_over_only_when_two_done_probes_show_no_reboot_between_them():
    probe, sleep, clock, seen = _scripted([BootState("firstboot", 20), BootState("rc", 200), None, None,
                                           BootState("done", 40), BootState("done", 55)])
    assert firstboot.wait_for_first_boot("router", probe, sleep=sleep, clock=clock) == BootState("done", 55)
    assert len(seen) == 6


def test_a_reboot_right_after_done_is_waited_for():
    """/firstboot is removed before rc sends init SIGINT (libexec/rc/rc): a 'done' just before that reboot
    must not be taken; the next probe's uptime is smaller (a new boot) and the wait starts over."""
    probe, sleep, clock, seen = _scripted([BootState("done", 300), None, BootState("done", 35),
                                           BootState("done", 50)])
    assert firstboot.wait_for_first_boot("router", probe, sleep=sleep, clock=clock).uptime_s == 50
    assert len(seen) == 4


def test_a_first_boot_that_never_ends_is_a_user_error_naming_the_host():
    probe, sleep, clock, _ = _scripted([BootState("firstboot", 1)])
    with pytest.raises(L4stbError, match=r"client2: the box's first boot .* last reported 'firstboot'"):
        firstboot.wait_for_first_boot("client2", probe, sleep=sleep, clock=clock)


def test_probe_is_one_csh_safe_line_and_reads_the_rc_process_and_boot_time(tmp_path: Path):
    assert "\n" not in firstboot.PROBE and "!" not in firstboot.PROBE, "it runs before the login shell is sh"
    if Path("/firstboot").exists() or Path("/firstboot-reboot").exists():
        pytest.skip("this machine has a /firstboot sentinel")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    booted = int(time.time()) - 600
    (bin_dir / "sysctl").write_text(f'#!/bin/sh\n[ "$*" = "-n kern.boottime" ] && '
                                    f'echo "{{ sec = {booted}, usec = 12 }} Thu Jan  1 00:00:00 1970"\n')
    for rc_running in (0, 1):
        (bin_dir / "pgrep").write_text(f'#!/bin/sh\n[ "$*" = "-f /etc/r[c] autoboot" ] || exit 2\nexit {rc_running}\n')
        for f in bin_dir.iterdir():
            f.chmod(0o755)
        out = subprocess.run(["sh", "-c", firstboot.PROBE], capture_output=True, text=True,
                             env={**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}).stdout
        state = firstboot.parse_probe(out)
        assert state is not None and state.state == ("rc" if rc_running == 0 else "done"), out
        assert 600 <= state.uptime_s <= 660, "uptime = now - kern.boottime's sec (sbin/sysctl/sysctl.c S_timeval)"


class CutOffVagrant(FakeVagrant):
    """`vagrant up` fails once per host with ``message`` in its log, as when the first boot's reboot lands, and
    leaves the machine in ``state_after`` (libvirt destroys a domain whose up failed before SetupComplete)."""

    failed: set[str] = set()
    state_after = "running"

    def __init__(self, log: list, logfile_of, message: str):
        super().__init__(log)
        self.logfile_of, self.message = logfile_of, message

    def up(self, vm_name=None, provider=None, **kw):
        super().up(vm_name, provider)
        if vm_name not in self.failed:
            self.failed.add(vm_name)
            path = self.logfile_of(vm_name)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as fh:  # python-vagrant appends: an earlier run's lines stay above
                fh.write(f"==> {vm_name}: Configuring and enabling network interfaces...\n{self.message}\n")
            raise subprocess.CalledProcessError(1, ["vagrant", "up"])

    def reload(self, vm_name=None, provision=None):
        self.log.append(("reload", vm_name, provision))

    def destroy(self, vm_name=None):
        self.log.append(("destroy", vm_name))

    def status(self, vm_name=None):
        return [Status(vm_name, self.state_after, "virtualbox")]


def _up_with(monkeypatch, tmp_path: Path, message: str, vm_provider: str = "virtualbox",
             state_after: str = "running", earlier_log: str = "") -> tuple[list, World]:
    world = World()
    vlog: list = []
    CutOffVagrant.failed = set()
    CutOffVagrant.state_after = state_after
    monkeypatch.setattr(firstboot, "SETTLE_S", 0.0)
    monkeypatch.setattr(vagrant_mod, "detect_vm_provider", lambda: vm_provider)
    monkeypatch.setattr(vagrant_mod, "find_vagrantfile", lambda: tmp_path)
    monkeypatch.setattr(VagrantProvider, "host", lambda self, name: FakeHost(name, world))
    monkeypatch.setattr(VagrantProvider, "_ensure_box", lambda self, vm_provider: None)
    monkeypatch.setattr(vagrant_mod, "SshHost", lambda name, params, sudo: FakeHost(name, world))
    prov = VagrantProvider(Workspace.at(tmp_path))
    if earlier_log:
        for h in ("client1", "client2", "router", "server"):
            prov._log_path(f"up-{h}.log").parent.mkdir(parents=True, exist_ok=True)
            prov._log_path(f"up-{h}.log").write_text(earlier_log)
    monkeypatch.setattr(VagrantProvider, "_vagrant", lambda self, *a, **k: CutOffVagrant(
        vlog, lambda h: prov._log_path(f"up-{h}.log"), message))
    prov.up(load_topology("dumbbell-4"))
    return vlog, world


CUT = "The SSH connection was unexpectedly closed by the remote end. This\nusually indicates that SSH within the guest"


def test_an_up_cut_off_by_the_first_boot_reboot_is_reloaded_once_and_provisioning_goes_on(monkeypatch, tmp_path):
    vlog, world = _up_with(monkeypatch, tmp_path, CUT)
    reloads = sorted(e for e in vlog if e[0] == "reload")
    assert [e[1] for e in reloads] == ["client1", "client2", "router", "server"]
    assert all(e[2] is True for e in reloads), \
        "--provision: the Provision sentinel is written before the bootstrap runs, so a plain reload could skip it"
    probes = [(h, s) for h, s, _ in world.calls if s == "first-boot probe"]
    provision = [i for i, (h, s, _) in enumerate(world.calls) if s == "login shell sh"]
    assert probes and max(i for i, (h, s, _) in enumerate(world.calls) if s == "first-boot probe") < min(provision), \
        "every VM's first boot is waited out before provisioning starts"


def test_libvirt_destroyed_the_domain_so_the_retry_is_a_second_up(monkeypatch, tmp_path):
    """vagrant-libvirt's CleanupOnFailure destroys a new domain whose up failed before SetupComplete."""
    vlog, _ = _up_with(monkeypatch, tmp_path, "Vagrant timed out while attempting to connect via SSH.", "libvirt",
                       "not_created")
    assert sorted(e[1] for e in vlog if e[0] == "up") == sorted(["client1", "client2", "router", "server"] * 2)
    assert not [e for e in vlog if e[0] in ("reload", "destroy")]


def test_libvirt_cut_before_the_provisioner_is_recreated_since_its_reload_skips_the_guest_network(monkeypatch,
                                                                                               tmp_path):
    """libvirt's reload never runs configure_networks or SetHostname again; an earlier run's provisioner line in
    the appended log must not count."""
    vlog, _ = _up_with(monkeypatch, tmp_path, CUT, "libvirt", "running",
                       earlier_log="==> router: Running provisioner: l4stb-bootstrap (shell)...\n")
    assert sorted(e[1] for e in vlog if e[0] == "destroy") == ["client1", "client2", "router", "server"]
    assert [e[0] for e in vlog if e[1] == "router"] == ["up", "destroy", "up"]


def test_libvirt_cut_during_the_provisioner_is_reloaded_with_provision(monkeypatch, tmp_path):
    vlog, _ = _up_with(monkeypatch, tmp_path, "==> x: Running provisioner: l4stb-bootstrap (shell)...\n" + CUT,
                       "libvirt", "running")
    assert sorted(e for e in vlog if e[0] == "reload") == [("reload", h, True) for h in
                                                          ("client1", "client2", "router", "server")]
    assert not [e for e in vlog if e[0] == "destroy"]


def test_an_up_that_fails_for_another_reason_is_not_retried(monkeypatch, tmp_path):
    with pytest.raises(L4stbError, match=r"`vagrant up client1 --provider=virtualbox` failed"):
        _up_with(monkeypatch, tmp_path, "There was an error while executing `VBoxManage`")


def test_retryable_markers_are_vagrants_own_first_lines():
    assert firstboot.is_retryable_up_failure("SSH connection was reset! This usually happens when the machine")
    assert not firstboot.is_retryable_up_failure("The box 'freebsd/FreeBSD-14.1-RELEASE' could not be found")

