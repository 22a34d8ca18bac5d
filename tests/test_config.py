"""Scenario and topology validation: good files load; each kind of bad value gets a clear message."""

from __future__ import annotations

import pytest

from l4stb.config import Scenario, load_scenario, load_topology, scenario_with
from l4stb.errors import L4stbError
from l4stb.resources import list_scenarios, list_topologies, playbooks_dir


@pytest.mark.parametrize("name", list_scenarios())
def test_every_shipped_scenario_validates(name):
    s = load_scenario(name)
    assert s.flows and s.repeats >= 1


@pytest.mark.parametrize("name", list_topologies())
def test_every_shipped_topology_validates(name):
    t = load_topology(name)
    assert t.router == "router" and t.server == "server" and set(t.clients) == {"client1", "client2"}


def test_paper_scenario_matches_the_paper_setup():
    s = load_scenario("dctcp-8mbps")
    assert s.bottleneck.rate == 8_000_000 and s.bottleneck.delay == 10_000
    assert s.duration == 60_000_000 and s.repeats == 10 and s.ecn and s.aqm.name == "dualpi2"
    groups = {(f.host, f.cc): (f.connections, f.parallel) for f in s.flows}
    assert groups == {("client1", "cubic"): (2, 2), ("client1", "newreno"): (2, 2), ("client2", "dctcp"): (1, 1)}
    assert s.total_streams == 9


def test_prague_scenario_swaps_only_client2():
    d, p = load_scenario("dctcp-8mbps"), load_scenario("prague-8mbps")
    assert [f.cc for f in p.flows] == ["cubic", "newreno", "prague"]
    assert d.bottleneck == p.bottleneck and d.aqm == p.aqm


def test_paper_pie_scenario_uses_the_original_regime():
    s = load_scenario("paper-l4s-pie-10mbps-20ms")
    assert s.aqm.name == "l4s-pie" and s.aqm.kern_hz == 100
    assert s.bottleneck.rate == 10_000_000 and s.bottleneck.delay == 20_000


def test_set_overrides_go_through_validation():
    s = load_scenario("dctcp-8mbps", ["bottleneck.rate=20Mbit", "duration=30s", "aqm.target=5ms"])
    assert s.bottleneck.rate == 20_000_000 and s.duration == 30_000_000 and s.aqm.target == 5000


def test_set_reaches_a_section_whose_name_holds_a_digit():
    """``iperf3.*`` was refused as "not a field path": the first part of a key allowed letters only."""
    s = load_scenario("dctcp-8mbps", ["iperf3.base_port=5301"])
    assert s.iperf3.base_port == 5301 and s.connection_port(0, 1) == 5301


def test_aqm_defaults_follow_the_chosen_aqm():
    assert load_scenario("dctcp-8mbps").aqm.resolved().tupdate == 16_000
    assert load_scenario("paper-l4s-pie-10mbps-20ms").aqm.resolved().tupdate == 15_000


@pytest.mark.parametrize(
    "override, expected",
    [
        ("bottleneck.rat=20Mbit", ["bottleneck has no field 'rat'", "did you mean 'rate'"]),
        ("bottleneck.rate=20Mbt", ["bottleneck.rate", "'20Mbt'", "8Mbit"]),
        ("bottleneck.rate=50Gbit", ["out of range"]),
        ("duration=30", ["duration", "with a unit"]),
        ("duration=2.5s", ["whole number of seconds"]),
        ("aqm.name=dualpi", ["aqm.name", "dualpi2, l4s-pie, pie, fifo", "did you mean 'dualpi2'"]),
        ("flows.0.cc=cubik", ["flows.0.cc", "did you mean 'cubic'"]),
        ("flows.0.host=client9", ["client9", "client1, client2"]),
        ("repeats=0", ["repeats", "greater than or equal to 1"]),
        ("flows.7.cc=cubic", ["not an index"]),
        ("bottleneck", ["KEY=VALUE"]),
        ("Bottleneck.Rate=1Mbit", ["not a field path"]),
        # tc reads MBps (and, case-insensitively, Mbps) as megabytes per second: refused with both spellings
        ("bottleneck.rate=8MBps", ["ambiguous", "8Mbit", "64Mbit"]),
        ("bottleneck.rate=8Mbps", ["ambiguous", "8Mbit", "64Mbit"]),
        ("bottleneck.rate_schedule=[{at: 70s, rate: 4Mbit}]", ["rate_schedule.0.at = 70s", "never change"]),
    ],
)
def test_bad_override_names_field_value_and_what_is_allowed(override, expected):
    with pytest.raises(L4stbError) as err:
        load_scenario("dctcp-8mbps", [override])
    for fragment in expected:
        assert fragment in str(err.value)


def test_bad_scenario_file_names_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nflows:\n  - {host: client1, cc: bbr}\nbottlenek: {rate: 8Mbit}\n")
    with pytest.raises(L4stbError) as err:
        load_scenario(str(path))
    text = str(err.value)
    assert str(path) in text and "flows.0.cc" in text and "'bbr'" in text and "did you mean 'bottleneck'" in text


def test_unparseable_yaml_is_a_user_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(L4stbError, match="not valid YAML"):
        load_scenario(str(path))


def test_unknown_scenario_suggests_the_closest_name():
    with pytest.raises(L4stbError, match="(?i)did you mean 'dctcp-8mbps'"):
        load_scenario("dctcp-8mbp")


def test_hostile_names_are_rejected_before_they_reach_a_command(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: evil\nflows:\n  - {host: 'client1; rm -rf /', cc: cubic}\n")
    with pytest.raises(L4stbError, match="flows.0.host"):
        load_scenario(str(path))


def test_scenario_with_applies_sweep_values():
    s = scenario_with(load_scenario("dctcp-8mbps"), {"bottleneck.rate": "50Mbit", "bottleneck.delay": "40ms"})
    assert s.bottleneck.rate == 50_000_000 and s.bottleneck.delay == 40_000


def test_repeat_seeds_are_distinct_and_stable():
    s = load_scenario("dctcp-8mbps")
    seeds = [s.repeat_seed(r) for r in range(1, 11)]
    assert len(set(seeds)) == 10 and seeds == [load_scenario("dctcp-8mbps").repeat_seed(r) for r in range(1, 11)]


def test_aqm_policy_every_is_refused_with_the_key_that_works_and_old_manifests_still_load(tmp_path):
    """``aqm.policy_every`` was a field nothing read; ``aqm.every`` is the policy's share. A value other than the old
    default is a user's mistake (refused, naming ``every``); manifests written with the old default still load."""
    with pytest.raises(L4stbError, match="did you mean 'every'"):
        load_scenario("dctcp-8mbps", ["aqm.policy_every=3"])
    path = tmp_path / "s.yaml"
    path.write_text((playbooks_dir() / "dctcp-8mbps.yaml").read_text().replace("  ecn: true\nflows", "  ecn: true\n"
                                                                         "  policy_every: 3\nflows"))
    with pytest.raises(L4stbError, match="aqm.every"):
        load_scenario(str(path))
    sc = load_scenario("dctcp-8mbps")
    old = sc.model_dump(mode="json")
    old["aqm"]["policy_every"] = 1
    assert Scenario.model_validate(old) == sc
    assert "policy_every" not in sc.model_dump()["aqm"]
