"""`l4stb check`: run a 5 s flow through the testbed's bottleneck and judge what it measured, on either provider.

The checks are the ones a first real user needs before trusting any data: the AQM's module is loaded and
``ipfw sched show`` names its scheduler; every host runs at the scenario's kern.hz; the module's log lines
reach the log file, as many as its counter says it logged; the receiver sees CE-marked packets; and each
congestion control's packets carry the ECN codepoint it should send (ECT(1) for DCTCP and Prague, ECT(0) for
classic CCs with ECN, not-ECT without). The provider measures (``Provider.self_check``: FreeBSD commands on
the VMs, the simulated artifacts on the sim); this module only judges, so both are judged alike. Each failure
is one paragraph naming the host, what was expected and the likely cause.

``l4stb check`` (not the check at the end of ``up``) then measures the logging headroom: a second 5 s flow set at
LOG_RATE_FACTOR times the scenario's peak rate, whose log lines in the file are compared with the module's
counter again. A loss there is a finding, not a failure: it says up to which line rate per-packet (or sampled)
logging was seen complete on this testbed, which lograte only estimates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from l4stb import aqm_catalogue, lograte
from l4stb.config import FlowGroup, Scenario, load_scenario, load_topology
from l4stb.errors import L4stbError
from l4stb.linuxvm.guest import qdisc_args
from l4stb.providers import get_provider
from l4stb.providers.base import CheckEvidence, RunContext, TestbedInfo
from l4stb.providers.freebsd import plans
from l4stb.providers.freebsd.check_steps import sched_types
from l4stb.runner import resolve_policy
from l4stb.workspace import Workspace, atomic_write_text, utc_iso, utc_stamp

CHECK_DURATION_US = 5_000_000
LOG_RATE_FACTOR = 4
"""The headroom measurement runs the check flows at this many times the scenario's peak rate."""
DEFAULT_SCENARIO = "dctcp-8mbps"
NOT_ECT, ECT1, ECT0, CE = 0, 1, 2, 3
CODEPOINT_NAMES = {NOT_ECT: "not-ECT", ECT1: "ECT(1)", ECT0: "ECT(0)", CE: "CE"}


@dataclass
class CheckResult:
    passed: list[tuple[str, str]] = field(default_factory=list)
    """(check, what was seen) for every check that passed."""
    failures: list[str] = field(default_factory=list)
    """One paragraph per failed check."""
    findings: list[str] = field(default_factory=list)
    """What a measurement found that is not a failure of the testbed (log lines lost at the higher rate)."""

    def ok(self, what: str, detail: str) -> None:
        self.passed.append((what, detail))


def check_scenario(scenario: Scenario) -> Scenario:
    """The scenario's bottleneck, AQM and logging with a 5 s, one-repeat flow set: one bulk connection per
    (client, congestion control) of the scenario (its extra delay kept; UDP senders and short-flow sizes
    left out: the check is about what each CC sends), plus a DCTCP flow on the first client when the
    scenario has none."""
    flows: list[FlowGroup] = []
    seen: set[tuple[str, str]] = set()
    for f in scenario.flows:
        if f.cc != "udp" and (f.host, f.cc) not in seen:
            seen.add((f.host, f.cc))
            flows.append(f.model_copy(update={"connections": 1, "parallel": 1, "start": 0, "size": None,
                                              "mean_gap": None}))
    if not any(f.cc == "dctcp" for f in flows):
        flows.append(FlowGroup(host=scenario.flows[0].host, cc="dctcp"))
    return scenario.model_copy(update={"name": f"check-{scenario.name}"[:31].rstrip("-"),
                                       "duration": CHECK_DURATION_US, "repeats": 1, "flows": flows})


def higher_rate_scenario(check: Scenario, base: Scenario) -> Scenario:
    """The check scenario at LOG_RATE_FACTOR times ``base``'s peak rate, without a rate schedule or trace."""
    rate = LOG_RATE_FACTOR * lograte.peak_rate_bps(base)
    bottleneck = check.bottleneck.model_copy(update={"rate": rate, "rate_schedule": [], "rate_trace": None})
    return Scenario.model_validate(check.model_copy(update={"name": f"{check.name}-x{LOG_RATE_FACTOR}"[:31],
                                                            "bottleneck": bottleneck}).model_dump())


def judge_log_rate(ev: CheckEvidence, scenario: Scenario, res: CheckResult) -> None:
    """The headroom measurement: lines in the file against the module's counter at ``scenario``'s (higher) rate."""
    if ev.provider == "qemu" or not plans.uses_module(scenario.aqm):
        return
    file_n, counter = ev.log_lines_in_file, ev.log_lines_counter
    rate = f"{scenario.bottleneck.rate / 1e6:g} Mbit/s"
    where = ev.where.get("log", scenario.logging.file)
    every = scenario.logging.sample_every
    sampled = "" if every == 1 else f", every {every}th decision"
    if counter is None or file_n is None or counter == 0:
        res.findings.append(f"{ev.router}: the logging headroom at {rate} ({LOG_RATE_FACTOR}x the scenario's rate) "
                            "could not be measured: the module logged nothing or a count could not be read.")
        return
    per_s = counter / (CHECK_DURATION_US / 1e6)
    if file_n >= counter:
        res.ok(f"log lines at {rate} ({LOG_RATE_FACTOR}x)",
               f"{file_n} in the file = {counter} logged (about {per_s:,.0f} lines/s{sampled}): complete")
        return
    lost = counter - file_n
    need = every * -(-counter // max(1, file_n))
    res.findings.append(
        f"{ev.router}: at {rate} ({LOG_RATE_FACTOR}x the scenario's peak rate) {lost} of the {counter} lines the module "
        f"logged ({100 * lost / counter:.1f} %, about {per_s:,.0f} lines/s{sampled}) never reached {where}: the "
        f"kernel message buffer overflowed before syslogd read it. The scenario's own rate logged completely (above); "
        f"to run near {rate}, sample the log (--set logging.sample_every={need} or more).")


def expected_codepoint(cc: str, scenario: Scenario, stack: str = "freebsd") -> int:
    """What a sender puts in the ECN field: Prague always ECT(1); FreeBSD's DCTCP ECT(1) (l4stb sets
    net.inet.tcp.cc.dctcp.ect1); Linux's DCTCP ECT(0) whatever the ECN setting (tcp_dctcp.c asks for ECN with
    TCP_CONG_NEEDS_ECN, and INET_ECN_xmit sets ECT(0): include/net/inet_ecn.h); classic CCs ECT(0) when ECN is
    on (net.inet.tcp.ecn.enable, net.ipv4.tcp_ecn), not-ECT otherwise."""
    if cc == "prague":
        return ECT1
    if cc == "dctcp" and stack == "linux":
        return ECT0
    if not scenario.ecn:
        return NOT_ECT
    return ECT1 if cc == "dctcp" else ECT0


def judge(ev: CheckEvidence, scenario: Scenario) -> CheckResult:
    """Every check against the evidence; the scenario says what to expect."""
    res = CheckResult()
    aqm = scenario.aqm
    _judge_scheduler(ev, scenario, res)
    for host, hz in ev.kern_hz.items():
        if hz == aqm.kern_hz:
            res.ok(f"kern.hz on {host}", str(hz))
        else:
            res.failures.append(
                f"{host}: kern.hz is {hz if hz is not None else 'unreadable'}, expected {aqm.kern_hz} (the "
                f"scenario's aqm.kern_hz). Likely cause: /boot/loader.conf lacks kern.hz={aqm.kern_hz} or the host "
                f"was not rebooted after it was set; re-run `L4STB_KERN_HZ={aqm.kern_hz} l4stb up --provider "
                f"{ev.provider}`.")
    _judge_log_lines(ev, scenario, res)
    _judge_ecn(ev, scenario, res)
    for problem in ev.flow_problems:
        res.failures.append(f"{problem} Expected every test flow to run for {CHECK_DURATION_US // 1_000_000} s "
                            "and exit 0. Likely cause: the server is unreachable through the router (routes, "
                            "ipfw rule) or the client program is missing.")
    return res


def _judge_scheduler(ev: CheckEvidence, scenario: Scenario, res: CheckResult) -> None:
    if ev.provider == "qemu":
        _judge_qdisc(ev, scenario, res)
        return
    want = aqm_catalogue.record(scenario.aqm).sched_type
    if ev.module_loaded is False:
        res.failures.append(
            f"{ev.router}: the {plans.KMOD_FILE} module is not loaded, expected it after `l4stb up`. Likely cause: "
            "it failed to build against /usr/src or to load (run `l4stb up --provider vagrant` again and read "
            "the router's step output), or the router was rebooted since.")
    elif ev.module_loaded:
        res.ok(f"module on {ev.router}", f"{plans.KMOD_FILE} loaded")
    got = sched_types(ev.sched_show).get(plans.SCHED)
    if got is not None and got.lower() == want:
        res.ok(f"scheduler on {ev.router}", f"sched {plans.SCHED} type {got}")
    else:
        shown = " ".join(ev.sched_show.split())[:200] or "(nothing)"
        res.failures.append(
            f"{ev.router}: `ipfw sched {plans.SCHED} show` should name scheduler type {want} but shows: {shown}. "
            "Likely cause: the module is not loaded or registered under another name, or the configure step "
            "did not run (`ipfw sched 1 config pipe 1 type ...` failed).")


def _judge_qdisc(ev: CheckEvidence, scenario: Scenario, res: CheckResult) -> None:
    """Real Linux: the real qdisc (sch_dualpi2 built for the guest kernel) is loaded and is the bottleneck's."""
    want = qdisc_args(scenario)[0]
    if ev.module_loaded is False:
        res.failures.append(
            f"{ev.router}: sch_dualpi2 is not loaded in the guest, expected the module built at `l4stb up`. Likely "
            "cause: its vermagic does not match the guest kernel; run `l4stb up --provider qemu --rebuild`.")
    elif ev.module_loaded:
        res.ok(f"module on {ev.router}", "sch_dualpi2 loaded")
    if f"qdisc {want} " in ev.sched_show:
        res.ok(f"qdisc on {ev.router}", f"{want} under htb on the bottleneck")
    else:
        shown = " ".join(ev.sched_show.split())[:200] or "(nothing)"
        res.failures.append(f"{ev.router}: `tc qdisc show` on the bottleneck should list a {want} qdisc but shows: "
                            f"{shown}. Likely cause: tc refused its parameters (see guest.log of the check).")


def _judge_log_lines(ev: CheckEvidence, scenario: Scenario, res: CheckResult) -> None:
    if ev.provider == "qemu":
        _judge_capture(ev, res)
        return
    if not plans.uses_module(scenario.aqm):
        return
    file_n, counter = ev.log_lines_in_file, ev.log_lines_counter
    where = ev.where.get("log", scenario.logging.file)
    if counter is None or file_n is None:
        res.failures.append(
            f"{ev.router}: could not read {'the module counter ' + plans.SYSCTL_ROOT + '.log_lines' if counter is None else 'the log file ' + where}. "
            "Expected both, to compare the lines logged with the lines that reached the file. Likely cause: a "
            "module without the counter (rebuild it with `l4stb up`) or a log file that syslogd never created.")
    elif counter == 0:
        res.failures.append(
            f"{ev.router}: the module logged no line during the test flow (its log_lines counter did not move). "
            "Expected one line per packet decision. Likely cause: no packet reached the pipe (the ipfw rule does "
            "not match the test traffic) or logging is off (sysctl net.inet.ip.dummynet.dualpi2.log=0).")
    elif file_n != counter:
        res.failures.append(
            f"{ev.router}: {file_n} of the module's lines reached {where}, but its counter says it logged "
            f"{counter}; expected the same number. Likely cause: the kernel message buffer overflowed before "
            "syslogd read it (raise kern.msgbufsize) or the syslog.conf rule does not send the module's tag "
            "to that file.")
    else:
        res.ok(f"log lines on {ev.router}", f"{file_n} in the file = {counter} logged by the module (about "
                                            f"{counter / (CHECK_DURATION_US / 1e6):,.0f} lines/s)")


def _judge_capture(ev: CheckEvidence, res: CheckResult) -> None:
    """Real Linux: the log set comes from captures, so every packet the qdisc handled must be in the capture."""
    captured, counted = ev.log_lines_in_file, ev.log_lines_counter
    if captured is None or counted is None:
        res.failures.append(f"{ev.router}: could not read the capture or the qdisc's counters after the test flow.")
    elif captured != counted:
        res.failures.append(
            f"{ev.router}: the captures before the bottleneck hold {captured} packets to the server, but the qdisc "
            f"says it sent or dropped {counted}; expected the same number. Likely cause: tcpdump lost packets "
            "(its buffer, at high rates under TCG): lower the rate or sample the capture.")
    else:
        res.ok(f"capture on {ev.router}", f"{captured} packets captured = {counted} sent or dropped by the qdisc")


def _judge_ecn(ev: CheckEvidence, scenario: Scenario, res: CheckResult) -> None:
    total_ce = 0
    for flow in ev.flows:
        stack = "linux" if ev.provider == "qemu" else scenario.host(flow.host).stack
        want = expected_codepoint(flow.cc, scenario, stack)
        counts = flow.codepoints
        total_ce += counts.get(CE, 0)
        wrong = {cp: n for cp, n in counts.items() if n and cp not in (want, CE, NOT_ECT)}
        if want == NOT_ECT:
            wrong = {cp: n for cp, n in counts.items() if n and cp != NOT_ECT}
        seen = ", ".join(f"{CODEPOINT_NAMES[cp]} {n}" for cp, n in sorted(counts.items()) if n) or "no packets"
        if wrong or (want != NOT_ECT and counts.get(want, 0) + counts.get(CE, 0) == 0):
            res.failures.append(
                f"{flow.host}: its {flow.cc} flow to port {flow.port} should carry {CODEPOINT_NAMES[want]}, but "
                f"{ev.receiver} saw {seen}. Likely cause: "
                + ("tcp_dctcp is not loaded in the guest, so the flow fell back to the default CC"
                   if flow.cc == "dctcp" and stack == "linux" else
                   "net.inet.tcp.cc.dctcp.ect1 is 0 or cc_dctcp is not loaded, so DCTCP falls back to ECT(0) or "
                   "the host default CC" if flow.cc == "dctcp" else
                   "net.inet.tcp.ecn.enable is not the scenario's setting" if flow.cc != "prague" else
                   "the udp_prague build is not the pinned commit")
                + "; or the flow never reached the server.")
        else:
            res.ok(f"ECN of {flow.cc} from {flow.host}", seen)
    if scenario.ecn and scenario.aqm.ecn and aqm_catalogue.record(scenario.aqm).marks:
        if total_ce:
            res.ok(f"CE marks at {ev.receiver}", f"{total_ce} CE-marked packets")
        else:
            res.failures.append(
                f"{ev.receiver}: saw no CE-marked packet during the test flow; expected the {scenario.aqm.name} "
                f"AQM on {ev.router} to mark the DCTCP flow's packets (its step threshold is "
                f"{scenario.aqm.step_threshold} us). Likely cause: the module's marks do not reach the wire (the "
                "IP header is not found through dummynet's tag), or no queue built up (the ipfw rule does not "
                "send the flows through the pipe).")


def run_check(ws: Workspace, scenario_name: str | None = None, overrides: list[str] | None = None, *,
              log_headroom: bool = True) -> CheckResult:
    """Measure on the testbed that is up and judge; raise one L4stbError holding every failure. With
    ``log_headroom``, and when every check passed, measure the logging again at LOG_RATE_FACTOR times the rate."""
    testbed = TestbedInfo.load(ws)
    topology = load_topology(testbed.topology)
    # aqm policy: the blob is validated here, and the router step loads it and checks the module's summary
    base = resolve_policy(load_scenario(scenario_name or DEFAULT_SCENARIO, overrides or []))
    base.check_against(topology)
    scenario = check_scenario(base)
    ctx = RunContext(ws.new_run_id(scenario.name), scenario, topology, ws)
    provider = get_provider(testbed.provider, ws)
    evidence = provider.self_check(ctx)
    result = judge(evidence, scenario)
    if result.failures:
        head = (f"l4stb check ({testbed.provider} testbed, scenario {base.name}): {len(result.failures)} of "
                f"{len(result.failures) + len(result.passed)} checks failed.")
        raise L4stbError("\n\n".join([head, *result.failures]))
    if log_headroom and testbed.provider != "qemu" and plans.uses_module(scenario.aqm):
        higher = higher_rate_scenario(scenario, base)
        judge_log_rate(provider.self_check(RunContext(ws.new_run_id(higher.name), higher, topology, ws)), higher,
                       result)
    return result


def write_vm_report(ws: Workspace, scenario_name: str | None = None) -> Path:
    """`l4stb check --facts`: ask every VM what only a booted FreeBSD can answer and write it to one plain-text
    file in the workdir (``vm-facts-<UTC>.txt``), to attach to an issue."""
    testbed = TestbedInfo.load(ws)
    if testbed.provider != "vagrant":
        raise L4stbError(f"`l4stb check --facts` reports on FreeBSD VMs; the testbed that is up is the "
                         f"{testbed.provider} provider. Bring up the real testbed with `l4stb up --provider vagrant`.")
    topology = load_topology(testbed.topology)
    log_file = load_scenario(scenario_name or DEFAULT_SCENARIO).logging.file
    answers = get_provider(testbed.provider, ws).vm_report(topology, log_file)
    lines = [f"# l4stb check --facts, {utc_iso()}: {testbed.topology} on {testbed.provider}",
             "# what only a booted FreeBSD 14.1 VM can answer (README, 'To check on a VM'); read-only", ""]
    for host, text in answers.items():
        lines += [f"######## {host} ({topology.hosts[host].role})", text.rstrip(), ""]
    path = ws.root / f"vm-facts-{utc_stamp()}.txt"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
