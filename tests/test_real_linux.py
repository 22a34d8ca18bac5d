"""Ground truth: a real Linux kernel (Debian's, under QEMU) with the real sch_dualpi2, against the simulator.

These tests boot real VMs, so they are slow; they are also the project's ground truth, so they never skip:
without QEMU, debootstrap or the Debian registry the provider's one-paragraph error makes them fail loudly.
``L4STB_QEMU_CACHE`` (default below) keeps the downloads, the build chroot and the image between runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.realkernel]

CACHE = Path(os.environ.get("L4STB_QEMU_CACHE", Path.home() / ".cache" / "l4stb-test-qemu"))


@pytest.fixture(scope="module")
def qemu_workdir(tmp_path_factory) -> Path:
    """One qemu testbed for the module: `l4stb up --provider qemu` as a user runs it."""
    import subprocess
    import sys

    workdir = tmp_path_factory.mktemp("qemu") / "work"
    env = dict(os.environ, L4STB_WORKDIR=str(workdir), L4STB_QEMU_CACHE=str(CACHE), COLUMNS="200", NO_COLOR="1")
    proc = subprocess.run([sys.executable, "-m", "l4stb.cli", "up", "--provider", "qemu"], env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"l4stb up --provider qemu failed:\n{proc.stdout}\n{proc.stderr}"
    return workdir


def _cli(workdir: Path, *args: str, timeout: float = 1800):
    import subprocess
    import sys

    env = dict(os.environ, L4STB_WORKDIR=str(workdir), L4STB_QEMU_CACHE=str(CACHE), COLUMNS="200", NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "l4stb.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_a_linux_scenario_runs_fetches_and_summarises_on_the_real_kernel(qemu_workdir):
    run = _cli(qemu_workdir, "run", "--scenario", "dctcp-8mbps-single", "--repeats", "1",
               "--set", "duration=8s", "--set", "aqm.l4s_classifier=any_ect")
    assert run.returncode == 0, run.stdout + run.stderr
    fetch = _cli(qemu_workdir, "fetch-logs")
    assert fetch.returncode == 0, fetch.stdout + fetch.stderr
    summary = _cli(qemu_workdir, "summary", "--json")
    assert summary.returncode == 0, summary.stdout + summary.stderr
    doc = json.loads(summary.stdout)
    doc = doc[0] if isinstance(doc, list) else doc
    assert "real Linux kernel" in doc["testbed"]
    l_queue = doc["queues"]["L"]
    assert l_queue["packets"] > 1000  # any_ect puts Linux's ECT(0) DCTCP in the L queue
    assert doc["queues"]["C"]["packets"] == 0
    assert doc["parse"]["skipped"] == {} or sum(doc["parse"]["skipped"].values()) == 0


def test_check_passes_on_the_real_kernel(qemu_workdir):
    res = _cli(qemu_workdir, "check", "--scenario", "dctcp-8mbps-single")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "capture on router" in res.stdout and "ECT(0)" in res.stdout


def test_the_ci_calibration_cells_agree_with_the_real_kernel(qemu_workdir):
    """One DCTCP and Cubic + DCTCP at 8 Mbit/s, 10 s, 2 repeats each (CI time), sim (Linux stack) against real Linux:
    utilisation, shares and mark rates within their bands (analysis/calibration.py)."""
    res = _cli(qemu_workdir, "calibrate", "--matrix", "ci", "--repeats", "2", "--duration", "10")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads((qemu_workdir / "calibration" / "report-ci" / "calibration.json").read_text())
    judged = [r for r in doc["rows"] if r["verdict"] != "undefined"
              and (r["metric"] == "utilisation" or r["metric"].startswith("share") or "rate" in r["metric"])]
    assert judged, doc["rows"]
    differs = [f"{r['cell']}: {r['metric']} sim {r['sim']} real {r['real']} band {r['band']}" for r in judged
               if r["verdict"] == "differs"]
    assert not differs, "\n".join(differs)
