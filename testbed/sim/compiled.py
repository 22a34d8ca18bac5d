"""Chooses which engine runs the simulator: the compiled build of its hot modules when it matches their sources, else the Python sources.

The compiled engine is the *same* Python source compiled by Cython (pure-Python mode, no type annotations
used: every value stays a Python object, so integer and float arithmetic are Python's and the artifacts stay
byte-identical; ``tests/test_sim_engine.py`` holds the two engines to that over the golden corpus). There is one
source of truth: ``python -m l4stb.sim.build_engine`` compiles :data:`HOT_MODULES` into a build folder and
writes ``engine.json`` last, with the sha256 of every source it compiled. This module installs an import hook
(from ``l4stb/sim/__init__.py``, so before any of those modules is imported) that loads the compiled modules
only when the build is complete, made for this interpreter (its extension suffix), and every source's hash
still matches -- an edited source never runs as a stale build. It is all or nothing: either every hot module
is compiled or none is, so a run never mixes the two.

``L4STB_PURE_PYTHON=1`` forces the Python sources (the fallback, and the other side of the parity test).
``L4STB_ENGINE_DIR`` names a build folder to use instead of the default ones (tests, relocated installs).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "l4stb.sim"
SOURCE_DIR = Path(__file__).resolve().parent
HOT_MODULES = ("engine", "tcp", "tcp_stacks", "tcp_cc", "syslog", "link", "prng", "policy", "udp_cbr", "udp_prague",
               "datagram", "packet", "rcvwnd") + tuple(sorted(p.stem for p in SOURCE_DIR.glob("aqm_*.py")))
"""The modules on the per-packet path: the event loop, the senders and receivers, the log writer, and every AQM
(``aqm_*.py``, so a new AQM is compiled without being listed)."""
MANIFEST = "engine.json"
PURE_ENV = "L4STB_PURE_PYTHON"
DIR_ENV = "L4STB_ENGINE_DIR"


@dataclass(frozen=True)
class EngineChoice:
    """Which engine this process runs, and why (``detail`` is one line a person can act on)."""

    compiled: bool
    detail: str
    build_dir: str | None = None

    def describe(self) -> str:
        return f"compiled ({self.detail})" if self.compiled else f"pure Python ({self.detail})"


def ext_suffix() -> str:
    """The extension-module suffix of this interpreter (``.cpython-311-x86_64-linux-gnu.so``)."""
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def build_dirs() -> list[Path]:
    """Where a build may live, in the order they are tried: ``$L4STB_ENGINE_DIR`` alone when set, else the
    package's own ``_build`` folder (an editable or user-writable install), then the user's cache."""
    if os.environ.get(DIR_ENV):
        return [Path(os.environ[DIR_ENV])]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return [SOURCE_DIR / "_build", cache / "l4stb" / "engine" / sys.implementation.cache_tag]


def source_digests(source_dir: Path = SOURCE_DIR) -> dict[str, str]:
    """sha256 of every hot module's source and of the build script (it generates declarations), the key a build
    must match."""
    return {m: hashlib.sha256((source_dir / f"{m}.py").read_bytes()).hexdigest()
            for m in (*HOT_MODULES, "build_engine")}


def check_build(folder: Path, digests: dict[str, str]) -> str | None:
    """None if ``folder`` holds a complete build of exactly these sources for this interpreter, else why not."""
    try:
        info = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return f"no build in {folder}"
    except (OSError, ValueError) as exc:
        return f"unreadable {folder / MANIFEST} ({exc})"
    if info.get("ext_suffix") != ext_suffix():
        return f"the build in {folder} is for another Python ({info.get('ext_suffix')})"
    if info.get("sources") != digests:
        return f"the build in {folder} is stale (the sources changed since)"
    missing = [m for m in HOT_MODULES if not (folder / f"{m}{ext_suffix()}").is_file()]
    if missing:
        return f"the build in {folder} lacks {', '.join(missing)}"
    return None


def choose() -> EngineChoice:
    """The engine for this process (see the module docstring)."""
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return EngineChoice(False, f"forced by {PURE_ENV}")
    try:
        digests = source_digests()
    except OSError as exc:
        return EngineChoice(False, f"sources unreadable: {exc}")
    reasons = []
    for folder in build_dirs():
        why = check_build(folder, digests)
        if why is None:
            info = json.loads((folder / MANIFEST).read_text())
            return EngineChoice(True, info.get("compiler", "Cython"), str(folder))
        reasons.append(why)
    return EngineChoice(False, f"{reasons[0]}; `python -m l4stb.sim.build_engine` compiles it")


class _CompiledFinder(importlib.abc.MetaPathFinder):
    """Serves ``l4stb.sim.<hot module>`` from the chosen build's extension modules."""

    def __init__(self, folder: Path):
        self.folder = folder

    def find_spec(self, fullname, path=None, target=None):
        pkg, _, name = fullname.rpartition(".")
        if pkg != PACKAGE or name not in HOT_MODULES:
            return None
        so = str(self.folder / f"{name}{ext_suffix()}")
        return importlib.util.spec_from_file_location(
            fullname, so, loader=importlib.machinery.ExtensionFileLoader(fullname, so))


_CHOICE: EngineChoice | None = None


def install() -> EngineChoice:
    """Choose once per process and, for the compiled engine, put its finder first on ``sys.meta_path``."""
    global _CHOICE
    if _CHOICE is None:
        _CHOICE = choose()
        if _CHOICE.compiled and _CHOICE.build_dir:
            sys.meta_path.insert(0, _CompiledFinder(Path(_CHOICE.build_dir)))
    return _CHOICE


def engine_name() -> str:
    """One line naming the engine this process runs, e.g. ``compiled (Cython 3.1.2)``."""
    return install().describe()
