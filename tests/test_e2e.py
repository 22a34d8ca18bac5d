"""The main job end to end, as a user types it: up, run, fetch-logs, train-and-report (short settings)."""

from __future__ import annotations

import json
import math
import re

import pytest

SECTIONS = ["Overview", "Queue delay", "Throughput", "Utilisation", "Fairness", "Actions", "Model training",
            "Classification on held-out data", "Cost: latency, throughput, memory",
            "Closed loop: learned policy vs DualPI2", "Parse statistics", "Provenance"]


def _sections(markdown: str) -> dict[str, str]:
    parts = re.split(r"^## ", markdown, flags=re.M)[1:]
    return {p.splitlines()[0].strip(): p for p in parts}


@pytest.mark.slow
def test_main_job_produces_a_report_with_real_numbers_in_every_section(l4stb, workdir):
    assert l4stb("up").exit_code == 0
    run = l4stb("run", "--scenario", "dctcp-8mbps", "--repeats", "3", "--set", "duration=8s")
    assert run.exit_code == 0, run.output
    assert l4stb("fetch-logs").exit_code == 0
    job = l4stb("train-and-report", "--epochs", "1", "--max-train-windows", "300", "--policy-every", "10")
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
    for title in ("Queue delay", "Classification on held-out data", "Closed loop: learned policy vs DualPI2"):
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
    summary = l4stb("summary", "--run", next(n for n in closed if n.endswith("llm-n10")), "--json")
    assert summary.exit_code == 0
    data = json.loads(summary.stdout)
    assert data["queues"]["C"]["packets"] > 0 and 0 < data["utilization"] <= 1
    status = l4stb("status").stdout
    assert "closed-loop" in status and "complete" in status
