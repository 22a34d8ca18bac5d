"""Shared pieces of the hostile-input suite: what a user error must look like, tiny runs, and measuring a command.

A user error (README "Reliability") is exit status 2 and one paragraph on stderr that starts with
``error:``; never a traceback, never ``internal error``, never a terminal escape sequence.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

TINY = ("--scenario", "dctcp-8mbps", "--set", "duration=2s", "--repeats", "2")
"""The smallest real run: two 2-second repeats of a shipped scenario."""

PEAK_MEMORY_BOUND_MB = 800
"""Every hostile input below stays under this peak RSS (the CLI itself with numpy, pandas and pyarrow
loaded is about 150-250 MB); the inputs that used to cost gigabytes are tiny files."""


def assert_user_error(result, *fragments: str) -> str:
    """Exit 2, one ``error:`` paragraph naming ``fragments``, no traceback, no internal error, no escapes."""
    out = result.stdout + result.stderr
    assert result.exit_code == 2, f"exit {result.exit_code}, expected 2:\n{out}"
    assert "Traceback" not in out and "internal error" not in out, out
    assert "\x1b" not in out, "a terminal escape sequence reached the output"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"expected one error paragraph, got:\n{result.stderr}"
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    return errors[0]


def env_for(workdir: Path, **extra: str) -> dict[str, str]:
    return dict(os.environ, L4STB_WORKDIR=str(workdir), COLUMNS="200", NO_COLOR="1", **extra)


def l4stb_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "l4stb.cli", *args]


def run_cli(workdir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``l4stb ARGS`` against ``workdir`` in a subprocess, for workdirs other than the ``l4stb`` fixture's."""
    return subprocess.run(l4stb_argv(*args), env=env_for(workdir), capture_output=True, text=True, timeout=timeout)


def make_fetched_run(workdir: Path, *run_args: str) -> str:
    """``up``, ``run RUN_ARGS`` and ``fetch-logs`` in a new workdir; returns the run id."""
    for args in (("up",), ("run", *run_args), ("fetch-logs",)):
        done = run_cli(workdir, *args)
        assert done.returncode == 0, done.stderr
    return only_run(workdir)


def peak_rss_mb(workdir: Path, *args: str, timeout: float = 300) -> tuple[int, float, str]:
    """Run one command in a child of a fresh Python and return (exit status, its peak RSS in MB, stderr)."""
    probe = ("import resource, subprocess, sys, json\n"
             "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "print(json.dumps([r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.stderr]))\n")
    out = subprocess.run([sys.executable, "-c", probe, *l4stb_argv(*args)], capture_output=True, text=True,
                         env=env_for(workdir), timeout=timeout, cwd=workdir.parent)
    code, maxrss_kb, stderr = json.loads(out.stdout.strip().splitlines()[-1])
    return code, maxrss_kb / 1024.0, stderr


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file under ``folder``: to prove nothing outside the workdir changed."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            out[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


def run_files(workdir: Path, run_id: str) -> dict[str, str]:
    """sha256 of every fetched file of a run by its path inside the run (comparable across runs)."""
    manifest = json.loads((workdir / "runs" / run_id / "manifest.json").read_text())
    return {key: rec["sha256"] for key, rec in manifest["files"].items()}


def only_run(workdir: Path) -> str:
    runs = sorted(p.name for p in (workdir / "runs").iterdir() if (p / "manifest.json").is_file())
    assert len(runs) == 1, runs
    return runs[0]


def manifest_of(workdir: Path, run_id: str) -> dict:
    return json.loads((workdir / "runs" / run_id / "manifest.json").read_text())


def set_memory_limit(mb: int) -> None:  # pragma: no cover - used as preexec_fn
    resource.setrlimit(resource.RLIMIT_DATA, (mb << 20, mb << 20))
