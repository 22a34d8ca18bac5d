"""The run manifest: what was run, with what, on which hosts, how each repeat ended, and every file's sha256."""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import l4stb
from l4stb.config import Aqm, Scenario, Topology
from l4stb.errors import L4stbError
from l4stb.workspace import Workspace, atomic_write_json, pid_alive, read_json, utc_iso

RepeatStatus = Literal["pending", "running", "ok", "failed"]


class RepeatRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    repeat: int
    seed: int
    status: RepeatStatus = "pending"
    started: str | None = None
    finished: str | None = None
    wall_s: float | None = None
    detail: str = ""
    stats: dict[str, Any] = Field(default_factory=dict)


class FileRecord(BaseModel):
    host: str
    remote_path: str
    size: int
    sha256: str


class Manifest(BaseModel):
    """``runs/<id>/manifest.json``. Later stages add their own sections (fetch, parse, pool, model, report)."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    kind: Literal["run", "imported", "closed-loop"] = "run"
    created: str = Field(default_factory=utc_iso)
    status: Literal["running", "complete", "incomplete", "failed", "imported"] = "running"
    provider: str = "sim"
    scenario: dict[str, Any] = Field(default_factory=dict)
    topology: dict[str, Any] = Field(default_factory=dict)
    aqm: dict[str, Any] | None = None
    """The scenario's AQM with every default filled as the run ran it (:func:`aqm_record`); read it with
    :func:`run_aqm`. None in a manifest written before l4stb recorded it, and in an imported run's."""
    seed: int = 0
    versions: dict[str, str] = Field(default_factory=dict)
    host_facts: dict[str, Any] = Field(default_factory=dict)
    repeats: dict[str, RepeatRecord] = Field(default_factory=dict)
    timings: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, FileRecord] = Field(default_factory=dict)
    steps: dict[str, Any] = Field(default_factory=dict)
    command: str = ""
    """The command line that created the run (``l4stb run ...``), shell-quoted."""
    overrides: list[str] = Field(default_factory=list)
    """Its ``--set``/``--repeats``/``--seed`` overrides and this point's ``--sweep`` values, as KEY=VALUE."""
    sweep: dict[str, Any] | None = None
    """``{"sweep_id": ..., "values": {KEY: VALUE}}`` when the run is one point of a sweep."""
    pid: int | None = None
    """The process that runs the repeats while ``status`` is ``running``."""

    def shown_status(self) -> str:
        """``status``, except that a run whose process is gone is ``interrupted`` (resume it with --resume)."""
        if self.status == "running" and (self.pid is None or not pid_alive(self.pid)):
            return "interrupted"
        return self.status

    def run_scenario(self) -> Scenario:
        """The run's scenario as a typed record, read through today's model (a field added since the run takes its
        default). One that does not validate (an imported run's partial scenario, a hand-edited manifest) raises
        pydantic's ValidationError, and each reader says what that means for it."""
        return Scenario.model_validate(self.scenario)

    def run_topology(self) -> Topology:
        """The run's topology as a typed record; a partial one raises ValidationError, as :meth:`run_scenario`."""
        return Topology.model_validate(self.topology)

    def repeat(self, n: int) -> RepeatRecord:
        return self.repeats[str(n)]

    def pending_repeats(self) -> list[int]:
        return sorted(int(k) for k, r in self.repeats.items() if r.status != "ok")

    def ok_repeats(self) -> list[int]:
        return sorted(int(k) for k, r in self.repeats.items() if r.status == "ok")


def load_manifest(ws: Workspace, run_id: str) -> Manifest:
    """The run's manifest; one of the wrong shape is a user error naming the file and the field."""
    path = ws.manifest_file(run_id)
    data = read_json(path, "run manifest")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "the top level"
        raise L4stbError(f"{path} (the manifest of run {run_id}) is damaged: {where}: {first['msg']}. Move the run "
                         f"folder aside (or restore the file from a backup); other runs are not affected.") from None
    problem = _inconsistency(manifest, run_id)
    if problem:
        raise L4stbError(f"{path} (the manifest of run {run_id}) is damaged: {problem}. Move the run folder aside (or "
                         "restore the file from a backup); other runs are not affected.")
    return manifest


def _inconsistency(manifest: Manifest, run_id: str) -> str:
    """What a hand-edited manifest says that cannot be so: another run's id, a repeat key that is not its number."""
    if manifest.run_id != run_id:
        return f"field run_id = {manifest.run_id!r} disagrees with the run's folder {run_id!r}"
    for key, record in manifest.repeats.items():
        if not str(key).isdigit() or int(key) != record.repeat:
            return f"field repeats.{key}: the key must be the repeat's number ({record.repeat})"
    return ""


def aqm_record(scenario: Scenario) -> dict[str, Any]:
    """What :attr:`Manifest.aqm` records: the scenario's AQM resolved (``config.Aqm.resolved``), as JSON."""
    return scenario.aqm.resolved().model_dump(mode="json")


def run_aqm(manifest: Manifest, scenario: Scenario) -> Aqm:
    """The AQM the run ran, every default filled, so that no reader re-defaults it.

    The values are the ones recorded when the run was made (a later l4stb with other defaults still reports what
    ran). A manifest from before l4stb recorded them gets ``scenario``'s AQM resolved with today's defaults. A
    record that does not resolve ``scenario`` (a field the scenario sets differs, or a value out of range) is a
    user error naming the manifest's field."""
    if manifest.aqm is None:
        return scenario.aqm.resolved()
    given = scenario.aqm.model_dump(mode="json")
    record = manifest.aqm
    clash = sorted(k for k, v in given.items() if v is not None and record.get(k, v) != v)
    unknown = sorted(set(record) - set(given))
    fills = {k: record[k] for k, v in given.items() if v is None and record.get(k) is not None}
    problem = (f"aqm.{clash[0]} = {record[clash[0]]!r} disagrees with scenario.aqm.{clash[0]} = {given[clash[0]]!r}"
               if clash else f"aqm.{unknown[0]} is not an AQM field" if unknown else "")
    checked = None
    if not problem:
        # The values parsed and range-checked as the scenario's are (without max_rtt and typical_rtt, which only
        # derive the filled gains and which the scenario has validated already).
        try:
            checked = Aqm.model_validate({**given, **fills, "max_rtt": None, "typical_rtt": None})
        except ValidationError as exc:
            first = exc.errors()[0]
            problem = f"aqm.{'.'.join(str(x) for x in first['loc'])}: {first['msg']}"
    if checked is None:
        raise L4stbError(f"the manifest of run {manifest.run_id} is damaged: {problem}. Restore the file from a backup "
                         "or run the scenario again.")
    return scenario.aqm.model_copy(update={k: getattr(checked, k) for k in fills})


def save_manifest(ws: Workspace, manifest: Manifest) -> None:
    atomic_write_json(ws.manifest_file(manifest.run_id), manifest.model_dump(mode="json"))


def update_manifest(ws: Workspace, run_id: str, change: Callable[[Manifest], None]) -> Manifest:
    """Read, change, write back atomically (callers hold the workdir lock)."""
    manifest = load_manifest(ws, run_id)
    change(manifest)
    save_manifest(ws, manifest)
    return manifest


def collect_versions() -> dict[str, str]:
    """l4stb, its git sha when run from a checkout, python and the ML libraries (without importing them)."""
    versions = {"l4stb": l4stb.__version__, "python": platform.python_version(), "platform": platform.platform()}
    sha = git_sha()
    if sha:
        versions["git_sha"] = sha
        versions["git_dirty"] = "true" if sha.endswith("-dirty") else "false"
    for dist in ("torch", "transformers", "peft", "accelerate", "numpy", "pandas", "fabric", "python-vagrant"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


_COMMAND: list[str] | None = None


def record_command(argv: list[str]) -> None:
    """The CLI's entry point records its arguments here, so a manifest can say how the run was made."""
    global _COMMAND
    _COMMAND = list(argv)


def command_line() -> str:
    """``l4stb <arguments>`` as typed (shell-quoted), or the Python process's argv outside the CLI."""
    return shlex.join(["l4stb", *_COMMAND] if _COMMAND is not None else sys.argv)


def git_sha() -> str | None:
    src = Path(l4stb.__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")
