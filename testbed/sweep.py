"""`l4stb run --sweep`: the cross product of scenario values, one run per combination, resumable, on an executor."""

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


def combinations(axes: dict[str, list[str]]) -> list[dict[str, str]]:
    keys = list(axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]


def _spec_hash(scenario: str, base: list[str], axes: dict[str, list[str]]) -> str:
    blob = json.dumps({"scenario": scenario, "base": sorted(base), "axes": axes}, sort_keys=True)
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
              dry_run: bool, jobs: int | None, executor: str) -> SweepRecord:
    axes = parse_axes(sweeps)
    combos = combinations(axes)
    # Validate every combination before anything runs: a bad value fails the whole sweep up front.
    scenarios = [load_scenario(scenario_name, base_overrides + [f"{k}={v}" for k, v in c.items()]) for c in combos]
    spec_hash = _spec_hash(scenario_name, base_overrides, axes)
    previous = _latest_with_hash(ws, spec_hash) if resume else None
    if dry_run:
        _print_plan(combos, scenarios, previous)
        return previous or SweepRecord("dry-run", spec_hash, scenario_name, base_overrides, axes)

    with ws.locked("run --sweep"):
        testbed = TestbedInfo.load(ws)
        if testbed.provider != "sim" and executor != "local":
            raise L4stbError("only the sim provider can run sweep combinations on Dask or Ray; one VM testbed runs "
                             "them one after another (use --executor local).")
        record = previous or SweepRecord(f"{scenario_name}-{spec_hash}-{utc_stamp()}", spec_hash, scenario_name,
                                         base_overrides, axes, [Combination(c) for c in combos])
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
