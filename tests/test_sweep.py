"""Sweeps: the cross product of scenario values, resumable, on local cores or an existing Dask cluster."""

from __future__ import annotations

import json
import shutil
import tempfile

import pytest

from l4stb.errors import L4stbError
from l4stb.sweep import combinations, parse_axes

SWEEP = ["--scenario", "dctcp-8mbps-single", "--repeats", "1", "--set", "duration=2s",
         "--sweep", "bottleneck.rate=8Mbit,20Mbit", "--sweep", "bottleneck.delay=5ms,10ms"]


def test_axes_make_the_cross_product():
    axes = parse_axes(["bottleneck.rate=8Mbit,20Mbit,50Mbit", "bottleneck.delay=5ms,10ms,40ms"])
    combos = combinations(axes)
    assert len(combos) == 9 and {"bottleneck.rate": "50Mbit", "bottleneck.delay": "5ms"} in combos


@pytest.mark.parametrize("bad", ["bottleneck.rate", "bottleneck.rate=", "x=1,2 "])
def test_malformed_sweep_is_a_user_error(bad):
    if bad == "x=1,2 ":
        assert parse_axes([bad]) == {"x": ["1", "2"]}
        return
    with pytest.raises(L4stbError):
        parse_axes([bad])


def test_dry_run_lists_combinations_and_runs_nothing(l4stb, workdir):
    assert l4stb("up").exit_code == 0
    out = l4stb("run", *SWEEP, "--dry-run")
    assert out.exit_code == 0, out.output
    assert out.stdout.count("to run") == 4 and "20Mbit" in out.stdout
    assert not (workdir / "runs").exists()


def test_a_bad_value_in_any_combination_fails_before_anything_runs(l4stb, workdir):
    assert l4stb("up").exit_code == 0
    out = l4stb("run", "--scenario", "dctcp-8mbps-single", "--sweep", "bottleneck.rate=8Mbit,fast")
    assert out.exit_code == 2 and "'fast'" in out.stderr
    assert not (workdir / "runs").exists()


@pytest.mark.slow
def test_sweep_runs_every_combination_and_resume_skips_the_done_ones(l4stb, workdir):
    assert l4stb("up").exit_code == 0
    first = l4stb("run", *SWEEP, "--jobs", "2")
    assert first.exit_code == 0, first.output
    runs = sorted(p.name for p in (workdir / "runs").iterdir())
    assert len(runs) == 4
    rates = set()
    for run in runs:
        m = json.loads((workdir / "runs" / run / "manifest.json").read_text())
        assert m["status"] == "complete"
        rates.add((m["scenario"]["bottleneck"]["rate"], m["scenario"]["bottleneck"]["delay"]))
    assert rates == {("8Mbit", "5ms"), ("8Mbit", "10ms"), ("20Mbit", "5ms"), ("20Mbit", "10ms")}
    again = l4stb("run", *SWEEP, "--resume")
    assert again.exit_code == 0 and "4 already complete (skipped)" in again.stdout
    assert sorted(p.name for p in (workdir / "runs").iterdir()) == runs


@pytest.mark.slow
def test_sweep_runs_on_a_dask_cluster(l4stb, workdir):
    pytest.importorskip("dask.distributed", reason="dask[distributed] is not installed")
    assert l4stb("up").exit_code == 0
    out = l4stb("run", "--scenario", "dctcp-8mbps-single", "--repeats", "1", "--set", "duration=2s",
                "--sweep", "bottleneck.rate=8Mbit,20Mbit", "--executor", "dask")
    assert out.exit_code == 0, out.output
    assert len(list((workdir / "runs").iterdir())) == 2


def test_joint_axes_step_together_inside_the_cross_product():
    from l4stb.sweep import parse_joint

    axes = parse_axes(["bottleneck.rate=8Mbit,20Mbit"])
    joint = parse_joint(["hosts.client1.stack=linux,freebsd", "hosts.client2.stack=linux,freebsd"], axes)
    combos = combinations(axes, joint)
    assert len(combos) == 4
    assert all(c["hosts.client1.stack"] == c["hosts.client2.stack"] for c in combos)
    with pytest.raises(L4stbError, match="as many values"):
        parse_joint(["a=1,2", "b=1"], {})
    with pytest.raises(L4stbError, match="both --sweep and --sweep-zip"):
        parse_joint(["bottleneck.rate=1Mbit"], parse_axes(["bottleneck.rate=8Mbit"]))


def test_sweep_run_names_tell_keys_with_the_same_last_part_apart():
    from l4stb.runner import sweep_slug

    slug = sweep_slug({"hosts.client1.stack": "linux", "hosts.client2.stack": "freebsd", "bottleneck.rate": "8Mbit"})
    assert slug == "client1.stack-linux_client2.stack-freebsd_rate-8Mbit"


@pytest.mark.slow
def test_a_sweep_over_your_own_yaml_is_found_by_every_later_sweep_command(l4stb, workdir, tmp_path):
    scen = tmp_path / "scen" / "x.yaml"
    scen.parent.mkdir()
    scen.write_text("name: mine\ntopology: dumbbell-4\nduration: 2s\nrepeats: 1\nseed: 1\n"
                    "bottleneck: {rate: 8Mbit, delay: 10ms}\naqm: {name: dualpi2}\n"
                    "flows:\n  - {host: client1, cc: cubic}\n  - {host: client2, cc: dctcp}\n")
    assert l4stb("up").exit_code == 0
    out = l4stb("run", "--scenario", str(scen), "--sweep", "bottleneck.rate=8Mbit,12Mbit",
                "--sweep", "bottleneck.delay=5ms,10ms", "--sweep-zip", "hosts.client1.stack=linux,freebsd",
                "--sweep-zip", "hosts.client2.stack=freebsd,linux")
    assert out.exit_code == 0, out.output
    (record,) = (workdir / "sweeps").glob("*.json")
    assert record.name.startswith("mine-"), "the sweep id is the scenario's name, not its path"
    assert not list(scen.parent.glob("*.json")) and not (workdir / "sweeps" / "scen").exists()
    sweep_id = record.stem
    assert sweep_id in out.stdout
    assert l4stb("fetch-logs", "--sweep", sweep_id).exit_code == 0
    summary = l4stb("summary", "--sweep", sweep_id, "--json")
    assert summary.exit_code == 0, summary.output
    runs = [p.name for p in (workdir / "runs").iterdir()]
    assert len(runs) == 8 and all("client1.stack-" in r and "client2.stack-" in r for r in runs)
    import l4stb as api

    loaded = api.load_sweep(sweep_id, workdir=workdir)
    assert loaded.sweep_id == sweep_id and len(loaded.table) == 8 and sorted(loaded.runs) == sorted(runs)
    assert {"bottleneck.rate", "hosts.client1.stack", "run_id", "utilization_pct"} <= set(loaded.table.columns)
    rep = l4stb("report", "--sweep", sweep_id)  # three independent axes: one line per combination of the others
    assert rep.exit_code == 0, rep.output
    assert (workdir / "sweeps" / sweep_id / "report" / "index.html").is_file()


def _sweep_artifacts(workdir) -> dict[str, dict[str, str]]:
    """{combination values: {host/relative path: sha256}} of every file the sweep's runs left on the hosts."""
    import hashlib

    out = {}
    for manifest in (workdir / "runs").glob("*/manifest.json"):
        m = json.loads(manifest.read_text())
        run_id = m["run_id"]
        files = {}
        for f in sorted((workdir / "hosts").glob(f"*/**/{run_id}/**/*")):
            if f.is_file():
                rel = f.relative_to(workdir / "hosts").as_posix().replace(run_id, "<run>")
                files[rel] = hashlib.sha256(f.read_bytes()).hexdigest()
        assert m["status"] == "complete" and files, run_id
        out[json.dumps(m["sweep"]["values"], sort_keys=True)] = files
    return out


@pytest.mark.slow
def test_sweep_on_a_local_ray_cluster_gives_the_local_executors_results(l4stb, workdir, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'l4stb[test]')")
    sweep = ["run", "--scenario", "dctcp-8mbps-single", "--repeats", "1", "--set", "duration=2s",
             "--sweep", "bottleneck.rate=8Mbit,20Mbit"]
    assert l4stb("up").exit_code == 0
    local = l4stb(*sweep, "--executor", "local", "--jobs", "1")
    assert local.exit_code == 0, local.output
    expected = _sweep_artifacts(workdir)
    assert len(expected) == 2
    shutil.rmtree(workdir)

    # a local cluster of its own (not the caller's), which the CLI joins through RAY_ADDRESS as a user's would
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _temp_dir=tempfile.mkdtemp(prefix="ray"))  # short: ray.s socket paths must fit in 107 bytes
    try:
        monkeypatch.setenv("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
        assert l4stb("up").exit_code == 0
        on_ray = l4stb(*sweep, "--executor", "ray")
        assert on_ray.exit_code == 0, on_ray.output
        assert "on the ray executor" in on_ray.stdout
    finally:
        ray.shutdown()
    assert _sweep_artifacts(workdir) == expected
