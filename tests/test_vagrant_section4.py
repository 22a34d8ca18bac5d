"""The vagrant plan renders the section-4 scenario fields FreeBSD can run and refuses, with advice, what it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from l4stb.providers.freebsd import plans
from l4stb.config import load_scenario, load_topology
from l4stb.errors import L4stbError
from l4stb.providers.base import RunContext
from l4stb.providers.freebsd.vagrant import VagrantProvider
from l4stb.workspace import Workspace

RUN_ID = "s4-20250101T000000Z"


def plan_text(tmp_path: Path, *overrides: str) -> str:
    topo = load_topology("dumbbell-4")
    sc = load_scenario("dctcp-8mbps", list(overrides))
    ctx = RunContext(RUN_ID, sc, topo, Workspace.at(tmp_path))
    return VagrantProvider(ctx.workspace).plan_run(ctx, 1).render()


def test_a_linux_stack_is_refused_on_the_all_freebsd_testbed(tmp_path):
    with pytest.raises(L4stbError) as err:
        plan_text(tmp_path, "hosts={client2: {stack: linux}}")
    assert "client2" in str(err.value) and "FreeBSD 14.1" in str(err.value) and "sim provider" in str(err.value)


def test_any_ect_classifier_is_refused_with_advice_on_the_freebsd_module(tmp_path):
    with pytest.raises(L4stbError) as err:
        plan_text(tmp_path, "aqm.l4s_classifier=any_ect")
    assert "l4s_ect" in str(err.value) and "dctcp.ect1=1" in str(err.value) and "sim provider" in str(err.value)
    assert "ipfw" in plan_text(tmp_path, "aqm.l4s_classifier=l4s_ect")  # the module's own classifier renders


def test_the_htb_shaper_is_refused_on_the_dummynet_router(tmp_path):
    with pytest.raises(L4stbError, match="dummynet pipe"):
        plan_text(tmp_path, "bottleneck.shaper=htb")


def test_tcp_prague_is_refused_on_freebsd(tmp_path):
    with pytest.raises(L4stbError, match="no TCP Prague"):
        plan_text(tmp_path, "flows=[{host: client2, cc: prague}]", "hosts={client2: {prague_transport: tcp}}")


def test_on_off_udp_is_refused_with_advice(tmp_path):
    with pytest.raises(L4stbError, match="on-off"):
        plan_text(tmp_path, "flows=[{host: client1, cc: udp, rate: 2Mbit, on_time: 1s, off_time: 1s}]")


def test_extra_delay_becomes_a_dummynet_pipe_on_the_routers_input_pass(tmp_path):
    """hosts.client2.extra_delay 20ms + the group's 10ms: one pipe of 30 ms matched on client2's TCP to the
    server's ports of that group, numbered below the queue rule."""
    text = plan_text(tmp_path, "flows=[{host: client1, cc: cubic}, {host: client2, cc: dctcp, connections: 2, "
                               "extra_delay: 10ms}]", "hosts={client2: {extra_delay: 20ms}}")
    topo = load_topology("dumbbell-4")
    assert "ipfw pipe 11 config delay 30" in text
    assert (f"ipfw add 29000 set 7 pipe 11 tcp from {topo.address('client2')} to {topo.address(topo.server)} "
            "dst-port 5102-5103 in") in text
    assert "pipe 12" not in text  # client1's group has no extra delay


def test_extra_delay_under_match_any_is_refused(tmp_path):
    with pytest.raises(L4stbError, match="one_pass"):
        plan_text(tmp_path, "flows=[{host: client1, cc: cubic, extra_delay: 5ms}]", "bottleneck.match=any")


def test_constant_rate_udp_is_iperf3_u_with_its_ecn_field(tmp_path):
    text = plan_text(tmp_path, "flows=[{host: client1, cc: udp, rate: 3Mbit, ecn: ect1}]")
    server = load_topology("dumbbell-4").address("server")
    assert f"iperf3 -c {server} -p 5101 -u -b 3000000 -l 1448 -t 60 -S 1 -P 1 -i 1 -J" in text
    assert "-C udp" not in text


def test_short_flows_run_iperf3_n_at_the_simulators_poisson_starts(tmp_path):
    sc = load_scenario("dctcp-8mbps", ["flows=[{host: client1, cc: cubic, connections: 3, size: 100KB, mean_gap: 1s}]"])
    procs = [p for p in plans.processes(sc, load_topology("dumbbell-4"), RUN_ID, 2) if p.side == "client"]
    assert [p.start_s for p in procs] == [t / 1e6 for t in sc.connection_starts_us(sc.repeat_seed(2), 0)]
    assert all(("-n", "100000") == tuple(p.argv[5:7]) for p in procs)


def test_rate_schedule_runs_on_the_router_at_the_common_start_from_an_uploaded_file(tmp_path):
    """The router starts the helper with the clients; the steps travel as a file the configure step uploads
    (never inline), one `AT_US PIPE BW DELAY_MS` line per step at its exact microsecond."""
    sc = load_scenario("dctcp-8mbps", ["bottleneck.rate_schedule=[{at: 10s, rate: 4Mbit}, {at: 20500ms, rate: 8Mbit}]"])
    topo = load_topology("dumbbell-4")
    assert topo.router in plans.starting_hosts(sc, topo)
    (proc,) = [p for p in plans.processes(sc, topo, RUN_ID, 1) if p.kind == "rate_schedule"]
    assert proc.argv == (plans.RATESCHED_BIN, plans.rate_schedule_remote(RUN_ID, 1))
    configure = next(s for p in plans.run_phases(sc, topo, RUN_ID, 1) for s in p.steps
                     if s.host == topo.router and s.step.startswith("configure"))
    (upload,) = [u for u in configure.uploads if u.text is not None]
    assert upload.remote == plans.rate_schedule_remote(RUN_ID, 1)
    steps = [ln for ln in upload.text.splitlines() if not ln.startswith("#")]
    assert steps == ["10000000 1 4Mbit/s 10", "20500000 1 8Mbit/s 10"]
    text = plan_text(tmp_path, "bottleneck.rate_schedule=[{at: 10s, rate: 4Mbit}]")
    assert "router-rate-schedule.txt" in text and "# upload rate-schedule.txt (generated, 1 line)" in text
    assert "4Mbit/s" not in text, "the steps are uploaded, not pasted into a command"


def test_sampled_logging_sets_log_every_before_the_scheduler_instance_is_created(tmp_path):
    """The module copies log_every into an instance when dummynet creates it (the first packet after `ipfw sched
    config`), so the sysctl must come before that line; unsampled runs reset it to 1."""
    text = plan_text(tmp_path, "logging.sample_every=10")
    assert "sysctl net.inet.ip.dummynet.dualpi2.log_every=10" in text
    assert text.index("dualpi2.log_every=10") < text.index("ipfw sched 1 config pipe 1 type dualpi2")
    assert "sysctl net.inet.ip.dummynet.dualpi2.log_every=1\n" in plan_text(tmp_path)
    assert "for c in log_lines decisions instances_created instances_freed" in text
