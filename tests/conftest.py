"""Shared pytest fixtures: a temp workdir, a CLI runner that behaves like the installed `l4stb`, real-data paths."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"

# The suite's xdist workers already keep every core busy, so report figures are written in the process that
# draws them (every `l4stb` subprocess would otherwise start its own writer pool); tests/test_figure_saver.py
# turns the pool on where it is the subject.
os.environ.setdefault("L4STB_FIGURE_WORKERS", "0")


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "work"


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder beside the workdir that no command may touch."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    return folder


@pytest.fixture
def l4stb(workdir: Path):
    """Run `l4stb ...` in a subprocess exactly as a user would, against a temp workdir."""

    def run(*args: str, cwd: Path | None = None, timeout: float = 600) -> CliResult:
        env = dict(os.environ, L4STB_WORKDIR=str(workdir), COLUMNS="200", NO_COLOR="1")
        proc = subprocess.run([sys.executable, "-m", "l4stb.cli", *args], capture_output=True, text=True,
                              env=env, cwd=cwd or workdir.parent, timeout=timeout)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


def realdata(name: str) -> Path:
    """A file from ../shared/realdata, or skip the test with the reason."""
    path = REALDATA / name
    if not path.exists():
        pytest.skip(f"real data {path} is absent (it lives beside the repo in shared/realdata)")
    return path
