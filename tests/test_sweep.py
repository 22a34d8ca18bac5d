"""Sweeps: the cross product of scenario values, resumable, on local cores or an existing Dask cluster."""

from __future__ import annotations

import json

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
