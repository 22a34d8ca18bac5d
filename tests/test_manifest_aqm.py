"""The manifest records the AQM a run ran, every default filled, and readers take it from there."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from l4stb.analysis.report import reference_lines_ms
from l4stb.analysis.summary import ParseStats, RunData
from l4stb.config import Scenario, load_scenario
from l4stb.errors import L4stbError
from l4stb.manifest import Manifest, aqm_record, load_manifest, run_aqm, save_manifest
from l4stb.workspace import Workspace


def _manifest(scenario, aqm) -> Manifest:
    return Manifest(run_id="r1", scenario=scenario.model_dump(mode="json"), aqm=aqm)


def test_the_recorded_aqm_survives_a_save_and_load(tmp_path):
    scenario = load_scenario("dctcp-8mbps")
    ws = Workspace.at(tmp_path / "work")
    ws.run_dir("r1").mkdir(parents=True)
    save_manifest(ws, _manifest(scenario, aqm_record(scenario)))
    aqm = run_aqm(load_manifest(ws, "r1"), scenario)
    assert aqm == scenario.aqm.resolved()
    assert (aqm.target, aqm.tupdate, aqm.beta) == (15_000, 16_000, 3.2)


def test_recorded_values_win_over_the_defaults_of_a_later_l4stb():
    scenario = load_scenario("dctcp-8mbps")
    assert scenario.aqm.tupdate is None  # the scenario leaves it to the default
    recorded = {**aqm_record(scenario), "tupdate": "20ms", "alpha": 0.2}  # as JSON writes them
    aqm = run_aqm(_manifest(scenario, recorded), scenario)
    assert (aqm.tupdate, aqm.alpha) == (20_000, 0.2)


def test_a_manifest_from_before_the_record_reads_with_todays_defaults():
    scenario = load_scenario("dctcp-8mbps")
    old = Manifest.model_validate({"run_id": "r1", "scenario": scenario.model_dump(mode="json")})
    assert old.aqm is None
    assert run_aqm(old, scenario) == scenario.aqm.resolved()


def test_an_aqm_derived_from_rtts_reads_back_with_its_rtts_and_gains():
    scenario = load_scenario("dctcp-8mbps").model_copy(
        update={"aqm": load_scenario("dctcp-8mbps").aqm.model_copy(update={"max_rtt": 100_000})})
    aqm = run_aqm(_manifest(scenario, aqm_record(scenario)), scenario)
    assert aqm.max_rtt == 100_000 and aqm.target == scenario.aqm.resolved().target
    assert aqm == scenario.aqm.resolved()


@pytest.mark.parametrize("change, field", [({"name": "pie"}, "aqm.name"), ({"alpha": -1.0}, "aqm.alpha"),
                                          ({"colour": "red"}, "aqm.colour")])
def test_a_record_that_does_not_resolve_the_scenario_is_a_damaged_manifest(change, field):
    scenario = load_scenario("dctcp-8mbps")
    with pytest.raises(L4stbError, match=f"run r1 is damaged: {field}"):
        run_aqm(_manifest(scenario, {**aqm_record(scenario), **change}), scenario)


def test_the_report_draws_the_targets_the_run_recorded_not_todays_defaults():
    scenario = load_scenario("dctcp-8mbps")
    manifest = _manifest(scenario, {**aqm_record(scenario), "target": "20ms"})  # as an older default might have been
    data = RunData("r1", manifest, scenario, 8e6, pd.DataFrame(), pd.DataFrame(), ParseStats())
    assert dict(reference_lines_ms(data)["C"])["PI2 target"] == 20.0


def test_a_run_records_its_resolved_aqm_in_the_manifest(l4stb, workdir):
    assert l4stb("up").exit_code == 0
    done = l4stb("run", "--scenario", "dctcp-8mbps-single", "--repeats", "1", "--set", "duration=1s",
                 "--set", "aqm.tupdate=20ms")
    assert done.exit_code == 0, done.output
    manifest = json.loads(next((workdir / "runs").glob("*/manifest.json")).read_text())
    assert manifest["scenario"]["aqm"]["target"] is None  # the scenario as written: target left to the default
    assert manifest["aqm"] == aqm_record(Scenario.model_validate(manifest["scenario"]))
    assert manifest["aqm"]["tupdate"] == "20ms" and manifest["aqm"]["target"] is not None
