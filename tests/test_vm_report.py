"""`l4stb check --facts`: what only a booted FreeBSD VM can answer, from every host, in one plain-text file."""

from __future__ import annotations

from pathlib import Path

import pytest

from freebsd_userland import Userland
from l4stb.providers.freebsd import plans
from l4stb.config import load_topology
from l4stb.errors import L4stbError
from l4stb.providers.freebsd.vagrant import VagrantProvider
from l4stb.workspace import Workspace
from test_vagrant_provider import FakeHost, World


def test_check_facts_writes_every_hosts_report_into_one_file_in_the_workdir(monkeypatch, tmp_path: Path):
    from l4stb.check import write_vm_report
    from l4stb.providers.base import TestbedInfo

    world = World()
    world.extra_answers["vm report"] = "=== kern_hz ===\n1000\n=== sysctl_arg_limit ===\n1023: sysctl: unknown oid\n"
    monkeypatch.setattr(VagrantProvider, "host", lambda self, name: FakeHost(name, world))
    ws = Workspace.at(tmp_path)
    TestbedInfo(provider="vagrant", topology="dumbbell-4").save(ws)
    path = write_vm_report(ws)
    text = path.read_text()
    assert path.parent == tmp_path and path.name.startswith("vm-facts-")
    assert [ln for ln in text.splitlines() if ln.startswith("######## ")] == [
        "######## client1 (client)", "######## client2 (client)", "######## router (router)",
        "######## server (server)"]
    router_script = next(s for h, step, s in world.calls if h == "router" and step == "vm report")
    for section in ("rcvif_serialisation", "ipfw_list", "pkg_abi", "sysctl_arg_limit", "dctcp_ect1",
                    "link_elf_obj_leak_locals", "msgbuf", "nics", "kldstat", "iperf3", "udp_prague", "kern_hz"):
        assert f"section {section};" in router_script or f"section {section}\n" in router_script, section


def test_check_facts_on_the_simulator_says_it_needs_the_vms(tmp_path: Path):
    from l4stb.check import write_vm_report
    from l4stb.providers.base import TestbedInfo

    ws = Workspace.at(tmp_path)
    TestbedInfo(provider="sim", topology="dumbbell-4").save(ws)
    with pytest.raises(L4stbError, match="reports on FreeBSD VMs.*l4stb up --provider vagrant"):
        write_vm_report(ws)


def test_the_reports_sysctl_probe_finds_the_bufsiz_limit_where_sysctl_c_puts_it(tmp_path: Path):
    """Run under the userland model, the probe reads 1023 characters as an unknown OID and 1024 as too long:
    on a VM the same lines show the installed sysctl(8)'s limit."""
    step = plans.vm_report_step(load_topology("dumbbell-4"), "router", "/var/log/dualpi2.log")
    out = Userland(tmp_path).run(step.script).stdout
    section = out.split("=== sysctl_arg_limit ===\n", 1)[1].split("===", 1)[0].splitlines()
    assert section[0].startswith("1023: sysctl: unknown oid") and section[1].startswith("1024: sysctl: oid too long")
