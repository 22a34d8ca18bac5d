"""Who sent a run's flows (each client's TCP stack, and how ``cc: prague`` ran there), and the one name a CC gets.

"dctcp" alone says too little: FreeBSD's and Linux's DCTCP differ (Linux's sends ECT(0), see
:mod:`l4stb.sim.tcp`), and ``cc: prague`` is udp_prague on a FreeBSD host but TCP Prague on a Linux one
(:class:`l4stb.config.HostSettings`). Every table and figure that names or groups by a CC uses
:func:`cc_label`, so flows of one CC on two stacks are two rows, and a Prague row says which Prague it was:

    dctcp (FreeBSD)   dctcp (Linux)   prague (FreeBSD, udp_prague)   prague (Linux, TCP Prague)   udp (FreeBSD)

Where the stack of a host comes from (:func:`run_senders`):

* the host's recorded facts, when the provider recorded a ``stack`` (the qemu provider: every host Linux);
* on the simulator (plain and closed-loop runs), the scenario's ``hosts.<name>.stack`` (FreeBSD by default);
* otherwise FreeBSD 14.1: the vagrant testbed is all FreeBSD, and an imported run's logs come from the real
  testbed, whose senders are FreeBSD 14.1 hosts.

Prague's transport is the host's ``prague_transport`` when the scenario sets it, else udp_prague on FreeBSD (which
has no TCP Prague) and TCP Prague on Linux (:attr:`l4stb.config.HostSettings.prague`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import pandas as pd

from l4stb.config import Scenario, default_prague_transport

STACKS: dict[str, str] = {"freebsd": "FreeBSD", "linux": "Linux"}
"""A stack's key (the scenario's ``hosts.<name>.stack``) and the word labels use."""
PRAGUE_WORDS: dict[str, str] = {"udp": "udp_prague", "tcp": "TCP Prague"}
"""How ``cc: prague`` ran (``prague_transport``), in words."""
TESTBED_STACK = "freebsd"
"""The real testbed's senders (FreeBSD 14.1): the stack of a run that does not say otherwise."""


def cc_label(cc: str, stack: str | None, prague: str | None = None) -> str:
    """The name of congestion control ``cc`` as sent from ``stack`` (freebsd/linux): ``dctcp (FreeBSD)``,
    ``prague (Linux, TCP Prague)``. ``prague`` is the transport of ``cc: prague`` (udp/tcp; default: the stack's
    own). Without a stack the bare CC name (a table made outside a run)."""
    if not stack:
        return cc
    words = STACKS.get(stack, stack)
    if cc == "prague":
        words += ", " + PRAGUE_WORDS[prague or default_prague_transport(stack)]
    return f"{cc} ({words})"


def cc_slug(label: str) -> str:
    """A label as a column-name suffix: ``dctcp (FreeBSD)`` -> ``dctcp_freebsd``,
    ``prague (Linux, TCP Prague)`` -> ``prague_linux_tcp_prague``."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def base_cc(label: str) -> str:
    """The CC of a label (``dctcp (Linux)`` -> ``dctcp``); a bare name is its own."""
    return label.split(" (", 1)[0]


@dataclass(frozen=True)
class Sender:
    """One client: its stack and how ``cc: prague`` runs on it."""

    stack: str = TESTBED_STACK
    prague: str = "udp"

    def label(self, cc: str) -> str:
        return cc_label(cc, self.stack, self.prague)

    def transport(self, cc: str) -> str:
        """How a flow of ``cc`` ran: udp (iperf3 -u), udp_prague, or tcp."""
        return "udp" if cc == "udp" else "udp_prague" if cc == "prague" and self.prague == "udp" else "tcp"


@dataclass(frozen=True)
class Senders:
    """The senders of one run, by host; a host the run does not name gets ``default``."""

    hosts: Mapping[str, Sender] = field(default_factory=dict)
    default: Sender = Sender()

    def of(self, host: str) -> Sender:
        return self.hosts.get(host, self.default)

    def label(self, host: str, cc: str) -> str:
        return self.of(host).label(cc)


def run_senders(scenario: Scenario | None, provider: str = "sim",
                host_facts: Mapping[str, Any] | None = None) -> Senders:
    """Each client's stack and Prague transport in a run (see the module docstring for the sources)."""
    facts = host_facts or {}

    def stack_of(host: str) -> str:
        recorded = (facts.get(host) or {}).get("stack") if isinstance(facts.get(host), Mapping) else None
        if recorded in STACKS:
            return recorded
        if provider == "sim" and scenario is not None:
            return scenario.host(host).stack
        return TESTBED_STACK

    recorded = {str(f.get("stack")) for f in facts.values() if isinstance(f, Mapping)} & set(STACKS)
    default_stack = recorded.pop() if len(recorded) == 1 else TESTBED_STACK
    default = Sender(default_stack, default_prague_transport(default_stack))
    hosts: dict[str, Sender] = {}
    if scenario is not None:
        for name in sorted({g.host for g in scenario.flows} | set(scenario.hosts)):
            stack = stack_of(name)
            hosts[name] = Sender(stack, scenario.host(name).prague_transport or default_prague_transport(stack))
    return Senders(hosts, default)


def manifest_senders(manifest, scenario: Scenario | None) -> Senders:
    """:func:`run_senders` of a run's manifest (its provider and recorded host facts)."""
    provider = manifest.provider if manifest.kind != "imported" else "imported"
    return run_senders(scenario, provider, manifest.host_facts)


def label_flows(flows: pd.DataFrame, senders: Senders) -> pd.DataFrame:
    """The flows table with a ``cc_label`` column (:func:`cc_label` of each row's host and CC)."""
    out = flows.copy()
    if out.empty:
        out["cc_label"] = pd.Series([], dtype="object")
        return out
    pairs = out[["host", "cc"]].astype(str).drop_duplicates()
    names = {(h, c): senders.label(h, c) for h, c in pairs.itertuples(index=False)}
    out["cc_label"] = [names[(h, c)] for h, c in zip(out["host"].astype(str), out["cc"].astype(str))]
    return out


def cc_label_column(flows: pd.DataFrame) -> pd.Series:
    """The ``cc_label`` column, or the bare CC when the table was not labelled."""
    return (flows["cc_label"] if "cc_label" in flows else flows["cc"]).astype(str)
