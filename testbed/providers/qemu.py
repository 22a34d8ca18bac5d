"""The `qemu` provider: a real Linux kernel (Debian's) booted under QEMU, its hosts network namespaces, the real qdiscs and TCP.

``up`` fetches Debian sid's kernel and userland once into a cache, builds the real sch_dualpi2 from Debian's
source package (:mod:`l4stb.linuxvm.dualpi2_build`), packs the initramfs and boots it once to choose KVM or
TCG. Each repeat boots a fresh VM (clean state by construction) that runs the repeat's script
(:mod:`l4stb.linuxvm.guest`) and leaves in a shared folder the clients' and server's real iperf3 ``-J``
JSON, the router's packet captures on both sides of the bottleneck and the sampled ``tc -s qdisc show``.
The captures become the router's log set in l4stb's line format (:mod:`l4stb.linuxvm.capture_log`), so
``fetch-logs`` and everything after it run unchanged. Hosts are folders under the workdir, as on `sim`.

The cache (downloads, build chroot, image; about 900 MB) lives in ``<workdir>/cache/qemu`` so that no
command writes outside its workdir; ``L4STB_QEMU_CACHE`` points several workdirs at one cache.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from l4stb.config import Scenario, Topology
from l4stb.errors import L4stbError
from l4stb.layout import remote_repeat_dir
from l4stb.linuxvm import debian, dualpi2_build, guest, image, vm
from l4stb.linuxvm.artifacts import place_repeat
from l4stb.linuxvm.check import self_check
from l4stb.providers.base import (
    CheckEvidence,
    DoneFn,
    Plan,
    ProgressFn,
    Provider,
    RepeatOutcome,
    RunContext,
    TestbedInfo,
)
from l4stb.providers.sim import HOST_DIRS, SimHost
from l4stb.workspace import atomic_write_json, read_json, sha256_file, utc_iso

VM_CPUS = 2
VM_MEMORY_MB = 2048
BOOT_MARGIN_S = 120
ICOUNT_CPU_PER_GUEST_S = 10
"""Under TCG with icount a guest second costs QEMU several CPU seconds (measured here: about 6 with captures on at
8-40 Mbit/s); the budget allows this many."""
"""A repeat's VM is given its scenario's duration plus this for boot, set-up and collection before it is killed
(guest time: CPU seconds of QEMU under TCG with icount, so a loaded host does not time a repeat out;
:func:`l4stb.linuxvm.vm.boot`)."""


def cache_dir(ws) -> Path:
    env = os.environ.get("L4STB_QEMU_CACHE")
    return Path(env).resolve() if env else ws.root / "cache" / "qemu"


class QemuProvider(Provider):
    name = "qemu"

    def __init__(self, workspace, cache: Path | None = None):
        super().__init__(workspace)
        self._cache = cache

    @property
    def cache(self) -> Path:
        """Where `up` keeps downloads, the build chroot and images (runs read the image path from qemu.json)."""
        return self._cache or cache_dir(self.ws)

    @property
    def state_file(self) -> Path:
        return self.ws.root / "qemu.json"

    def state(self) -> dict[str, Any]:
        if not self.state_file.is_file():
            raise L4stbError(f"no qemu testbed is up in {self.ws.root} (qemu.json is missing); run `l4stb up "
                             "--provider qemu`.")
        return read_json(self.state_file, "qemu testbed state")

    # ---- up / down
    def plan_up(self, topology: Topology) -> Plan:
        c = self.cache
        plan = Plan(f"l4stb up --provider qemu --topology {topology.name}")
        opts = (f"-o Dir::Etc::sourcelist={c}/apt/sources.list -o Dir::Etc::sourceparts=- "
                f"-o Dir::State::Lists={c}/apt/lists -o Dir::Cache::archives={c}/apt/archives "
                "-o Dir::State::status=/dev/null")
        plan.add("local", "package index (Debian sid, private apt config)",
                 f"echo 'deb <mirror> {debian.SUITE} main' > {c}/apt/sources.list\napt-get {opts} update")
        plan.add("local", "choose the kernel", "newest linux-binary-<v>-amd64 whose modules, headers and source "
                 "packages exist at the same version")
        plan.add("local", "download", f"apt-get {opts} download linux-binary-<v>-amd64 linux-modules-<v>-amd64 "
                 + " ".join(debian.USERLAND))
        plan.add("local", "build chroot (once)", f"debootstrap --variant=minbase {debian.SUITE} {c}/buildroot <mirror>")
        plan.add("local", "build sch_dualpi2",
                 f"chroot {c}/buildroot apt-get install make xz-utils linux-headers-<v>-amd64 linux-source-<x.y>\n"
                 f"tar -xJf /usr/src/linux-source-<x.y>.tar.xz {dualpi2_build.SOURCE_MEMBER}\n"
                 "make -C /usr/src/linux-headers-<v>-amd64 M=/build/dualpi2 modules")
        plan.add("local", "initramfs", f"dpkg-deb -x <each .deb> <root>; modules {', '.join(image.GUEST_MODULES)} "
                 "+ sch_dualpi2.ko; find | cpio -o -H newc | gzip")
        plan.add("local", "probe accelerator", " ".join(vm.command(c / "image", Path("<probe>"), accel="kvm|tcg",
                                                                   cpus=1, memory_mb=512)))
        for host in topology.hosts:
            plan.add(host, "host folder (the VM's namespace writes here per repeat)",
                     f"mkdir -p {self.ws.host_dir(host)}")
        return plan

    def up(self, topology: Topology, *, kernel: str | None = None, rebuild: bool = False, capture: bool = True,
           progress=None) -> TestbedInfo:
        def say(msg: str) -> None:
            if progress is not None:
                progress(msg)

        vm.qemu_binary()
        self.cache.mkdir(parents=True, exist_ok=True)
        say("Debian packages")
        pset = debian.fetch(self.cache, kernel=kernel)
        build_log = self.cache / "build.log"
        ko_dir = self.cache / "modules" / pset.kernel
        ko = ko_dir / "sch_dualpi2.ko"
        if rebuild or not ko.is_file():
            say("build chroot")
            dualpi2_build.ensure_chroot(self.cache / "buildroot", pset.mirror, build_log)
            say("sch_dualpi2")
            dualpi2_build.build(self.cache / "buildroot", pset.kernel, ko_dir, build_log)
        img_dir = self.cache / "image" / pset.kernel
        img_dir.mkdir(parents=True, exist_ok=True)
        stamp = {"packages": [p.sha256 for p in pset.packages], "dualpi2": sha256_file(ko),
                 "init": image.INIT, "modules": list(image.GUEST_MODULES)}
        stamp_file = img_dir / "image.json"
        built = read_json(stamp_file, "image record") if stamp_file.is_file() else None
        if rebuild or not built or built.get("stamp") != stamp or not (img_dir / "initrd.gz").is_file():
            say("initramfs")
            info = image.build_initramfs(pset, self.cache, ko, img_dir)
            atomic_write_json(stamp_file, {"stamp": stamp, "info": info})
        say("boot probe")
        accel, tried = vm.probe_accel(img_dir)
        state = {"kernel": pset.kernel, "release": pset.release, "image": str(img_dir), "accel": accel,
                 "accel_probe": tried, "mirror": pset.mirror, "sch_dualpi2_sha256": sha256_file(ko),
                 "packages": {p.package: {"version": p.version, "sha256": p.sha256} for p in pset.packages},
                 "cache": str(self.cache), "capture": capture, "created": utc_iso()}
        atomic_write_json(self.state_file, state)
        info = TestbedInfo(provider=self.name, topology=topology.name)
        for host, spec in topology.hosts.items():
            root = self.ws.host_dir(host)
            for sub in HOST_DIRS:
                (root / sub).mkdir(parents=True, exist_ok=True)
            info.hosts[host] = {"role": spec.role, "root": str(root), "namespace": host,
                                "addresses": [i.address for i in spec.interfaces],
                                "kernel": pset.release, "accel": accel}
        return info

    def down(self, *, destroy: bool = False) -> None:
        """Nothing runs between repeats (each repeat's VM powers off); ``destroy`` removes the host folders."""
        if destroy and self.ws.hosts_dir.is_dir():
            shutil.rmtree(self.ws.hosts_dir)
        if destroy and self.state_file.is_file():
            self.state_file.unlink()

    def status(self) -> dict[str, str]:
        if not self.state_file.is_file() or not self.ws.hosts_dir.is_dir():
            return {}
        st = self.state()
        return {p.name: f"ready (namespace in a {st['release']} VM, {st['accel']})"
                for p in sorted(self.ws.hosts_dir.iterdir()) if p.is_dir()}

    def host(self, name: str) -> SimHost:
        root = self.ws.host_dir(name)
        if not root.is_dir():
            raise L4stbError(f"host {name} has no folder under {self.ws.hosts_dir}; run `l4stb up --provider qemu`.")
        return SimHost(name, root)

    def host_facts(self, topology: Topology) -> dict[str, dict[str, Any]]:
        st = self.state()
        common = {"kernel": st["release"], "accel": st["accel"], "virtualised": True, "stack": "linux",
                  "sch_dualpi2_sha256": st["sch_dualpi2_sha256"], "router_capture": st.get("capture", True),
                  "packages": {k: v["version"] for k, v in st["packages"].items()},
                  "host_machine": platform.platform(), "host_cpu_count": os.cpu_count()}
        return {h: dict(common, namespace=h) for h in topology.hosts}

    # ---- runs
    def check_scenario(self, scenario: Scenario) -> None:
        guest.check_supported(scenario)

    def plan_run(self, ctx: RunContext, repeat: int) -> Plan:
        plan = Plan(f"l4stb run --scenario {ctx.scenario.name} (qemu provider, repeat {repeat})")
        st = self.state() if self.state_file.is_file() else {}  # before `up`: the plan `up` would lead to
        img = Path(st["image"]) if st else self.cache / "image" / "<kernel>"
        accel = st.get("accel", "tcg-icount")
        plan.add("local", "boot a fresh VM", " ".join(vm.command(img, self._share(ctx.run_id, repeat), accel=accel,
                                                                  cpus=VM_CPUS, memory_mb=VM_MEMORY_MB)))
        plan.add("vm", "guest.sh (runs as /out/guest.sh)", guest.render(ctx.scenario, ctx.topology, ctx.run_id, repeat,
                                                                         capture=st.get("capture", True)))
        plan.add("local", "router log set", "captures on both sides of the bottleneck -> one l4stb line per packet "
                 "decision (docs/data.md, Real-Linux runs)")
        return plan

    def _share(self, run_id: str, repeat: int) -> Path:
        return self.ws.root / "cache" / "qemu-repeats" / f"{run_id}-r{repeat:02d}"

    def self_check(self, ctx: RunContext) -> CheckEvidence:
        return self_check(self, ctx)

    def max_parallel_repeats(self) -> int:
        """One VM per repeat, each with VM_CPUS cores of its own: timing under TCG depends on not sharing them."""
        return max(1, (os.cpu_count() or 1) // VM_CPUS)

    def run_repeats(self, ctx: RunContext, repeats: list[int], on_progress: ProgressFn, on_done: DoneFn,
                    *, jobs: int = 1) -> None:
        guest.check_supported(ctx.scenario, as_written=False)
        st = self.state()
        jobs = max(1, min(jobs, self.max_parallel_repeats()))
        if jobs == 1 or len(repeats) == 1:
            for r in repeats:
                on_done(self._one(ctx, r, st, on_progress))
            return
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            pending = {pool.submit(self._one, ctx, r, st, on_progress) for r in repeats}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    on_done(fut.result())

    def _one(self, ctx: RunContext, repeat: int, st: dict, on_progress: ProgressFn) -> RepeatOutcome:
        started = utc_iso()
        t0 = time.monotonic()
        seed = ctx.scenario.repeat_seed(repeat)
        for host in ctx.topology.hosts:
            shutil.rmtree(self.host(host).local_path(remote_repeat_dir(ctx.run_id, repeat)), ignore_errors=True)
        share = self._share(ctx.run_id, repeat)
        shutil.rmtree(share, ignore_errors=True)
        share.mkdir(parents=True)
        (share / "guest.sh").write_text(guest.render(ctx.scenario, ctx.topology, ctx.run_id, repeat, as_written=False,
                                                       capture=st.get("capture", True)))
        on_progress(repeat, 0.0)
        per_guest_s = ICOUNT_CPU_PER_GUEST_S if st["accel"] == "tcg-icount" else 1
        timeout = ctx.scenario.duration / 1e6 * per_guest_s + BOOT_MARGIN_S
        result = vm.boot(Path(st["image"]), share, accel=st["accel"], cpus=VM_CPUS, memory_mb=VM_MEMORY_MB,
                         timeout_s=timeout)
        on_progress(repeat, 0.9)
        guest_log = (share / "guest.log").read_text(errors="replace") if (share / "guest.log").is_file() else ""
        if result.timed_out or result.guest_rc != 0:
            why = "timed out" if result.timed_out else f"guest script exit {result.guest_rc}"
            tail = "\n".join((guest_log or result.console_tail).strip().splitlines()[-6:])
            return RepeatOutcome(repeat, seed, False, started, utc_iso(), round(time.monotonic() - t0, 3),
                                 detail=f"VM {why}; last lines: {tail} (all of it: {share})")
        stats = place_repeat(self, ctx, repeat, share)
        stats.update({"vm_wall_s": round(result.wall_s, 3), "vm_cpu_s": round(result.cpu_s, 3), "accel": st["accel"],
                      "kernel": st["release"]})
        shutil.rmtree(share, ignore_errors=True)
        on_progress(repeat, 1.0)
        return RepeatOutcome(repeat, seed, True, started, utc_iso(), round(time.monotonic() - t0, 3), stats=stats)
