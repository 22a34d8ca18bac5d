"""Closed loop: the learned policy (and the simple baselines) drive the simulator's router, compared with DualPI2.

This replaces the original's offline replay (jumping between logged rows) with a real comparison: the
same scenario and the same seeds are simulated again with the policy deciding forward/drop/mark for every
N-th packet (DualPI2 decides the rest), and the result is parsed and measured by exactly the code that
measures the DualPI2 run. Each series becomes a run of its own (``<run>-cl-<series>``, kind
"closed-loop") so `l4stb summary --run` works on it too.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from l4stb.analysis import metrics as M
from l4stb.analysis.packets import ensure_parsed, read_flows, read_packets
from l4stb.analysis.pool import PoolSplits
from l4stb.analysis.report import ReportSection, ReportTable, SeriesData, comparison_section, series_metrics
from l4stb.config import Scenario, Topology
from l4stb.manifest import Manifest, RepeatRecord, collect_versions, load_manifest, save_manifest
from l4stb.model.closed_loop_policy import TimedPolicy, feature_extractor
from l4stb.workspace import Workspace, utc_iso

DEFAULT_EVERY = (10, 100)
"""The paper's N: the LLM decides every 10th or every 100th packet and DualPI2 the rest."""


@dataclass
class SeriesResult:
    label: str
    run_id: str
    every: int
    latency_ms: dict
    decisions: int
    wall_s: float


def closed_loop_repeats(ws: Workspace, run_id: str, splits: PoolSplits, limit: int) -> list[int]:
    """The run's test-split repeats (never trained on), else its last ok repeats; at most ``limit``."""
    manifest = load_manifest(ws, run_id)
    ok = manifest.ok_repeats() or [int(k) for k in manifest.repeats]
    episodes = getattr(splits.meta, "episodes", None) or []
    test = sorted({int(e["repeat"]) for e in episodes if e.get("split") == "test" and e.get("run") == run_id})
    chosen = [r for r in test if r in ok] or ok[-limit:]
    return chosen[:limit]


def _series_run(ws: Workspace, source: Manifest, slug: str, repeats: list[int], info: dict) -> str:
    run_id = f"{source.run_id}-cl-{slug}"
    if ws.run_dir(run_id).exists():
        shutil.rmtree(ws.run_dir(run_id))  # a closed-loop series is always redone whole: its policy changed
    scenario = Scenario.model_validate(source.scenario)
    manifest = Manifest(run_id=run_id, kind="closed-loop", provider="sim", scenario=source.scenario,
                        topology=source.topology, seed=source.seed, versions=collect_versions(),
                        repeats={str(r): RepeatRecord(repeat=r, seed=scenario.repeat_seed(r)) for r in repeats},
                        steps={"closed_loop": {"source_run": source.run_id, **info}})
    save_manifest(ws, manifest)
    return run_id


def _simulate_series(ws: Workspace, run_id: str, policy: TimedPolicy | None, progress: Progress) -> float:
    """Simulate the series' repeats into runs/<id>/raw/ (the layout fetch-logs produces), then parse them."""
    from l4stb.layout import remote_run_dir
    from l4stb.sim.runner import SimJob, simulate_repeat

    manifest = load_manifest(ws, run_id)
    scenario = Scenario.model_validate(manifest.scenario)
    topology = Topology.model_validate(manifest.topology)
    hosts_root = ws.run_dir(run_id) / ".sim-hosts"
    t0 = time.perf_counter()
    for key, record in manifest.repeats.items():
        task = progress.add_task(f"  {run_id} repeat {key}", total=1.0, what="")
        if policy is not None:
            policy.reset()
        started, t_rep = utc_iso(), time.perf_counter()
        job = SimJob(scenario, topology, run_id, record.repeat, record.seed, str(hosts_root))
        stats = simulate_repeat(job, lambda f, t=task: progress.update(t, completed=f), policy=policy)
        record.status, record.started, record.finished = "ok", started, utc_iso()
        record.wall_s = round(time.perf_counter() - t_rep, 3)
        record.stats = {k: v for k, v in stats.items() if k not in ("log_files", "iperf3_files")}
        progress.update(task, completed=1.0, what=f"{record.wall_s:.1f} s")
    for host in topology.hosts:
        src = hosts_root / host / remote_run_dir(run_id).lstrip("/")
        if src.is_dir():
            shutil.move(str(src), str(ws.raw_dir(run_id) / host))
    shutil.rmtree(hosts_root, ignore_errors=True)
    manifest.status = "complete"
    manifest.timings = {"finished": utc_iso(), "run_wall_s": round(time.perf_counter() - t0, 3)}
    if policy is not None:
        manifest.steps["closed_loop"]["policy_latency_ms"] = policy.latency_ms()
    save_manifest(ws, manifest)
    ensure_parsed(ws, run_id)
    return time.perf_counter() - t0


def _series_data(ws: Workspace, run_id: str, repeats: list[int] | None = None) -> SeriesData:
    packets, flows = read_packets(ws, run_id), read_flows(ws, run_id)
    if repeats is not None:
        packets = packets[packets["repeat"].isin(repeats)]
        flows = flows[flows["repeat"].isin(repeats)]
    return SeriesData(packets, flows)


def _policies(splits: PoolSplits, checkpoint: Path, every: tuple[int, ...], seed: int):
    """(slug, label, TimedPolicy) for the learned policy at each N and the learned baselines at N=1."""
    from l4stb.model.evaluate import fit_baselines
    from l4stb.model.inference import load_policy

    extract = feature_extractor(splits.meta.feature_names)
    llm = load_policy(checkpoint)
    for n in every:
        yield f"llm-n{n}", f"L4S-LLM every {n}", TimedPolicy(f"L4S-LLM every {n}", llm.decide, extract, n, reset_fn=llm.reset)
    norm = splits.meta.norm
    for name, clf in fit_baselines(splits.train, norm, seed=seed).items():
        def decide(x: np.ndarray, clf=clf) -> int:
            return int(clf.predict(norm.apply(x[None, :]))[0])

        slug = name.replace("_", "-")
        yield slug, f"{name.replace('_', ' ')} every 1", TimedPolicy(name, decide, extract, 1)


def _describe(rows: list[dict]) -> str:
    """Plain sentences on what the comparison shows, computed from the numbers (better and worse alike)."""
    base = rows[0]
    out = [f"Every series runs the same scenario with the same seeds (repeats {base['repeats']}); the "
           f"{base['label']} series is the run itself."]
    for row in rows[1:]:
        parts = []
        for key, what in (("c_p95_ms", "Classic p95 delay"), ("l_p95_ms", "L4S p95 delay")):
            a, b = base[key], row[key]
            if math.isfinite(a) and math.isfinite(b):
                change = "lower (better)" if b < a else "higher (worse)" if b > a else "equal"
                parts.append(f"{what} {b:.1f} ms vs {a:.1f} ms, {change}")
        du = row["utilization"] - base["utilization"]
        parts.append(f"utilisation {row['utilization']:.1%} ({'+' if du >= 0 else ''}{du * 100:.1f} points"
                     f"{', worse' if du < -0.005 else ''})")
        parts.append(f"drops {row['drop_share']:.2%} of decisions vs {base['drop_share']:.2%}")
        if row.get("latency_p50_ms") is not None and math.isfinite(row["latency_p50_ms"]):
            parts.append(f"decision latency p50 {row['latency_p50_ms']:.3f} ms / p99 {row['latency_p99_ms']:.3f} ms "
                         f"over {row['decisions']:,} policy decisions")
        out.append(f"**{row['label']}**: " + "; ".join(parts) + ".")
    out.append("A policy trained offline on DualPI2's own decisions can at best imitate it; where it scores "
               "worse above, it mis-predicts the rare drop/mark decisions that keep the queue short, or marks and "
               "drops too often and costs throughput.")
    return "\n\n".join(out)


def _row(label: str, m: M.RunMetrics, repeats: list[int], result: SeriesResult | None) -> dict:
    c, l_ = m.queues.get("C"), m.queues.get("L")
    total = sum(q.packets for q in m.queues.values()) or 1
    drops = sum(q.drops for q in m.queues.values())
    return {"label": label, "repeats": ", ".join(map(str, repeats)),
            "c_p95_ms": c.delay.get(95) if c and c.delay.n else float("nan"),
            "l_p95_ms": l_.delay.get(95) if l_ and l_.delay.n else float("nan"),
            "utilization": m.utilization.mean, "jain": m.jain.mean, "drop_share": drops / total,
            "latency_p50_ms": result.latency_ms.get("p50") if result else None,
            "latency_p99_ms": result.latency_ms.get("p99") if result else None,
            "decisions": result.decisions if result else 0,
            "run_id": result.run_id if result else None, "wall_s": result.wall_s if result else 0.0}


def run_closed_loop(ws: Workspace, run_id: str, splits: PoolSplits, report, job, *,
                    console: Console, extra_policies: tuple = ()) -> tuple[ReportSection | None, list[dict]]:
    """``extra_policies``: more (slug, label, TimedPolicy) series, e.g. the distilled tree deciding every packet."""
    source = load_manifest(ws, run_id)
    if source.provider != "sim" or source.kind != "run":
        console.print(f"[yellow]closed loop skipped[/]: run {run_id} is a {source.kind} run on the {source.provider} "
                      "provider; the closed loop replays a sim run's scenario and seeds.")
        return None, []
    repeats = closed_loop_repeats(ws, run_id, splits, job.closed_loop_repeats)
    every = tuple(job.policy_every) or DEFAULT_EVERY
    scenario = Scenario.model_validate(source.scenario)
    rate = scenario.bottleneck.rate
    series = {"DualPI2": _series_data(ws, run_id, repeats)}
    results: dict[str, SeriesResult] = {}
    console.print(f"closed loop on repeats {repeats} of {run_id}: L4S-LLM every {', '.join(map(str, every))} packets, "
                  "and the learned baselines, against DualPI2 on the same seeds")
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[what]}"),
                  TimeElapsedColumn(), console=console) as progress:
        for slug, label, policy in [*_policies(splits, report.checkpoint_dir, every, seed=0), *extra_policies]:
            cl_run = _series_run(ws, source, slug, repeats, {"policy": label, "every": policy.every,
                                                             "checkpoint": str(report.checkpoint_dir)})
            wall = _simulate_series(ws, cl_run, policy, progress)
            result = SeriesResult(label, cl_run, policy.every, policy.latency_ms(), len(policy.latencies_s), wall)
            series[label] = _series_data(ws, cl_run)
            results[label] = result
    metrics = series_metrics(series, rate)
    rows = [_row(label, m, repeats, results.get(label)) for label, m in metrics.items()]
    fig_dir = ws.report_dir(run_id) / "figures" / "closed_loop"
    section = comparison_section("Closed loop: learned policy vs DualPI2", series, fig_dir, rate_bps=rate,
                                 intro=_describe(rows), name="closed_loop", metrics=metrics)
    table = ReportTable(
        ["series", "C p95 (ms)", "L p95 (ms)", "utilisation", "drops", "policy decisions", "latency p50 (ms)",
         "latency p99 (ms)", "run"],
        [[r["label"], f"{r['c_p95_ms']:.2f}", f"{r['l_p95_ms']:.2f}", f"{r['utilization']:.1%}", f"{r['drop_share']:.2%}",
          f"{r['decisions']:,}", "-" if r["latency_p50_ms"] is None else f"{r['latency_p50_ms']:.3f}",
          "-" if r["latency_p99_ms"] is None else f"{r['latency_p99_ms']:.3f}", r["run_id"] or run_id] for r in rows],
        caption="Closed-loop series: delays pooled over the repeats; latency is the policy's own decision time")
    section.tables = [table, *section.tables]
    return section, rows
