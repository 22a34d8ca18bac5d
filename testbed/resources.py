"""Locate the files l4stb ships as package data: topologies, scenarios, templates and the FreeBSD module."""

from __future__ import annotations

import difflib
from importlib import resources as _res
from pathlib import Path

from l4stb.errors import L4stbError


def _package_dir(package: str) -> Path:
    return Path(str(_res.files(package)))


def topologies_dir() -> Path:
    return _package_dir("l4stb.topologies")


def playbooks_dir() -> Path:
    return _package_dir("l4stb.playbooks")


def templates_dir() -> Path:
    return _package_dir("l4stb.playbooks.templates")


def module_dir() -> Path:
    return _package_dir("l4stb.freebsd_module")


def list_topologies() -> list[str]:
    return sorted(p.stem for p in topologies_dir().glob("*.yaml"))


def list_scenarios() -> list[str]:
    return sorted(p.stem for p in playbooks_dir().glob("*.yaml"))


def find_topology(name_or_path: str) -> Path:
    return _find(name_or_path, topologies_dir(), list_topologies(), "topology")


def find_scenario(name_or_path: str) -> Path:
    return _find(name_or_path, playbooks_dir(), list_scenarios(), "scenario")


def _find(name_or_path: str, folder: Path, known: list[str], what: str) -> Path:
    """A shipped name (``dctcp-8mbps``) or a path to a YAML file of the user's own."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml"):
        if candidate.is_file():
            return candidate
        raise L4stbError(f"{what} file {candidate} does not exist. Check the path, or use a shipped {what}: {', '.join(known)}.")
    shipped = folder / f"{name_or_path}.yaml"
    if name_or_path in known and shipped.is_file():
        return shipped
    close = difflib.get_close_matches(name_or_path, known, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise L4stbError(
        f"unknown {what} '{name_or_path}'.{hint} Shipped {what}s: {', '.join(known)}; "
        f"or pass the path of your own .yaml file (`l4stb scenarios` lists them)."
    )
