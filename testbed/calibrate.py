"""`l4stb calibrate`: run one scenario matrix on the simulator (Linux senders) and on the real Linux kernel (qemu).

Each cell of the matrix is one scenario, run twice with the same seeds: on the ``sim`` provider with every
client's ``stack: linux`` and the htb shaper the real testbed uses, and on the ``qemu`` provider, where the
kernel, its TCP and its qdiscs are real. The two providers live in two workdirs under
``<workdir>/calibration/`` (one testbed each), and every run there is an ordinary run: ``l4stb summary
--workdir <workdir>/calibration/qemu`` reads any of them. :mod:`l4stb.analysis.calibration` compares them.

Matrices (``--matrix``): ``ci`` (the two cells CI checks against saved bands), ``quick`` (each traffic mix at
8, 20 and 40 Mbit/s, 10 ms), ``full`` (the issue's matrix: 8/20/40 Mbit/s, 10/40 ms, one DCTCP, one Cubic,
Cubic + DCTCP and the paper's nine-flow mix under DualPI2 at Linux's defaults, with ``any_ect`` and with a
packet step, and Cubic + Reno on a FIFO).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from l4stb import runner
from l4stb.fetch import fetch_run
from l4stb.config import Scenario, load_topology
from l4stb.errors import L4stbError
from l4stb.manifest import load_manifest
from l4stb.providers import get_provider
from l4stb.providers.base import TestbedInfo
from l4stb.providers.qemu import QemuProvider, cache_dir
from l4stb.workspace import Workspace

MIXES: dict[str, list[dict]] = {
    "dctcp": [{"host": "client2", "cc": "dctcp"}],
    "cubic": [{"host": "client1", "cc": "cubic"}],
    "cubic+dctcp": [{"host": "client1", "cc": "cubic"}, {"host": "client2", "cc": "dctcp"}],
    "paper-mix": [{"host": "client1", "cc": "cubic", "connections": 2, "parallel": 2},
                  {"host": "client1", "cc": "newreno", "connections": 2, "parallel": 2},
                  {"host": "client2", "cc": "dctcp"}],
    "cubic+reno": [{"host": "client1", "cc": "cubic"}, {"host": "client2", "cc": "newreno"}],
}
"""Traffic mixes by name: the flow groups of each cell (the paper's mix is dctcp-8mbps's nine flows)."""

AQMS: dict[str, dict] = {
    "linux-defaults": {"name": "dualpi2", "ecn": True},
    "any-ect": {"name": "dualpi2", "ecn": True, "l4s_classifier": "any_ect"},
    "step-packets": {"name": "dualpi2", "ecn": True, "l4s_classifier": "any_ect", "step_packets": 5},
    "fifo": {"name": "fifo", "ecn": False},
}
"""Bottleneck AQMs by name. Unset DualPI2 parameters are the real qdisc's defaults on both sides."""


@dataclass(frozen=True)
class Cell:
    mix: str
    aqm: str
    rate_mbps: int
    rtt_ms: int

    @property
    def classic_ecn(self) -> bool:
        """Classic flows send ECT(0) except under ``any_ect``, which would put them in the L queue beside
        DCTCP; there they are not-ECT, as in most L4S coexistence studies (Linux's DCTCP sends ECT(0) either
        way: tcp_dctcp.c asks for ECN itself)."""
        return not (AQMS[self.aqm].get("l4s_classifier") == "any_ect"
                    and any(g["cc"] not in ("dctcp", "prague") for g in MIXES[self.mix]))

    @property
    def name(self) -> str:
        return f"{self.mix}-{self.aqm}-{self.rate_mbps}m-{self.rtt_ms}ms".replace("+", "-")

    def scenario(self, *, duration_s: int, repeats: int, seed: int, provider: str) -> Scenario:
        """The cell's scenario; on sim every client runs Linux's stack behind an htb shaper, as on qemu."""
        hosts = {h: {"stack": "linux"} for h in ("client1", "client2")}
        doc = {"name": f"cal-{self.name}"[:31].rstrip("-"), "description": f"calibration cell {self.name}",
               "topology": "dumbbell-4", "duration": f"{duration_s}s", "repeats": repeats, "seed": seed,
               "ecn": self.classic_ecn, "bottleneck": {"rate": f"{self.rate_mbps}Mbit", "delay": f"{self.rtt_ms}ms",
                                           "limit_packets": 1000},
               "aqm": dict(AQMS[self.aqm]), "flows": [dict(g) for g in MIXES[self.mix]], "hosts": hosts}
        if provider == "sim":
            doc["bottleneck"]["shaper"] = "htb"
        return Scenario.model_validate(doc)


def matrix(name: str) -> list[Cell]:
    if name == "ci":
        return [Cell("dctcp", "any-ect", 8, 10), Cell("cubic+dctcp", "any-ect", 8, 10)]
    if name == "quick":
        return [Cell(mix, "any-ect", rate, 10) for mix in ("dctcp", "cubic", "cubic+dctcp")
                for rate in (8, 20, 40)] + [Cell("paper-mix", "any-ect", 8, 10), Cell("cubic+reno", "fifo", 8, 10)]
    if name == "full":
        cells = []
        for rate in (8, 20, 40):
            for rtt in (10, 40):
                for mix in ("dctcp", "cubic", "cubic+dctcp", "paper-mix"):
                    for aqm in ("linux-defaults", "any-ect", "step-packets"):
                        cells.append(Cell(mix, aqm, rate, rtt))
                cells.append(Cell("cubic+reno", "fifo", rate, rtt))
        return cells
    raise L4stbError(f"unknown calibration matrix {name!r}; use ci, quick or full")


@dataclass
class CellRuns:
    cell: Cell
    runs: dict[str, str] = field(default_factory=dict)
    """provider -> run id (in that provider's calibration workdir)."""


def provider_workspace(ws: Workspace, provider: str) -> Workspace:
    return Workspace.at(ws.root / "calibration" / provider)


def reusable_run(pws: Workspace, scenario: Scenario) -> str | None:
    """The newest complete run in ``pws`` of exactly ``scenario`` (every field, seed and repeats included), or
    None: what ``--reuse`` takes instead of running a cell again."""
    want = scenario.model_dump(mode="json")
    for run_id in reversed(pws.run_ids()):
        try:
            m = load_manifest(pws, run_id)
            # read back through today's model, so fields added since the run was made take their defaults
            stored = m.run_scenario().model_dump(mode="json") if m.status == "complete" else None
        except (L4stbError, ValueError):
            continue  # a damaged manifest or a scenario today's model refuses is never reused
        if stored == want:
            return run_id
    return None


def run_matrix(ws: Workspace, cells: list[Cell], *, duration_s: int, repeats: int, seed: int,
               providers: tuple[str, ...] = ("sim", "qemu"), reuse: tuple[str, ...] = (),
               say: Callable[[str], None] = lambda m: None) -> list[CellRuns]:
    """Run every cell on each provider (bringing each provider's testbed up in its own workdir) and parse it.

    For a provider in ``reuse`` (typically ``qemu``: the real kernel does not change when the simulator does, and
    its runs are the slow side) a cell's newest complete run of the same scenario is taken instead; a cell
    without one is an error that names it."""
    # lazy: loads pandas, slow to import
    from l4stb.analysis.summary import ensure_run_parsed

    out = [CellRuns(c) for c in cells]
    for provider in providers:
        pws = provider_workspace(ws, provider)
        pws.root.mkdir(parents=True, exist_ok=True)
        topo = load_topology("dumbbell-4")
        with pws.locked("up"):
            if not pws.testbed_file.is_file():
                say(f"{provider}: bringing the testbed up")
                prov = get_provider(provider, pws)
                if provider == "qemu":  # one package cache and image for the workdir and its calibration
                    prov = QemuProvider(pws, cache=cache_dir(ws))
                info = prov.up(topo)
                info.save(pws)
        testbed = TestbedInfo.load(pws)
        for cr in out:
            sc = cr.cell.scenario(duration_s=duration_s, repeats=repeats, seed=seed, provider=provider)
            if provider in reuse:
                found = reusable_run(pws, sc)
                if found is None:
                    raise L4stbError(f"--reuse {provider}: no complete {provider} run of cell {cr.cell.name} with "
                                     f"{repeats} repeats of {duration_s} s and seed {seed} in {pws.root}; run the "
                                     "calibration once without --reuse (or with these settings) first.")
                say(f"{provider}: {cr.cell.name} (reusing {found})")
                cr.runs[provider] = found
                continue
            say(f"{provider}: {cr.cell.name}")
            with pws.locked("run"):
                manifest = runner.start_run(pws, sc, topo, testbed)
                result = runner.execute(pws, manifest.run_id, quiet=True)
            if result.status != "complete":
                raise L4stbError(f"calibration cell {cr.cell.name} did not complete on {provider} (run "
                                 f"{manifest.run_id} in {pws.root}); `l4stb run --resume` there, or read its "
                                 "manifest for the failed repeats.")
            with pws.locked("fetch-logs"):
                fetch_run(pws, manifest.run_id)
                ensure_run_parsed(pws, manifest.run_id)
            cr.runs[provider] = manifest.run_id
    return out


def output_dir(ws: Workspace, matrix_name: str) -> Path:
    return ws.root / "calibration" / f"report-{matrix_name}"
