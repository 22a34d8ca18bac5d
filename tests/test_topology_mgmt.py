"""The vagrant provider refuses topology subnets that overlap a VM provider's management network, with one
paragraph that names the network and a free subnet; the shipped topologies are clear of both."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from l4stb.config import MANAGEMENT_NETWORKS, Topology, check_management_overlap, load_topology
from l4stb.errors import L4stbError
from l4stb.resources import list_topologies


@pytest.mark.parametrize("name", list_topologies())
def test_shipped_topologies_are_clear_of_every_management_network(name: str):
    check_management_overlap(load_topology(name))


def _with_lan2(address: str) -> Topology:
    data = load_topology("dumbbell-4").model_dump(mode="json")
    data["hosts"]["client2"]["interfaces"][0]["address"] = address
    data["hosts"]["router"]["interfaces"][1]["address"] = address.rsplit(".", 1)[0] + ".1/24"
    return Topology.model_validate(data)


@pytest.mark.parametrize("address, network", [("10.0.2.12/24", "VirtualBox NAT network 10.0.2.0/24"),
                                              ("192.168.121.12/24", "vagrant-libvirt management network")])
def test_an_overlapping_subnet_is_refused_with_the_network_and_a_free_alternative(address: str, network: str):
    topo = _with_lan2(address)
    with pytest.raises(L4stbError) as err:
        check_management_overlap(topo)
    text = str(err.value)
    assert network in text and "\n" not in text and "topology dumbbell-4" in text
    free = ipaddress.IPv4Network(text.split("such as ", 1)[1].split(" ", 1)[0])
    taken = [ipaddress.IPv4Network(n) for n in MANAGEMENT_NETWORKS.values()]
    taken += [ipaddress.IPv4Interface(i.address).network for h in topo.hosts.values() for i in h.interfaces]
    assert not any(free.overlaps(t) for t in taken)
    check_management_overlap(_with_lan2(str(next(free.hosts())) + "/24"))  # the suggestion is accepted


def test_dry_run_of_up_on_vagrant_refuses_the_old_address_plan(l4stb, tmp_path: Path):
    path = tmp_path / "old.yaml"
    path.write_text((Path(__file__).parents[1] / "topologies" / "dumbbell-4.yaml").read_text()
                    .replace("10.1.2.", "10.0.2."))
    result = l4stb("up", "--provider", "vagrant", "--dry-run", "--topology", str(path))
    assert result.exit_code == 2 and "VirtualBox NAT" in result.stderr and "Traceback" not in result.output
    assert l4stb("up", "--provider", "sim", "--dry-run", "--topology", str(path)).exit_code == 0
