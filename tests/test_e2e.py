"""The main job end to end, as a user types it: up, run, fetch-logs, train-and-report (short settings)."""

from __future__ import annotations

import json
import math
import re

import pytest

SECTIONS = ["Overview", "Queue delay", "Throughput", "Utilisation", "Fairness", "Actions", "Model training",
            "Classification on held-out data", "Cost: latency, throughput, memory",
            "Deployable policy (distilled decision tree)", "Closed loop: learned policy vs DualPI2", "Parse statistics", "Provenance"]


def _sections(markdown: str) -> dict[str, str]:
    parts = re.split(r"^## ", markdown, flags=re.M)[1:]
    return {p.splitlines()[0].strip(): p for p in parts}


@pytest.mark.slow
def test_main_job_produces_a_report_with_real_numbers_in_every_section(l4stb, workdir):
    assert l4stb("up").exit_code == 0
    run = l4stb("run", "--scenario", "dctcp-8mbps", "--repeats", "3", "--set", "duration=8s")
    assert run.exit_code == 0, run.output
    assert l4stb("fetch-logs").exit_code == 0
    job = l4stb("train-and-report", "--epochs", "1", "--max-train-windows", "300", "--policy-every", "10",
                "--jobs", "2")
    assert job.exit_code == 0, job.output
    assert "report:" in job.stdout and "macro-F1" in job.stdout

    run_dir = next((workdir / "runs").glob("dctcp-8mbps-*[0-9]Z"))
    report = run_dir / "report"
    html = (report / "index.html").read_text()
    assert "http://" not in html and "https://" not in html, "the report must work offline"
    sections = _sections((report / "summary.md").read_text())
    for title in SECTIONS:
        assert title in sections, f"section {title!r} missing from the report"
        body = sections[title]
        assert re.search(r"\d", body), f"section {title!r} holds no numbers"
    for title in ("Queue delay", "Classification on held-out data", "Deployable policy (distilled decision tree)",
                  "Closed loop: learned policy vs DualPI2"):
        rows = [line for line in sections[title].splitlines() if line.startswith("|") and "---" not in line][1:]
        assert rows, f"{title}: no table rows"
        assert not any(re.search(r"\bnan\b", r, re.I) for r in rows), f"{title}: NaN in {rows}"

    metrics = json.loads((run_dir / "model" / "tiny-gpt2" / "metrics.json").read_text())
    for value in (metrics["test"]["macro_f1"], metrics["test"]["accuracy"], metrics["test"]["balanced_accuracy"],
                  metrics["baselines"]["always_forward"]["macro_f1"], metrics["latency_ms"]["p50"],
                  metrics["latency_ms"]["p99"], metrics["train_seconds"]):
        assert isinstance(value, (int, float)) and math.isfinite(value)
    assert metrics["params"]["trainable"] < metrics["params"]["total"]
    epochs = (run_dir / "model" / "tiny-gpt2" / "metrics.jsonl").read_text().splitlines()
    epoch = json.loads(epochs[0])
    assert len(epochs) == 1 and epoch["val_macro_f1"] >= 0 and 0 <= epoch["train_macro_f1"] <= 1

    closed = sorted(p.name for p in (workdir / "runs").iterdir() if "-cl-" in p.name)
    assert any(name.endswith("-cl-llm-n10") for name in closed) and any("decision-tree" in n for n in closed)
    # the distilled tree: a blob the simulator ran in the closed loop, deciding every packet itself
    distilled = json.loads((run_dir / "model" / "tiny-gpt2-distilled" / "distill.json").read_text())
    assert distilled["blob"]["bytes"] <= 4096 and 0 <= distilled["agreement_with_teacher"] <= 1
    assert any(name.endswith("-cl-distilled") for name in closed)
    assert "distilled tree every 1" in sections["Closed loop: learned policy vs DualPI2"]
    summary = l4stb("summary", "--run", next(n for n in closed if n.endswith("llm-n10")), "--json")
    assert summary.exit_code == 0
    data = json.loads(summary.stdout)
    assert data["queues"]["C"]["packets"] > 0 and 0 < data["utilization"] <= 1
    status = l4stb("status").stdout
    assert "closed-loop" in status and "complete" in status
    _series_here_match_series_in_workers(workdir, run_dir)


def _series_here_match_series_in_workers(workdir, run_dir):
    """The job simulated its closed-loop series over 2 worker processes (one task per repeat); simulated again one
    after another in this process (`--jobs 1`), the learned policies decide exactly as they did there."""
    import pandas as pd
    from rich.console import Console
    from rich.progress import Progress

    from l4stb.analysis.packets import read_packets
    from l4stb.analysis.pool import load_pool
    from l4stb.manifest import load_manifest
    from l4stb.pipeline.closed_loop import _policies, _series_run, _simulate_all
    from l4stb.workspace import Workspace

    ws = Workspace(workdir)
    source = load_manifest(ws, run_dir.name)
    splits = load_pool(run_dir / "pool" / "paper7-paper")
    specs = [s for s in _policies(splits, run_dir / "model" / "tiny-gpt2" / "checkpoint", (10,), seed=0)
             if s[0] in ("llm-n10", "decision-tree")]
    repeats = sorted(int(k) for k in load_manifest(ws, f"{run_dir.name}-cl-llm-n10").repeats)
    runs = [(_series_run(ws, source, f"{slug}-here", repeats, {"policy": spec.label, "every": spec.every}), spec)
            for slug, spec in specs]
    with Progress(console=Console(quiet=True)) as progress:
        _simulate_all(ws, runs, progress, jobs=1)
    for (slug, _), (run_id, _) in zip(specs, runs):
        here, in_workers = read_packets(ws, run_id), read_packets(ws, f"{run_dir.name}-cl-{slug}")
        assert len(here) > 1000 and here["action"].nunique() > 1, slug
        pd.testing.assert_frame_equal(here, in_workers, obj=slug)
        for name in (run_id, f"{run_dir.name}-cl-{slug}"):
            latency = load_manifest(ws, name).steps["closed_loop"]["policy_latency_ms"]
            assert latency["n"] > 0 and latency["p99"] >= latency["p50"] > 0


@pytest.mark.slow
def test_generalisation_trains_on_some_runs_and_tests_on_a_held_out_scenario(l4stb, workdir):
    assert l4stb("up").exit_code == 0
    ids = []
    for rate in ("8Mbit", "12Mbit", "16Mbit"):
        out = l4stb("run", "--scenario", "dctcp-8mbps", "--repeats", "2", "--set", "duration=4s",
                    "--set", f"bottleneck.rate={rate}")
        assert out.exit_code == 0, out.output
        ids.append(re.search(r"run (dctcp-8mbps-\S+?),", out.stdout).group(1))
        assert l4stb("fetch-logs", "--run", ids[-1]).exit_code == 0
    job = l4stb("train-and-report", "--run", ids[0], "--run", ids[1], "--test-run", ids[2], "--epochs", "1",
                "--max-train-windows", "200", "--no-closed-loop")
    assert job.exit_code == 0, job.output
    meta = json.loads((workdir / "runs" / ids[0] / "pool" / "paper7-paper" / "meta.json").read_text())
    assert f"held-out runs {ids[2]}" in meta["split"]
    assert {e["run"] for e in meta["episodes"] if e["split"] == "test"} == {ids[2]}
    assert not {e["run"] for e in meta["episodes"] if e["split"] in ("train", "val")} & {ids[2]}
    summary = json.loads(l4stb("summary", "--run", ids[2], "--json").stdout)
    metrics = json.loads((workdir / "runs" / ids[0] / "model" / "tiny-gpt2" / "metrics.json").read_text())
    assert metrics["data"]["test_rows"] == sum(q["packets"] for q in summary["queues"].values())


@pytest.mark.slow
def test_a_trained_workdir_can_be_copied_elsewhere_and_re_rendered_whole(l4stb, workdir, tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    assert l4stb("up").exit_code == 0
    assert l4stb("run", "--scenario", "dctcp-8mbps", "--repeats", "3", "--set", "duration=4s").exit_code == 0
    assert l4stb("fetch-logs").exit_code == 0
    job = l4stb("train-and-report", "--epochs", "1", "--max-train-windows", "200", "--policy-every", "10")
    assert job.exit_code == 0, job.output
    run_dir = next((workdir / "runs").glob("dctcp-8mbps-*[0-9]Z"))
    before = _sections((run_dir / "report" / "summary.md").read_text())
    for record in [*workdir.rglob("manifest.json"), *workdir.rglob("headline.json"), *workdir.rglob("distill.json")]:
        assert str(workdir) not in record.read_text(), f"{record} stores an absolute path into the workdir"

    copy = tmp_path / "elsewhere" / "work"
    shutil.copytree(workdir, copy, symlinks=True)
    shutil.rmtree(workdir)
    env = dict(os.environ, L4STB_WORKDIR=str(copy), COLUMNS="200", NO_COLOR="1")

    def report() -> dict[str, str]:
        proc = subprocess.run([sys.executable, "-m", "l4stb.cli", "report", "--run", run_dir.name], env=env,
                              capture_output=True, text=True, cwd=tmp_path, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return _sections((copy / "runs" / run_dir.name / "report" / "summary.md").read_text())

    assert list(report()) == list(before), "every section is found in the copy"
    assert not workdir.exists(), "no command writes outside its workdir"
    # a manifest written by an older l4stb stored the model's absolute path: it is migrated on read
    manifest_file = copy / "runs" / run_dir.name / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["steps"]["train"]["model_dir"] = str(workdir / manifest["steps"]["train"]["model_dir"])
    manifest_file.write_text(json.dumps(manifest))
    assert list(report()) == list(before)
    assert not workdir.exists()
