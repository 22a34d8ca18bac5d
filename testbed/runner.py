"""`l4stb run`: resolve the scenario, create the run and its manifest, run the repeats with progress, record each."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from l4stb import layout, policyblob
from l4stb.config import Scenario, Topology, load_scenario, load_topology
from l4stb.console import console, safe
from l4stb.errors import L4stbError
from l4stb.manifest import (Manifest, RepeatRecord, aqm_record, collect_versions, command_line, load_manifest,
                            save_manifest)
from l4stb.providers import get_provider
from l4stb.providers.base import Plan, RepeatOutcome, RunContext, TestbedInfo
from l4stb.units import format_duration
from l4stb.workspace import Workspace, utc_iso


@dataclass
class RunResult:
    run_id: str
    status: str
    ok: list[int]
    failed: list[int]
    wall_s: float


def default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def resolve_policy(scenario: Scenario) -> Scenario:
    """Under aqm ``policy``: validate the blob now (a bad one is refused before anything runs) and pin its
    absolute path, so every repeat and every host reads the same file."""
    if scenario.aqm.name != "policy":
        return scenario

    path = policyblob.resolve_blob_path(scenario.aqm.policy)
    policyblob.load(path)
    aqm = scenario.aqm.model_copy(update={"policy": str(path.resolve())})
    return scenario.model_copy(update={"aqm": aqm})


def policy_record(scenario: Scenario) -> dict | None:
    """What the manifest records of the policy a run deploys: its file, sha256, size and shape."""
    if scenario.aqm.name != "policy":
        return None

    blob = policyblob.load(scenario.aqm.policy)
    return {"blob": scenario.aqm.policy, "sha256": blob.sha256, "bytes": blob.size_bytes,
            "checksum": f"{blob.checksum:08x}", "nodes": len(blob.nodes), "leaves": blob.leaves,
            "max_depth": blob.max_depth, "features": [f.name for f in blob.features], "every": scenario.aqm.every}


def resolve(ws: Workspace, scenario_name: str, overrides: list[str]) -> tuple[TestbedInfo, Topology, Scenario]:
    scenario = resolve_policy(load_scenario(scenario_name, overrides))  # a typo is reported before a missing testbed
    testbed = TestbedInfo.load(ws)
    topology = load_topology(testbed.topology)
    scenario.check_against(topology)
    return testbed, topology, scenario


def plan_run(ws: Workspace, scenario_name: str, overrides: list[str], provider: str | None = None) -> Plan:
    """The per-host plan of one repeat, without touching anything: the testbed that is up, else ``provider``
    (default sim, the default provider of `l4stb up`) on the scenario's own topology."""
    if ws.testbed_file.is_file() and provider in (None, TestbedInfo.load(ws).provider):
        testbed, topology, scenario = resolve(ws, scenario_name, overrides)
        provider_name = testbed.provider
        up = True
    else:
        scenario = resolve_policy(load_scenario(scenario_name, overrides))
        topology = load_topology(scenario.topology)
        provider_name = provider or "sim"
        up = False
    plan = get_provider(provider_name, ws).plan_run(RunContext(ws.new_run_id(scenario.name), scenario, topology, ws), 1)
    if not up:
        others = " or ".join(f"--provider {p}" for p in ("sim", "vagrant", "qemu") if p != provider_name)
        plan.title += (f" -- no {provider_name} testbed is up, so this is the plan `l4stb up --provider {provider_name}` "
                       f"would run; add {others} to see another provider's plan")
    return plan


def start_run(ws: Workspace, scenario: Scenario, topology: Topology, testbed: TestbedInfo, *,
              overrides: list[str] | tuple[str, ...] = (), sweep: dict | None = None) -> Manifest:
    """Create the run and its manifest. A sweep point's run id carries its swept values
    (``dctcp-8mbps_rate-20Mbit_delay-40ms-<time>``, see :func:`sweep_slug`)."""
    provider = get_provider(testbed.provider, ws)
    provider.check_scenario(scenario)
    values = (sweep or {}).get("values") or {}
    run_id = ws.new_run_id(scenario.name + (f"_{sweep_slug(values)}" if values else ""))
    manifest = Manifest(
        command=command_line(),
        overrides=list(overrides),
        sweep=sweep,
        run_id=run_id,
        provider=testbed.provider,
        scenario=scenario.model_dump(mode="json"),
        topology=topology.model_dump(mode="json"),
        aqm=aqm_record(scenario),
        seed=scenario.seed,
        versions=collect_versions(),
        host_facts=provider.host_facts(topology),
        repeats={str(r): RepeatRecord(repeat=r, seed=scenario.repeat_seed(r)) for r in range(1, scenario.repeats + 1)},
    )
    policy = policy_record(scenario)
    if policy is not None:
        manifest.steps["policy"] = policy
    save_manifest(ws, manifest)
    return manifest


def forget_fetched(ws: Workspace, manifest: Manifest, repeats: list[int]) -> None:
    """Drop what an earlier fetch copied of repeats that are about to run again.

    A repeat run again starts from empty folders on the hosts (both providers clear them), so files fetched
    from an earlier attempt (a rotated log the new attempt may not produce, a failed client's JSON) would
    otherwise stay in raw/ and be parsed beside the new attempt's."""
    again = set(repeats)
    stale = [key for key in manifest.files  # keys are raw/<host>/<path below the host's folder>
             if key.startswith("raw/") and layout.repeat_of(key.split("/")[2:]) in again]
    for key in stale:
        (ws.run_dir(manifest.run_id) / key).unlink(missing_ok=True)
        del manifest.files[key]
    if stale:
        manifest.steps.pop("fetch", None)
        save_manifest(ws, manifest)


def sweep_slug(values: dict[str, str]) -> str:
    """``{"bottleneck.rate": "20Mbit", "bottleneck.delay": "40ms"}`` -> ``rate-20Mbit_delay-40ms``: each key by the
    fewest trailing parts that tell it from the other swept keys (``hosts.client1.stack`` and
    ``hosts.client2.stack`` -> ``client1.stack-linux_client2.stack-freebsd``), and its value, with characters a run
    id cannot hold replaced by '-'."""
    keys = list(values)
    parts = []
    for key, value in values.items():
        name = unambiguous_suffix(key, keys)
        parts.append(re.sub(r"[^A-Za-z0-9.-]+", "-", f"{name}-{value}").strip("-."))
    return "_".join(parts)


def unambiguous_suffix(key: str, keys: list[str]) -> str:
    """The fewest trailing dotted parts of ``key`` that no other key of ``keys`` ends with."""
    parts = key.split(".")
    for n in range(1, len(parts) + 1):
        tail = ".".join(parts[-n:])
        if not any(k != key and (k == tail or k.endswith("." + tail)) for k in keys):
            return tail
    return key


def execute(ws: Workspace, run_id: str, *, jobs: int | None = None, quiet: bool = False) -> RunResult:
    """Run every repeat of ``run_id`` that is not yet ok (so an interrupted run resumes where it stopped)."""
    manifest = load_manifest(ws, run_id)
    testbed = TestbedInfo.load(ws)
    if testbed.provider != manifest.provider:
        raise L4stbError(f"run {run_id} was made on the {manifest.provider} provider but the testbed up now is "
                         f"{testbed.provider}; bring that testbed up to resume it.")
    scenario = manifest.run_scenario()
    topology = manifest.run_topology()
    provider = get_provider(testbed.provider, ws)
    ctx = RunContext(run_id, scenario, topology, ws)
    todo = manifest.pending_repeats()
    forget_fetched(ws, manifest, todo)
    jobs = min(jobs or default_jobs(), max(1, len(todo)))
    jobs = min(jobs, provider.max_parallel_repeats() or jobs)
    t0 = time.perf_counter()
    manifest.status = "running"
    manifest.pid = os.getpid()
    manifest.timings.setdefault("started", utc_iso())
    save_manifest(ws, manifest)

    sim_s = scenario.duration / 1e6
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[what]}"), TimeElapsedColumn(),
        console=console, transient=False, disable=quiet,
    ) as progress:
        overall = progress.add_task(f"{run_id}", total=len(todo), what=f"{len(todo)} repeats, {jobs} at a time")
        tasks = {r: progress.add_task(f"  repeat {r}", total=1.0, what="waiting", visible=True) for r in todo}

        def on_progress(repeat: int, frac: float) -> None:
            progress.update(tasks[repeat], completed=frac, what=f"{frac * sim_s:5.1f}/{sim_s:.0f} s simulated"
                            if testbed.provider == "sim" else f"{frac * 100:3.0f}% of {format_duration(scenario.duration)}")

        def on_done(outcome: RepeatOutcome) -> None:
            record = manifest.repeat(outcome.repeat)
            record.status = "ok" if outcome.ok else "failed"
            record.started, record.finished, record.wall_s = outcome.started, outcome.finished, outcome.wall_s
            record.detail, record.stats = outcome.detail, outcome.stats
            save_manifest(ws, manifest)
            progress.update(tasks[outcome.repeat], completed=1.0,
                            what=f"[green]ok[/] in {outcome.wall_s:.2f} s" if outcome.ok else f"[red]failed[/]: {safe(outcome.detail[:80])}")
            progress.advance(overall)

        try:
            provider.run_repeats(ctx, todo, on_progress, on_done, jobs=jobs)
        except BaseException:
            manifest.status = "incomplete"
            save_manifest(ws, manifest)
            raise

    ok, failed = manifest.ok_repeats(), [int(k) for k, r in manifest.repeats.items() if r.status == "failed"]
    manifest.status = "complete" if len(ok) == len(manifest.repeats) else "incomplete"
    manifest.timings["finished"] = utc_iso()
    manifest.timings["run_wall_s"] = round(manifest.timings.get("run_wall_s", 0) + time.perf_counter() - t0, 3)
    save_manifest(ws, manifest)
    return RunResult(run_id, manifest.status, ok, failed, manifest.timings["run_wall_s"])
