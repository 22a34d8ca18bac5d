"""The AQM catalogue is the one place an AQM's defaults, integer parameters and testbed glue are read from."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
import typing

import pytest

from l4stb import aqm_catalogue as cat
from l4stb.config import Aqm, load_scenario


def test_every_aqm_a_scenario_may_name_has_a_record_and_policy_runs_on_its_fallbacks():
    names = set(typing.get_args(Aqm.model_fields["name"].annotation))
    assert names - {"policy"} == set(cat.AQMS)
    sc = load_scenario("dctcp-8mbps", ["aqm.name=policy", "aqm.policy=/nonexistent/blob"])
    assert cat.record(sc.aqm) is cat.AQMS["dualpi2"]


@pytest.mark.parametrize("name", sorted(cat.AQMS))
def test_the_simulator_runs_the_class_the_record_names(name):
    from l4stb.sim.runner import make_aqm

    module, _, cls = cat.AQMS[name].sim_class.rpartition(".")
    klass = getattr(importlib.import_module(module), cls)
    assert klass.name == name
    assert type(make_aqm(load_scenario("dctcp-8mbps", [f"aqm.name={name}"]), 1, None, None)) is klass


@pytest.mark.parametrize("name", sorted(set(cat.AQMS) - set(cat.CODEL_FAMILY)))
def test_every_pi_and_pie_aqm_defaults_to_the_one_classic_target(name):
    """15 ms is written once (CLASSIC_TARGET_US): resolved scenarios and both integer records read it."""
    assert Aqm(name=name).resolved().target == cat.CLASSIC_TARGET_US == 15_000
    assert cat.DualPI2Params().target_us == cat.PieParams().qdelay_ref == cat.CLASSIC_TARGET_US


@pytest.mark.parametrize("name", cat.CODEL_FAMILY)
def test_codel_aqms_default_to_rfc8289s_target_and_interval_and_fq_codel_to_its_queues(name):
    """CoDel's 5 ms / 100 ms are written once (CODEL_TARGET_US, CODEL_INTERVAL_US); the PI fields stay unset, so
    the manifest never shows a CoDel run with a PIE tupdate."""
    a = Aqm(name=name).resolved()
    assert (a.target, a.interval) == (cat.CODEL_TARGET_US, cat.CODEL_INTERVAL_US) == (5_000, 100_000)
    assert a.tupdate is None and a.alpha is None and a.beta is None
    assert (a.quantum, a.flows) == ((1514, 1024) if name == "fq_codel" else (None, None))
    prm = cat.CodelParams.from_aqm(Aqm(name=name, ecn=False), load_scenario("dctcp-8mbps").bottleneck)
    assert (prm.target_us, prm.interval_us, prm.ecn, prm.ce_threshold_us, prm.linux) == (5_000, 100_000, False, -1, False)


def test_resolving_fills_only_what_the_scenario_left_unset():
    a = Aqm(name="dualpi2", tupdate="32ms", beta=1.0).resolved()
    assert (a.target, a.tupdate, a.beta) == (15_000, 32_000, 1.0)
    assert a.alpha == pytest.approx(0.32)  # alpha follows tupdate: 0.16 Hz x 32 ms / 16 ms
    assert a.min_qlen_step == 0 and a.th_len is None
    pie = Aqm(name="pie", target="20ms").resolved()
    assert (pie.target, pie.tupdate, pie.alpha, pie.beta) == (20_000, 15_000, 0.125, 1.25)


def test_module_sysctls_carry_the_records_mode_and_the_catalogues_integers():
    from l4stb.providers.freebsd import plans

    for name, overrides in (("dualpi2", []), ("l4s-pie", ["aqm.name=l4s-pie"])):
        sc = load_scenario("dctcp-8mbps", overrides)
        got = dict(s.split("=", 1) for s in plans.aqm_sysctls(sc.aqm, sc))
        assert int(got[f"{plans.SYSCTL_ROOT}.mode"]) == cat.AQMS[name].module_mode
    sc = load_scenario("dctcp-8mbps")
    got = dict(s.split("=", 1) for s in plans.aqm_sysctls(sc.aqm, sc))
    prm = cat.DualPI2Params.from_aqm(sc.aqm, sc.bottleneck)
    assert all(int(got[f"{plans.SYSCTL_ROOT}.{f.name}"]) == getattr(prm, f.name) for f in dataclasses.fields(prm))
    assert plans.aqm_sysctls(load_scenario("dctcp-8mbps", ["aqm.name=pie"]).aqm, sc) == []


def test_the_vagrant_plan_builds_its_aqm_settings_without_loading_the_simulator():
    code = ("import sys; from l4stb.providers.freebsd import plans; from l4stb.config import load_scenario; "
            "sc = load_scenario('dctcp-8mbps'); plans.aqm_sysctls(sc.aqm, sc); "
            "print([m for m in sys.modules if m.startswith('l4stb.sim')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_report_reference_lines_are_the_records():
    from types import SimpleNamespace

    from l4stb.analysis.report import reference_lines_ms

    def run_of(scenario):  # a run as the report reads it: its scenario and the AQM its manifest recorded
        return SimpleNamespace(scenario=scenario, resolved_aqm=scenario.aqm.resolved())

    assert reference_lines_ms(run_of(load_scenario("dctcp-8mbps"))) == {"C": [("PI2 target", 15.0)],
                                                                        "L": [("L step threshold", 1.0)]}
    assert reference_lines_ms(run_of(load_scenario("dctcp-8mbps", ["aqm.name=fifo"]))) == {}
