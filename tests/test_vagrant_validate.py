"""The Vagrantfile: `vagrant validate -p` passes for every shipped topology and refuses a broken one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from l4stb.providers.vagrant import find_vagrantfile
from l4stb.resources import list_topologies, topologies_dir

VAGRANT = shutil.which("vagrant")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(VAGRANT is None, reason="needs the vagrant command "
                                 "(apt-get install --no-install-recommends vagrant)")]


def _validate(tmp_path: Path, topology: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, L4STB_TOPOLOGY=topology, VAGRANT_DOTFILE_PATH=str(tmp_path / "dot-vagrant"),
               VAGRANT_CHECKPOINT_DISABLE="1", NO_COLOR="1")
    return subprocess.run([VAGRANT, "validate", "-p"], cwd=find_vagrantfile(), env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("topology", list_topologies())
def test_vagrantfile_validates_for_each_shipped_topology(topology: str, tmp_path: Path):
    proc = _validate(tmp_path, topology)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout


def test_vagrantfile_accepts_a_topology_path(tmp_path: Path):
    proc = _validate(tmp_path, str(topologies_dir() / "dumbbell-4.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("bad, message", [
    ("hosts:\n  'bad name':\n    interfaces: [{network: lan1, address: 10.0.0.1/24}]\n", "host name"),
    ("hosts:\n  router:\n    interfaces: [{network: lan1, address: 10.0.0.1}]\n", "prefix length"),
    ("hosts:\n  router:\n    interfaces: [{network: 'lan 1', address: 10.0.0.1/24}]\n", "network"),
])
def test_vagrantfile_refuses_a_broken_topology_with_a_clear_message(tmp_path: Path, bad: str, message: str):
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    proc = _validate(tmp_path, str(path))
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_vagrantfile_has_no_hard_coded_addresses():
    import re

    text = (find_vagrantfile() / "Vagrantfile").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b", code.replace("255.255.255.255", ""))
    for needle in ('config.ssh.shell = "sh"', "config.vm.guest = :freebsd", "disabled: true", "virtualbox__intnet",
                   '"libvirt"', "boot_timeout", "-tso -lro", 'L4STB_BOX_VERSION", "2024.05.31"'):
        assert needle in text
