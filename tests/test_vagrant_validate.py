"""The Vagrantfile: `vagrant validate -p` passes for every shipped topology and refuses a broken one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from l4stb.providers.freebsd.vagrant import find_vagrantfile
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
                   '"libvirt"', "libvirt__host_ip", 'override.freebsd.device = "vtnet"', "boot_timeout", "-tso -lro",
                   'L4STB_BOX_VERSION", "2024.05.31"'):
        assert needle in text


RUBY = shutil.which("ruby")


@pytest.mark.skipif(RUBY is None, reason="needs ruby (installed with Debian's vagrant package)")
@pytest.mark.parametrize("topology", list_topologies())
def test_libvirt_host_bridge_gets_a_free_address_not_the_routers(topology: str):
    """vagrant-libvirt would give the host bridge each subnet's first address (the router's .1): the
    Vagrantfile sets libvirt__host_ip to an address no VM uses, inside the subnet."""
    import ipaddress
    import json

    from l4stb.config import load_topology

    stub = ('module Vagrant; def self.configure(_v); end; end; load "Vagrantfile"; require "json"; '
            'puts JSON.dump(L4STB_LIBVIRT_HOST_IP)')
    proc = subprocess.run([RUBY, "-e", stub], cwd=find_vagrantfile(), capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, L4STB_TOPOLOGY=topology))
    assert proc.returncode == 0, proc.stderr
    host_ips = json.loads(proc.stdout)
    topo = load_topology(topology)
    used = {i.ip for h in topo.hosts.values() for i in h.interfaces}
    nets = {i.network: ipaddress.IPv4Interface(i.address).network for h in topo.hosts.values() for i in h.interfaces}
    assert set(host_ips) == set(nets)
    for name, ip in host_ips.items():
        assert ip not in used and ipaddress.IPv4Address(ip) in nets[name], (name, ip)


def test_the_bootstrap_script_is_clean_posix_sh():
    """The shell provisioner the Vagrantfile runs on every VM: `sh -n`, and shellcheck where installed."""
    import textwrap

    text = (find_vagrantfile() / "Vagrantfile").read_text()
    body = text.split("L4STB_BOOTSTRAP = <<~'SH'\n", 1)[1].split("\nSH\n", 1)[0]
    script = textwrap.dedent(body) + "\n"
    assert "sysrc \"ifconfig_$ifn=inet $addr\"" in script  # internal NICs stay static after a reboot
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    if shutil.which("shellcheck"):
        proc = subprocess.run(["shellcheck", "-s", "sh", "-"], input=script, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout
