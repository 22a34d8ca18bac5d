"""`l4stb check`: end to end on the sim, the judging of each check (one paragraph naming host, expectation,
likely cause), and the vagrant side's parsing of FreeBSD-shaped command output."""

from __future__ import annotations

from pathlib import Path

import pytest

from l4stb import check
from l4stb.config import load_scenario, load_topology
from l4stb.errors import L4stbError
from l4stb.providers import base
from l4stb.providers.base import CheckEvidence, FlowProbe
from l4stb.providers.freebsd import check_steps, plans
from l4stb.workspace import Workspace

# -- the sim, end to end --------------------------------------------------------------------------------


def test_check_on_the_sim_passes_and_leaves_no_run_behind(l4stb, workdir: Path):
    assert l4stb("up").exit_code == 0
    result = l4stb("check")
    assert result.exit_code == 0, result.output
    for line in ("sched 1 type DUALPI2", "kern.hz on router", "logged by the module", "CE-marked packets",
                 "ECN of dctcp from client2", "ECT(1)", "ECN of cubic from client1", "ECT(0)"):
        assert line in result.stdout, line
    assert not any((workdir / "hosts").rglob("*.json")), "the check's simulated repeat was left on the hosts"
    assert not (workdir / "runs").exists() or not any((workdir / "runs").iterdir())


def test_check_without_a_testbed_says_how_to_start_one(l4stb):
    result = l4stb("check")
    assert result.exit_code == 2 and "l4stb up" in result.stderr and "Traceback" not in result.output


def test_sim_check_evidence_comes_from_the_simulated_artifacts(tmp_path: Path):
    from l4stb.providers.sim import SimProvider
    from l4stb.providers.base import RunContext

    ws = Workspace.at(tmp_path)
    topo = load_topology("dumbbell-4")
    prov = SimProvider(ws)
    prov.up(topo)
    sc = check.check_scenario(load_scenario("dctcp-8mbps"))
    ev = prov.self_check(RunContext("check-20250101T000000Z", sc, topo, ws))
    assert ev.log_lines_in_file == ev.log_lines_counter > 1000  # ~3,300 decisions in 5 s at 8 Mbit/s
    dctcp = next(f for f in ev.flows if f.cc == "dctcp")
    assert dctcp.codepoints.get(check.CE, 0) > 0 and dctcp.codepoints.get(check.ECT1, 0) > 0
    assert check.judge(ev, sc).failures == []


# -- judging ----------------------------------------------------------------------------------------------

SC = check.check_scenario(load_scenario("dctcp-8mbps"))


def _evidence(**changes) -> CheckEvidence:
    ev = CheckEvidence(
        provider="vagrant", router="router", receiver="server", module_loaded=True,
        sched_show=" sched 1 type DUALPI2 flags 0x0 0 buckets 1 active\n",
        kern_hz={"client1": 1000, "client2": 1000, "router": 1000, "server": 1000},
        log_lines_in_file=3300, log_lines_counter=3300,
        flows=[FlowProbe("client1", "cubic", 5101, {0: 3, 2: 700, 3: 120}),
               FlowProbe("client1", "newreno", 5102, {0: 3, 2: 500, 3: 90}),
               FlowProbe("client2", "dctcp", 5103, {0: 3, 1: 300, 3: 1600})])
    for key, value in changes.items():
        setattr(ev, key, value)
    return ev


def test_check_scenario_is_five_seconds_one_repeat_one_connection_per_cc():
    assert SC.duration == 5_000_000 and SC.repeats == 1
    assert [(f.host, f.cc, f.connections, f.parallel) for f in SC.flows] == [
        ("client1", "cubic", 1, 1), ("client1", "newreno", 1, 1), ("client2", "dctcp", 1, 1)]
    cubic_only = check.check_scenario(load_scenario("cubic-8mbps"))
    assert [f.cc for f in cubic_only.flows] == ["cubic", "dctcp"], "a DCTCP flow is always part of the check"


def test_healthy_evidence_passes_every_check():
    result = check.judge(_evidence(), SC)
    assert result.failures == [] and len(result.passed) == 11


@pytest.mark.parametrize("changes, host, words", [
    ({"module_loaded": False}, "router", ["dn_sched_dualpi2.ko", "not loaded"]),
    ({"sched_show": " sched 1 type FIFO flags 0x0 0 buckets 0 active\n"}, "router", ["type dualpi2", "FIFO"]),
    ({"kern_hz": {"client1": 1000, "client2": 100, "router": 1000, "server": 1000}}, "client2",
     ["kern.hz is 100", "expected 1000", "loader.conf"]),
    ({"log_lines_in_file": 2900}, "router", ["2900", "3300", "kern.msgbufsize"]),
    ({"log_lines_counter": 0, "log_lines_in_file": 0}, "router", ["logged no line", "ipfw rule"]),
    ({"flows": [FlowProbe("client2", "dctcp", 5103, {0: 3, 2: 1900, 3: 40})]}, "client2",
     ["should carry ECT(1)", "ECT(0) 1900", "net.inet.tcp.cc.dctcp.ect1"]),
    ({"flows": [FlowProbe("client2", "dctcp", 5103, {0: 3, 1: 1900})]}, "server",
     ["no CE-marked packet", "IP header"]),
])
def test_each_failure_is_one_paragraph_naming_host_expectation_and_cause(changes, host, words):
    failures = check.judge(_evidence(**changes), SC).failures
    assert len(failures) == 1, failures
    text = failures[0]
    assert text.startswith(f"{host}: ") and "\n" not in text and "Likely cause" in text
    for w in words:
        assert w in text, (w, text)


def test_run_check_raises_one_user_error_with_every_failure(monkeypatch, tmp_path: Path):
    from l4stb.providers.sim import SimProvider

    ws = Workspace.at(tmp_path)
    base.TestbedInfo(provider="sim", topology="dumbbell-4").save(ws)
    monkeypatch.setattr(SimProvider, "self_check", lambda self, ctx: _evidence(module_loaded=False,
                                                                              log_lines_in_file=1))
    with pytest.raises(L4stbError) as err:
        check.run_check(ws)
    paragraphs = str(err.value).split("\n\n")
    assert paragraphs[0].startswith("l4stb check (sim testbed, scenario dctcp-8mbps): 2 of")
    assert len(paragraphs) == 3 and err.value.exit_code == 2


# -- logging headroom --------------------------------------------------------------------------------------


def test_the_headroom_scenario_runs_the_check_flows_at_four_times_the_peak_rate():
    base = load_scenario("dctcp-8mbps", ["bottleneck.rate_schedule=[{at: 2s, rate: 12Mbit}]"])
    higher = check.higher_rate_scenario(check.check_scenario(base), base)
    assert higher.bottleneck.rate == 48_000_000 and higher.bottleneck.rate_schedule == []
    assert [f.cc for f in higher.flows] == [f.cc for f in SC.flows] and higher.duration == SC.duration


def test_lines_lost_at_the_higher_rate_are_a_finding_with_the_sampling_to_use_not_a_failure():
    higher = check.higher_rate_scenario(SC, load_scenario("dctcp-8mbps"))
    res = check.CheckResult()
    check.judge_log_rate(_evidence(log_lines_in_file=9000, log_lines_counter=13200), higher, res)
    assert res.failures == [] and res.passed == [] and len(res.findings) == 1
    text = res.findings[0]
    for words in ("32 Mbit/s", "4200 of the 13200", "31.8 %", "2,640 lines/s", "logging.sample_every=2"):
        assert words in text, (words, text)
    complete = check.CheckResult()
    check.judge_log_rate(_evidence(log_lines_in_file=13200, log_lines_counter=13200), higher, complete)
    assert complete.findings == [] and complete.passed[0][0] == "log lines at 32 Mbit/s (4x)"


def test_check_measures_the_headroom_after_passing_and_up_does_not(monkeypatch, tmp_path: Path):
    from l4stb.providers.sim import SimProvider

    ws = Workspace.at(tmp_path)
    base.TestbedInfo(provider="sim", topology="dumbbell-4").save(ws)
    rates: list[int] = []

    def self_check(self, ctx):
        rates.append(ctx.scenario.bottleneck.rate)
        lost = 100 if len(rates) == 2 else 0
        return _evidence(log_lines_in_file=3300 - lost, provider="sim")

    monkeypatch.setattr(SimProvider, "self_check", self_check)
    result = check.run_check(ws)
    assert rates == [8_000_000, 32_000_000] and result.failures == [] and len(result.findings) == 1
    rates.clear()
    assert check.run_check(ws, log_headroom=False).findings == [] and rates == [8_000_000]


@pytest.mark.parametrize("cc, ecn, want", [("dctcp", True, check.ECT1), ("prague", False, check.ECT1),
                                           ("cubic", True, check.ECT0), ("newreno", False, check.NOT_ECT),
                                           ("dctcp", False, check.NOT_ECT)])
def test_expected_codepoint_follows_the_cc_and_the_scenario_ecn(cc, ecn, want):
    assert check.expected_codepoint(cc, SC.model_copy(update={"ecn": ecn})) == want


@pytest.mark.parametrize("ecn", [True, False])
def test_a_linux_hosts_dctcp_is_expected_to_send_ect0(ecn):
    """tcp_dctcp.c asks for ECN itself (TCP_CONG_NEEDS_ECN) and INET_ECN_xmit sets ECT(0); Prague stays ECT(1)."""
    sc = load_scenario("dctcp-8mbps", [f"ecn={str(ecn).lower()}", "hosts={client2: {stack: linux}}"])
    assert check.expected_codepoint("dctcp", sc, sc.host("client2").stack) == check.ECT0
    assert check.expected_codepoint("dctcp", sc, sc.host("client1").stack) == (check.ECT1 if ecn else check.NOT_ECT)
    assert check.expected_codepoint("prague", sc, "linux") == check.ECT1


# -- the vagrant side: FreeBSD-shaped outputs ---------------------------------------------------------

MODULE_OUT = """l4stb-module loaded
=== sched ===
00001:   8.000 Mbit/s   10 ms burst 0
q65537  50 sl. 0 flows (1 buckets) sched 1 weight 0 lmax 0 pri 0 droptail
 sched 1 type DUALPI2 flags 0x0 0 buckets 1 active
"""
"""`ipfw sched 1 show`: the DN_SCH line format is sbin/ipfw/dummynet.c's list_pipes."""

CAPTURE_OUT = "\n".join(f"l4stb-ecn {port} {cp} {n}" for port, counts in
                        {5101: (3, 0, 702, 118), 5102: (3, 0, 498, 87), 5103: (3, 331, 0, 1611)}.items()
                        for cp, n in enumerate(counts)) + "\n"


def test_module_output_is_parsed_into_loaded_and_scheduler_type():
    loaded, sched = check_steps.parse_module(MODULE_OUT)
    assert loaded is True and check_steps.sched_types(sched) == {1: "DUALPI2"}
    assert check_steps.parse_module("l4stb-module missing\n=== sched ===\nipfw: sched 1 not found\n") == (
        False, "ipfw: sched 1 not found")
    assert check_steps.parse_module("=== sched ===\n")[0] is None  # fifo: no module asked for


def test_capture_and_log_count_outputs_are_parsed():
    counts = check_steps.parse_ecn_counts("reading from file check.pcap\n" + CAPTURE_OUT)
    assert counts[5103] == {0: 3, 1: 331, 2: 0, 3: 1611}
    assert check_steps.parse_log_file_lines("l4stb-log-file-lines 3342\n") == 3342
    assert check_steps.parse_log_file_lines("bzcat: error\n") is None


def test_the_check_steps_run_after_the_right_phases_with_the_capture_on_the_server():
    topo = load_topology("dumbbell-4")
    after = check_steps.after_phases(SC, topo, "check-20250101T000000Z")
    assert set(after) <= {p.name for p in plans.run_phases(SC, topo, "check-20250101T000000Z", 1)}
    capture = after["start servers"].steps[0]
    assert capture.host == "server"
    assert "'ip and dst host 10.1.3.13 and (tcp or udp) and dst portrange 5101-5103'" in capture.script
    assert "tcpdump -r" in after["stop servers"].steps[0].script
    assert "ip[1] & 3 == $cp" in after["stop servers"].steps[0].script


def test_up_on_vagrant_ends_with_the_self_check_and_fails_with_its_paragraphs(monkeypatch, tmp_path: Path, capsys):
    from l4stb import cli
    from l4stb.providers.freebsd.vagrant import VagrantProvider

    def fake_up(self, topology):
        return base.TestbedInfo(provider="vagrant", topology=topology.name, hosts={h: {} for h in topology.hosts})

    monkeypatch.setattr(VagrantProvider, "up", fake_up)
    monkeypatch.setattr(VagrantProvider, "self_check", lambda self, ctx: _evidence(
        kern_hz={"client1": 1000, "client2": 1000, "router": 100, "server": 1000}))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--workdir", str(tmp_path / "w"), "up", "--provider", "vagrant"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "testbed up" not in err and "router: kern.hz is 100, expected 1000" in " ".join(err.split())
