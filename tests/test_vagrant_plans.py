"""The vagrant provider's per-host plans: golden files, quoting of every value, and the rules the plans encode."""

from __future__ import annotations

import copy
import os
import shlex
from pathlib import Path

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from l4stb.providers.freebsd import plans
from l4stb.config import Scenario, Topology, load_scenario, load_topology
from l4stb.errors import L4stbError
from l4stb.providers.base import RunContext
from l4stb.providers.freebsd.vagrant import VagrantProvider
from l4stb.workspace import Workspace

GOLDEN = Path(__file__).parent / "golden"
RUN_ID_FOR = {"dctcp-8mbps": "dctcp-8mbps-20250101T000000Z", "prague-8mbps": "prague-8mbps-20250101T000000Z",
              "fqcodel-8mbps": "fqcodel-8mbps-20250101T000000Z"}


def _check_golden(name: str, text: str) -> None:
    """Compare with tests/golden/<name>; L4STB_REGEN_GOLDEN=1 rewrites it (review the diff by eye)."""
    path = GOLDEN / name
    if os.environ.get("L4STB_REGEN_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"{path} is missing; create it with L4STB_REGEN_GOLDEN=1 and review it"
    assert text == path.read_text(), f"the plan differs from {path}; if intended, regenerate with L4STB_REGEN_GOLDEN=1"


def _run_plan(scenario: str, tmp_path: Path, repeat: int = 1) -> str:
    topo = load_topology("dumbbell-4")
    sc = load_scenario(scenario)
    ctx = RunContext(RUN_ID_FOR[scenario], sc, topo, Workspace.at(tmp_path))
    return VagrantProvider(ctx.workspace).plan_run(ctx, repeat).render()


@pytest.mark.parametrize("scenario", ["dctcp-8mbps", "prague-8mbps", "fqcodel-8mbps"])
def test_run_plan_matches_the_reviewed_golden_file(scenario: str, tmp_path: Path):
    _check_golden(f"vagrant-run-{scenario}.txt", _run_plan(scenario, tmp_path))


def test_up_plan_matches_the_reviewed_golden_file(tmp_path: Path):
    plan = VagrantProvider(Workspace.at(tmp_path)).plan_up(load_topology("dumbbell-4"))
    _check_golden("vagrant-up-dumbbell-4.txt", plan.render())


def test_run_plan_holds_the_right_commands_per_host(tmp_path: Path):
    text = _run_plan("dctcp-8mbps", tmp_path)
    sections = _sections(text)
    router = "\n".join(sections["router"])
    assert "ipfw pipe 1 config bw 8Mbit/s delay 10" in router
    assert "ipfw sched 1 config pipe 1 type dualpi2" in router
    assert "ipfw queue 1 config sched 1 queue 1000" in router
    assert "ipfw add 30000 set 7 queue 1 ip from 10.1.1.0/24,10.1.2.0/24 to 10.1.3.0/24 out" in router
    assert "ipfw -f flush" not in router, "flushing ipfw would cut SSH"
    assert "sysctl net.inet.ip.dummynet.dualpi2.target_us=15000" in router
    assert "'/var/log/dualpi2.log 644 100 9766 * JC'" in router
    assert "'kern.* -/var/log/dualpi2.log'" in router
    client1 = "\n".join(sections["client1"])
    assert client1.count("iperf3 -c 10.1.3.13") == 4
    assert "-P 2 -C cubic" in client1 and "-P 2 -C newreno" in client1
    client2 = "\n".join(sections["client2"])
    assert "sysctl net.inet.tcp.cc.dctcp.ect1=1" in client2 and "-C dctcp" in client2
    server = "\n".join(sections["server"])
    for port in range(5101, 5106):
        assert f"iperf3 -s -1 -J -p {port}" in server
    assert text.index("[router] reset logs") < text.index("[server] start servers") < text.index(
        "[client1] start clients together") < text.index("[client1] wait for clients") < text.index(
        "[server] stop servers") < text.index("[router] collect router logs")


def test_prague_runs_udp_prague_and_says_its_output_is_not_iperf3_json(tmp_path: Path):
    text = _run_plan("prague-8mbps", tmp_path)
    client2 = "\n".join(_sections(text)["client2"])
    assert "udp_prague_sender -a 10.1.3.13 -p 5105 -c" in client2
    assert "client2-prague-g2-c1.udp_prague.txt" in client2
    assert "not iperf3 JSON" in client2
    server = "\n".join(_sections(text)["server"])
    assert "udp_prague_receiver -p 5105" in server
    assert "-C prague" not in text


def _sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    host = None
    for line in text.splitlines():
        if line.startswith("## ["):
            host = line[4:line.index("]")]
            out.setdefault(host, [])
        elif host:
            out[host].append(line)
    return out


def test_client_start_delay_is_the_time_left_until_the_common_start(tmp_path: Path):
    topo, sc = load_topology("dumbbell-4"), load_scenario("dctcp-8mbps")
    sc = sc.model_copy(update={"flows": [sc.flows[0], sc.flows[2].model_copy(update={"start": 2_500_000})],
                               "start_jitter": 0})
    step = plans.start_clients_step(sc, topo, "x-1", 3, "client2", delay_s=4.25)
    assert "l4stb_spawn client2-dctcp-g1-c1.json 6.750 " in step.script
    assert "/var/l4stb/runs/x-1/r03/client2-dctcp-g1-c1.json" in step.script


def test_every_connection_gets_its_own_server_port():
    procs = plans.processes(load_scenario("dctcp-8mbps"), load_topology("dumbbell-4"), "r-1", 1)
    servers = [p for p in procs if p.side == "server"]
    assert [p.port for p in servers] == list(range(5101, 5106))
    assert {p.name for p in servers} == {f"server-{port}.json" for port in range(5101, 5106)}


def test_prague_with_parallel_streams_is_refused_with_advice():
    sc = load_scenario("prague-8mbps")
    bad = sc.model_copy(update={"flows": [sc.flows[2].model_copy(update={"parallel": 2})]})
    with pytest.raises(L4stbError, match="parallel: 1"):
        plans.processes(bad, load_topology("dumbbell-4"), "r-1", 1)


@pytest.mark.parametrize("rate, text", [(8_000_000, "8Mbit/s"), (500_000, "500Kbit/s"), (1_500_001, "1500001bit/s")])
def test_ipfw_bandwidth_keeps_the_exact_rate(rate: int, text: str):
    assert plans.ipfw_bandwidth(rate) == text


def test_delay_that_ipfw_cannot_express_is_a_user_error():
    assert plans.ipfw_delay_ms(10_000) == 10
    with pytest.raises(L4stbError, match="whole milliseconds"):
        plans.ipfw_delay_ms(10_500)


def test_endpoints_route_every_other_network_via_the_router():
    topo = load_topology("dumbbell-4")
    assert [(r.network, r.gateway) for r in plans.routes_for(topo, "client1")] == [
        ("10.1.2.0/24", "10.1.1.1"), ("10.1.3.0/24", "10.1.1.1")]
    assert [(r.network, r.gateway) for r in plans.routes_for(topo, "server")] == [
        ("10.1.1.0/24", "10.1.3.1"), ("10.1.2.0/24", "10.1.3.1")]


def test_messages_as_log_file_is_not_excluded_from_the_default_syslog_rules(tmp_path: Path):
    topo, sc = load_topology("dumbbell-4"), load_scenario("paper-l4s-pie-10mbps-20ms")
    text = plans.plan_of("x", plans.run_phases(sc, topo, "p-1", 1)).render()
    assert "sysctl net.inet.ip.dummynet.dualpi2.mode=1" in text
    assert "sysctl net.inet.ip.dummynet.dualpi2.tick_us=10000" in text
    assert "grep -vxF -e '!-dualpi2'" in text  # the exclusion is removed, not added
    assert "/var/l4stb/state/newsyslog-dualpi2.conf" in text


def test_run_id_with_a_trailing_newline_is_refused():
    sc, topo = load_scenario("dctcp-8mbps"), load_topology("dumbbell-4")
    with pytest.raises(L4stbError, match="invalid run id"):
        plans.run_phases(sc, topo, "dctcp-8mbps-20250101T000000Z\n", 1)


def test_facts_output_is_parsed_into_sections():
    text = "\n".join(["=== uname ===", "FreeBSD router 14.1-RELEASE-p5 FreeBSD 14.1-RELEASE-p5 GENERIC amd64",
                      "=== freebsd_version ===", "14.1-RELEASE-p5 14.1-RELEASE-p5 14.1-RELEASE-p6",
                      "=== kldstat ===", "Id Refs Address Size Name", " 1 20 0xffffffff80200000 1f3c6c0 kernel",
                      "=== sysctls ===", "kern.hz: 1000", "net.inet.tcp.cc.available: ", "CCmod D PCB count",
                      "cubic * 3", "net.inet.ip.dummynet.dualpi2.mode: 0"])
    facts = plans.parse_facts(text)
    assert facts["uname"].startswith("FreeBSD router")
    assert facts["sysctls"]["kern.hz"] == "1000"
    assert "cubic * 3" in facts["sysctls"]["net.inet.tcp.cc.available"]
    assert facts["sysctls"]["net.inet.ip.dummynet.dualpi2.mode"] == "0"
    assert len(facts["kldstat"]) == 2


# -- the template environment ---------------------------------------------------------------------------


def test_template_environment_refuses_missing_values():
    with pytest.raises(RuntimeError, match="undefined"):
        plans.render("configure_endpoint.sh.j2", host="client1", step="x")


def test_q_filter_quotes_and_refuses_structured_values():
    env = plans.make_env()
    hostile = "a b'; rm -rf / $(id) `id`\nnext"
    out = env.from_string("echo {{ v|q }}").render(v=hostile)
    assert shlex.split(out) == ["echo", hostile]
    with pytest.raises(TypeError):
        env.from_string("echo {{ v|q }}").render(v=["a", "b"])
    with pytest.raises(TypeError):
        env.from_string("echo {{ v|i }}").render(v="1; reboot")
    assert isinstance(env.undefined(), jinja2.StrictUndefined)


def test_every_template_value_goes_through_a_filter():
    """No ``{{ x }}`` without ``|q`` or ``|i`` in the shell templates, except in comments and the header."""
    import re

    from l4stb import resources

    for path in sorted(resources.templates_dir().glob("*.j2")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            for expr in re.findall(r"{{(.*?)}}", line):
                assert re.search(r"\|\s*[qi]\s*$", expr.strip()), f"{path.name}:{n}: unfiltered {{{{{expr}}}}}"


# -- hostile values never reach a plan unquoted ---------------------------------------------------------

HOSTILE_CHARS = " ;$()'\"`\n|&<>*?!{}[]#~\\\t"
PAYLOADS = ["zqx; reboot", "$(zqx)", "`zqx`", "zqx'b", 'zqx"b', "zqx\nreboot", "&& zqx", "| zqx", "zqx*",
            "../../zqx", "-rf /zqx", "$HOME/zqx", "' ; zqx ; '"]
"""Every hostile value carries the marker ``zqx``, so it can never coincide with text the plan has anyway."""

hostile = st.one_of(
    st.sampled_from(PAYLOADS),
    st.builds(lambda base, tail: base + "zqx" + tail,
              st.sampled_from(["client1", "lan1", "/var/log/x", "8Mbit", "10ms", "dualpi2", "cubic", "10.1.1.11/24",
                               "dctcp-8mbps", "vagrant", "5101", ""]),
              st.text(alphabet=st.sampled_from(list(HOSTILE_CHARS) + list("abz019./-")), min_size=0, max_size=12)),
)

SCENARIO_FIELDS = [("name",), ("flows", 0, "host"), ("flows", 2, "cc"), ("logging", "file"), ("logging", "compress"),
                   ("aqm", "name"), ("bottleneck", "rate"), ("bottleneck", "delay"), ("duration",),
                   ("iperf3", "base_port"), ("description",), ("topology",), ("aqm", "scheduler")]
TOPOLOGY_FIELDS = [("hosts", "client1", "interfaces", 0, "network"), ("hosts", "client1", "interfaces", 0, "address"),
                   ("hosts", "server", "interfaces", 0, "address"), ("name",), ("description",)]


def _set(data, path, value):
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _single_quoted_mask(text: str) -> list[bool]:
    """Per character of a POSIX sh script: True when it sits inside a '...' string (a tiny sh lexer)."""
    mask = [False] * len(text)
    state, i, word_start = "code", 0, True
    while i < len(text):
        ch = text[i]
        if state == "squote":
            if ch == "'":
                state = "code"
            else:
                mask[i] = True
        elif state == "dquote":
            if ch == "\\":
                i += 1
            elif ch == '"':
                state = "code"
        elif state == "comment":
            if ch == "\n":
                state = "code"
        else:
            if ch == "'":
                state = "squote"
            elif ch == '"':
                state = "dquote"
            elif ch == "\\":
                i += 1
            elif ch == "#" and word_start:
                state = "comment"
        word_start = ch in " \t\n;&|()"
        i += 1
    return mask


def _unquoted_occurrence(text: str, value: str) -> int | None:
    """Index of an occurrence of ``value`` not entirely inside a single-quoted shell string, or None."""
    mask = _single_quoted_mask(text)
    start = text.find(value)
    while start != -1:
        if not all(mask[start:start + len(value)]):
            return start
        start = text.find(value, start + 1)
    return None


def test_the_quote_checker_itself():
    script = "echo 'a b' \"c d\" e'\"'\"'f # 'g h'\nx"
    assert _unquoted_occurrence(script, "a b") is None
    assert _unquoted_occurrence(script, "c d") is not None
    assert _unquoted_occurrence(script, "g h") is not None  # in a comment: a newline would escape it


def _plan_text(sc: Scenario, topo: Topology, run_id: str, user: str) -> str:
    parts = [plans.plan_of("up", plans.up_phases(topo, ssh_user=user)).render(),
             plans.plan_of("run", plans.run_phases(sc, topo, run_id, 1)).render()]
    parts += [plans.facts_step(topo, h).script for h in topo.hosts]
    return "\n".join(parts)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=hostile, where=st.sampled_from(["scenario", "topology", "run_id", "ssh_user"]),
       field=st.integers(min_value=0, max_value=100))
def test_hostile_values_are_rejected_or_only_ever_quoted(value: str, where: str, field: int):
    sc_data = load_scenario("dctcp-8mbps").model_dump(mode="json")
    topo_data = load_topology("dumbbell-4").model_dump(mode="json")
    run_id, user = "dctcp-8mbps-20250101T000000Z", "vagrant"
    if where == "scenario":
        _set(sc_data, SCENARIO_FIELDS[field % len(SCENARIO_FIELDS)], value)
    elif where == "topology":
        _set(topo_data, TOPOLOGY_FIELDS[field % len(TOPOLOGY_FIELDS)], value)
    elif where == "run_id":
        run_id = value
    else:
        user = value
    try:
        sc = Scenario.model_validate(copy.deepcopy(sc_data))
        topo = Topology.model_validate(copy.deepcopy(topo_data))
        text = _plan_text(sc, topo, run_id, user)
    except (ValidationError, L4stbError):
        return  # validation refused it: it never reaches a plan
    if shlex.quote(value) == value:
        return  # nothing in it that a shell would interpret
    at = _unquoted_occurrence(text, value)
    assert at is None, f"{value!r} ({where}) appears unquoted: ...{text[max(0, at - 80):at + 80]!r}..."


def test_match_any_renders_the_original_rule_on_the_testbed_networks_only():
    """match: any is the original `ip from any to any` (both directions, both passes), restricted to the
    testbed's networks so the management NAT interface stays out of the pipe; the default is one pass out."""
    topo = load_topology("dumbbell-4")
    nets = "10.1.1.0/24,10.1.2.0/24,10.1.3.0/24"
    text = plans.plan_of("x", plans.run_phases(load_scenario("paper-l4s-pie-10mbps-20ms"), topo, "p-1", 1)).render()
    assert f"ipfw add 30000 set 7 queue 1 ip from {nets} to {nets}\n" in text
    text = plans.plan_of("x", plans.run_phases(load_scenario("dctcp-8mbps"), topo, "p-1", 1)).render()
    assert "ipfw add 30000 set 7 queue 1 ip from 10.1.1.0/24,10.1.2.0/24 to 10.1.3.0/24 out\n" in text


def test_the_module_hash_covers_the_uploaded_sources_only_not_the_generated_opt_headers():
    """The build writes opt_inet.h/opt_inet6.h into the module folder; hashing them made every next `up`
    rebuild an unchanged module."""
    topo = load_topology("dumbbell-4")
    step = next(s for p in plans.up_phases(topo) for s in p.steps if s.host == "router" and "dualpi2" in s.step)
    uploaded = [u.local.name for u in step.uploads if u.remote.startswith(plans.MODULE_DIR + "/")]
    line = next(ln for ln in step.script.splitlines() if ln.startswith("want="))
    assert line == f'want=$(for f in {" ".join(uploaded)} ; do cat "$src/$f"; done | sha256 -q)'
    assert not any(name.startswith("opt_") for name in uploaded)


def _steps_by_host(scenario: Scenario, phase: str) -> dict[str, str]:
    topo = load_topology("dumbbell-4")
    phases = {p.name: p for p in plans.run_phases(scenario, topo, RUN_ID_FOR["dctcp-8mbps"], 2)}
    return {s.host: s.script for s in phases[phase].steps}


def test_siftr_option_logs_each_client_into_its_repeat_folder_and_closes_the_log_when_its_flows_end():
    sc = load_scenario("dctcp-8mbps", ["siftr=true"])
    configure = _steps_by_host(sc, "configure")
    wait = _steps_by_host(sc, "wait for clients")
    for client in ("client1", "client2"):
        log = f"/var/l4stb/runs/{RUN_ID_FOR['dctcp-8mbps']}/r02/{client}.siftr.log"
        script = configure[client]
        assert f"net.inet.siftr.logfile={log}" in script
        assert script.index("net.inet.siftr.logfile=") < script.index("net.inet.siftr.enabled=1")
        assert "net.inet.siftr.enabled=0" in wait[client]
    assert "siftr" not in configure["router"] and "siftr" not in configure["server"]


def test_without_the_siftr_option_no_host_touches_siftr():
    sc = load_scenario("dctcp-8mbps")
    for phase in ("configure", "wait for clients", "stop servers"):
        assert not any("siftr" in script for script in _steps_by_host(sc, phase).values())


def test_each_client_waits_its_seeded_share_of_the_start_jitter():
    topo, sc = load_topology("dumbbell-4"), load_scenario("dctcp-8mbps", ["start_jitter=200ms"])
    procs = [p for p in plans.processes(sc, topo, "x-1", 3) if p.side == "client"]
    starts = [p.start_s for p in procs]
    assert len(set(starts)) == len(starts) and all(0 <= s < 0.2 for s in starts), "not in lockstep, within 200 ms"
    assert starts == [t / 1e6 for g in range(len(sc.flows)) for t in sc.connection_starts_us(sc.repeat_seed(3), g)]
    assert starts != [p.start_s for p in plans.processes(sc, topo, "x-1", 4) if p.side == "client"], "seeded per repeat"


def test_flows_with_server_cc_run_iperf3_without_c_on_the_hosts_default_ccs():
    """The SIFTR runs' setup: the client's CC by sysctl, no -C, the server's socket on the server's default."""
    sc, topo = load_scenario("freebsd-siftr-l4s-8mbps-10ms"), load_topology("dumbbell-4")
    clients = [p for p in plans.processes(sc, topo, "r-1", 1) if p.side != "server"]
    argv = {p.cc: " ".join(p.argv) for p in clients}
    assert "-C cubic" in argv["cubic"] and "-C" not in argv["newreno"] and "-C" not in argv["dctcp"]
    steps = {s.host: s.script for s in plans.configure_endpoint_steps(sc, topo, "r-1", 1)}
    assert "net.inet.tcp.cc.algorithm=newreno" in steps["client1"]
    assert "net.inet.tcp.cc.algorithm=dctcp" in steps["client2"]
    assert "net.inet.tcp.cc.algorithm=cubic" in steps["server"]
