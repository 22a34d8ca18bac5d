"""Render the vagrant provider's per-host shell steps from playbooks/templates with validated, quoted values only.

Every value that reaches a template comes from a validated record (``Topology``, ``Scenario``, a run id
checked by ``validate_name``, an SSH user checked here) or is a constant of this module, and every
string is written through the ``q`` filter (``shlex.quote``); integers go through ``i``, which refuses
anything that is not an int. The Jinja2 environment is strict: a missing variable is an error, not an
empty string. :func:`up_phases` and :func:`run_phases` return the steps in execution order, grouped in
phases whose steps run in parallel on different hosts; ``--dry-run`` prints them.
"""

from __future__ import annotations

import ipaddress
import math
import os
import posixpath
import re
import shlex
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jinja2

from l4stb import aqm_catalogue, layout, logformat, lograte, policyblob, rate_applied, resources
from l4stb.config import Aqm, Scenario, Topology
from l4stb.errors import L4stbError
from l4stb.providers.base import Plan
from l4stb.providers.freebsd import facts
from l4stb.workspace import validate_name

# -- constants of the FreeBSD testbed ----------------------------------------------------------------

KMOD = "dn_sched_dualpi2"
KMOD_FILE = f"{KMOD}.ko"
SYSCTL_ROOT = "net.inet.ip.dummynet.dualpi2"
PIPE = SCHED = QUEUE = 1
RULE = 30000
"""ipfw rule number of the queue rule. rc.firewall (libexec/rc/rc.firewall, firewall_type open) numbers its own rules
50 (natd/nat, when enabled), 100-500 (setup_loopback), 600-1000 (setup_ipv6_mandatory: unnumbered `add`s, which
ipfw numbers last rule + net.inet.ip.fw.autoinc_step, default 100; sbin/ipfw/ipfw.8 RULE FORMAT) and 65000
(`pass all from any to any`). l4stb's rules are 29000-30000: clear of all of those, and before 65000 so that they
see every packet first. They are also in an ipfw set of their own (RULE_SET), so a repeat deletes exactly
l4stb's rules."""
RULE_SET = 7
"""The ipfw set of every rule l4stb adds (`ipfw add N set 7 ...`); `ipfw delete set 7` removes them all, a stale
delay rule of an earlier scenario included, and never touches rc.firewall's rules (set 0). Sets are 0..31, 31
being the default rule's (sbin/ipfw/ipfw.8, "set set_number")."""

REMOTE_ROOT = layout.REMOTE_ROOT
RUNS_ROOT = posixpath.join(REMOTE_ROOT, "runs")
STATE_ROOT = posixpath.join(REMOTE_ROOT, "state")
"""pids, exit codes and stderr of the repeat's processes: kept out of the run folders that fetch-logs pulls."""
SRC_ROOT = posixpath.join(REMOTE_ROOT, "src")
MODULE_DIR = posixpath.join(SRC_ROOT, "freebsd_module")
RATESCHED_DIR = posixpath.join(SRC_ROOT, "ratesched")
RATESCHED_SOURCE = "l4stb_ratesched.c"
RATESCHED_BIN = posixpath.join(RATESCHED_DIR, "l4stb_ratesched")
"""The rate-schedule helper (freebsd_module/ratesched/), built on the router by `up` with the base system's cc."""
PRAGUE_DIR = posixpath.join(SRC_ROOT, "udp_prague")

PACKAGES = ("iperf3", "git-lite", "gmake")
SRC_REPO = "https://git.FreeBSD.org/src.git"
SRC_BRANCH = "releng/14.1"
UDP_PRAGUE_REPO = "https://github.com/L4STeam/udp_prague.git"
UDP_PRAGUE_REF_DEFAULT = "69b3f907745fd8dd427edafc24b8de752c1b0d1a"
"""L4STeam/udp_prague at 69b3f90 (2025-10-16), the last commit that compiles on FreeBSD: since 56da214
(2026-01-12) udpsocket.cpp defines IP_RECV_CMSG_TYPE for __linux__ and __APPLE__ only. 69b3f90's
receiver reads the ECN field from an IP_RECVTOS control message on FreeBSD, which is what FreeBSD's
ip_savecontrol() sends. Overridable with env L4STB_UDP_PRAGUE_REF, a full 40-hex commit only (a branch
or tag moves); the commit built is recorded in each repeat's stats."""
MSGBUF_BYTES = lograte.MSGBUF_BYTES
"""kern.msgbufsize on the router: how long it rides out a syslogd stall is l4stb.lograte's business."""

START_LEAD_S = 5.0
"""Clients start this long after the start-clients step is sent (time for every host to receive it)."""
ROTATE_EVERY_S = 10
DRAIN_S = 2
SERVER_GRACE_S = 15
CLIENT_GRACE_S = 30

MODULE_FILE_GLOBS = ("Makefile", "*.c", "*.h")
"""What of freebsd_module/ is uploaded to the router (the harness/ folder is for Linux tests only)."""

COMPRESS_FLAG = {"bzip2": "J", "gzip": "Z", "xz": "X", "none": ""}
COMPRESS_EXT = {"bzip2": ".bz2", "gzip": ".gz", "xz": ".xz", "none": ""}

_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
KERN_HZ_DEFAULT = 1000
"""kern.hz written to /boot/loader.conf on every host (the scenario default ``aqm.kern_hz``); env L4STB_KERN_HZ."""
MODULE_COUNTERS = ("log_lines", "decisions", "instances_created", "instances_freed")
"""Read-only counters of the dualpi2 module under SYSCTL_ROOT, read before and after every repeat."""


# -- the Jinja2 environment --------------------------------------------------------------------------


def _q(value: Any) -> str:
    """Shell-quote one value. Only str/int/float/Path are allowed; anything else is a bug."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Path)):
        raise TypeError(f"refusing to quote a {type(value).__name__} into a shell command: {value!r}")
    return shlex.quote(str(value))


def _i(value: Any) -> str:
    """An integer, written as digits; anything else is a bug."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an int for a shell command, got {type(value).__name__}: {value!r}")
    return str(value)


def make_env(templates: Path | None = None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates or resources.templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = _q
    env.filters["i"] = _i
    return env


_ENV: jinja2.Environment | None = None


def render(template: str, **values: Any) -> str:
    """Render ``playbooks/templates/<template>`` with ``values`` (plus ``template`` itself for the header)."""
    global _ENV
    if _ENV is None:
        _ENV = make_env()
    try:
        return _ENV.get_template(template).render(template=template, **values)
    except jinja2.UndefinedError as exc:
        raise RuntimeError(f"template {template}: {exc}") from exc


# -- records -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """A file sent by SFTP before a step: a local file, or ``text`` l4stb generated (then ``local`` names it)."""

    local: Path
    remote: str
    text: str | None = None

    def describe(self) -> str:
        if self.text is None:
            return f"# upload {self.local.name} -> {self.remote} (sftp)"
        lines = [ln for ln in self.text.splitlines() if ln and not ln.startswith("#")]
        count = f"{len(lines)} line{'' if len(lines) == 1 else 's'}"
        return f"# upload {self.local.name} (generated, {count}) -> {self.remote} (sftp)"


@dataclass(frozen=True)
class HostStep:
    """One shell step on one host: a rendered script, files to upload before it, and its timeout."""

    host: str
    step: str
    script: str
    uploads: tuple[Upload, ...] = ()
    timeout_s: float = 600.0
    kind: str = "script"
    """``script`` (run with sh -c), ``login-shell`` (one csh-safe line run before the shell is sh)."""

    def describe(self) -> str:
        lines = [u.describe() for u in self.uploads]
        return "\n".join(lines + [self.script.rstrip()])


@dataclass
class Phase:
    """Steps that run at the same time, one thread per host; phases run one after the other."""

    name: str
    steps: list[HostStep] = field(default_factory=list)


@dataclass(frozen=True)
class Proc:
    """One process of a repeat: an iperf3 or udp_prague client/server (or the router's rate schedule), with its
    output file and argv."""

    name: str
    host: str
    side: Literal["client", "server"]
    kind: Literal["iperf3", "udp_prague", "rate_schedule"]
    cc: str
    group: int
    connection: int
    port: int
    proto: Literal["tcp", "udp"]
    out: str
    argv: tuple[str, ...]
    start_s: float
    what: str

    @property
    def ok_exit_codes(self) -> tuple[int, ...]:
        """udp_prague has no duration option: timeout(1) ends it (exit 124), which is how it is meant to end."""
        return (0, 124) if self.kind == "udp_prague" else (0,)

    @property
    def killed_is_ok(self) -> bool:
        """A udp_prague receiver never exits by itself; it is stopped after its sender."""
        return self.kind == "udp_prague" and self.side == "server"


def plan_of(title: str, phases: list[Phase]) -> Plan:
    plan = Plan(title)
    for phase in phases:
        for s in phase.steps:
            plan.add(s.host, s.step, s.describe())
    return plan


# -- validation helpers ------------------------------------------------------------------------------


def check_run_id(run_id: str) -> str:
    """A run id as a path component, matched in full (``validate_name``'s ``$`` also accepts a trailing newline)."""
    validate_name(run_id, "run id")
    if not isinstance(run_id, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}", run_id):
        raise L4stbError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' only.")
    return run_id


def check_ssh_user(user: str) -> str:
    if not isinstance(user, str) or not _USER_RE.fullmatch(user):
        raise L4stbError(f"SSH user {user!r} is not a plain user name; check `vagrant ssh-config`.")
    return user


def udp_prague_ref() -> str:
    ref = os.environ.get("L4STB_UDP_PRAGUE_REF", UDP_PRAGUE_REF_DEFAULT)
    if not _COMMIT_RE.fullmatch(ref):
        raise L4stbError(f"L4STB_UDP_PRAGUE_REF={ref!r} is not a full 40-hex git commit: l4stb builds udp_prague "
                         "at a pinned commit, never a branch or tag, so every run records what it ran. Unset it "
                         f"to use the tested pin {UDP_PRAGUE_REF_DEFAULT}.")
    return ref


def kern_hz() -> int:
    """The clock tick `up` provisions (env L4STB_KERN_HZ, default 1000); a scenario's aqm.kern_hz must match it."""
    raw = os.environ.get("L4STB_KERN_HZ", str(KERN_HZ_DEFAULT))
    if not raw.isdigit() or not 10 <= int(raw) <= 100_000:
        raise L4stbError(f"L4STB_KERN_HZ={raw!r} is not a tick rate from 10 to 100000 (the range of aqm.kern_hz).")
    return int(raw)


def ipfw_bandwidth(rate_bps: int) -> str:
    """ipfw's ``bw`` argument: 8Mbit/s, 500Kbit/s, or bits/s."""
    if rate_bps % 1_000_000 == 0:
        return f"{rate_bps // 1_000_000}Mbit/s"
    if rate_bps % 1000 == 0:
        return f"{rate_bps // 1000}Kbit/s"
    return f"{rate_bps}bit/s"


def ipfw_delay_ms(delay_us: int, field_name: str = "bottleneck.delay") -> int:
    if delay_us % 1000:
        raise L4stbError(f"{field_name} = {delay_us}us: ipfw pipes take whole milliseconds; use e.g. "
                         f"{max(0, round(delay_us / 1000))}ms on the vagrant testbed.")
    return delay_us // 1000


# -- what FreeBSD can and cannot run -----------------------------------------------------------------

DELAY_RULE0 = 29000
"""ipfw rules of the per-host/per-group delay pipes: 29000, 29001, ... (below the queue rule, clear of rc.firewall's
numbers, see RULE; in RULE_SET); their pipes are 11, 12, ..."""
DELAY_PIPE0 = 11
MAX_DELAY_PIPES = 400


def check_runs_on_freebsd(scenario: Scenario) -> None:
    """Refuse, with what to do instead, what the all-FreeBSD vagrant testbed cannot run."""
    linux = sorted(h for h, s in scenario.hosts.items() if s.stack == "linux")
    if linux:
        raise L4stbError(
            f"scenario {scenario.name}: hosts {', '.join(linux)} set stack: linux, but every host of the vagrant "
            "testbed runs FreeBSD 14.1. Run it with the sim provider (which models Linux senders), or set "
            "stack: freebsd for the vagrant testbed.")
    if scenario.aqm.engine == "dualpi2" and scenario.aqm.l4s_classifier != "l4s_ect":
        raise L4stbError(
            f"scenario {scenario.name}: aqm.l4s_classifier is {scenario.aqm.l4s_classifier}, but the vagrant "
            "testbed's dualpi2 module classifies as RFC 9332 does (l4s_ect: ECT(1) and CE to the L queue) and has no "
            "other classifier. Its DCTCP already sends ECT(1) (the plan sets net.inet.tcp.cc.dctcp.ect1=1), so "
            "l4s_ect puts it in L: remove aqm.l4s_classifier, or run any_ect with the sim provider.")
    _check_codel_on_freebsd(scenario)
    if scenario.bottleneck.shaper != "dummynet":
        raise L4stbError(
            f"scenario {scenario.name}: bottleneck.shaper is {scenario.bottleneck.shaper}, the real-Linux testbed's "
            "token bucket; the vagrant router's bottleneck is a dummynet pipe. Remove bottleneck.shaper (and "
            "bottleneck.burst) for the vagrant testbed, or run it with the sim provider.")
    tcp_prague = sorted(h for h, s in scenario.hosts.items() if s.prague_transport == "tcp")
    if tcp_prague and any(f.cc == "prague" and f.host in tcp_prague for f in scenario.flows):
        raise L4stbError(
            f"scenario {scenario.name}: hosts {', '.join(tcp_prague)} set prague_transport: tcp, but FreeBSD has no "
            "TCP Prague; on the vagrant testbed Prague runs as udp_prague. Remove prague_transport (or set udp).")
    for g, f in enumerate(scenario.flows):
        if f.cc == "udp" and f.on_time:
            raise L4stbError(
                f"scenario {scenario.name}: flows.{g} is an on-off UDP flow; iperf3 has no on-off mode and one "
                "iperf3 server per port takes one test, so the vagrant testbed cannot run it. Use a constant-rate "
                "UDP flow (leave out on_time/off_time), or the sim provider.")
    delayed = [g for g in range(len(scenario.flows)) if scenario.flow_delay_us(g)]
    if delayed and scenario.bottleneck.match == "any":
        raise L4stbError(
            f"scenario {scenario.name}: extra_delay with bottleneck.match: any cannot be rendered faithfully: under "
            "match: any every packet crosses the queue twice (the router's input and output passes), but a delayed "
            "group's packets take their delay pipe on the input pass and, with ipfw's one_pass=1, leave ipfw there, "
            "so they would cross the queue only once, on the output pass. Use match: egress, or the sim provider.")
    if len(delayed) > MAX_DELAY_PIPES:
        raise L4stbError(f"scenario {scenario.name}: {len(delayed)} delayed flow groups; the vagrant plan has "
                         f"{MAX_DELAY_PIPES} delay pipes.")


def delay_pipes(scenario: Scenario, topology: Topology) -> list[dict[str, Any]]:
    """One dummynet delay pipe per flow group with extra delay: the group's packets to the server, matched on
    the router's input pass by source address, protocol and destination ports (``ipfw add N pipe P proto from
    SRC to DST dst-port LO-HI in``); with one_pass=1 they then take the queue rule on the output pass."""
    out = []
    server_ip = _server_address(topology)
    for g, f in enumerate(scenario.flows):
        lo, hi = scenario.connection_port(g, 1), scenario.connection_port(g, f.connections)
        delay_us = scenario.flow_delay_us(g)
        if not delay_us:
            continue
        n = len(out)
        out.append({"rule": DELAY_RULE0 + n, "pipe": DELAY_PIPE0 + n,
                    "delay_ms": ipfw_delay_ms(delay_us, f"extra_delay of flows.{g} (host and group)"),
                    "proto": "udp" if f.cc in ("udp", "prague") else "tcp", "src": topology.address(f.host),
                    "dst": server_ip, "ports": f"{lo}-{hi}" if hi > lo else str(lo)})
    return out


RATE_STEP_MIN_TICKS = 5
"""The closest two rate steps may be, in kernel ticks (aqm.kern_hz): each step forks ipfw(8) (milliseconds on a
VM) and dummynet takes the new bandwidth at its next tick (ip_dn_io.c dummynet() runs once per tick)."""


def rate_schedule_file(scenario: Scenario, horizon_us: int) -> str:
    """The router's rate schedule for the helper (freebsd_module/ratesched/l4stb_ratesched.c): one
    ``AT_US PIPE BW DELAY_MS`` line per step, applied at absolute times from the helper's start.

    Every value in it is generated here from validated integers (rates through :func:`ipfw_bandwidth`), never
    pasted from user text. dummynet applies a pipe's new bandwidth to the packets it serves from then on
    (ip_dummynet.c config_link updates the link of the running pipe). The file is uploaded by SFTP, never sent
    inline, so its length is bounded by neither kern.argmax nor the SSH packet."""
    steps = scenario.bottleneck.schedule(horizon_us)
    delay_ms = ipfw_delay_ms(scenario.bottleneck.delay)
    lines = [f"# l4stb rate schedule of scenario {scenario.name}: {len(steps)} steps, AT_US PIPE BW DELAY_MS"]
    lines += [f"{int(at_us)} {PIPE} {ipfw_bandwidth(rate)} {delay_ms}" for at_us, rate in steps]
    return "\n".join(lines) + "\n"


def check_rate_steps(scenario: Scenario, horizon_us: int) -> None:
    """Refuse rate steps closer than RATE_STEP_MIN_TICKS kernel ticks: the router cannot apply them on time."""
    min_us = RATE_STEP_MIN_TICKS * 1_000_000 // scenario.aqm.kern_hz
    times = sorted({at for at, _ in scenario.bottleneck.schedule(horizon_us)})
    gaps = [b - a for a, b in zip(times, times[1:])]
    if gaps and min(gaps) < min_us:
        what = (f"bottleneck.trace_bin = {scenario.bottleneck.trace_bin // 1000} ms" if scenario.bottleneck.rate_trace
                else f"two steps of bottleneck.rate_schedule {min(gaps) / 1000:g} ms apart")
        raise L4stbError(
            f"scenario {scenario.name}: {what} is closer than the vagrant router can follow: each step runs "
            f"`ipfw pipe {PIPE} config` and dummynet takes it at its next tick, so steps need at least "
            f"{RATE_STEP_MIN_TICKS} ticks ({min_us / 1000:g} ms at aqm.kern_hz {scenario.aqm.kern_hz}). Use a "
            f"coarser trace_bin (e.g. --set bottleneck.trace_bin={max(10, min_us // 1000)}ms), or the sim provider.")


def connection_starts_s(scenario: Scenario, group: int, repeat: int) -> list[float]:
    """Each connection's start (s after the common start): the group's start, or its seeded Poisson arrivals
    (short flows), plus its share of ``start_jitter``, drawn exactly as the simulator draws them for this repeat's
    seed (:meth:`l4stb.config.Scenario.connection_starts_us`)."""
    return [t / 1e6 for t in scenario.connection_starts_us(scenario.repeat_seed(repeat), group)]


def _networks(topology: Topology, host: str) -> list[str]:
    return [str(ipaddress.IPv4Interface(i.address).network) for i in topology.hosts[host].interfaces]


def _all_networks(topology: Topology) -> list[str]:
    seen: list[str] = []
    for host in topology.hosts:
        for net in _networks(topology, host):
            if net not in seen:
                seen.append(net)
    return seen


@dataclass(frozen=True)
class Route:
    name: str
    network: str
    gateway: str

    @property
    def address(self) -> str:
        """The network's address without the prefix length, as `route -n get` prints it after ``destination:``."""
        return str(ipaddress.IPv4Network(self.network).network_address)


def routes_for(topology: Topology, host: str) -> list[Route]:
    """Static routes of an endpoint: every network it is not on, via the router's address on its network."""
    router = topology.router
    own = list(topology.hosts[host].interfaces)
    gateway = None
    for iface in own:
        for riface in topology.hosts[router].interfaces:
            if riface.network == iface.network:
                gateway = riface.ip
                break
        if gateway:
            break
    if gateway is None:
        raise L4stbError(f"topology {topology.name}: host {host} shares no network with the router {router}, "
                         "so it cannot reach the others.")
    mine = set(_networks(topology, host))
    nets = [n for n in _all_networks(topology) if n not in mine]
    return [Route(f"l4stb{k}", n, gateway) for k, n in enumerate(nets)]


def module_files() -> list[Path]:
    folder = resources.module_dir()
    files: list[Path] = []
    for pattern in MODULE_FILE_GLOBS:
        files.extend(sorted(p for p in folder.glob(pattern) if p.is_file()))
    return files


def ratesched_source() -> Path:
    """The rate-schedule helper's C source (freebsd_module/ratesched/l4stb_ratesched.c)."""
    return resources.module_dir() / "ratesched" / RATESCHED_SOURCE


# -- up ----------------------------------------------------------------------------------------------


def _header(host: str, step: str) -> dict[str, Any]:
    return {"host": validate_name(host, "host"), "step": step}


def up_phases(topology: Topology, *, ssh_user: str = "vagrant") -> list[Phase]:
    """Idempotent provisioning: login shell, packages, kern.hz, offloads; router: /usr/src, ipfw, the module;
    endpoints: routes and cc_dctcp. udp_prague is built later, only for scenarios with Prague flows."""
    user = check_ssh_user(ssh_user)
    hosts = list(topology.hosts)
    router = topology.router
    shell = Phase("login shell", [HostStep(h, "login shell sh", render("login_shell.sh.j2", ssh_user=user),
                                           kind="login-shell", timeout_s=60) for h in hosts])
    common = Phase("common provisioning", [
        HostStep(h, "packages, kern.hz, NIC offloads", render(
            "provision_common.sh.j2", **_header(h, "packages, kern.hz, NIC offloads"), ssh_user=user,
            packages=list(PACKAGES), kern_hz=kern_hz(), remote_root=REMOTE_ROOT,
            runs_root=RUNS_ROOT, state_root=STATE_ROOT, src_root=SRC_ROOT), timeout_s=3600)
        for h in hosts])
    uploads = tuple(Upload(p, posixpath.join(MODULE_DIR, p.name)) for p in module_files())
    role_steps = []
    for h in hosts:
        if h == router:
            step = "ipfw (open) + dummynet, build and load the dualpi2 module"
            role_steps.append(HostStep(h, step, render(
                "provision_router.sh.j2", **_header(h, step), module_dir=MODULE_DIR, kmod_file=KMOD_FILE,
                rule_set=RULE_SET, queue=QUEUE, pipe=PIPE, sysctl_root=SYSCTL_ROOT, msgbuf_bytes=MSGBUF_BYTES,
                src_repo=SRC_REPO, src_branch=SRC_BRANCH, module_files=[u.local.name for u in uploads],
                ratesched_dir=RATESCHED_DIR, ratesched_source=RATESCHED_SOURCE, ratesched_bin=RATESCHED_BIN),
                uploads=uploads + (Upload(ratesched_source(), posixpath.join(RATESCHED_DIR, RATESCHED_SOURCE)),),
                timeout_s=3600))
        else:
            step = "static routes, cc_dctcp"
            role_steps.append(HostStep(h, step, render(
                "provision_endpoint.sh.j2", **_header(h, step), routes=routes_for(topology, h)), timeout_s=600))
    return [shell, common, Phase("role provisioning", role_steps)]


def prague_hosts(scenario: Scenario, topology: Topology) -> list[str]:
    """Hosts that run udp_prague in this scenario: the clients of its Prague flows, and the server."""
    hosts = [f.host for f in scenario.flows if f.cc == "prague"]
    if not hosts:
        return []
    return list(dict.fromkeys([*hosts, topology.server]))


def prepare_phase(scenario: Scenario, topology: Topology) -> Phase | None:
    """Before the first repeat: build udp_prague at the pinned commit where Prague flows run (else nothing)."""
    step = "build udp_prague"
    ref = udp_prague_ref()
    steps = [HostStep(h, step, render("build_udp_prague.sh.j2", **_header(h, step), prague_dir=PRAGUE_DIR,
                                      prague_repo=UDP_PRAGUE_REPO, prague_ref=ref), timeout_s=1200)
             for h in prague_hosts(scenario, topology)]
    return Phase("prepare", steps) if steps else None


def parse_udp_prague_commit(text: str) -> str | None:
    """The commit a build_udp_prague step reports (``l4stb-udp-prague <sha>``)."""
    for line in text.splitlines():
        if line.startswith("l4stb-udp-prague "):
            sha = line.split(" ", 1)[1].strip()
            return sha if _COMMIT_RE.fullmatch(sha) else None
    return None


FACT_SYSCTLS = (
    "kern.hz", "kern.osrelease", "kern.msgbufsize", "kern.log_wakeups_per_second", "hw.ncpu", "hw.physmem",
    "net.inet.tcp.cc.algorithm", "net.inet.tcp.cc.available", "net.inet.tcp.ecn.enable",
    "net.inet.tcp.cc.dctcp.ect1", "net.inet.ip.forwarding", "net.inet.ip.fw.enable", "net.inet.ip.fw.one_pass",
    "net.inet.ip.dummynet.io_fast", "net.inet.ip.dummynet.pipe_slot_limit", "net.inet.ip.dummynet.pipe_byte_limit",
    "net.inet.ip.dummynet.expire", SYSCTL_ROOT,
)


def facts_step(topology: Topology, host: str) -> HostStep:
    step = "host facts"
    return HostStep(host, step, render("host_facts.sh.j2", **_header(host, step), sysctls=list(FACT_SYSCTLS),
                                       role=topology.hosts[host].role, prague_dir=PRAGUE_DIR, module_dir=MODULE_DIR),
                    timeout_s=120)


def vm_report_step(topology: Topology, host: str, log_file: str) -> HostStep:
    """The read-only report of what only a booted VM can answer (`l4stb check --facts`)."""
    step = "vm report"
    return HostStep(host, step, render("vm_report.sh.j2", **_header(host, step), role=topology.hosts[host].role,
                                       prague_dir=PRAGUE_DIR, module_dir=MODULE_DIR, sysctl_root=SYSCTL_ROOT,
                                       log_file=log_file), timeout_s=120)


def parse_facts(text: str) -> dict[str, Any]:
    """The ``=== section ===`` output of host_facts.sh into a dict (sysctls as a name -> value mapping)."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        m = re.fullmatch(r"=== ([a-z_]+) ===", line.strip())
        if m:
            current = m.group(1)
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    facts: dict[str, Any] = {}
    for name, lines in sections.items():
        if name == "sysctls":
            values: dict[str, str] = {}
            key = None
            for line in lines:
                m = re.match(r"^([a-z0-9_.]+): ?(.*)$", line)
                if m and "." in m.group(1):
                    key = m.group(1)
                    values[key] = m.group(2)
                elif key is not None:
                    values[key] = (values[key] + "\n" + line).strip("\n")
            facts["sysctls"] = values
        elif name in ("uname", "freebsd_version", "udp_prague", "module"):
            facts[name] = "\n".join(lines).strip()
        else:
            facts[name] = [ln for ln in lines if ln.strip()]
    return facts


# -- run ---------------------------------------------------------------------------------------------


def uses_module(aqm: Aqm) -> bool:
    """Whether the l4stb dualpi2 module runs this AQM (its catalogue record has a module ``mode``)."""
    return aqm_catalogue.record(aqm).runs_on_module


def aqm_sysctls(aqm: Aqm, scenario: Scenario, repeat: int = 1) -> list[str]:
    """``name=value`` settings of the dualpi2 module for one repeat (see freebsd_module/README.md).

    The values are the AQM catalogue's integer parameters, which the simulator runs too (``DualPI2Params`` for
    dualpi2, ``PieParams`` for l4s-pie), so the kernel runs exactly what the simulator runs; the PRNG seed is the
    repeat's seed.
    """
    rec = aqm_catalogue.record(aqm)
    if not rec.runs_on_module:
        return []
    b = scenario.bottleneck
    values: list[tuple[str, int]] = [("mode", rec.module_mode), ("seed", scenario.repeat_seed(repeat)), ("log", 1)]
    if aqm.engine == "dualpi2":
        prm = aqm_catalogue.DualPI2Params.from_aqm(aqm, b)
        values += [(f.name, int(getattr(prm, f.name))) for f in dataclasses.fields(prm)]
        # aqm policy: the loaded blob decides every N-th packet; any other AQM leaves a loaded blob unused
        values.append(("policy_every", int(aqm.every) if aqm.name == "policy" else 0))
    else:
        pie = aqm_catalogue.PieParams.from_aqm(aqm, b)
        values += [(f"pie_{name}", int(getattr(pie, name)))
                   for name in ("qdelay_ref", "tupdate", "max_burst", "max_ecnth", "alpha", "beta", "flags")]
        values += [("pie_coupling", int(round(aqm.coupling_factor))),
                   ("pie_couple_same_flow", int(aqm.pie_coupling == "as-coded")),
                   ("tick_us", pie.tick_us), ("limit_packets", pie.limit_packets), ("limit_bytes", pie.limit_bytes)]
    return [f"{SYSCTL_ROOT}.{k}={v}" for k, v in values]


SYSCTL_ARG_MAX = facts.LIMITS["sysctl_arg"].value
"""The longest ``name=value`` argument sysctl(8) takes (1023: sbin/sysctl/sysctl.c parse(), BUFSIZ 1024)."""
SYSCTL_ARG_MARGIN = 64
"""Room left under SYSCTL_ARG_MAX by every policy piece, so the limit is never met exactly."""
MODULE_POLICY_PIECE_HEX = 1000
"""The most hex digits one policy piece may carry: DUALPI2_POLICY_PIECE in freebsd_module/dn_sched_dualpi2.c."""


def policy_piece_hex(sysctl_name: str) -> int:
    """Hex digits per policy piece: ``NAME=+<hex>`` stays SYSCTL_ARG_MARGIN under sysctl(8)'s limit, the name
    included, and within the module's piece size; even, so no byte is split between two pieces."""
    room = SYSCTL_ARG_MAX - SYSCTL_ARG_MARGIN - len(f"{sysctl_name}=+")
    digits = min(room, MODULE_POLICY_PIECE_HEX)
    if digits < 64:
        raise RuntimeError(f"sysctl name {sysctl_name!r} leaves no room for policy pieces under BUFSIZ")
    return digits - digits % 2


POLICY_REMOTE = posixpath.join(STATE_ROOT, "policy.l4pb")
"""Where the router keeps the distilled policy blob of a run under aqm ``policy``."""


def policy_load(aqm: Aqm) -> tuple[tuple[Upload, ...], dict[str, Any]]:
    """Uploads and template values that load aqm ``policy``'s blob into the module (none for other AQMs).

    The module validates the blob completely before it is used; the step then checks that the module's
    summary of the policy in force is this blob's, so a refused or stale blob stops the run.
    """
    if aqm.name != "policy":
        return (), {"policy_blob": None}
    blob = policyblob.load(aqm.policy)
    summary = (f"v{policyblob.VERSION}, {blob.size_bytes} bytes, {len(blob.nodes)} nodes, depth {blob.max_depth}, "
               f"checksum {blob.checksum:08x}")
    name = f"{SYSCTL_ROOT}.policy"
    return ((Upload(Path(aqm.policy), POLICY_REMOTE),),
            {"policy_blob": POLICY_REMOTE, "policy_sysctl": name, "policy_summary": summary,
             "policy_sha256": blob.sha256, "policy_piece_hex": policy_piece_hex(name)})


def _check_codel_on_freebsd(scenario: Scenario) -> None:
    """dummynet's CoDel is FreeBSD's: refuse Linux's semantics and the values fq_codel_config would silently bound."""
    aqm, b = scenario.aqm, scenario.bottleneck
    if aqm.name not in aqm_catalogue.CODEL_FAMILY:
        return
    if aqm.codel_semantics != "freebsd" or aqm.ce_threshold is not None:
        raise L4stbError(
            f"scenario {scenario.name}: aqm.codel_semantics linux (and ce_threshold) is Linux's CoDel; the vagrant "
            "router runs FreeBSD dummynet's, which has no ce_threshold. Remove both for the vagrant testbed, or run "
            "the scenario with the qemu provider (real Linux) or the sim.")
    a = aqm.resolved()
    if aqm.name == "fq_codel" and (b.limit_packets > aqm_catalogue.FQ_CODEL_LIMIT_MAX_FREEBSD
                                   or a.quantum > aqm_catalogue.FQ_CODEL_QUANTUM_MAX_FREEBSD):
        raise L4stbError(
            f"scenario {scenario.name}: dummynet's fq_codel bounds limit to {aqm_catalogue.FQ_CODEL_LIMIT_MAX_FREEBSD} "
            f"packets and quantum to {aqm_catalogue.FQ_CODEL_QUANTUM_MAX_FREEBSD} bytes without a word "
            f"(dn_sched_fq_codel.c fq_codel_config); this scenario asks for bottleneck.limit_packets "
            f"{b.limit_packets} and aqm.quantum {a.quantum}. Lower them for the vagrant testbed.")


def _codel_words(aqm: Aqm, scenario: Scenario) -> list[str]:
    """CoDel's words as sbin/ipfw/dummynet.c ``process_extra_parms`` reads them (target and interval as times,
    then ``ecn``/``noecn``: codel defaults to noecn, fq_codel to ecn, so the plan always says which)."""
    a = aqm.resolved()
    return ["target", f"{int(a.target)}us", "interval", f"{int(a.interval)}us",
            "ecn" if (a.ecn and scenario.ecn) else "noecn"]


def _sched_opts(aqm: Aqm, scenario: Scenario) -> list[str]:
    """Words after ``ipfw sched 1 config pipe 1 type fq_codel``: dummynet.c hands every word after the type to
    fq_codel's parameters (target, interval, ecn/noecn, quantum, limit, flows), so they come last. fq_codel's
    ``limit`` (over all its flow queues) is the bottleneck's ``limit_packets``."""
    if aqm.name != "fq_codel":
        return []
    a = aqm.resolved()
    return [*_codel_words(aqm, scenario), "quantum", str(int(a.quantum)),
            "limit", str(int(scenario.bottleneck.limit_packets)), "flows", str(int(a.flows))]


def _queue_opts(aqm: Aqm, scenario: Scenario) -> list[str]:
    """Extra words for ``ipfw queue 1 config``: stock PIE's parameters when aqm is ``pie``, stock CoDel's when
    ``codel`` (the last words: dummynet.c reads every word after ``codel`` as its parameter)."""
    if aqm.name == "codel":
        return ["codel", *_codel_words(aqm, scenario)]
    if aqm.name != "pie":
        return []
    a = aqm.resolved()
    return ["pie", "target", f"{int(a.target) // 1000}ms", "tupdate", f"{int(a.tupdate) // 1000}ms",
            "alpha", f"{a.alpha:g}", "beta", f"{a.beta:g}", "max_burst", f"{int(a.max_burst) // 1000}ms",
            "max_ecnth", f"{a.max_ecnth:g}", "ecn" if (a.ecn and scenario.ecn) else "noecn"]


def _log_paths(scenario: Scenario) -> dict[str, Any]:
    log_file = scenario.logging.file
    own = log_file != "/var/log/messages"
    newsyslog_conf = (f"/etc/newsyslog.conf.d/l4stb-{logformat.SYSLOG_TAG}.conf" if own
                      else posixpath.join(STATE_ROOT, f"newsyslog-{logformat.SYSLOG_TAG}.conf"))
    return {"log_file": log_file, "own_log_file": own, "newsyslog_conf": newsyslog_conf,
            "rotate_pidfile": posixpath.join(STATE_ROOT, "rotate.pid"),
            "rotate_stopfile": posixpath.join(STATE_ROOT, "rotate.stop")}


def _syslog_tag() -> str:
    tag = logformat.SYSLOG_TAG
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", tag):  # fullmatch: no trailing newline either
        raise RuntimeError(f"logformat.SYSLOG_TAG {tag!r} is not a plain program name")
    return tag


def _server_address(topology: Topology) -> str:
    return topology.address(topology.server)


def processes(scenario: Scenario, topology: Topology, run_id: str, repeat: int) -> list[Proc]:
    """Every client and server process of one repeat, one server port per connection (``Scenario.connection_port``)."""
    scenario.check_against(topology)
    check_runs_on_freebsd(scenario)
    repeat_dir = layout.remote_repeat_dir(check_run_id(run_id), repeat)
    server = topology.server
    server_ip = _server_address(topology)
    dur_s = scenario.duration // 1_000_000
    interval = f"{scenario.iperf3.interval / 1e6:g}"
    procs: list[Proc] = []
    last_start = last_start_s(scenario, repeat)
    for g, flow in enumerate(scenario.flows):
        starts = connection_starts_s(scenario, g, repeat)
        for c in range(1, flow.connections + 1):
            port = scenario.connection_port(g, c)
            if port > 65535:
                raise L4stbError(f"scenario {scenario.name}: iperf3.base_port {scenario.iperf3.base_port} + "
                                 f"{scenario.total_streams} connections runs past port 65535.")
            start_s = starts[c - 1]
            if flow.cc == "prague":
                if flow.parallel != 1:
                    raise L4stbError(
                        f"scenario {scenario.name}: flows.{g} is Prague with parallel: {flow.parallel}; on FreeBSD "
                        "Prague runs as udp_prague, one UDP flow per connection. Use connections: N, parallel: 1.")
                client_name = layout.udp_prague_client_name(flow.host, g, c)
                server_name = layout.udp_prague_server_name(port)
                procs.append(Proc(
                    server_name, server, "server", "udp_prague", "prague", g, c, port, "udp",
                    posixpath.join(repeat_dir, server_name),
                    ("timeout", str(int(START_LEAD_S + last_start + dur_s + CLIENT_GRACE_S)),
                     posixpath.join(PRAGUE_DIR, "udp_prague_receiver"), "-p", str(port)),
                    0.0, f"udp_prague receiver for {flow.host} group {g} connection {c} on UDP port {port}"))
                procs.append(Proc(
                    client_name, flow.host, "client", "udp_prague", "prague", g, c, port, "udp",
                    posixpath.join(repeat_dir, client_name),
                    ("timeout", str(dur_s), posixpath.join(PRAGUE_DIR, "udp_prague_sender"),
                     "-a", server_ip, "-p", str(port), "-c"),
                    start_s, f"udp_prague sender (Prague CC, ECT(1)) group {g} connection {c} for {dur_s} s; "
                             "its output is udp_prague's text report, not iperf3 JSON"))
            else:
                client_name = layout.iperf3_client_name(flow.host, flow.cc, g, c)
                server_name = layout.iperf3_server_name(port)
                udp = flow.cc == "udp"
                if udp:
                    # iperf3 -u -b: 1448-byte datagrams (1500-byte packets); --tos sets the ECN field
                    how = ("-u", "-b", str(flow.rate), "-l", "1448", "-t", str(dur_s), "-S", str(UDP_TOS[flow.ecn]))
                    cc_args: tuple[str, ...] = ()
                    what, tail = f"unresponsive UDP at {flow.rate} bit/s ({flow.ecn})", f"{dur_s} s"
                elif flow.short:
                    how = ("-n", str(flow.size))
                    cc_args = () if flow.server_cc else ("-C", flow.cc)
                    what, tail = flow.cc, f"a short flow of {flow.size} bytes"
                else:
                    how = ("-t", str(dur_s))
                    cc_args = () if flow.server_cc else ("-C", flow.cc)  # server_cc: the hosts' defaults
                    what, tail = flow.cc, f"{dur_s} s"
                procs.append(Proc(
                    server_name, server, "server", "iperf3", flow.cc, g, c, port, "udp" if udp else "tcp",
                    posixpath.join(repeat_dir, server_name),
                    ("iperf3", "-s", "-1", "-J", "-p", str(port)),
                    0.0, f"iperf3 server for {flow.host} group {g} connection {c} on TCP port {port}"))
                procs.append(Proc(
                    client_name, flow.host, "client", "iperf3", flow.cc, g, c, port, "udp" if udp else "tcp",
                    posixpath.join(repeat_dir, client_name),
                    ("iperf3", "-c", server_ip, "-p", str(port), *how, "-P", str(flow.parallel), *cc_args,
                     "-i", interval, "-J"),
                    start_s, f"iperf3 client, {what}, {flow.parallel} stream(s), group {g} connection {c}, {tail}"))
    if scenario.bottleneck.rate_schedule or scenario.bottleneck.rate_trace:
        check_rate_steps(scenario, rate_horizon_us(scenario, repeat))
        procs.append(Proc(
            RATE_SCHEDULE_NAME, topology.router, "client", "rate_schedule", "-", -1, 0, 0, "tcp",
            posixpath.join(repeat_dir, RATE_SCHEDULE_NAME),
            (RATESCHED_BIN, rate_schedule_remote(run_id, repeat)),
            0.0, f"bottleneck rate schedule: ipfw pipe {PIPE} config bw ... at each step's absolute time "
                 f"({RATESCHED_SOURCE}; the step file was uploaded by the configure step)"))
    return procs


def rate_schedule_remote(run_id: str, repeat: int) -> str:
    """Where the configure step uploads the repeat's rate schedule on the router (its state folder)."""
    return posixpath.join(state_dir_of(run_id, repeat), "rate-schedule.txt")


def rate_schedule_upload(scenario: Scenario, run_id: str, repeat: int) -> tuple[Upload, ...]:
    """The rate schedule file for the router's configure step, or nothing when the rate is constant."""
    if not (scenario.bottleneck.rate_schedule or scenario.bottleneck.rate_trace):
        return ()
    return (Upload(Path("rate-schedule.txt"), rate_schedule_remote(run_id, repeat),
                   rate_schedule_file(scenario, rate_horizon_us(scenario, repeat))),)


def rate_horizon_us(scenario: Scenario, repeat: int) -> int:
    """The end of the repeat's rate schedule: the latest connection start plus the duration."""
    return int((last_start_s(scenario, repeat) + scenario.duration // 1_000_000) * 1e6)


UDP_TOS = {"not-ect": 0, "ect0": 2, "ect1": 1}
"""iperf3 -S (IP_TOS) for a UDP flow's ECN field: the low two bits of the TOS byte (RFC 3168)."""
RATE_SCHEDULE_NAME = layout.RATE_APPLIED_NAME


def last_start_s(scenario: Scenario, repeat: int) -> float:
    """The latest connection start of the repeat (s after the common start)."""
    return max(max(connection_starts_s(scenario, g, repeat)) for g in range(len(scenario.flows)))


def starting_hosts(scenario: Scenario, topology: Topology) -> list[str]:
    """Hosts that start processes at the common start: the clients, and the router when the rate changes."""
    hosts = client_hosts(scenario)
    if scenario.bottleneck.rate_schedule or scenario.bottleneck.rate_trace:
        hosts.append(topology.router)
    return hosts


def client_hosts(scenario: Scenario) -> list[str]:
    hosts: list[str] = []
    for f in scenario.flows:
        if f.host not in hosts:
            hosts.append(f.host)
    return hosts


def client_wait_s(scenario: Scenario, repeat: int = 1) -> int:
    last_start = last_start_s(scenario, repeat)
    return int(math.ceil(START_LEAD_S + last_start + scenario.duration / 1e6 + CLIENT_GRACE_S))


def start_clients_step(scenario: Scenario, topology: Topology, run_id: str, repeat: int, host: str,
                       delay_s: float | None = None) -> HostStep:
    """The start step of one client host; ``delay_s`` = seconds until the common start (nominal in plans)."""
    nominal = delay_s is None
    lead = START_LEAD_S if delay_s is None else max(0.0, float(delay_s))
    procs = [p for p in processes(scenario, topology, run_id, repeat) if p.side == "client" and p.host == host]
    items = [{"name": p.name, "out": p.out, "argv": list(p.argv), "what": p.what, "delay_s": f"{lead + p.start_s:.3f}"}
             for p in procs]
    step = "start clients together"
    return HostStep(host, step, render("start_clients.sh.j2", **_header(host, step), procs=items,
                                       nominal_delay=nominal, state_dir=state_dir_of(run_id, repeat),
                                       repeat_dir=layout.remote_repeat_dir(run_id, repeat)), timeout_s=60)


def siftr_log(scenario: Scenario, run_id: str, repeat: int, host: str) -> str:
    """Where a client's siftr(4) log goes in its repeat folder (``scenario.siftr``), or "" when it runs none."""
    if not scenario.siftr or host not in client_hosts(scenario):
        return ""
    return posixpath.join(layout.remote_repeat_dir(check_run_id(run_id), repeat), f"{host}.siftr.log")


def state_dir_of(run_id: str, repeat: int) -> str:
    """Where the pids, exit codes and stderr of one repeat's processes live on a host."""
    return posixpath.join(STATE_ROOT, check_run_id(run_id), layout.repeat_dirname(repeat))


def run_phases(scenario: Scenario, topology: Topology, run_id: str, repeat: int,
               client_delays: dict[str, float] | None = None) -> list[Phase]:
    """The steps of one repeat, in order. ``client_delays`` (host -> s) is filled in at run time."""
    check_run_id(run_id)
    scenario.check_against(topology)
    router, server = topology.router, topology.server
    procs = processes(scenario, topology, run_id, repeat)
    repeat_dir = layout.remote_repeat_dir(run_id, repeat)
    state_dir = state_dir_of(run_id, repeat)
    logs = _log_paths(scenario)

    # 0. empty repeat folders on every host, so a repeat run again keeps nothing of an earlier attempt.
    step = "clear repeat folders"
    phases = [Phase(step, [HostStep(h, step, render(
        "clear_repeat.sh.j2", **_header(h, step), repeat=repeat, repeat_dir=repeat_dir, state_dir=state_dir),
        timeout_s=60) for h in topology.hosts])]

    # 1. configure: the router's queue and logging, the endpoints' congestion controls and ECN.
    router_cfg = configure_router_step(scenario, topology, run_id, repeat)
    endpoint_cfg = configure_endpoint_steps(scenario, topology, run_id, repeat)
    phases.append(Phase("configure", [router_cfg, *endpoint_cfg]))

    # 2. reset the router's log set and start the size-based rotation loop.
    step = "reset logs"
    phases.append(Phase(step, [HostStep(router, step, render(
        "reset_router_logs.sh.j2", **_header(router, step), repeat=repeat, state_dir=state_dir, repeat_dir=repeat_dir,
        rotate_every_s=ROTATE_EVERY_S, sysctl_root=SYSCTL_ROOT, counters=list(MODULE_COUNTERS), **logs),
        timeout_s=180)]))

    # 3. servers, one per connection.
    step = "start servers"
    servers = [proc_item(p) for p in procs if p.side == "server"]
    phases.append(Phase(step, [HostStep(server, step, render(
        "start_servers.sh.j2", **_header(server, step), procs=servers, state_dir=state_dir, repeat_dir=repeat_dir),
        timeout_s=60)]))

    # 4. all clients at the same moment.
    delays = client_delays or {}
    phases.append(Phase("start clients", [start_clients_step(scenario, topology, run_id, repeat, h, delays.get(h))
                                          for h in starting_hosts(scenario, topology)]))

    # 5. wait for the clients, stop stragglers, collect exit codes.
    wait_s = client_wait_s(scenario, repeat)
    step = "wait for clients"
    phases.append(Phase(step, [HostStep(h, step, render(
        "wait_procs.sh.j2", **_header(h, step), wait_s=wait_s, state_dir=state_dir,
        siftr_stop=bool(siftr_log(scenario, run_id, repeat, h)),
        procs=[proc_item(p) for p in procs if p.side == "client" and p.host == h]), timeout_s=wait_s + 60)
        for h in starting_hosts(scenario, topology)]))

    # 6. servers: wait briefly, stop stragglers (udp_prague receivers never exit by themselves).
    step = "stop servers"
    phases.append(Phase(step, [HostStep(server, step, render(
        "wait_procs.sh.j2", **_header(server, step), wait_s=SERVER_GRACE_S, state_dir=state_dir, procs=servers,
        siftr_stop=False),
        timeout_s=SERVER_GRACE_S + 60)]))

    # 7. the router's log set into the repeat folder.
    step = "collect router logs"
    phases.append(Phase(step, [HostStep(router, step, render(
        "collect_router_logs.sh.j2", **_header(router, step), repeat=repeat, repeat_dir=repeat_dir, drain_s=DRAIN_S,
        compress_ext=COMPRESS_EXT[scenario.logging.compress], sysctl_root=SYSCTL_ROOT, counters=list(MODULE_COUNTERS),
        rate_schedule_out=next((p.out for p in procs if p.kind == "rate_schedule"), ""), **logs),
        timeout_s=240)]))
    return phases


def configure_router_step(scenario: Scenario, topology: Topology, run_id: str, repeat: int) -> HostStep:
    """The router's part of a repeat's configure phase: the bottleneck pipe, its scheduler and AQM (the module and
    its sysctls, or stock dummynet), the delay pipes, the ipfw rules, and the module's own syslog file and rotation."""
    router, server = topology.router, topology.server
    aqm = scenario.aqm
    logs = _log_paths(scenario)
    tag = _syslog_tag()
    mod = uses_module(aqm)
    limit_bytes = max(int(scenario.bottleneck.limit_bytes), scenario.bottleneck.limit_packets * scenario.bottleneck.mtu)
    step = f"configure bottleneck and AQM ({aqm.name})"
    compress = scenario.logging.compress
    size_kb = int(math.ceil(scenario.logging.rotate_size / 1024))
    newsyslog_line = (f"{logs['log_file']} 644 {scenario.logging.rotate_count} {size_kb} * "
                      f"{COMPRESS_FLAG[compress]}C")
    policy_uploads, policy_values = policy_load(aqm)
    router_cfg = HostStep(router, step, render(
        "configure_router.sh.j2", **_header(router, step), uses_module=mod, aqm_name=aqm.name, **policy_values,
        kmod_file=KMOD_FILE, module_dir=MODULE_DIR, limit_packets=int(scenario.bottleneck.limit_packets),
        log_every_sysctl=f"{SYSCTL_ROOT}.log_every={int(scenario.logging.sample_every)}",
        limit_bytes=limit_bytes, aqm_sysctls=aqm_sysctls(aqm, scenario, repeat), rule=RULE, rule_set=RULE_SET,
        delay_rule0=DELAY_RULE0, queue=QUEUE, pipe=PIPE,
        ratesched_bin=RATESCHED_BIN if (scenario.bottleneck.rate_schedule or scenario.bottleneck.rate_trace) else "",
        sched=SCHED, bw=ipfw_bandwidth(scenario.bottleneck.rate), delay_ms=ipfw_delay_ms(scenario.bottleneck.delay),
        sched_type=aqm_catalogue.record(aqm).sched_type,
        sched_opts=_sched_opts(aqm, scenario), queue_opts=_queue_opts(aqm, scenario),
        client_nets=sorted({n for h in topology.clients for n in _networks(topology, h)}),
        server_net=_networks(topology, server)[0], match=scenario.bottleneck.match, syslog_tag=tag,
        delay_pipes=delay_pipes(scenario, topology),
        syslog_exclude=f"!-{tag}",
        syslog_exclude_comment=f"# l4stb: {tag} module lines go only to their own file (see /etc/syslog.d)",
        syslog_conf=f"/etc/syslog.d/l4stb-{tag}.conf",
        syslog_lines=["# l4stb: the dualpi2 module's per-packet lines (kernel messages tagged '" + tag + ":')",
                      f"!{tag}", f"kern.* -{logs['log_file']}", "!*"],
        newsyslog_lines=["# l4stb: rotate the dualpi2 module's log by size (count, size in KB, compression)",
                         newsyslog_line],
        state_root=STATE_ROOT, **logs), uploads=policy_uploads + rate_schedule_upload(scenario, run_id, repeat),
        timeout_s=120)
    return router_cfg


def configure_endpoint_steps(scenario: Scenario, topology: Topology, run_id: str, repeat: int) -> list[HostStep]:
    """The endpoints' part of the configure phase: on each client that sends and on the server, the TCP congestion
    controls its flows use (the client's first one as the default), ECN, and DCTCP's ECT(1) where DCTCP runs."""
    server = topology.server
    endpoint_cfg = []
    for h in [*client_hosts(scenario), server]:
        tcp_ccs = []
        for f in scenario.flows:
            if f.cc not in ("prague", "udp") and (f.host == h or h == server) and f.cc not in tcp_ccs:
                tcp_ccs.append(f.cc)
        default_cc = scenario.default_cc("" if h == server else h)
        if h == server and any(f.server_cc for f in scenario.flows) and default_cc not in tcp_ccs:
            tcp_ccs.append(default_cc)  # the server's sockets of flows without iperf3 -C run it
        ect1 = any(f.cc == "dctcp" and (f.host == h or h == server) for f in scenario.flows)
        ecn_mode = 1 if scenario.ecn else 0
        step = "congestion control and ECN"
        endpoint_cfg.append(HostStep(h, step, render(
            "configure_endpoint.sh.j2", **_header(h, step), ccs=tcp_ccs, default_cc=default_cc, ecn_mode=ecn_mode,
            ect1=ect1, siftr_log=siftr_log(scenario, run_id, repeat, h)), timeout_s=60))
    return endpoint_cfg


def proc_item(p: Proc) -> dict[str, Any]:
    return {"name": p.name, "out": p.out, "argv": list(p.argv), "what": p.what, "proto": p.proto, "port": p.port}


def parse_wait_output(text: str) -> tuple[dict[str, int], list[str], dict[str, list[str]]]:
    """``l4stb-exit NAME RC`` / ``l4stb-killed NAME`` / ``l4stb-stderr NAME LINE`` lines of wait_procs.sh."""
    exits: dict[str, int] = {}
    killed: list[str] = []
    stderr: dict[str, list[str]] = {}
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if parts[0] == "l4stb-exit" and len(parts) == 3:
            try:
                exits[parts[1]] = int(parts[2].strip())
            except ValueError:
                exits[parts[1]] = -1
        elif parts[0] == "l4stb-killed" and len(parts) >= 2:
            killed.append(parts[1])
        elif parts[0] == "l4stb-stderr" and len(parts) == 3:
            stderr.setdefault(parts[1], []).append(parts[2])
    return exits, killed, stderr


def parse_rate_applied(text: str) -> dict[str, Any] | None:
    """What the rate-schedule helper reported: how many steps ran and how late they were started against their
    absolute times; None when there are no such lines."""
    steps = rate_applied.read_rate_applied(text)
    if not steps:
        return None
    late = [s.applied_us - s.at_us for s in steps]
    return {"steps_applied": len(steps), "steps_failed": sum(s.rc != 0 for s in steps), "late_us_max": max(late),
            "late_us_mean": round(sum(late) / len(late), 1)}


def parse_counters(text: str) -> dict[str, int]:
    """``l4stb-counter NAME VALUE`` lines of the reset/collect steps; a counter the module lacks is left out."""
    counters: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "l4stb-counter" and parts[2].isdigit():
            counters[parts[1]] = int(parts[2])
    return counters
