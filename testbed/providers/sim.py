"""The `sim` provider: hosts are folders under workdir/hosts/, the network is l4stb's packet-level simulator."""

from __future__ import annotations

import hashlib
import os
import platform
import posixpath
import shutil
import stat
import time
from pathlib import Path
from typing import Any

from l4stb import __version__, aqm_catalogue, logformat
from l4stb.config import Topology
from l4stb.errors import L4stbError
from l4stb.layout import REMOTE_ROOT, remote_repeat_dir
from l4stb.logfiles import open_log
from l4stb.sim.runner import SimJob, describe_repeat, make_aqm, simulate_repeat
from l4stb.providers.base import (
    CheckEvidence,
    CommandResult,
    FlowProbe,
    DoneFn,
    Host,
    Plan,
    ProgressFn,
    Provider,
    RemoteCommandError,
    RemoteFile,
    RepeatOutcome,
    RunContext,
    TestbedInfo,
    quote_argv,
)
from l4stb.workers import run_with_progress
from l4stb.workspace import stored_path, utc_iso

HOST_DIRS = ("var/log", "etc", "root", REMOTE_ROOT.lstrip("/"))


class SimHost(Host):
    """A simulated host: its filesystem is a folder; it answers the few commands l4stb itself needs."""

    def __init__(self, name: str, root: Path):
        self.name = name
        self.root = root

    def local_path(self, remote: str) -> Path:
        """Map an absolute host path into the host folder, refusing anything that escapes it."""
        if not remote.startswith("/"):
            raise L4stbError(f"{self.name}: path {remote!r} must be absolute")
        norm = posixpath.normpath(remote)
        if norm.startswith("//") or ".." in norm.split("/"):
            raise L4stbError(f"{self.name}: path {remote!r} escapes the host")
        return self.root / norm.lstrip("/")

    def run(self, argv, *, timeout=60, check=True, step="command") -> CommandResult:
        command = quote_argv(argv)
        handler = _SIM_COMMANDS.get(argv[0]) if argv else None
        if handler is None:
            result = CommandResult(self.name, command, 127, "", f"{argv[0] if argv else ''}: the simulated host runs "
                                   f"only {', '.join(sorted(_SIM_COMMANDS))}")
        else:
            result = handler(self, list(argv[1:]), command)
        if check and not result.ok:
            raise RemoteCommandError(self.name, step, command, result.exit_code, result.stderr)
        return result

    def put(self, local: Path, remote: str) -> None:
        dest = self.local_path(remote)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dest)

    def get(self, remote: str, local: Path) -> None:
        """Copy a regular file that really lies inside the host folder: no symlink anywhere on its path."""
        src = self.local_path(remote)
        root = os.path.realpath(self.root)
        if not os.path.lexists(src):
            raise L4stbError(f"{self.name}: {remote} does not exist")
        if os.path.realpath(src) != os.path.join(root, os.path.relpath(src, self.root)) or not _is_regular(src):
            raise L4stbError(f"{self.name}: {remote} is a symbolic link or not a regular file; l4stb fetches only "
                             "regular files inside the host. Remove it and fetch again.")
        local.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fsrc, open(local, "wb") as fdst:
            shutil.copyfileobj(fsrc, fdst, 1 << 20)

    def list(self, remote_dir: str) -> list[RemoteFile]:
        """Regular files under ``remote_dir``, as ``find -type f`` lists them: symlinks are not followed."""
        base = self.local_path(remote_dir)
        if base.is_symlink() or not base.is_dir():
            return []
        out = []
        for folder, _dirs, files in os.walk(base, followlinks=False):
            for name in files:
                p = Path(folder) / name
                st = p.lstat()
                if stat.S_ISREG(st.st_mode):
                    out.append(RemoteFile("/" + p.relative_to(self.root).as_posix(), st.st_size, st.st_mtime))
        return sorted(out, key=lambda f: f.path)

    def sha256(self, remote: str) -> str:
        return self.run(["sha256", "-q", remote], step="sha256").stdout.strip()

    def remove(self, remote: str) -> None:
        self.run(["rm", "-f", remote], step="remove")


def _is_regular(path: Path) -> bool:
    return stat.S_ISREG(os.lstat(path).st_mode)


def _cmd_sha256(host: SimHost, args: list[str], command: str) -> CommandResult:
    if args[:1] != ["-q"] or len(args) != 2:
        return CommandResult(host.name, command, 64, "", "usage: sha256 -q FILE")
    path = host.local_path(args[1])
    if not path.is_file():
        return CommandResult(host.name, command, 1, "", f"sha256: {args[1]}: No such file or directory")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return CommandResult(host.name, command, 0, h.hexdigest() + "\n")


def _cmd_rm(host: SimHost, args: list[str], command: str) -> CommandResult:
    if args[:1] != ["-f"]:
        return CommandResult(host.name, command, 64, "", "usage: rm -f FILE...")
    for remote in args[1:]:
        host.local_path(remote).unlink(missing_ok=True)
    return CommandResult(host.name, command, 0)


def _cmd_uname(host: SimHost, args: list[str], command: str) -> CommandResult:
    return CommandResult(host.name, command, 0, f"l4stb-sim {host.name} {__version__} {platform.machine()}\n")


def _cmd_freebsd_version(host: SimHost, args: list[str], command: str) -> CommandResult:
    return CommandResult(host.name, command, 0, "14.1-RELEASE (simulated)\n")


_SIM_COMMANDS = {"sha256": _cmd_sha256, "rm": _cmd_rm, "uname": _cmd_uname, "freebsd-version": _cmd_freebsd_version}


class SimProvider(Provider):
    name = "sim"

    def _host_root(self, name: str) -> Path:
        return self.ws.host_dir(name)

    def plan_up(self, topology: Topology) -> Plan:
        plan = Plan(f"l4stb up --provider sim --topology {topology.name}")
        for host in topology.hosts:
            plan.add(host, "create host folder", f"mkdir -p {self._host_root(host)}/{{{','.join(HOST_DIRS)}}}")
        return plan

    def up(self, topology: Topology) -> TestbedInfo:
        info = TestbedInfo(provider=self.name, topology=topology.name)
        for host, spec in topology.hosts.items():
            root = self._host_root(host)
            for sub in HOST_DIRS:
                (root / sub).mkdir(parents=True, exist_ok=True)
            info.hosts[host] = {"role": spec.role, "root": str(root),
                                "addresses": [i.address for i in spec.interfaces]}
        return info

    def down(self, *, destroy: bool = False) -> None:
        """Stop the testbed. Host folders (and any logs not yet fetched) stay unless ``destroy``."""
        if destroy and self.ws.hosts_dir.is_dir():
            shutil.rmtree(self.ws.hosts_dir)

    def status(self) -> dict[str, str]:
        if not self.ws.hosts_dir.is_dir():
            return {}
        return {p.name: "running (simulated)" for p in sorted(self.ws.hosts_dir.iterdir()) if p.is_dir()}

    def host(self, name: str) -> SimHost:
        root = self._host_root(name)
        if not root.is_dir():
            raise L4stbError(f"simulated host {name} does not exist under {self.ws.hosts_dir}; run `l4stb up` first.")
        return SimHost(name, root)

    def host_facts(self, topology: Topology) -> dict[str, dict[str, Any]]:
        facts = {}
        for host in topology.hosts:
            h = self.host(host)
            facts[host] = {
                "uname": h.run(["uname", "-a"]).stdout.strip(),
                "freebsd_version": h.run(["freebsd-version"]).stdout.strip(),
                "simulated": True,
                "cpu_count": os.cpu_count(),
            }
        return facts

    def plan_run(self, ctx: RunContext, repeat: int) -> Plan:
        plan = Plan(f"l4stb run --scenario {ctx.scenario.name} (sim provider, repeat {repeat})")
        for host, text in describe_repeat(ctx.scenario, ctx.topology, ctx.run_id, repeat).items():
            plan.add(host, "simulated", text)
        return plan

    def self_check(self, ctx: RunContext) -> CheckEvidence:
        """The same checks as on the VMs, against what the simulated repeat leaves on the simulated hosts: the
        router's log set and the AQM's logged-decision counter, and the ECN field of the segments the
        simulated receiver got (CE as it arrived, the sender's codepoint for the rest). The simulator runs
        the router's clock at the scenario's aqm.kern_hz; its endpoints have no tick."""
        return _self_check(self, ctx)

    def run_repeats(self, ctx: RunContext, repeats: list[int], on_progress: ProgressFn, on_done: DoneFn,
                    *, jobs: int = 1) -> None:
        jobs_list = [SimJob(ctx.scenario, ctx.topology, ctx.run_id, r, ctx.scenario.repeat_seed(r),
                            str(self.ws.hosts_dir)) for r in repeats]
        for job in jobs_list:
            for host in ctx.topology.hosts:
                # a repeat that did not finish starts from scratch: nothing a killed worker half wrote survives
                shutil.rmtree(self.host(host).local_path(remote_repeat_dir(ctx.run_id, job.repeat)), ignore_errors=True)
        run_with_progress(_timed_repeat, jobs_list, jobs=jobs, key=lambda job: job.repeat, on_progress=on_progress,
                          on_done=on_done)


def sim_sched_type(aqm) -> str:
    """The dummynet scheduler type the real router runs for ``aqm``, as ``ipfw sched show`` names it (upper case)."""
    return aqm_catalogue.record(aqm).sched_type.upper()


def _self_check(provider: "SimProvider", ctx: RunContext) -> CheckEvidence:
    """Simulate the check scenario's repeat on the host folders and read back what it left there."""
    sc, topo = ctx.scenario, ctx.topology
    router, server = topo.router, topo.server
    for host in topo.hosts:
        provider.host(host)
    job = SimJob(sc, topo, ctx.run_id, 1, sc.repeat_seed(1), str(provider.ws.hosts_dir))
    try:
        stats = simulate_repeat(job)
        aqm_class = type(make_aqm(sc, job.seed, lambda fields: None, None)).__name__
        log_dir = provider.host(router).local_path(posixpath.join(REMOTE_ROOT, "runs", ctx.run_id))
        in_file = sum(_count_prefixed(path, logformat.L4STB_PREFIX) for path in sorted(log_dir.rglob("*"))
                      if path.is_file())
    finally:
        for host in topo.hosts:
            shutil.rmtree(provider.host(host).local_path(posixpath.join(REMOTE_ROOT, "runs", ctx.run_id)),
                          ignore_errors=True)
    by_port: dict[int, FlowProbe] = {}
    for flow in stats["flows"]:
        probe = by_port.setdefault(flow["port"], FlowProbe(flow["host"], flow["cc"], flow["port"], {}))
        cp, ce = flow["ecn_codepoint"], flow["ce_received"]
        probe.codepoints[cp] = probe.codepoints.get(cp, 0) + max(0, flow["segments_delivered"] - ce)
        probe.codepoints[3] = probe.codepoints.get(3, 0) + ce
    uses_module = aqm_catalogue.record(sc.aqm).runs_on_module
    return CheckEvidence(
        provider=provider.name, router=router, receiver=server, module_loaded=True if uses_module else None,
        sched_show=f" sched 1 type {sim_sched_type(sc.aqm)} (simulated: {aqm_class})",
        kern_hz={router: sc.aqm.kern_hz}, log_lines_in_file=in_file, log_lines_counter=stats["module_log_lines"],
        flows=list(by_port.values()), where={"log": f"{router}:{sc.logging.file} (simulated)"})


def _count_prefixed(path: Path, prefix: str) -> int:
    """Lines holding ``prefix`` in one file of a log set (plain, bzip2, gzip or xz, opened as the parser does)."""
    needle = prefix.encode("ascii")
    with open_log(path) as fh:
        return sum(1 for line in fh if needle in line)


def _timed_repeat(job: SimJob, progress) -> RepeatOutcome:
    """Simulate one repeat (in a worker process or here); a repeat the simulator refuses is an outcome, not a crash."""
    started, t0 = utc_iso(), time.perf_counter()
    try:
        stats = _stored_paths(simulate_repeat(job, progress), Path(job.hosts_root).parent)
        ok, detail = True, ""
    except L4stbError as exc:
        stats, ok, detail = {}, False, str(exc)
    return RepeatOutcome(job.repeat, job.seed, ok, started, utc_iso(), round(time.perf_counter() - t0, 3), detail, stats)


def _stored_paths(stats: dict, root: Path) -> dict:
    """The repeat's statistics as the manifest stores them: the files it wrote named relative to the workdir
    ``root`` (the hosts' folders live in it), so the workdir can move."""
    for key in ("log_files", "iperf3_files"):
        if isinstance(stats.get(key), list):
            stats[key] = [stored_path(root, p) for p in stats[key]]
    return stats
