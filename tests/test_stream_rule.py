"""One stream/port rule (``Scenario.streams``, ``Scenario.connection_port``): the simulator's flow ids, the vagrant
plan's server ports and delay-pipe ranges, the qemu guest's iperf3 ports and the flow labels all agree, so a flow
the FreeBSD module logs by its ports is named as the scenario's group and connection."""

from __future__ import annotations

from l4stb.analysis.flowview import flow_labels
from l4stb.config import Iperf3, load_scenario, load_topology
from l4stb.linuxvm import guest
from l4stb.providers.freebsd import plans


def test_streams_number_flows_in_scenario_order_with_one_port_per_connection():
    sc = load_scenario("dctcp-8mbps")  # 2x(-P 2) cubic, 2x(-P 2) newreno, 1 dctcp
    sc = sc.model_copy(update={"iperf3": Iperf3(base_port=6000)})
    got = [(s.fid, s.group, s.connection, s.stream, s.cc, s.port) for s in sc.streams()]
    assert got == [(0, 0, 1, 0, "cubic", 6000), (1, 0, 1, 1, "cubic", 6000),
                   (2, 0, 2, 0, "cubic", 6001), (3, 0, 2, 1, "cubic", 6001),
                   (4, 1, 1, 0, "newreno", 6002), (5, 1, 1, 1, "newreno", 6002),
                   (6, 1, 2, 0, "newreno", 6003), (7, 1, 2, 1, "newreno", 6003),
                   (8, 2, 1, 0, "dctcp", 6004)]
    assert [sc.connection_port(g, c) for g, c in ((0, 1), (0, 2), (1, 1), (1, 2), (2, 1))] == list(range(6000, 6005))


def test_the_vagrant_plan_and_the_qemu_guest_serve_the_ports_the_streams_name():
    sc = load_scenario("dctcp-8mbps", ["flows.1.extra_delay=5ms"])
    topo = load_topology("dumbbell-4")
    ports = {(s.group, s.connection): s.port for s in sc.streams()}
    procs = plans.processes(sc, topo, "dctcp-8mbps-20250101T000000Z", 1)
    assert {(p.group, p.connection): p.port for p in procs if p.side == "server"} == ports
    pipes = plans.delay_pipes(sc, topo)
    assert [p["ports"] for p in pipes] == [f"{ports[(1, 1)]}-{ports[(1, 2)]}"]
    lines = "\n".join(guest._iperf3_lines(sc, topo))
    assert all(f"-p {port} " in lines for port in ports.values())


def test_a_module_flow_id_is_labelled_by_its_destination_port():
    sc = load_scenario("dctcp-8mbps")
    dctcp = next(s for s in sc.streams() if s.cc == "dctcp")
    flow_id = (40001 << 16) | dctcp.port  # the module logs (source port << 16) | destination port
    label = flow_labels(sc, [flow_id])[flow_id]
    assert (label.host, label.cc, label.group, label.connection) == ("client2", "dctcp (FreeBSD)", 2, 1)
