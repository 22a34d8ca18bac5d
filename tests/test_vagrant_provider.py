"""The vagrant provider's orchestration (up, repeats, failures, tool checks) against fake hosts and a fake Vagrant."""

from __future__ import annotations

import re
import threading
from collections import namedtuple
from pathlib import Path

import pytest

from l4stb import runner
from l4stb.config import load_scenario, load_topology
from l4stb.errors import L4stbError
from l4stb.manifest import load_manifest
from l4stb.providers.freebsd import firstboot, plans
from l4stb.providers.freebsd import vagrant as vagrant_mod
from l4stb.providers import base
from l4stb.providers.base import CommandResult, Host, RemoteCommandError, RunContext
from l4stb.providers.freebsd.vagrant import VagrantProvider, detect_vm_provider, find_vagrantfile
from l4stb.providers.freebsd.remote import SshParams
from l4stb.workspace import Workspace

FACTS = ("=== uname ===\nFreeBSD {h} 14.1-RELEASE-p5\n=== freebsd_version ===\n14.1-RELEASE-p5\n"
         "=== sysctls ===\nkern.hz: 1000\n")


class FakeHost(Host):
    """Records every step; answers like the FreeBSD scripts would (exit codes, log-line counters, facts)."""

    def __init__(self, name: str, world: "World"):
        self.name = name
        self.world = world
        self.params = SshParams("127.0.0.1", 2222, "vagrant", "/k")

    def run(self, argv, *, timeout=60, check=True, step="command"):
        return self.run_script(" ".join(argv), timeout=timeout, check=check, step=step)

    def run_script(self, script, *, timeout=600, check=True, step="script"):
        with self.world.lock:
            self.world.calls.append((self.name, step, script))
        out = self.world.answer(self.name, step, script)
        if isinstance(out, BaseException):
            raise out
        return CommandResult(self.name, step, 0, out, "")

    def put(self, local, remote):
        with self.world.lock:
            self.world.uploads.append((self.name, Path(local).name, remote))

    def get(self, remote, local):
        raise NotImplementedError

    def list(self, remote_dir):
        return []

    def sha256(self, remote):
        return "0" * 64

    def remove(self, remote):
        pass

    def close(self):
        pass


class World:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, str]] = []
        self.uploads: list[tuple[str, str, str]] = []
        self.exit_override: dict[str, int] = {}
        self.fail_step: tuple[str, str, BaseException] | None = None
        self.log_lines = 1000
        self.instances = 0
        self.facts_override: dict[str, str] = {}
        self.extra_answers: dict[str, str] = {}
        self.reboot_asks = 0
        self.uptime_s = 100

    def answer(self, host: str, step: str, script: str):
        if self.fail_step and self.fail_step[:2] == (host, step):
            return self.fail_step[2]
        if step == "first-boot probe":
            self.uptime_s += 15
            return f"l4stb-boot done {self.uptime_s}\n"
        if step == "host facts":
            return self.facts_override.get(host, FACTS.format(h=host))
        if step in self.extra_answers:
            return self.extra_answers[step]
        if step in ("wait for clients", "stop servers", "stop after failure"):
            names = re.findall(r"^set -- (.*)$", script, re.MULTILINE)[0].split()
            return "\n".join(f"l4stb-exit {n} {self.exit_override.get(n, 0)}" for n in names)
        if step in ("reset logs", "collect router logs"):
            self.log_lines += 500 if step == "collect router logs" else 0
            self.instances += 1 if step == "collect router logs" else 0
            applied = ("l4stb-rate 10000000 10000420 10003100 4Mbit/s 0\n"
                       if step == "collect router logs" and "l4stb-rate" in script else "")
            return (f"l4stb-counter log_lines {self.log_lines}\nl4stb-counter instances_created {self.instances}\n"
                    f"l4stb-counter instances_freed 0\n{applied}")
        if step == "build udp_prague":
            return f"l4stb-udp-prague {plans.UDP_PRAGUE_REF_DEFAULT}\n"
        if "dualpi2 module" in step and self.reboot_asks:
            self.reboot_asks -= 1
            return "l4stb-reboot-needed kern.msgbufsize\n"
        return ""

    def steps(self, host: str | None = None) -> list[str]:
        return [s for h, s, _ in self.calls if host is None or h == host]


@pytest.fixture
def world(monkeypatch) -> World:
    w = World()
    monkeypatch.setattr(VagrantProvider, "host", lambda self, name: FakeHost(name, w))
    return w


def _ctx(tmp_path: Path, scenario: str = "dctcp-8mbps", **overrides) -> RunContext:
    sc = load_scenario(scenario)
    if overrides:
        sc = sc.model_copy(update=overrides)
    return RunContext(f"{scenario}-20250101T000000Z", sc, load_topology("dumbbell-4"), Workspace.at(tmp_path))


def _run(ctx: RunContext, repeats: list[int]):
    outcomes, progress = [], []
    VagrantProvider(ctx.workspace).run_repeats(ctx, repeats, lambda r, f: progress.append((r, f)), outcomes.append)
    return outcomes, progress


def test_repeats_run_in_order_and_report_exit_codes(world: World, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(plans, "START_LEAD_S", 0.2)
    outcomes, progress = _run(_ctx(tmp_path, duration=1_000_000), [1, 2])
    assert [o.repeat for o in outcomes] == [1, 2] and all(o.ok for o in outcomes)
    assert outcomes[0].stats["exit_codes"]["client2-dctcp-g2-c1.json"] == 0
    assert outcomes[0].stats["module_log_lines"] == 500
    assert outcomes[0].stats["sched_instances"] == {"created": 1, "freed": 0}
    assert outcomes[0].stats["kern_hz"] == {"client1": 1000, "client2": 1000, "router": 1000, "server": 1000}
    assert "udp_prague_commit" not in outcomes[0].stats and "build udp_prague" not in world.steps()
    assert progress[-1] == (2, 1.0)
    assert world.steps("router")[:5] == ["host facts", "clear repeat folders", "configure bottleneck and AQM (dualpi2)",
                                         "reset logs", "collect router logs"]
    for host in ("router", "client1", "client2", "server"):  # every repeat starts from empty folders everywhere
        assert world.steps(host).count("clear repeat folders") == 2
        assert [s for s in world.steps(host) if s != "host facts"][0] == "clear repeat folders"
    order = [s for h, s, _ in world.calls[: len(world.calls) // 2]]
    assert order.index("start servers") < order.index("start clients together") < order.index("wait for clients")


def test_clients_get_the_delay_left_until_one_common_start(world: World, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(plans, "START_LEAD_S", 0.5)
    _run(_ctx(tmp_path, duration=1_000_000), [1])
    delays = {}
    for host, step, script in world.calls:
        if step == "start clients together":
            delays[host] = [float(x) for x in re.findall(r"l4stb_spawn \S+ ([0-9.]+) ", script)]
    assert set(delays) == {"client1", "client2"}
    flat = [d for v in delays.values() for d in v]
    assert all(0.0 <= d <= 0.5 for d in flat) and max(flat) - min(flat) < 0.3


def test_a_client_that_fails_fails_its_repeat_only(world: World, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(plans, "START_LEAD_S", 0.0)
    world.exit_override["client1-newreno-g1-c2.json"] = 1
    outcomes, _ = _run(_ctx(tmp_path, duration=1_000_000), [1, 2])
    assert [o.ok for o in outcomes] == [False, False]
    assert "client1: client1-newreno-g1-c2.json exited 1" in outcomes[0].detail


def test_a_failed_step_is_recorded_and_the_repeat_cleaned_up(world: World, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(plans, "START_LEAD_S", 0.0)
    err = RemoteCommandError("router", "configure bottleneck and AQM (dualpi2)",
                             "ipfw sched 1 config pipe 1 type dualpi2", 71, "ipfw: sched 1: unknown type dualpi2")
    world.fail_step = ("router", "configure bottleneck and AQM (dualpi2)", err)
    outcomes, _ = _run(_ctx(tmp_path, duration=1_000_000), [1])
    assert not outcomes[0].ok
    assert "router" in outcomes[0].detail and "unknown type dualpi2" in outcomes[0].detail
    assert "stop after failure" in world.steps() and world.steps("router")[-1] == "collect router logs"
    assert "start clients together" not in world.steps()


def test_an_unreachable_host_stops_the_run_after_recording_the_repeat(world: World, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(plans, "START_LEAD_S", 0.0)
    world.fail_step = ("server", "start servers", L4stbError("server: cannot connect over SSH"))
    outcomes = []
    with pytest.raises(L4stbError, match="cannot connect"):
        VagrantProvider(Workspace.at(tmp_path)).run_repeats(_ctx(tmp_path, duration=1_000_000), [1, 2],
                                                            lambda r, f: None, outcomes.append)
    assert [(o.repeat, o.ok) for o in outcomes] == [(1, False)]


def test_manifest_stays_consistent_through_the_runner(world: World, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(plans, "START_LEAD_S", 0.0)
    ws = Workspace.at(tmp_path / "work")
    base.TestbedInfo(provider="vagrant", topology="dumbbell-4", hosts={"router": {"role": "router"}}).save(ws)
    testbed, topo, sc = runner.resolve(ws, "dctcp-8mbps", ["duration=1s", "repeats=2"])
    manifest = runner.start_run(ws, sc, topo, testbed)
    assert manifest.host_facts["router"]["freebsd_version"] == "14.1-RELEASE-p5"
    world.fail_step = ("client2", "start clients together", L4stbError("client2: the SSH connection broke"))
    with pytest.raises(L4stbError):
        runner.execute(ws, manifest.run_id, quiet=True)
    m = load_manifest(ws, manifest.run_id)
    assert m.status == "incomplete"
    assert m.repeat(1).status == "failed" and "connection broke" in m.repeat(1).detail
    assert m.repeat(2).status == "pending"


# -- up, with a fake python-vagrant ----------------------------------------------------------------------

Box = namedtuple("Box", "name provider version")


class FakeVagrant:
    def __init__(self, log: list):
        self.log = log

    def box_list(self):
        return [Box(vagrant_mod.BOX, "virtualbox", vagrant_mod.BOX_VERSION)]

    def up(self, vm_name=None, provider=None, **kw):
        self.log.append(("up", vm_name, provider))

    def reload(self, vm_name=None, provision=None):
        self.log.append(("reload", vm_name))

    def conf(self, vm_name=None):
        port = {"client1": 2222, "client2": 2200, "router": 2201, "server": 2202}[vm_name]
        return {"HostName": "127.0.0.1", "User": "vagrant", "Port": str(port), "IdentityFile": f"/keys/{vm_name}"}


def test_up_boots_every_vm_provisions_idempotently_and_records_ssh(world: World, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(firstboot, "SETTLE_S", 0.0)
    vlog: list = []
    monkeypatch.setattr(vagrant_mod, "detect_vm_provider", lambda: "virtualbox")
    monkeypatch.setattr(VagrantProvider, "_vagrant", lambda self, *a, **k: FakeVagrant(vlog))
    monkeypatch.setattr(vagrant_mod, "SshHost", lambda name, params, sudo: FakeHost(name, world))
    world.reboot_asks = 1
    prov = VagrantProvider(Workspace.at(tmp_path))
    info = prov.up(load_topology("dumbbell-4"))
    assert sorted(e[1] for e in vlog if e[0] == "up") == ["client1", "client2", "router", "server"]
    assert all(e[2] == "virtualbox" for e in vlog if e[0] == "up")
    assert ("reload", "router") in vlog
    assert info.hosts["router"]["ssh"]["port"] == 2201
    assert info.hosts["server"]["ssh"]["identity_file"] == "/keys/server"
    assert info.hosts["client1"]["freebsd_version"] == "14.1-RELEASE-p5"
    assert prov.topology_file.is_file() and "client1" in prov.topology_file.read_text()
    router_steps = [s for s in world.steps("router") if s != "first-boot probe"]
    assert world.steps("router")[:2] == ["first-boot probe"] * 2, "two probes with one boot time, then provisioning"
    assert router_steps[:2] == ["login shell sh", "packages, kern.hz, NIC offloads"]
    assert router_steps.count("ipfw (open) + dummynet, build and load the dualpi2 module") == 2  # after the reboot
    uploaded = {(h, name) for h, name, _ in world.uploads}
    assert ("router", "Makefile") in uploaded and all(h == "router" for h, _ in uploaded)


# -- tools and the Vagrantfile ------------------------------------------------------------------------------


def test_missing_vagrant_is_a_user_error_that_says_what_to_install(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(vagrant_mod.shutil, "which", lambda name: None)
    for call in (detect_vm_provider, VagrantProvider(Workspace.at(tmp_path)).status,
                 lambda: VagrantProvider(Workspace.at(tmp_path)).down(destroy=True)):
        with pytest.raises(L4stbError, match="apt-get install --no-install-recommends vagrant"):
            call()


def test_vagrant_without_a_vm_provider_says_what_to_install(monkeypatch):
    monkeypatch.setattr(vagrant_mod.shutil, "which", lambda name: "/usr/bin/vagrant" if name == "vagrant" else None)
    monkeypatch.delenv("L4STB_VAGRANT_PROVIDER", raising=False)
    monkeypatch.delenv("VAGRANT_DEFAULT_PROVIDER", raising=False)
    with pytest.raises(L4stbError, match="VirtualBox .* libvirt"):
        detect_vm_provider()
    monkeypatch.setenv("L4STB_VAGRANT_PROVIDER", "parallels")
    with pytest.raises(L4stbError, match="not supported"):
        detect_vm_provider()


def test_the_vagrantfile_is_found_in_the_checkout_or_from_the_environment(monkeypatch, tmp_path: Path):
    assert (find_vagrantfile() / "Vagrantfile").is_file()
    monkeypatch.setenv("L4STB_VAGRANTFILE", str(tmp_path))
    with pytest.raises(L4stbError, match="does not point at a Vagrantfile"):
        find_vagrantfile()


def test_dry_run_plans_touch_nothing(tmp_path: Path):
    prov = VagrantProvider(Workspace.at(tmp_path / "work"))
    text = prov.plan_up(load_topology("dumbbell-4")).render()
    assert "vagrant up router" in text and "kldload" in text
    ctx = _ctx(tmp_path / "work")
    assert "ipfw sched 1 config pipe 1 type dualpi2" in prov.plan_run(ctx, 1).render()
    assert not (tmp_path / "work").exists()


# -- before the first repeat: kern.hz and udp_prague ------------------------------------------------------


def test_a_host_at_another_kern_hz_stops_the_run_before_any_repeat(world: World, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(plans, "START_LEAD_S", 0.0)
    world.facts_override = {"client2": FACTS.format(h="client2").replace("kern.hz: 1000", "kern.hz: 100")}
    outcomes = []
    with pytest.raises(L4stbError) as err:
        VagrantProvider(Workspace.at(tmp_path)).run_repeats(_ctx(tmp_path, duration=1_000_000), [1],
                                                            lambda r, f: None, outcomes.append)
    text = str(err.value)
    assert text.startswith("client2: kern.hz is 100") and "aqm.kern_hz = 1000" in text
    assert "L4STB_KERN_HZ=1000 l4stb up --provider vagrant" in text and "\n" not in text
    assert outcomes == [] and "configure bottleneck and AQM (dualpi2)" not in world.steps()


def test_udp_prague_is_built_only_for_prague_scenarios_on_their_hosts(world: World, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(plans, "START_LEAD_S", 0.0)
    outcomes, _ = _run(_ctx(tmp_path, "prague-8mbps", duration=1_000_000), [1, 2])
    built = sorted(h for h, s, _ in world.calls if s == "build udp_prague")
    assert built == ["client2", "server"], "built once per host, before the first repeat"
    assert outcomes[1].stats["udp_prague_commit"] == {"client2": plans.UDP_PRAGUE_REF_DEFAULT,
                                                      "server": plans.UDP_PRAGUE_REF_DEFAULT}
    script = next(sc for h, s, sc in world.calls if s == "build udp_prague")
    assert f"checkout --quiet {plans.UDP_PRAGUE_REF_DEFAULT}" in script


def test_up_never_builds_udp_prague(world: World, tmp_path: Path):
    text = VagrantProvider(Workspace.at(tmp_path)).plan_up(load_topology("dumbbell-4")).render()
    assert "git clone --quiet https://github.com/L4STeam/udp_prague" not in text and "gmake CPP" not in text


@pytest.mark.parametrize("vm_provider, env, jobs", [("virtualbox", None, 1), ("libvirt", None, 4),
                                                     ("virtualbox", "2", 2)])
def test_vagrant_up_is_serial_on_virtualbox_and_parallel_on_libvirt(monkeypatch, vm_provider, env, jobs):
    if env is None:
        monkeypatch.delenv("L4STB_UP_JOBS", raising=False)
    else:
        monkeypatch.setenv("L4STB_UP_JOBS", env)
    assert vagrant_mod.up_jobs(vm_provider, 4) == jobs
    monkeypatch.setenv("L4STB_UP_JOBS", "many")
    with pytest.raises(L4stbError, match="L4STB_UP_JOBS"):
        vagrant_mod.up_jobs(vm_provider, 4)


# -- the self-check on the VMs, against FreeBSD-shaped output ------------------------------------------------

CHECK_ANSWERS = {
    "check module and scheduler": "l4stb-module loaded\n=== sched ===\n"
                                  " sched 1 type DUALPI2 flags 0x0 0 buckets 1 active\n",
    "count ECN codepoints": "l4stb-ecn 5101 0 3\nl4stb-ecn 5101 2 700\nl4stb-ecn 5101 3 90\n"
                            "l4stb-ecn 5102 0 3\nl4stb-ecn 5102 2 400\nl4stb-ecn 5102 3 60\n"
                            "l4stb-ecn 5103 0 3\nl4stb-ecn 5103 1 350\nl4stb-ecn 5103 3 1500\n",
    "count log lines": "l4stb-log-file-lines 500\n",
}


def test_self_check_on_the_vms_gathers_every_fact_and_passes(world: World, tmp_path: Path, monkeypatch):
    from l4stb import check

    monkeypatch.setattr(plans, "START_LEAD_S", 0.0)
    world.extra_answers = dict(CHECK_ANSWERS)
    sc = check.check_scenario(load_scenario("dctcp-8mbps"))
    ctx = RunContext("check-dctcp-8mbps-20250101T000000Z", sc, load_topology("dumbbell-4"), Workspace.at(tmp_path))
    ev = VagrantProvider(ctx.workspace).self_check(ctx)
    assert ev.module_loaded is True and ev.log_lines_in_file == ev.log_lines_counter == 500
    assert ev.kern_hz == {"client1": 1000, "client2": 1000, "router": 1000, "server": 1000}
    assert [(f.host, f.cc, f.port) for f in ev.flows] == [("client1", "cubic", 5101), ("client1", "newreno", 5102),
                                                          ("client2", "dctcp", 5103)]
    assert check.judge(ev, sc).failures == []
    order = [s for _, s, _ in world.calls]
    assert order.index("start capture") < order.index("start clients together") < order.index(
        "count ECN codepoints") < order.index("count log lines")


def test_self_check_on_the_vms_reports_lost_log_lines(world: World, tmp_path: Path, monkeypatch):
    from l4stb import check

    monkeypatch.setattr(plans, "START_LEAD_S", 0.0)
    world.extra_answers = {**CHECK_ANSWERS, "count log lines": "l4stb-log-file-lines 431\n"}
    sc = check.check_scenario(load_scenario("dctcp-8mbps"))
    ctx = RunContext("check-dctcp-8mbps-20250101T000000Z", sc, load_topology("dumbbell-4"), Workspace.at(tmp_path))
    failures = check.judge(VagrantProvider(ctx.workspace).self_check(ctx), sc).failures
    assert len(failures) == 1 and failures[0].startswith("router: 431 of the module's lines reached")


def test_a_rate_schedule_repeat_records_how_late_its_steps_were_applied(world: World, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(plans, "START_LEAD_S", 0.0)
    ctx = _ctx(tmp_path)
    sc = load_scenario("dctcp-8mbps", ["bottleneck.rate_schedule=[{at: 10s, rate: 4Mbit}]"])
    ctx = RunContext(ctx.run_id, sc, ctx.topology, ctx.workspace)
    (outcome,), _ = _run(ctx, [1])
    assert outcome.stats["rate_schedule_applied"] == {"steps_applied": 1, "steps_failed": 0, "late_us_max": 420,
                                                      "late_us_mean": 420.0}
    uploaded = [(h, name, remote) for h, name, remote in world.uploads if name == "rate-schedule.txt"]
    assert uploaded == [("router", "rate-schedule.txt", plans.rate_schedule_remote(ctx.run_id, 1))]
