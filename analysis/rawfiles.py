"""Which fetched files of a run are router log sets (per repeat), iperf3 JSON or udp_prague reports, read from runs/<id>/raw/."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from l4stb.analysis.udp_prague import is_report as is_udp_prague_report
from l4stb.layout import is_router_evidence, repeat_of
from l4stb.manifest import Manifest
from l4stb.workspace import Workspace

DEFAULT_ROUTER_HOST = "router"


@dataclass
class RawInventory:
    """A run's raw files by role. Paths are absolute; ``rel`` gives them relative to the run folder."""

    run_dir: Path
    router_host: str
    logs: dict[int, list[Path]] = field(default_factory=dict)  # repeat -> router log files (any order)
    iperf3: list[tuple[int, str, Path]] = field(default_factory=list)  # (repeat, host, path)
    udp_prague: list[tuple[int, str, Path]] = field(default_factory=list)  # (repeat, host, path): Prague on FreeBSD
    ignored: list[Path] = field(default_factory=list)
    evidence: dict[int, list[Path]] = field(default_factory=dict)  # repeat -> captures, qdisc samples (qemu)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.run_dir).as_posix()

    def all_files(self) -> list[Path]:
        files = [p for ps in self.logs.values() for p in ps] + [p for _, _, p in self.iperf3 + self.udp_prague]
        return sorted(files)


def router_host_of(manifest: Manifest) -> str:
    """The router's host name: from the run's topology, else what import-logs recorded, else ``router``."""
    if manifest.topology:
        try:
            return manifest.run_topology().router
        except Exception:  # a partial topology in an old manifest: fall through to the default
            pass
    imported = manifest.steps.get("import", {})
    if isinstance(imported, dict) and imported.get("router_host"):
        return str(imported["router_host"])
    return DEFAULT_ROUTER_HOST


def inventory(ws: Workspace, run_id: str, manifest: Manifest) -> RawInventory:
    """Classify every file under runs/<id>/raw/<host>/: *.json are iperf3, *.udp_prague.txt udp_prague reports,
    the router's captures and qdisc samples evidence (``layout.is_router_evidence``), its other files logs."""
    run_dir = ws.run_dir(run_id)
    raw = ws.raw_dir(run_id)
    inv = RawInventory(run_dir, router_host_of(manifest))
    if not raw.is_dir():
        return inv
    for host_dir in sorted(p for p in raw.iterdir() if p.is_dir()):
        host = host_dir.name
        for path in sorted(host_dir.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue  # temp files of an interrupted fetch
            rel_parts = path.relative_to(host_dir).parts
            repeat = repeat_of(rel_parts)
            if path.name.endswith(".json"):
                inv.iperf3.append((repeat, host, path))
            elif is_udp_prague_report(path):
                inv.udp_prague.append((repeat, host, path))
            elif host == inv.router_host and is_router_evidence(path.name):
                inv.evidence.setdefault(repeat, []).append(path)
            elif host == inv.router_host:
                inv.logs.setdefault(repeat, []).append(path)
            else:
                inv.ignored.append(path)
    return inv
