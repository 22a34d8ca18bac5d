"""The simulator's artifacts stay byte-identical across refactors: a corpus of short scenarios against stored digests.

The simulator is deterministic: one scenario and seed give the same router log files and iperf3 JSON, byte for
byte. This test runs a corpus that reaches every sender path (both stacks, every CC, ECN and loss, short flows,
UDP, pacing) and every AQM path (DualPI2's two step semantics and classifiers, l4s-pie, pie, fifo, CoDel and
FQ-CoDel in both implementations, the policy AQM, htb, dummynet's ticks and ``match: any``, a rate schedule), and
compares the sha256 of every artifact with ``tests/golden/sim-digests.json``. A refactor must leave them all identical.

A deliberate model change alters some digests: regenerate them with

    L4STB_UPDATE_SIM_GOLDEN=1 python -m pytest tests/test_sim_refactor_identity.py

and say in the commit which cases changed and why.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from l4stb import policyblob as pb
from l4stb.config import load_scenario, load_topology
from l4stb.runner import resolve_policy
from l4stb.sim.runner import SimJob, simulate_repeat

GOLDEN = Path(__file__).parent / "golden" / "sim-digests.json"
UPDATE = os.environ.get("L4STB_UPDATE_SIM_GOLDEN") == "1"

LINUX = ["hosts.client1.stack=linux", "hosts.client2.stack=linux"]
MIXED = "flows=[{host: client1, cc: cubic}, {host: client1, cc: newreno}, {host: client2, cc: dctcp}]"
LOSSY = ["aqm.name=fifo", "bottleneck.limit_packets=12", "bottleneck.rate=2Mbit"]

CASES: dict[str, tuple[str, list[str]]] = {
    # every shipped scenario, shortened
    **{f"playbook-{p.stem}": (p.stem, [])
       for p in sorted((Path(__file__).parents[1] / "playbooks").glob("*.yaml"))},
    # the Linux sender stack: Cubic, NewReno, DCTCP (ECT(0)), TCP Prague (paced)
    "linux-dctcp": ("dctcp-8mbps", LINUX),
    "linux-prague-tcp": ("prague-8mbps", LINUX),
    "freebsd-host-tcp-prague": ("prague-8mbps", ["hosts.client2.prague_transport=tcp"]),
    "linux-dctcp-any-ect": ("dctcp-8mbps", [*LINUX, "aqm.l4s_classifier=any_ect"]),
    "linux-htb": ("dctcp-8mbps", [*LINUX, "bottleneck.shaper=htb"]),
    "mixed-stacks": ("dctcp-8mbps", ["hosts.client2.stack=linux"]),
    "step-rfc9332-thlen": ("dctcp-8mbps", ["aqm.step_semantics=rfc9332-thlen"]),
    "match-any-ticks": ("dctcp-8mbps", ["bottleneck.match=any", "bottleneck.serve_on_ticks=true"]),
    "rate-schedule": ("dctcp-8mbps", ["bottleneck.rate_schedule=[{at: 1s, rate: 2Mbit}, {at: 2s, rate: 12Mbit}]"]),
    "pie": ("dctcp-8mbps", ["aqm.name=pie"]),
    # loss recovery, lost retransmissions and RTOs: a tiny tail-drop buffer, with and without ECN
    "freebsd-loss": ("dctcp-8mbps", [MIXED, *LOSSY]),
    "linux-loss": ("dctcp-8mbps", [MIXED, *LOSSY, *LINUX]),
    "freebsd-loss-no-ecn": ("dctcp-8mbps", [MIXED, *LOSSY, "ecn=false"]),
    "linux-loss-no-ecn": ("dctcp-8mbps", [MIXED, *LOSSY, *LINUX, "ecn=false"]),
    "linux-prague-loss": ("prague-8mbps", [*LOSSY, *LINUX]),
    "rto-storm": ("dctcp-8mbps", [MIXED, "aqm.name=fifo", "bottleneck.limit_packets=3", "bottleneck.rate=500Kbit"]),
    "linux-rto-storm": ("dctcp-8mbps", [MIXED, "aqm.name=fifo", "bottleneck.limit_packets=3",
                                        "bottleneck.rate=500Kbit", *LINUX]),
    "linux-cubic-hystart": ("cubic-8mbps", ["hosts.client1.stack=linux", "bottleneck.rate=100Mbit",
                                            "bottleneck.delay=40ms"]),
    "freebsd-cubic-rto": ("cubic-8mbps", ["aqm.name=fifo", "bottleneck.limit_packets=4", "bottleneck.rate=1Mbit",
                                          "bottleneck.delay=40ms"]),
    # short flows and UDP
    "short-flows-freebsd": ("dctcp-8mbps", ["flows=[{host: client1, cc: cubic, connections: 6, size: 60KB, "
                                            "mean_gap: 300ms}, {host: client2, cc: dctcp, connections: 4, "
                                            "size: 200KB, mean_gap: 500ms}]"]),
    "short-flows-linux": ("dctcp-8mbps", [*LINUX, "flows=[{host: client1, cc: cubic, connections: 6, size: 60KB, "
                                                   "mean_gap: 300ms}, {host: client2, cc: dctcp, connections: 4, "
                                                   "size: 200KB, mean_gap: 500ms}]"]),
    "udp-on-off": ("dctcp-8mbps", ["flows=[{host: client1, cc: cubic}, {host: client2, cc: udp, rate: 3Mbit, "
                                   "on_time: 500ms, off_time: 500ms, ecn: ect1}]"]),
    "policy": ("dctcp-8mbps", ["aqm.name=policy", "aqm.every=3"]),
    # CoDel: FreeBSD's on dummynet ticks without ECN, Linux's with ce_threshold; FQ-CoDel Linux's over its limit
    "codel-freebsd-no-ecn": ("dctcp-8mbps", ["aqm.name=codel", "ecn=false", "aqm.kern_hz=100"]),
    "codel-linux-ce-threshold": ("dctcp-8mbps", [*LINUX, "aqm.name=codel", "aqm.codel_semantics=linux",
                                                 "aqm.ce_threshold=1ms"]),
    "fq-codel-linux-over-limit": ("dctcp-8mbps", [*LINUX, "aqm.name=fq_codel", "aqm.codel_semantics=linux",
                                                  "bottleneck.limit_packets=20"]),
}


def _policy_blob(folder: Path) -> str:
    """A depth-1 tree that drops a packet whose sojourn exceeds 5 ms (as tests/test_policy_aqm.py builds)."""
    raw = pb.encode([pb.feature_for("current_queue_delay", 10**6)],
                    [pb.Node(0, 0, 1, 2, 5000), pb.Node(pb.LEAF, 0, 0, 0, 0), pb.Node(pb.LEAF, 1, 0, 0, 0)], 1)
    folder.mkdir()
    (folder / pb.BLOB_NAME).write_bytes(raw)
    return str(folder)


def run_case(tmp_path: Path, name: str) -> dict[str, str]:
    """sha256 of every file one repeat of the case leaves on the hosts, by path below the hosts' root."""
    scenario, overrides = CASES[name]
    overrides = ["duration=8s", *overrides]
    if name == "policy":
        overrides.append(f"aqm.policy={_policy_blob(tmp_path / 'distilled')}")
    sc = resolve_policy(load_scenario(scenario, overrides))
    root = tmp_path / "hosts"
    simulate_repeat(SimJob(sc, load_topology(sc.topology), "golden", 1, 7, str(root)))
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _golden() -> dict:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_simulated_artifacts_are_byte_identical_to_the_stored_digests(tmp_path, name):
    got = run_case(tmp_path, name)
    assert got, f"case {name} left no artifacts"
    if UPDATE:
        stored = _golden()
        stored[name] = got
        tmp = GOLDEN.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(sorted(stored.items())), indent=1) + "\n")
        os.replace(tmp, GOLDEN)
        return
    want = _golden().get(name)
    assert want is not None, f"no stored digests for case {name}: run with L4STB_UPDATE_SIM_GOLDEN=1"
    changed = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
    assert not changed, f"case {name}: these artifacts changed: {changed}"


def test_every_stored_case_is_still_in_the_corpus():
    """A case removed from CASES must leave the golden file too, so the file never vouches for nothing."""
    assert set(_golden()) == set(CASES)
