"""Every shell script the vagrant provider can send to a FreeBSD host, rendered for every shipped topology and
scenario, plus the scenario features no shipped scenario uses yet (up, host facts, prepare, one repeat, the
self-check's steps): the input of the facts and shell tests."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from l4stb import check, check_steps, plans
from l4stb.config import load_scenario, load_topology
from l4stb.resources import list_scenarios, list_topologies

RUN_ID = "plans-20250101T000000Z"
FEATURE_VARIANTS = (
    ("dctcp-8mbps", ("bottleneck.rate_schedule=[{at: 10s, rate: 4Mbit}]",)),
    ("dctcp-8mbps", ("flows=[{host: client1, cc: udp, rate: 3Mbit, ecn: ect1}]",)),
    ("dctcp-8mbps", ("flows=[{host: client1, cc: cubic}, {host: client2, cc: dctcp, connections: 2, "
                     "extra_delay: 10ms}]", "hosts={client2: {extra_delay: 20ms}}")),
    ("dctcp-8mbps", ("siftr=true",)),
)
"""Scenario features no shipped scenario uses yet, rendered too (scenario, --set overrides)."""


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
        variants = [(name, ()) for name in list_scenarios()] + (list(FEATURE_VARIANTS) if tname == "dumbbell-4" else [])
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
