"""`l4stb run --sweep`: the cross product of scenario values, one run per combination, resumable, on an executor.

``--sweep KEY=V1,V2`` adds an axis; ``--sweep-zip KEY=V1,V2`` keys step together (the i-th value of each), as one
joint axis. A sweep's id is the scenario's own name (not the path of its YAML), the hash of what is swept and
a UTC time, so every sweep record lies in ``workdir/sweeps/`` whatever file the scenario came from."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from l4stb import executors, runner
from l4stb.config import load_scenario, load_topology
from l4stb.console import console
from l4stb.errors import L4stbError
from l4stb.manifest import load_manifest
from l4stb.providers.base import TestbedInfo
from l4stb.workspace import Workspace, atomic_write_json, read_json, utc_stamp


@dataclass
class Combination:
    values: dict[str, str]
    run_id: str | None = None
    status: str = "pending"


@dataclass
class SweepRecord:
    """``workdir/sweeps/<id>.json``: what the sweep is and where each combination's run is."""

    sweep_id: str
    spec_hash: str
    scenario: str
    base_overrides: list[str]
    axes: dict[str, list[str]]
    combinations: list[Combination] = field(default_factory=list)
    joint: list[list[str]] = field(default_factory=list)
    """Groups of keys swept together (``--sweep-zip``): their i-th values go into the same combination."""


def parse_axes(sweeps: list[str]) -> dict[str, list[str]]:
    axes: dict[str, list[str]] = {}
    for item in sweeps:
        if "=" not in item:
            raise L4stbError(f"--sweep '{item}' is not KEY=V1,V2,...; write it like --sweep bottleneck.rate=8Mbit,20Mbit.")
        key, raw = item.split("=", 1)
        values = [v.strip() for v in raw.split(",") if v.strip()]
        if not values:
            raise L4stbError(f"--sweep '{item}' lists no values.")
        if key in axes:
            raise L4stbError(f"--sweep names {key} twice; give all its values in one --sweep {key}=V1,V2.")
        axes[key.strip()] = values
    return axes


def parse_joint(zips: list[str], axes: dict[str, list[str]]) -> list[list[str]]:
    """``--sweep-zip`` items: added to ``axes`` and returned as one group of keys that step together."""
    if not zips:
        return []
    joint = parse_axes(zips)
    twice = sorted(set(joint) & set(axes))
    if twice:
        raise L4stbError(f"{', '.join(twice)} is given with both --sweep and --sweep-zip; sweep each key one way.")
    lengths = {k: len(v) for k, v in joint.items()}
    if len(set(lengths.values())) > 1:
        raise L4stbError("--sweep-zip keys step together, so each needs as many values: "
                         + ", ".join(f"{k} has {n}" for k, n in lengths.items()) + ".")
    axes.update(joint)
    return [list(joint)]


def combinations(axes: dict[str, list[str]], joint: list[list[str]] | None = None) -> list[dict[str, str]]:
    """The cross product of the axes, where each group of ``joint`` keys is one axis of zipped values."""
    grouped = {k for g in joint or [] for k in g}
    units: list[list[dict[str, str]]] = []
    for key in axes:
        if key in grouped:
            group = next(g for g in joint or [] if key in g)
            if key == group[0]:
                units.append([{k: axes[k][i] for k in group} for i in range(len(axes[key]))])
        else:
            units.append([{key: v} for v in axes[key]])
    out = []
    for combo in itertools.product(*units):
        merged: dict[str, str] = {}
        for part in combo:
            merged.update(part)
        out.append({k: merged[k] for k in axes})
    return out


def _spec_hash(scenario: str, base: list[str], axes: dict[str, list[str]], joint: list[list[str]] | None = None) -> str:
    spec = {"scenario": scenario, "base": sorted(base), "axes": axes, **({"joint": joint} if joint else {})}
    blob = json.dumps(spec, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _sweeps_dir(ws: Workspace):
    return ws.root / "sweeps"


def _save(ws: Workspace, record: SweepRecord) -> None:
    atomic_write_json(_sweeps_dir(ws) / f"{record.sweep_id}.json", asdict(record))


def _read_record(path) -> SweepRecord:
    data = read_json(path, "sweep record")
    try:
        data["combinations"] = [Combination(**c) for c in data["combinations"]]
        return SweepRecord(**data)
    except (KeyError, TypeError) as exc:
        raise L4stbError(f"{path} is not a sweep record l4stb can read ({exc}). Move it aside and re-run the "
                         "sweep with `l4stb run --sweep ...`.") from None


def _latest_with_hash(ws: Workspace, spec_hash: str) -> SweepRecord | None:
    folder = _sweeps_dir(ws)
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob(f"*-{spec_hash}-*.json"), reverse=True):
        return _read_record(path)
    return None


def sweep_ids(ws: Workspace) -> list[str]:
    """Sweeps in the workdir, oldest first (their ids end in a UTC time stamp)."""
    folder = _sweeps_dir(ws)
    if not folder.is_dir():
        return []
    return sorted((p.stem for p in folder.glob("*.json")), key=lambda s: (s.rsplit("-", 1)[-1], s))


def load_sweep(ws: Workspace, sweep_id: str | None) -> SweepRecord:
    """A sweep by id, or the latest one; a clear error naming the known sweeps when it is not there."""
    known = sweep_ids(ws)
    if not sweep_id:
        if not known:
            raise L4stbError(f"no sweeps in {_sweeps_dir(ws)}. Run one with `l4stb run --scenario NAME --sweep "
                             "KEY=V1,V2`.")
        sweep_id = known[-1]
    if sweep_id not in known:
        hint = f" Known sweeps: {', '.join(known[-5:])}." if known else " There are no sweeps yet."
        raise L4stbError(f"sweep '{sweep_id}' not found under {_sweeps_dir(ws)}.{hint}")
    return _read_record(_sweeps_dir(ws) / f"{sweep_id}.json")


def _execute_one(args: tuple[str, str, int]) -> tuple[str, str, int]:
    """Worker entry point (module level so it pickles to processes, Dask and Ray workers)."""
    root, run_id, jobs = args
    result = runner.execute(Workspace.at(root), run_id, jobs=jobs, quiet=True)
    return run_id, result.status, len(result.ok)


def run_sweep(ws: Workspace, scenario_name: str, base_overrides: list[str], sweeps: list[str], *, resume: bool,
              dry_run: bool, jobs: int | None, executor: str, zips: list[str] | None = None) -> SweepRecord:
    axes = parse_axes(sweeps)
    joint = parse_joint(list(zips or []), axes)
    combos = combinations(axes, joint)
    # Validate every combination before anything runs: a bad value fails the whole sweep up front.
    scenarios = [load_scenario(scenario_name, base_overrides + [f"{k}={v}" for k, v in c.items()]) for c in combos]
    spec_hash = _spec_hash(scenario_name, base_overrides, axes, joint)
    previous = _latest_with_hash(ws, spec_hash) if resume else None
    if dry_run:
        _print_plan(combos, scenarios, previous)
        return previous or SweepRecord("dry-run", spec_hash, scenario_name, base_overrides, axes, joint=joint)

    with ws.locked("run --sweep"):
        testbed = TestbedInfo.load(ws)
        if testbed.provider != "sim" and executor != "local":
            raise L4stbError("only the sim provider can run sweep combinations on Dask or Ray; one VM testbed runs "
                             "them one after another (use --executor local).")
        # the id is the scenario's name, never the path of its YAML: a record always lies in workdir/sweeps/
        record = previous or SweepRecord(f"{scenarios[0].name}-{spec_hash}-{utc_stamp()}", spec_hash, scenario_name,
                                         base_overrides, axes, [Combination(c) for c in combos], joint)
        topology = load_topology(testbed.topology)
        todo = []
        combo_overrides = [base_overrides + [f"{k}={v}" for k, v in c.values.items()] for c in record.combinations]
        for combo, scenario, overrides in zip(record.combinations, scenarios, combo_overrides):
            if combo.run_id and ws.manifest_file(combo.run_id).is_file():
                combo.status = load_manifest(ws, combo.run_id).status
                if combo.status == "complete":
                    continue
            else:
                scenario.check_against(topology)
                combo.run_id = runner.start_run(ws, scenario, topology, testbed, overrides=overrides,
                                                sweep={"sweep_id": record.sweep_id, "values": combo.values}).run_id
            todo.append(combo)
        _save(ws, record)
        skipped = len(record.combinations) - len(todo)
        workers = jobs or runner.default_jobs()
        if testbed.provider != "sim":
            workers = 1
        per_run_jobs = max(1, workers // max(1, len(todo)))
        console.print(f"sweep [bold]{record.sweep_id}[/]: {len(record.combinations)} combinations"
                      + (f", {skipped} already complete (skipped)" if skipped else "")
                      + f"; running {len(todo)} on the {executor} executor")
        by_run = {c.run_id: c for c in todo}
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            task = progress.add_task("sweep", total=len(todo))
            items = [(str(ws.root), c.run_id, per_run_jobs) for c in todo]
            for run_id, status, _n_ok in executors.run_all(executor, _execute_one, items, jobs=workers):
                by_run[run_id].status = status
                _save(ws, record)
                progress.advance(task)
                progress.console.print(f"  {run_id}: {status}")
    _print_plan(combos, scenarios, record)
    console.print(f"Next: `l4stb fetch-logs --sweep {record.sweep_id}`, then `l4stb summary --sweep {record.sweep_id}` "
                  f"or `l4stb report --sweep {record.sweep_id}`.")
    return record


def _print_plan(combos, scenarios, record: SweepRecord | None) -> None:
    table = Table(title="sweep combinations")
    keys = list(combos[0]) if combos else []
    for k in keys:
        table.add_column(k)
    table.add_column("repeats")
    table.add_column("seed")
    table.add_column("run")
    table.add_column("status")
    done = {json.dumps(c.values, sort_keys=True): c for c in record.combinations} if record else {}
    for combo, scenario in zip(combos, scenarios):
        prev = done.get(json.dumps(combo, sort_keys=True))
        table.add_row(*[combo[k] for k in keys], str(scenario.repeats), str(scenario.seed),
                      prev.run_id if prev and prev.run_id else "-", prev.status if prev else "to run")
    console.print(table)
