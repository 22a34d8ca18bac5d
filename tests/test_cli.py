"""The CLI as a user meets it: help, the sim testbed lifecycle, and user errors without tracebacks."""

from __future__ import annotations

import json

import pytest

COMMANDS = ["up", "down", "status", "scenarios", "run", "fetch-logs", "summary", "report", "train-and-report",
            "pool", "import-logs", "check"]


def test_help_lists_every_command(l4stb):
    result = l4stb("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(l4stb, command):
    result = l4stb(command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.stdout


def test_version(l4stb):
    result = l4stb("--version")
    assert result.exit_code == 0 and "0.1.0" in result.stdout


def test_sim_testbed_lifecycle(l4stb, workdir):
    assert l4stb("up").exit_code == 0
    info = json.loads((workdir / "testbed.json").read_text())
    assert info["provider"] == "sim" and set(info["hosts"]) == {"client1", "client2", "router", "server"}
    assert all((workdir / "hosts" / h).is_dir() for h in info["hosts"])
    status = l4stb("status")
    assert status.exit_code == 0 and "running (simulated)" in status.stdout and "router" in status.stdout
    assert l4stb("scenarios").exit_code == 0
    assert l4stb("down").exit_code == 0
    assert not (workdir / "testbed.json").exists()
    assert (workdir / "hosts" / "router").is_dir(), "down without --destroy keeps unfetched host files"
    assert "no testbed is up" in l4stb("status").stdout


def test_up_twice_with_another_provider_is_refused(l4stb):
    assert l4stb("up").exit_code == 0
    result = l4stb("up", "--topology", "dumbbell-4-wide")
    assert result.exit_code == 2 and "already up" in result.stderr


def test_scenarios_lists_shipped_scenarios(l4stb):
    out = l4stb("scenarios").stdout
    for name in ("dctcp-8mbps", "prague-8mbps", "cubic-8mbps", "dctcp-8mbps-single", "paper-l4s-pie-10mbps-20ms"):
        assert name in out


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["run", "--scenario", "dctcp-8mbps"], "no testbed is up"),
        (["run", "--scenario", "dctcp-8mbp"], "did you mean 'dctcp-8mbps'"),
        (["up", "--topology", "dumbell-4"], "did you mean 'dumbbell-4'"),
        (["fetch-logs"], "no runs"),
        (["summary", "--run", "nope"], "no runs"),
        (["down"], "no testbed is up"),
        (["pool", "import", "/nonexistent.pkl"], "nonexistent.pkl"),
    ],
)
def test_user_errors_are_one_paragraph_without_traceback(l4stb, args, fragment):
    result = l4stb(*args)
    assert result.exit_code == 2
    assert fragment.lower() in result.stderr.lower()
    assert "Traceback" not in result.output


def test_bad_set_value_is_reported_before_anything_runs(l4stb, workdir):
    assert l4stb("up").exit_code == 0
    result = l4stb("run", "--scenario", "dctcp-8mbps", "--set", "bottleneck.rate=fast")
    assert result.exit_code == 2 and "bottleneck.rate" in result.stderr and "'fast'" in result.stderr
    assert "Traceback" not in result.output
    assert not (workdir / "runs").exists()


def test_workdir_comes_from_flag_or_env(l4stb, tmp_path):
    other = tmp_path / "elsewhere"
    assert l4stb("--workdir", str(other), "up").exit_code == 0
    assert (other / "testbed.json").is_file()


def test_resume_redoes_only_the_repeats_that_are_not_ok(l4stb, workdir):
    assert l4stb("up").exit_code == 0
    first = l4stb("run", "--scenario", "dctcp-8mbps-single", "--repeats", "3", "--set", "duration=2s")
    assert first.exit_code == 0, first.output
    run_dir = next((workdir / "runs").iterdir())
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    finished = {k: r["finished"] for k, r in manifest["repeats"].items()}
    manifest["repeats"]["2"]["status"] = "failed"  # as an interrupted or failed repeat leaves it
    manifest["status"] = "incomplete"
    manifest_path.write_text(json.dumps(manifest))
    again = l4stb("run", "--resume", run_dir.name)
    assert again.exit_code == 0, again.output
    after = json.loads(manifest_path.read_text())
    assert after["status"] == "complete"
    assert after["repeats"]["1"]["finished"] == finished["1"] and after["repeats"]["3"]["finished"] == finished["3"]
    assert after["repeats"]["2"]["status"] == "ok"


def test_status_shows_whole_run_ids_and_the_sweeps_and_fetch_all_leaves_fetched_runs_alone(l4stb, workdir):
    import os
    import subprocess
    import sys

    assert l4stb("up").exit_code == 0
    assert l4stb("run", "--scenario", "dctcp-8mbps-single", "--repeats", "1", "--set", "duration=2s",
                 "--sweep", "bottleneck.rate=8Mbit,12Mbit").exit_code == 0
    assert l4stb("fetch-logs", "--all").exit_code == 0
    manifests = {p: p.read_bytes() for p in (workdir / "runs").glob("*/manifest.json")}
    again = l4stb("fetch-logs", "--all")
    assert again.exit_code == 0 and "0 new" in again.stdout
    assert {p: p.read_bytes() for p in manifests} == manifests, "a run fetched before keeps its fetch record"
    env = dict(os.environ, L4STB_WORKDIR=str(workdir), COLUMNS="70", NO_COLOR="1")
    out = subprocess.run([sys.executable, "-m", "l4stb.cli", "status"], capture_output=True, text=True, env=env,
                         timeout=120).stdout
    for path in manifests:
        assert path.parent.name in out, f"{path.parent.name} is cut short in a 70-column terminal"
    (sweep,) = (workdir / "sweeps").glob("*.json")
    assert "sweeps" in out and sweep.stem in out and "2/2" in out


def test_distill_name_is_checked_before_anything_runs(l4stb):
    out = l4stb("distill", "--name", "../elsewhere")
    assert out.exit_code == 2 and "--name" in out.stderr


def test_train_and_report_help_names_every_preset_and_reward_and_explains_epochs(l4stb):
    from l4stb.analysis.pool_build import PRESETS, REWARDS

    text = " ".join(l4stb("train-and-report", "--help").stdout.split())
    for name in [*PRESETS, *REWARDS]:
        assert name in text, f"--help does not name {name}"
    assert "--epochs" in text and "Passes over the training windows" in text


def test_scenarios_show_prints_a_shipped_scenario_as_a_template(l4stb, tmp_path):
    from l4stb.config import load_scenario

    out = l4stb("scenarios", "--show", "prague-8mbps")
    assert out.exit_code == 0
    mine = tmp_path / "mine.yaml"
    mine.write_text(out.stdout)
    assert load_scenario(str(mine)) == load_scenario("prague-8mbps")
    bad = l4stb("scenarios", "--show", "prague-8mbp")
    assert bad.exit_code == 2 and "Did you mean 'prague-8mbps'" in bad.stderr
