"""Wait out the FreeBSD box's first boot (freebsd-update, packages, its reboot) before l4stb provisions a VM.

The box (freebsd-src release/tools/vagrant.conf) ships with ``/firstboot`` and the rc variables
``firstboot_freebsd_update_enable`` and ``firstboot_pkgs_enable``: on the first boot /etc/rc runs those
scripts, and at its end (libexec/rc/rc) removes ``/firstboot`` and, when a script asked for a reboot by
creating ``/firstboot-reboot`` (freebsd-update does after installing updates), removes that too and sends
init SIGINT, which reboots the VM. sshd is up before that, so Vagrant can log in, report the machine
ready, or fail mid-step when the reboot cuts its session.

:data:`PROBE` asks a VM where it is: ``firstboot`` while either sentinel exists, ``rc`` while /etc/rc still
runs (init starts it as ``sh /etc/rc autoboot``: sbin/init/init.c runcom), else ``done``; with the uptime
(now less kern.boottime: both move together when the clock is stepped, so it only grows within one boot).
:func:`wait_for_first_boot` accepts the VM once two probes :data:`SETTLE_S` apart both say ``done`` and the
uptime grew between them, so a reboot that was about to happen, or happened in between, is waited for too.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable, Literal

from l4stb.errors import L4stbError

PROBE = ("if [ -e /firstboot ] || [ -e /firstboot-reboot ]; then s=firstboot; "
         "elif pgrep -f '/etc/r[c] autoboot' >/dev/null; then s=rc; else s=done; fi; "
         "b=$(sysctl -n kern.boottime | sed 's/^{ sec = \\([0-9]*\\),.*/\\1/'); "
         "echo \"l4stb-boot $s $(( $(date +%s) - b ))\"")
"""One line, sh syntax that csh passes through untouched (no newline, no `!`): it runs before the login shell is
sh. The bracket in the pgrep pattern keeps the probe's own command line from matching it."""

SETTLE_S = 15.0
"""Seconds between the two ``done`` probes whose uptimes must show no reboot between them."""
POLL_S = 10.0
WAIT_S = 45 * 60.0
"""How long first boot may take: freebsd-update of an end-of-life release and the package bootstrap."""

RETRYABLE_UP_ERRORS = (
    "The SSH connection was unexpectedly closed by the remote end",
    "SSH connection was reset!",
    "SSH connection was aborted!",
    "SSH connection was refused!",
    "Vagrant timed out while attempting to connect via SSH",
    "is not yet ready for SSH",
)
"""The first lines of Vagrant's communicator errors (hashicorp/vagrant templates/locales/en.yml: ssh_disconnected,
ssh_connection_reset, ssh_connection_aborted, ssh_connection_refused, ssh_connection_timeout, ssh_not_ready;
classes in lib/vagrant/errors.rb), which the first-boot reboot causes when it lands mid-`vagrant up`."""


@dataclass(frozen=True)
class BootState:
    state: str
    """``firstboot``, ``rc`` or ``done``."""
    uptime_s: int


def parse_probe(text: str) -> BootState | None:
    """The probe's ``l4stb-boot STATE UPTIME_S`` line, or None when it is not there."""
    for line in text.splitlines():
        m = re.fullmatch(r"l4stb-boot (firstboot|rc|done) (-?[0-9]+)", line.strip())
        if m:
            return BootState(m.group(1), int(m.group(2)))
    return None


PROVISIONER_STARTED = "Running provisioner: "
"""What `vagrant up` prints as a provisioner starts (hashicorp/vagrant templates/locales/en.yml,
vagrant.actions.vm.provision.beginning): the up reached its last step, after the guest's networks and hostname."""

RetryAction = Literal["up", "reload", "recreate"]


def is_retryable_up_failure(log_text: str) -> bool:
    """Did `vagrant up` fail on one of the communicator errors a first-boot reboot causes?"""
    return any(marker in log_text for marker in RETRYABLE_UP_ERRORS)


def retry_action(vm_provider: str, state: str, log_text: str) -> RetryAction:
    """How to retry, once, a first `vagrant up` that the first boot's reboot cut off, from the VM's state after it
    (`vagrant status`) and the up's log. Each provider leaves a different machine behind:

    * **VirtualBox** keeps the VM: Import#recover (plugins/providers/virtualbox/action/import.rb) destroys only on
      an error that is not a VagrantError, and every communicator error is one (lib/vagrant/errors.rb). Its
      reload (plugins/providers/virtualbox/action.rb action_reload) is action_halt then action_start, which boots
      through action_boot again: Network (the guest's configure_networks), SetHostname, WaitForCommunicator and
      Provision, so every step the cut skipped runs again -> ``reload``.
    * **libvirt** destroys a new domain when the up fails before SetupComplete, i.e. in StartDomain, WaitTillUp
      or WaitForCommunicator (vagrant-libvirt lib/vagrant-libvirt/action/cleanup_on_failure.rb, with the up
      command's destroy_on_error true by default: plugins/commands/up/command.rb): the state is then not_created
      -> ``up`` again. After SetupComplete the domain stays, but libvirt's reload (lib/vagrant-libvirt/action.rb
      action_reload: Provision, action_halt, action_start) and its up of a created domain never run
      CreateNetworkInterfaces' configure_networks or SetHostname again, so only a cut during the provisioner
      itself (the log shows it started) is mended by ``reload``; a cut before it needs ``recreate`` (destroy,
      then up).

    A reload always runs with ``--provision``: Vagrant's Provision middleware writes its sentinel before the
    provisioners run (lib/vagrant/action/builtin/provision.rb), so a cut mid-provisioner leaves a sentinel that a
    plain reload obeys, and the Vagrantfile's bootstrap would never finish; ``--provision`` ignores the sentinel
    (plugins/commands/up/start_mixins.rb), and the bootstrap is idempotent."""
    if state == "not_created":
        return "up"
    if vm_provider == "libvirt" and PROVISIONER_STARTED not in log_text:
        return "recreate"
    return "reload"


def wait_for_first_boot(host: str, probe: Callable[[], BootState | None], *,
                        sleep: Callable[[float], None] = time.sleep,
                        clock: Callable[[], float] = time.monotonic) -> BootState:
    """Probe until first boot is over and the VM has not rebooted for SETTLE_S; ``probe`` returns None while the
    VM cannot be reached (rebooting). Raises an :class:`L4stbError` naming ``host`` after WAIT_S."""
    settle_s, poll_s, wait_s = SETTLE_S, POLL_S, WAIT_S
    deadline = clock() + wait_s
    candidate: BootState | None = None
    last: BootState | None = None
    while True:
        state = probe()
        last = state or last
        if state is not None and state.state == "done":
            if candidate is not None and state.uptime_s > candidate.uptime_s:
                return state
            candidate = state
        else:
            candidate = None
        if clock() >= deadline:
            seen = f"it last reported '{last.state}'" if last else "it never answered over SSH"
            raise L4stbError(
                f"{host}: the box's first boot (freebsd-update, packages, then a reboot) did not finish within "
                f"{wait_s / 60:.0f} minutes; {seen}. Look at the VM's console (VirtualBox GUI or `virsh console`), "
                "then run `l4stb up --provider vagrant` again: provisioning is idempotent.")
        sleep(settle_s if candidate is not None else poll_s)
