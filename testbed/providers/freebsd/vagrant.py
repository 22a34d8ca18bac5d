"""The `vagrant` provider: FreeBSD 14.1 VMs from the top-level Vagrantfile, provisioned and driven over SSH (Fabric).

``up`` starts the VMs in parallel with python-vagrant, connects to each with the parameters of
``vagrant ssh-config`` and provisions them idempotently from the templates in playbooks/templates
(rendered by :mod:`l4stb.providers.freebsd.plans`). ``run_repeats`` runs the repeats one after the other: configure the
router's queue and logging and the endpoints' congestion control, reset the router's log set, start the
servers, start all clients at one moment, wait, stop stragglers, move the log set into the repeat's
folder. ``plan_up``/``plan_run`` print all of it without touching anything (``--dry-run``).

Vagrant's machine state lives in ``<workdir>/vagrant/`` (VAGRANT_DOTFILE_PATH), next to a copy of the
topology that the Vagrantfile reads (L4STB_TOPOLOGY), so two workdirs are two independent testbeds.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import yaml

import l4stb
from l4stb import lograte
from l4stb.config import Scenario, Topology, check_management_overlap
from l4stb.console import console
from l4stb.errors import L4stbError
from l4stb.providers import base
from l4stb.providers.base import (
    DoneFn,
    Plan,
    ProgressFn,
    Provider,
    RemoteCommandError,
    RepeatOutcome,
    RunContext,
    TestbedInfo,
)
from l4stb.providers.freebsd import check_steps, firstboot, plans
from l4stb.providers.freebsd.remote import SshHost, SshParams
from l4stb.workspace import atomic_write_text, utc_iso

log = logging.getLogger(__name__)

BOX = "freebsd/FreeBSD-14.1-RELEASE"
BOX_VERSION = "2024.05.31"
VM_PROVIDERS = ("virtualbox", "libvirt")
REBOOT_MARKER = "l4stb-reboot-needed"

INSTALL_PROVIDER = (
    "Install one VM provider: VirtualBox (`sudo apt-get install virtualbox`, or "
    "https://www.virtualbox.org/wiki/Downloads) or libvirt/KVM (`sudo apt-get install vagrant-libvirt "
    "libvirt-daemon-system qemu-kvm`, then add yourself to the libvirt group). `l4stb up` without --provider "
    "uses the built-in simulator and needs none of this."
)
INSTALL_VAGRANT = (
    "Install Vagrant (Debian/Ubuntu: `sudo apt-get install --no-install-recommends vagrant`; elsewhere "
    "https://developer.hashicorp.com/vagrant/install). " + INSTALL_PROVIDER
)


def find_vagrantfile() -> Path:
    """The folder holding l4stb's Vagrantfile: env L4STB_VAGRANTFILE (file or folder), else the source checkout."""
    env = os.environ.get("L4STB_VAGRANTFILE")
    if env:
        path = Path(env).expanduser()
        folder = path if path.is_dir() else path.parent
        if (folder / "Vagrantfile").is_file():
            return folder.resolve()
        raise L4stbError(f"L4STB_VAGRANTFILE={env} does not point at a Vagrantfile.")
    checkout = Path(l4stb.__file__).resolve().parent.parent
    if (checkout / "Vagrantfile").is_file():
        return checkout
    raise L4stbError(
        "the vagrant provider needs l4stb's Vagrantfile, which ships in the source tree, not in the wheel. "
        "Run l4stb from a checkout (pip install -e .), or set L4STB_VAGRANTFILE to the Vagrantfile's path."
    )


def detect_vm_provider() -> str:
    """virtualbox or libvirt: env L4STB_VAGRANT_PROVIDER / VAGRANT_DEFAULT_PROVIDER, else what is installed."""
    if shutil.which("vagrant") is None:
        raise L4stbError(f"the `vagrant` command is not installed. {INSTALL_VAGRANT}")
    wanted = os.environ.get("L4STB_VAGRANT_PROVIDER") or os.environ.get("VAGRANT_DEFAULT_PROVIDER")
    has_vbox = bool(shutil.which("VBoxManage") or shutil.which("vboxmanage"))
    has_libvirt = bool(shutil.which("virsh")) and _has_libvirt_plugin()
    if wanted:
        if wanted not in VM_PROVIDERS:
            raise L4stbError(f"Vagrant provider {wanted!r} is not supported; use one of {', '.join(VM_PROVIDERS)}.")
        if wanted == "virtualbox" and not has_vbox:
            raise L4stbError(f"VirtualBox was asked for but VBoxManage is not installed. {INSTALL_PROVIDER}")
        if wanted == "libvirt" and not has_libvirt:
            raise L4stbError("libvirt was asked for but the vagrant-libvirt plugin or virsh is missing "
                             "(`sudo apt-get install vagrant-libvirt libvirt-daemon-system qemu-kvm`, or "
                             "`vagrant plugin install vagrant-libvirt`).")
        return wanted
    if has_vbox:
        return "virtualbox"
    if has_libvirt:
        return "libvirt"
    raise L4stbError(f"Vagrant is installed but no VM provider it can use is: neither VirtualBox (VBoxManage) nor "
                     f"libvirt (virsh + the vagrant-libvirt plugin) was found. {INSTALL_PROVIDER}")


def _has_libvirt_plugin() -> bool:
    try:
        out = subprocess.run(["vagrant", "plugin", "list"], capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "vagrant-libvirt" in out


def up_jobs(vm_provider: str, hosts: int) -> int:
    """How many `vagrant up` run at once: 1 on VirtualBox, whose parallel `VBoxManage import` of one box fails
    (VirtualBox/virtualbox#80: NS_ERROR_INVALID_ARG for all but one), all on libvirt; env L4STB_UP_JOBS overrides.
    Provisioning over SSH runs in parallel on either."""
    raw = os.environ.get("L4STB_UP_JOBS", "")
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise L4stbError(f"L4STB_UP_JOBS={raw!r} must be a whole number >= 1.")
        return int(raw)
    return 1 if vm_provider == "virtualbox" else max(1, hosts)


def _read_from(path: Path, offset: int) -> str:
    """What a command appended to its log from ``offset`` on."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _vm_state(v, host: str) -> str:
    """`vagrant status HOST`'s machine-readable state (not_created, running, poweroff, ...), or "unknown"."""
    try:
        return next((st.state for st in v.status(vm_name=host) if st.name == host), "unknown") or "unknown"
    except subprocess.CalledProcessError:
        return "unknown"


def _tail(path: Path, n: int = 8) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:]) or "(empty log)"


class VagrantProvider(Provider):
    name = "vagrant"

    def __init__(self, workspace):
        super().__init__(workspace)
        self._hosts: dict[str, SshHost] = {}
        self._reconnected: dict[str, SshParams] = {}
        """SSH parameters read again while waiting out a reboot (they replace those recorded at `vagrant up`)."""
        self._lock = threading.Lock()

    # -- paths and python-vagrant ---------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.ws.root / "vagrant"

    @property
    def topology_file(self) -> Path:
        return self.state_dir / "topology.yaml"

    def _net_prefix(self) -> str:
        return "l4stb-" + hashlib.sha256(str(self.ws.root).encode()).hexdigest()[:6] + "-"

    def _env(self, topology_name: str | None = None) -> dict[str, str]:
        env = dict(os.environ)
        if self.topology_file.is_file():
            env["L4STB_TOPOLOGY"] = str(self.topology_file)
        elif topology_name:
            env["L4STB_TOPOLOGY"] = topology_name
        env["L4STB_NET_PREFIX"] = self._net_prefix()
        env["VAGRANT_DOTFILE_PATH"] = str(self.state_dir / "dot-vagrant")
        env.setdefault("L4STB_BOX", BOX)
        env.setdefault("L4STB_BOX_VERSION", BOX_VERSION)
        return env

    def _vagrant(self, log_name: str | None = None, topology_name: str | None = None):
        import vagrant  # imported here: it warns at import time when the vagrant binary is missing

        kwargs: dict[str, Any] = {}
        if log_name:
            (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
            cm = vagrant.make_file_cm(str(self.state_dir / "logs" / log_name))
            kwargs = {"out_cm": cm, "err_cm": cm}
        return vagrant.Vagrant(root=str(find_vagrantfile()), env=self._env(topology_name), **kwargs)

    def _log_path(self, name: str) -> Path:
        return self.state_dir / "logs" / name

    # -- plans ----------------------------------------------------------------------------------
    def plan_up(self, topology: Topology) -> Plan:
        check_management_overlap(topology)
        hosts = list(topology.hosts)
        plan = Plan(f"l4stb up --provider vagrant --topology {topology.name}")
        plan.add("local", "vagrant: box and VMs", "\n".join([
            "# on this machine, in the folder of l4stb's Vagrantfile, with",
            "# L4STB_TOPOLOGY=<workdir>/vagrant/topology.yaml and VAGRANT_DOTFILE_PATH=<workdir>/vagrant/dot-vagrant;",
            "# provider: L4STB_VAGRANT_PROVIDER, else virtualbox when VBoxManage is installed, else libvirt",
            f"vagrant box add {BOX} --box-version {BOX_VERSION} --provider <provider>   # when missing",
            "# VirtualBox: one VM after the other (parallel `VBoxManage import` fails); libvirt: all at once",
            *[f"vagrant up {h} --provider=<provider>" for h in hosts],
            *[f"vagrant ssh-config {h}   # -> HostName, User, Port, IdentityFile for Fabric" for h in hosts],
            "# then the steps below, each phase on all its hosts at once; a host that prints",
            f"# '{REBOOT_MARKER}' is rebooted (vagrant reload --no-provision) and its step run again",
        ]))
        sub = plans.plan_of("", plans.up_phases(topology))
        plan.steps.extend(sub.steps)
        for h in hosts:
            s = plans.facts_step(topology, h)
            plan.add(h, s.step, s.describe())
        plan.add("local", "self-check", "l4stb check   # a 5 s DCTCP flow through the pipe; see `l4stb check --help`")
        return plan

    def plan_run(self, ctx: RunContext, repeat: int) -> Plan:
        title = (f"l4stb run --scenario {ctx.scenario.name} (vagrant provider, repeat {repeat} of "
                 f"{ctx.scenario.repeats}; run {ctx.run_id})")
        prepare = plans.prepare_phase(ctx.scenario, ctx.topology) if repeat == 1 else None
        phases = plans.run_phases(ctx.scenario, ctx.topology, ctx.run_id, repeat)
        plan = plans.plan_of(title, ([prepare] if prepare else []) + phases)
        plan.steps.insert(0, base.PlanStep("all hosts", "before the first repeat", (
            f"# host facts on every host; refuse to run unless kern.hz = aqm.kern_hz = {ctx.scenario.aqm.kern_hz}"
            " everywhere" + ("; then build udp_prague where Prague flows run" if prepare else ""))))
        return plan

    # -- lifecycle ------------------------------------------------------------------------------
    def up(self, topology: Topology) -> TestbedInfo:
        check_management_overlap(topology)
        vm_provider = detect_vm_provider()
        find_vagrantfile()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.topology_file, yaml.safe_dump(topology.model_dump(mode="json"), sort_keys=False))
        hosts = list(topology.hosts)

        with console.status(f"vagrant: box {BOX} {BOX_VERSION} ({vm_provider})"):
            self._ensure_box(vm_provider)
        with console.status(f"vagrant up {', '.join(hosts)} ({vm_provider}; the first boot updates FreeBSD and "
                            "can take 10-30 minutes)"):
            def up_one(h: str) -> None:
                v = self._vagrant(f"up-{h}.log")
                logfile = self._log_path(f"up-{h}.log")
                start = logfile.stat().st_size if logfile.is_file() else 0  # python-vagrant appends to the log
                try:
                    v.up(vm_name=h, provider=vm_provider)
                    return
                except subprocess.CalledProcessError:
                    if not firstboot.is_retryable_up_failure(_read_from(logfile, start)):
                        raise L4stbError(f"{h}: `vagrant up {h} --provider={vm_provider}` failed. Last lines of "
                                         f"{logfile}:\n{_tail(logfile)}") from None
                # The first boot's reboot cut Vagrant's SSH session mid-step: retry once, the way this provider
                # can mend it (l4stb.providers.freebsd.firstboot.retry_action says why for each).
                action = firstboot.retry_action(vm_provider, _vm_state(v, h), _read_from(logfile, start))
                log.warning("%s: vagrant up lost its SSH session (first-boot reboot?); retrying once with %s", h,
                            {"up": "`vagrant up`", "reload": "`vagrant reload --provision` after the first boot",
                             "recreate": "`vagrant destroy` and `vagrant up`"}[action])
                try:
                    if action == "reload":
                        self._wait_first_boot(v, h)
                        v.reload(vm_name=h, provision=True)
                    else:
                        if action == "recreate":
                            v.destroy(vm_name=h)
                        v.up(vm_name=h, provider=vm_provider)
                except subprocess.CalledProcessError:
                    raise L4stbError(f"{h}: `vagrant up {h}` lost its SSH session (the box's first-boot reboot), and "
                                     f"the retry ({action}) failed too. Last lines of {logfile}:\n{_tail(logfile)}\n"
                                     f"Run `l4stb up --provider vagrant` again; if {h} keeps failing, "
                                     f"`vagrant destroy {h}` in {find_vagrantfile()} first.") from None

            self._parallel(hosts, up_one, jobs=up_jobs(vm_provider, len(hosts)))

        v = self._vagrant("ssh-config.log")
        info = TestbedInfo(provider=self.name, topology=topology.name)
        for h in hosts:
            params = self._ssh_params(v, h)
            self._hosts[h] = SshHost(h, params, sudo=True)
            spec = topology.hosts[h]
            info.hosts[h] = {"role": spec.role, "addresses": [i.address for i in spec.interfaces],
                             "vm_provider": vm_provider, "box": f"{BOX} {BOX_VERSION}", "ssh": params.to_json()}

        with console.status(f"waiting for the first boot (freebsd-update, packages, reboot) on {', '.join(hosts)}"):
            self._parallel(hosts, lambda h: self._wait_first_boot(v, h))
        for h, params in self._reconnected.items():
            info.hosts[h]["ssh"] = params.to_json()
        for phase in plans.up_phases(topology, ssh_user=self._hosts[hosts[0]].params.user):
            with console.status(f"provisioning: {phase.name} on {', '.join(s.host for s in phase.steps)}"):
                self._run_phase(phase, reboot=lambda h: self._reboot(v, h, info))
        facts = self.host_facts(topology)
        for h in hosts:
            info.hosts[h]["freebsd_version"] = facts[h].get("freebsd_version", "")
            info.hosts[h]["uname"] = facts[h].get("uname", "")
            info.hosts[h]["pkg_abi"] = facts[h].get("pkg_abi", [])
        return info

    def _ensure_box(self, vm_provider: str) -> None:
        v = self._vagrant("box.log")
        try:
            boxes = v.box_list()
        except subprocess.CalledProcessError:
            boxes = []
        if any(b.name == BOX and b.provider == vm_provider and b.version == BOX_VERSION for b in boxes):
            return
        cmd = ["vagrant", "box", "add", BOX, "--box-version", BOX_VERSION, "--provider", vm_provider]
        logfile = self._log_path("box.log")
        with open(logfile, "a") as fh:
            proc = subprocess.run(cmd, cwd=str(find_vagrantfile()), env=self._env(), stdout=fh, stderr=fh)
        if proc.returncode != 0:
            raise L4stbError(f"`{' '.join(cmd)}` failed (is the box published for {vm_provider}? For libvirt, set "
                             f"L4STB_BOX/L4STB_BOX_VERSION to a FreeBSD 14.1 box that has it). Last lines of "
                             f"{logfile}:\n{_tail(logfile)}")

    def _ssh_params(self, v, host: str) -> SshParams:
        try:
            conf = v.conf(vm_name=host)
        except subprocess.CalledProcessError:
            raise L4stbError(f"{host}: `vagrant ssh-config {host}` failed; is the VM running? "
                             "(`l4stb status`)") from None
        return SshParams.from_ssh_config(conf or {})

    def _wait_first_boot(self, v, host: str) -> None:
        """Until the box's first boot is over and the VM stays up (l4stb.providers.freebsd.firstboot); a probe that cannot
        connect counts as "rebooting", and the SSH parameters are read again from `vagrant ssh-config` then."""

        def probe() -> firstboot.BootState | None:
            try:
                if host not in self._hosts:
                    params = self._ssh_params(v, host)
                    self._hosts[host] = SshHost(host, params, sudo=True)
                    self._reconnected[host] = params
                res = self._hosts[host].run(["sh", "-c", firstboot.PROBE], timeout=60, check=False,
                                            step="first-boot probe")
            except L4stbError:
                stale = self._hosts.pop(host, None)
                if stale is not None:
                    stale.close()
                return None
            return firstboot.parse_probe(res.stdout)

        firstboot.wait_for_first_boot(host, probe)

    def _reboot(self, v, host: str, info: TestbedInfo) -> None:
        """Reboot one VM (a loader tunable changed) and reconnect."""
        self._hosts[host].close()
        try:
            v.reload(vm_name=host, provision=False)
        except subprocess.CalledProcessError:
            raise L4stbError(f"{host}: `vagrant reload {host}` failed; see "
                             f"{self._log_path('ssh-config.log')}.") from None
        params = self._ssh_params(v, host)
        self._hosts[host] = SshHost(host, params, sudo=True)
        info.hosts[host]["ssh"] = params.to_json()

    def down(self, *, destroy: bool = False) -> None:
        detect_vm_provider()
        info = TestbedInfo.load(self.ws) if self.ws.testbed_file.is_file() else None
        hosts = list(info.hosts) if info else []
        for h in list(self._hosts.values()):
            h.close()
        self._hosts.clear()

        def stop(h: str) -> None:
            v = self._vagrant("down.log", topology_name=info.topology if info else None)
            try:
                v.destroy(vm_name=h) if destroy else v.halt(vm_name=h)
            except subprocess.CalledProcessError:
                raise L4stbError(f"{h}: `vagrant {'destroy -f' if destroy else 'halt'} {h}` failed. Last lines of "
                                 f"{self._log_path('down.log')}:\n{_tail(self._log_path('down.log'))}") from None

        self._parallel(hosts, stop)

    def status(self) -> dict[str, str]:
        detect_vm_provider()
        info = TestbedInfo.load(self.ws) if self.ws.testbed_file.is_file() else None
        v = self._vagrant(topology_name=info.topology if info else None)
        try:
            states = v.status()
        except subprocess.CalledProcessError as exc:
            raise L4stbError(f"`vagrant status` failed (exit {exc.returncode}) in {find_vagrantfile()}; run it there "
                             f"with VAGRANT_DOTFILE_PATH={self.state_dir / 'dot-vagrant'} to see why.") from None
        return {s.name: str(s.state).replace("_", " ") for s in states}

    # -- hosts ----------------------------------------------------------------------------------
    def host(self, name: str) -> SshHost:
        with self._lock:
            if name in self._hosts:
                return self._hosts[name]
            info = TestbedInfo.load(self.ws)
            meta = info.hosts.get(name)
            if meta is None:
                raise L4stbError(f"host {name} is not part of the vagrant testbed ({', '.join(info.hosts)}).")
            params = SshParams.from_json(meta["ssh"]) if meta.get("ssh") else self._ssh_params(self._vagrant(), name)
            self._hosts[name] = SshHost(name, params, sudo=True)
            return self._hosts[name]

    def host_facts(self, topology: Topology) -> dict[str, dict[str, Any]]:
        facts: dict[str, dict[str, Any]] = {}

        def one(h: str) -> None:
            step = plans.facts_step(topology, h)
            res = self.host(h).run_script(step.script, timeout=step.timeout_s, step=step.step)
            facts[h] = plans.parse_facts(res.stdout)

        self._parallel(list(topology.hosts), one)
        return {h: facts[h] for h in topology.hosts}

    def vm_report(self, topology: Topology, log_file: str) -> dict[str, str]:
        """Every host's answer to the read-only VM report (plans.vm_report_step), by host."""
        out: dict[str, str] = {}

        def one(h: str) -> None:
            step = plans.vm_report_step(topology, h, log_file)
            out[h] = self.host(h).run_script(step.script, timeout=step.timeout_s, step=step.step).stdout

        self._parallel(list(topology.hosts), one)
        return {h: out[h] for h in topology.hosts}

    # -- running steps --------------------------------------------------------------------------
    @staticmethod
    def _parallel(items: list[str], fn: Callable[[str], Any], jobs: int | None = None) -> dict[str, Any]:
        """Run ``fn(item)`` in threads; re-raise the first error (by item order) after all have finished."""
        if not items:
            return {}
        results: dict[str, Any] = {}
        errors: dict[str, BaseException] = {}
        with ThreadPoolExecutor(max_workers=jobs or len(items)) as pool:
            futures = {item: pool.submit(fn, item) for item in items}
            for item, fut in futures.items():
                try:
                    results[item] = fut.result()
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    errors[item] = exc
        for item in items:
            if item in errors:
                raise errors[item]
        return results

    def _run_step(self, step: plans.HostStep) -> str:
        host = self.host(step.host)
        for up in step.uploads:
            if up.text is None:
                host.put(up.local, up.remote)
                continue
            with tempfile.TemporaryDirectory(prefix="l4stb-upload-") as tmp:
                local = Path(tmp) / up.local.name
                local.write_text(up.text)
                host.put(local, up.remote)
        if step.kind == "login-shell":
            res = host.run(["sh", "-c", step.script.strip()], timeout=step.timeout_s, step=step.step)
        else:
            res = host.run_script(step.script, timeout=step.timeout_s, step=step.step)
        return res.stdout

    def _run_phase(self, phase: plans.Phase, reboot: Callable[[str], None] | None = None) -> dict[str, str]:
        """Each host's step of the phase in its own thread; stdout per host."""
        by_host = {s.host: s for s in phase.steps}

        def one(h: str) -> str:
            out = self._run_step(by_host[h])
            if reboot is not None and REBOOT_MARKER in out:
                reboot(h)
                out = self._run_step(by_host[h])
                if REBOOT_MARKER in out:
                    raise L4stbError(f"{h}: step '{by_host[h].step}' still asks for a reboot after one; check "
                                     "/boot/loader.conf on the VM.")
            return out

        return self._parallel(list(by_host), one)

    # -- repeats --------------------------------------------------------------------------------
    def max_parallel_repeats(self) -> int:
        """One set of VMs: repeats run one after another."""
        return 1

    def run_repeats(self, ctx: RunContext, repeats: list[int], on_progress: ProgressFn, on_done: DoneFn,
                    *, jobs: int = 1) -> None:
        """One repeat after the other (the testbed is one network); ``jobs`` is ignored."""
        prepared = self.prepare_run(ctx.scenario, ctx.topology) if repeats else {}
        for repeat in repeats:
            started, t0 = utc_iso(), time.perf_counter()
            seed = ctx.scenario.repeat_seed(repeat)
            try:
                ok, detail, stats = self._run_repeat(ctx, repeat, on_progress)
            except RemoteCommandError as exc:
                self._cleanup(ctx, repeat)
                ok, detail, stats = False, str(exc), {}
            except L4stbError as exc:
                on_done(RepeatOutcome(repeat, seed, False, started, utc_iso(), round(time.perf_counter() - t0, 3),
                                      str(exc), {}))
                raise
            wall_s = round(time.perf_counter() - t0, 3)
            on_done(RepeatOutcome(repeat, seed, ok, started, utc_iso(), wall_s, detail, {**prepared, **stats}))

    def prepare_run(self, scenario: Scenario, topology: Topology) -> dict[str, Any]:
        """Before the first repeat: refuse a clock tick other than the scenario's, build udp_prague where Prague
        flows run. Returns what every repeat records: kern.hz per host, the udp_prague commit per host."""
        facts = self.host_facts(topology)
        hz = {h: facts[h].get("sysctls", {}).get("kern.hz", "") for h in topology.hosts}
        refuse_wrong_kern_hz(scenario, hz)
        note = lograte.warning(scenario)
        if note and plans.uses_module(scenario.aqm):
            log.warning("%s", note)
        recorded: dict[str, Any] = {"kern_hz": {h: int(v) for h, v in hz.items()}}
        phase = plans.prepare_phase(scenario, topology)
        if phase is not None:
            out = self._run_phase(phase)
            recorded["udp_prague_commit"] = {h: plans.parse_udp_prague_commit(text) for h, text in out.items()}
        return recorded

    def _run_repeat(self, ctx: RunContext, repeat: int, on_progress: ProgressFn,
                    after: dict[str, plans.Phase] | None = None,
                    extra_out: dict[str, dict[str, str]] | None = None) -> tuple[bool, str, dict[str, Any]]:
        """One repeat's phases in order. ``after`` (run-phase name -> phase) adds phases, e.g. the self-check's
        capture; their per-host output goes into ``extra_out`` under the added phase's name."""
        sc, topo = ctx.scenario, ctx.topology
        procs = plans.processes(sc, topo, ctx.run_id, repeat)
        phases = {p.name: p for p in plans.run_phases(sc, topo, ctx.run_id, repeat)}
        expected_s = plans.START_LEAD_S + sc.duration / 1e6 + plans.last_start_s(sc, repeat)
        stats: dict[str, Any] = {}
        after = after or {}

        def run(name: str) -> dict[str, str]:
            out = self._run_phase(phases[name])
            if name in after:
                added = self._run_phase(after[name])
                if extra_out is not None:
                    extra_out[after[name].name] = added
            return out

        run("clear repeat folders")
        run("configure")
        out = run("reset logs")
        before = plans.parse_counters(out.get(topo.router, ""))
        run("start servers")
        on_progress(repeat, 0.0)

        # All clients at one moment: each host gets the delay left until a common start time.
        start_at = time.time() + plans.START_LEAD_S
        stats["start_utc"] = utc_iso()

        def start_one(h: str) -> str:
            step = plans.start_clients_step(sc, topo, ctx.run_id, repeat, h, start_at - time.time())
            return self._run_step(step)

        self._parallel(plans.starting_hosts(sc, topo), start_one)

        # Wait for the clients, with progress ticks while their wait scripts run.
        done = threading.Event()

        def ticker() -> None:
            while not done.wait(1.0):
                elapsed = time.time() - (start_at - plans.START_LEAD_S)
                on_progress(repeat, min(0.99, elapsed / expected_s))

        tick = threading.Thread(target=ticker, daemon=True)
        tick.start()
        try:
            client_out = run("wait for clients")
        finally:
            done.set()
            tick.join()
        server_out = run("stop servers")
        router_out = run("collect router logs")
        on_progress(repeat, 1.0)

        exits, killed, problems = judge_processes(procs, [*client_out.values(), *server_out.values()])
        counters_after = plans.parse_counters(router_out.get(topo.router, ""))
        applied = plans.parse_rate_applied(router_out.get(topo.router, ""))
        if applied is not None:
            stats["rate_schedule_applied"] = applied
        stats.update({"exit_codes": exits, "stopped": killed})
        stats.update(counter_stats(before, counters_after))
        ok = not problems
        return ok, "; ".join(problems), stats

    # -- self-check -------------------------------------------------------------------------------
    def self_check(self, ctx: RunContext) -> base.CheckEvidence:
        """The check scenario's one repeat with a capture on the server, on the real VMs."""
        sc, topo = ctx.scenario, ctx.topology
        with console.status("self-check: host facts and udp_prague"):
            facts = self.host_facts(topo)
            prepare = plans.prepare_phase(sc, topo)
            if prepare is not None:
                self._run_phase(prepare)
        extra: dict[str, dict[str, str]] = {}
        with console.status(f"self-check: a {sc.duration // 1_000_000} s flow through the bottleneck"):
            try:
                ok, detail, stats = self._run_repeat(ctx, 1, lambda r, f: None,
                                                     check_steps.after_phases(sc, topo, ctx.run_id), extra)
            except RemoteCommandError as exc:
                self._cleanup(ctx, 1)
                raise L4stbError(f"l4stb check could not run its test flow: {exc}") from None
        router, server = topo.router, topo.server
        loaded, sched = check_steps.parse_module(extra.get("check module", {}).get(router, ""))
        counts = check_steps.parse_ecn_counts(extra.get("stop capture", {}).get(server, ""))
        flows = [base.FlowProbe(p.host, p.cc, p.port, counts.get(p.port, {}))
                 for p in plans.processes(sc, topo, ctx.run_id, 1) if p.side == "client"]
        hz = {h: facts[h].get("sysctls", {}).get("kern.hz", "") for h in topo.hosts}
        return base.CheckEvidence(
            provider=self.name, router=router, receiver=server, module_loaded=loaded, sched_show=sched,
            kern_hz={h: int(v) if str(v).isdigit() else None for h, v in hz.items()},
            log_lines_in_file=check_steps.parse_log_file_lines(extra.get("count log lines", {}).get(router, "")),
            log_lines_counter=stats.get("module_log_lines"), flows=flows,
            flow_problems=[p + "." for p in detail.split("; ")] if not ok and detail else [],
            where={"log": sc.logging.file})

    def _cleanup(self, ctx: RunContext, repeat: int) -> None:
        """After a failed step: stop every process of the repeat (and siftr on the clients) and clear the router's log
        set (best effort)."""
        sc, topo = ctx.scenario, ctx.topology
        procs = plans.processes(sc, topo, ctx.run_id, repeat)
        state_dir = plans.state_dir_of(ctx.run_id, repeat)
        steps = []
        for h in sorted({p.host for p in procs}):
            items = [plans.proc_item(p) for p in procs if p.host == h]
            steps.append(plans.HostStep(h, "stop after failure", plans.render(
                "wait_procs.sh.j2", host=h, step="stop after failure", wait_s=0, state_dir=state_dir, procs=items,
                siftr_stop=bool(plans.siftr_log(sc, ctx.run_id, repeat, h))),
                timeout_s=60))
        phases = [plans.Phase("stop after failure", steps)]
        phases += [p for p in plans.run_phases(sc, topo, ctx.run_id, repeat) if p.name == "collect router logs"]
        for phase in phases:
            try:
                self._run_phase(phase)
            except L4stbError as exc:
                log.warning("cleanup after repeat %d failed: %s", repeat, exc)


def judge_processes(procs: list[plans.Proc], wait_outputs: list[str]) -> tuple[dict[str, int], list[str], list[str]]:
    """How each of a repeat's processes ended, from the output of its host's wait step: (exit codes by name, the
    names stopped at the deadline, one line per process that did not end as it should)."""
    exits: dict[str, int] = {}
    killed: list[str] = []
    errs: dict[str, list[str]] = {}
    for text in wait_outputs:
        e, k, s = plans.parse_wait_output(text)
        exits.update(e)
        killed.extend(k)
        errs.update(s)
    problems = []
    for p in procs:
        key = p.name
        if key in killed:
            if not p.killed_is_ok:
                problems.append(f"{p.host}: {p.name} did not finish in time and was stopped")
        elif key not in exits:
            problems.append(f"{p.host}: {p.name} reported no exit code")
        elif exits[key] not in p.ok_exit_codes:
            tail = "; ".join(errs.get(key, [])[-2:])
            problems.append(f"{p.host}: {p.name} exited {exits[key]}" + (f" ({tail})" if tail else ""))
    return exits, killed, problems


def counter_stats(before: dict[str, int], after: dict[str, int]) -> dict[str, Any]:
    """What one repeat records of the module's counters: the lines it logged, the decisions it made (logged or
    left out by logging.sample_every), and the scheduler instances dummynet created and freed during it (more
    than one creation means an instance was destroyed and its PI state lost mid-repeat)."""
    deltas = {k: after[k] - before[k] for k in after if k in before}
    out: dict[str, Any] = {}
    if "log_lines" in deltas:
        out["module_log_lines"] = deltas["log_lines"]
    if "decisions" in deltas:
        out["module_decisions"] = deltas["decisions"]
    if "instances_created" in deltas or "instances_freed" in deltas:
        out["sched_instances"] = {"created": deltas.get("instances_created"), "freed": deltas.get("instances_freed")}
    return out


def refuse_wrong_kern_hz(scenario: Scenario, hz_by_host: dict[str, str]) -> None:
    """One paragraph naming the first host whose kern.hz is not the scenario's ``aqm.kern_hz``."""
    want = scenario.aqm.kern_hz
    for host, value in hz_by_host.items():
        if not str(value).isdigit():
            raise L4stbError(f"{host}: could not read kern.hz (got {value!r}); the scenario {scenario.name} needs "
                             f"{want}. Is the host up (`l4stb status`)? Run `l4stb up --provider vagrant` again.")
        if int(value) != want:
            raise L4stbError(
                f"{host}: kern.hz is {int(value)} but scenario {scenario.name} needs aqm.kern_hz = {want}: dummynet "
                "serves the pipe once per tick, so the data would describe another regime. Re-provision with "
                f"`L4STB_KERN_HZ={want} l4stb up --provider vagrant` (it sets kern.hz in /boot/loader.conf and "
                f"reboots the hosts), or run with --set aqm.kern_hz={int(value)}.")
