"""udp_prague is built at a pinned 40-hex commit that compiles on FreeBSD, never at a branch: checked here by
the pin's form and, where the source is at hand, by cross-compiling the pinned commit for FreeBSD with zig."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from l4stb.providers.freebsd import plans
from l4stb.errors import L4stbError

MIRROR = Path(os.environ["L4STB_UDP_PRAGUE_GIT"]) if os.environ.get("L4STB_UDP_PRAGUE_GIT") else None
"""A git directory of L4STeam/udp_prague (a bare clone or a mirror), from ``L4STB_UDP_PRAGUE_GIT``; the compile
test skips when it is unset or not a folder."""


def test_the_default_udp_prague_ref_is_a_pinned_commit_not_a_branch(monkeypatch):
    monkeypatch.delenv("L4STB_UDP_PRAGUE_REF", raising=False)
    assert re.fullmatch(r"[0-9a-f]{40}", plans.UDP_PRAGUE_REF_DEFAULT)
    assert plans.udp_prague_ref() == plans.UDP_PRAGUE_REF_DEFAULT


@pytest.mark.parametrize("ref", ["main", "v1.0", "69b3f90", "HEAD", "69b3f907745fd8dd427edafc24b8de752c1b0d1a; reboot"])
def test_a_branch_tag_or_short_sha_override_is_refused(monkeypatch, ref: str):
    monkeypatch.setenv("L4STB_UDP_PRAGUE_REF", ref)
    with pytest.raises(L4stbError, match="full 40-hex git commit"):
        plans.udp_prague_ref()


def _source_at(commit: str, dest: Path) -> None:
    archive = subprocess.run(["git", f"--git-dir={MIRROR}", "archive", commit], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ziglang") is None, reason="needs the ziglang package (pip: test extra)")
@pytest.mark.skipif(MIRROR is None or not MIRROR.is_dir(), reason=f"udp_prague's source is not at hand "
                    f"(L4STB_UDP_PRAGUE_GIT={MIRROR or 'unset'}); set it to a git directory of L4STeam/udp_prague")
def test_the_pinned_udp_prague_cross_compiles_for_freebsd(tmp_path: Path):
    """Each translation unit of the sender and receiver, at the pin, with -Wall -Wextra -Werror against
    FreeBSD's headers (zig ships FreeBSD's libc headers; a compile check, not a 14.1 ABI check)."""
    src = tmp_path / "udp_prague"
    src.mkdir()
    _source_at(plans.UDP_PRAGUE_REF_DEFAULT, src)
    env = dict(os.environ, ZIG_GLOBAL_CACHE_DIR=str(tmp_path / "zig"), ZIG_LOCAL_CACHE_DIR=str(tmp_path / "zig"))
    for unit in ("prague_cc.cpp", "udp_prague_sender.cpp", "udp_prague_receiver.cpp"):
        proc = subprocess.run([sys.executable, "-m", "ziglang", "c++", "-target", "x86_64-freebsd.14.1", "-std=c++11",
                               "-Wall", "-Wextra", "-Werror", "-c", unit, "-o", str(tmp_path / (unit + ".o"))],
                              cwd=src, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, f"{unit} does not compile for FreeBSD at the pin:\n{proc.stderr[-3000:]}"
