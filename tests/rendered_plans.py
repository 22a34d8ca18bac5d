"""Every shell script the vagrant provider can send to a FreeBSD host, rendered for every shipped topology and
scenario, plus the scenario features no shipped scenario uses yet (up, host facts, prepare, one repeat, the
self-check's steps): the input of the facts and shell tests."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from l4stb import check, policyblob
from l4stb.config import load_scenario, load_topology
from l4stb.providers.freebsd import check_steps, plans
from l4stb.resources import list_scenarios, list_topologies

RUN_ID = "plans-20250101T000000Z"
SCHEDULE_STEPS = 3000


def policy_tree_blob(depth: int = 6) -> bytes:
    """A complete decision tree of ``depth`` over current_queue_delay (a fixed tree, built by l4stb's encoder):
    127 nodes, 1,556 bytes, more than one sysctl argument can carry, like the README's 1,124-byte tree."""
    feature = policyblob.feature_for("current_queue_delay", 1_000_000)
    nodes: list[policyblob.Node] = []

    def build(level: int, lo: int, hi: int) -> None:
        if level == depth:
            nodes.append(policyblob.Node(policyblob.LEAF, 0 if hi < 20_000 else 2, 0, 0, 0))
            return
        idx = len(nodes)
        mid = (lo + hi) // 2
        nodes.append(policyblob.Node(0, 0, idx + 1, 0, mid >> feature.shift))
        build(level + 1, lo, mid)
        nodes[idx] = policyblob.Node(0, 0, idx + 1, len(nodes), mid >> feature.shift)
        build(level + 1, mid, hi)

    build(0, 0, 200_000)
    return policyblob.encode([feature], nodes, depth)


def schedule_trace_text(steps: int = SCHEDULE_STEPS) -> str:
    """A mahimahi trace whose 10 ms bins alternate between two and one MTU opportunities (its closing line loops
    into bin 0): ``steps`` rate steps."""
    times = []
    for b in range(steps):
        times += [10 * b + 1] + ([10 * b + 2] if b % 2 == 0 else [])
    times.append(10 * steps)
    return "\n".join(map(str, times)) + "\n"


@lru_cache(maxsize=1)
def fixtures_dir() -> Path:
    """Files the variants point at: the policy blob and the trace (written once per test session)."""
    folder = Path(tempfile.mkdtemp(prefix="l4stb-plan-fixtures-"))
    (folder / "policy.l4pb").write_bytes(policy_tree_blob())
    (folder / "steps.trace").write_text(schedule_trace_text())
    return folder


def feature_variants() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Scenario features no shipped scenario uses yet, rendered too (scenario, --set overrides)."""
    fx = fixtures_dir()
    return (
        ("dctcp-8mbps", ("bottleneck.rate_schedule=[{at: 10s, rate: 4Mbit}]",)),
        ("dctcp-8mbps", ("flows=[{host: client1, cc: udp, rate: 3Mbit, ecn: ect1}]",)),
        ("dctcp-8mbps", ("flows=[{host: client1, cc: cubic}, {host: client2, cc: dctcp, connections: 2, "
                         "extra_delay: 10ms}]", "hosts={client2: {extra_delay: 20ms}}")),
        ("dctcp-8mbps", ("flows=[{host: client1, cc: cubic, connections: 3, size: 100KB, mean_gap: 1s}]",)),
        ("dctcp-8mbps", (f"aqm={{name: policy, policy: {fx / 'policy.l4pb'}, every: 1}}",)),
        ("dctcp-8mbps", ("duration=30s", "flows=[{host: client1, cc: cubic}]",
                         f"bottleneck.rate_trace={fx / 'steps.trace'}", "bottleneck.trace_bin=10ms")),
        ("dctcp-8mbps", ("siftr=true", "logging.sample_every=10")),
    )


@dataclass(frozen=True)
class Rendered:
    where: str
    """topology / scenario / host / step, for failure messages."""
    script: str
    kind: str = "script"
    log_file: str = ""


@lru_cache(maxsize=1)
def all_rendered() -> tuple[Rendered, ...]:
    out: list[Rendered] = []

    def add(where: str, steps, log_file: str = "") -> None:
        for s in steps:
            out.append(Rendered(f"{where} / {s.host} / {s.step}", s.script, s.kind, log_file))

    for tname in list_topologies():
        topo = load_topology(tname)
        for phase in plans.up_phases(topo):
            add(tname, phase.steps)
        add(tname, [plans.facts_step(topo, h) for h in topo.hosts])
        add(tname, [plans.vm_report_step(topo, h, "/var/log/dualpi2.log") for h in topo.hosts], "/var/log/dualpi2.log")
        extra = list(feature_variants()) if tname == "dumbbell-4" else []
        variants = [(name, ()) for name in list_scenarios()] + extra
        for sname, overrides in variants:
            sc = load_scenario(sname, list(overrides))
            if any(f.host not in topo.hosts for f in sc.flows):
                continue
            where = f"{tname} / {sname}" + (f" --set {' '.join(overrides)}" if overrides else "")
            prepare = plans.prepare_phase(sc, topo)
            if prepare:
                add(where, prepare.steps, sc.logging.file)
            for phase in plans.run_phases(sc, topo, RUN_ID, 1):
                add(where, phase.steps, sc.logging.file)
            csc = check.check_scenario(sc)
            for phase in check_steps.after_phases(csc, topo, RUN_ID).values():
                add(where + " (check)", phase.steps, sc.logging.file)
    return tuple(out)
