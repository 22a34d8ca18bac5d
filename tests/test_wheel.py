"""The built wheel works on its own: installed into a fresh venv, `l4stb scenarios` runs from another folder."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_and_runs_from_any_directory(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True, text=True, timeout=300)
    wheel = next(dist.glob("l4stb-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "l4stb/topologies/dumbbell-4.yaml" in names
    assert "l4stb/playbooks/dctcp-8mbps.yaml" in names
    assert "l4stb/playbooks/templates/configure_router.sh.j2" in names
    assert "l4stb/analysis/templates/report.html.j2" in names
    assert "l4stb/freebsd_module/dualpi2_core.c" in names and "l4stb/freebsd_module/Makefile" in names
    assert not any(n.startswith(("model/", "pipeline/", "analysis/", "testbed/")) for n in names), "no generic top-level packages"
    venv = tmp_path / "venv"
    # The venv sees the already-installed dependencies but not the editable l4stb checkout.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([str(venv / "bin" / "l4stb"), "scenarios"], cwd=elsewhere, capture_output=True, text=True,
                         timeout=120, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "dctcp-8mbps" in out.stdout and "dumbbell-4" in out.stdout
    where = subprocess.run([str(py), "-c", "import l4stb, l4stb.analysis, l4stb.model, l4stb.pipeline; print(l4stb.__file__)"],
                           cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert str(venv) in where.stdout, "the wheel's l4stb is imported, not the checkout"
