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
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from l4stb.analysis import metrics as M
from l4stb.analysis.capacity import capacity_of
from l4stb.analysis.packets import ensure_parsed, read_flows, read_packets
from l4stb.analysis.pool import PoolSplits
from l4stb.analysis.report import SeriesData, comparison_section, series_metrics
from l4stb.analysis.report_frame import ReportSection, ReportTable
from l4stb.analysis.summary import annotate_run_flows, scenario_and_rate
from l4stb.layout import remote_run_dir
from l4stb.manifest import (Manifest, RepeatRecord, aqm_record, collect_versions, load_manifest, save_manifest,
                            update_manifest)
from l4stb.pipeline.closed_loop_policy import (PolicySpec, TimedPolicy, feature_extractor, latency_summary,
                                              one_thread_here, one_thread_per_worker)
from l4stb.pipeline.verdicts import compare_series, summary_sentence
from l4stb.sim.runner import SimJob, simulate_repeat
from l4stb.workers import available_cores, run_with_progress
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


@dataclass(frozen=True)
class HeldOut:
    """The repeats the closed loop simulates: the run's test-split repeats, then fresh seeds after its last repeat."""

    repeats: list[int]
    trained_on: list[int]
    """Chosen repeats whose rows the model trained or validated on (empty unless no held-out repeat is left)."""
    fresh: list[int]
    """Repeats beyond the run's own, with seeds no training step saw."""


def closed_loop_repeats(ws: Workspace, run_id: str, splits: PoolSplits, limit: int) -> HeldOut:
    """``limit`` repeats the model never trained on: the run's test-split repeats first, then new repeat numbers
    after the run's last (their seeds come from the scenario, like every repeat's, and were never simulated)."""
    manifest = load_manifest(ws, run_id)
    ok = manifest.ok_repeats() or [int(k) for k in manifest.repeats]
    episodes = getattr(splits.meta, "episodes", None) or []
    mine = [e for e in episodes if e.get("run") == run_id]
    test = sorted({int(e["repeat"]) for e in mine if e.get("split") == "test"} & set(ok))
    chosen = test[:limit]
    last = max([int(k) for k in manifest.repeats] or [0])
    fresh = list(range(last + 1, last + 1 + limit - len(chosen)))
    trained = sorted({int(e["repeat"]) for e in mine if e.get("split") in ("train", "val", "by-position")}
                     & set(chosen))
    return HeldOut(chosen + fresh, trained, fresh)


def _series_run(ws: Workspace, source: Manifest, slug: str, repeats: list[int], info: dict) -> str:
    run_id = f"{source.run_id}-cl-{slug}"
    if ws.run_dir(run_id).exists():
        shutil.rmtree(ws.run_dir(run_id))  # a closed-loop series is always redone whole: its policy changed
    scenario = source.run_scenario()
    manifest = Manifest(run_id=run_id, kind="closed-loop", provider="sim", scenario=source.scenario,
                        topology=source.topology, aqm=aqm_record(scenario), seed=source.seed,
                        versions=collect_versions(),
                        repeats={str(r): RepeatRecord(repeat=r, seed=scenario.repeat_seed(r)) for r in repeats},
                        steps={"closed_loop": {"source_run": source.run_id, **info}})
    save_manifest(ws, manifest)
    return run_id


@dataclass(frozen=True)
class SeriesRepeat:
    """One repeat of one series: what a worker process needs to simulate it (picklable)."""

    run_id: str
    repeat: int
    job: SimJob
    policy: PolicySpec | None


@dataclass(frozen=True)
class RepeatDone:
    run_id: str
    repeat: int
    started: str
    finished: str
    wall_s: float
    stats: dict
    latencies_s: list[float]


_built: dict[str, TimedPolicy] = {}
"""The policies this process has built, by series label: a worker loads a checkpoint once, not once per repeat.
A worker lives for one closed loop; here (``--jobs 1``) :func:`_simulate_all` empties it before and after."""


def simulate_series_repeat(task: SeriesRepeat, progress: Callable[[float], None]) -> RepeatDone:
    """Simulate one repeat of a series into the series' host folders, with its policy deciding (none: DualPI2)."""
    policy = None
    if task.policy is not None:
        policy = _built.get(task.policy.label) or _built.setdefault(task.policy.label, task.policy.build())
        policy.reset()
        policy.latencies_s.clear()
    started, t0 = utc_iso(), time.perf_counter()
    stats = simulate_repeat(task.job, progress, policy=policy)
    return RepeatDone(task.run_id, task.repeat, started, utc_iso(), round(time.perf_counter() - t0, 3),
                      {k: v for k, v in stats.items() if k not in ("log_files", "iperf3_files")},
                      list(policy.latencies_s) if policy is not None else [])


def _simulate_all(ws: Workspace, series: list[tuple[str, PolicySpec | None]], progress: Progress, jobs: int) -> None:
    """Simulate every repeat of every series (``(run_id, policy)``), over ``jobs`` worker processes, then file each
    series as a run: its raw/ folder (the layout fetch-logs produces), its manifest, its parsed tables."""
    tasks, bars = [], {}
    for run_id, spec in series:
        manifest = load_manifest(ws, run_id)
        scenario, topology = manifest.run_scenario(), manifest.run_topology()
        hosts_root = str(ws.run_dir(run_id) / ".sim-hosts")
        for key, record in manifest.repeats.items():
            job = SimJob(scenario, topology, run_id, record.repeat, record.seed, hosts_root)
            tasks.append(SeriesRepeat(run_id, record.repeat, job, spec))
            bars[(run_id, record.repeat)] = progress.add_task(f"  {run_id} repeat {key}", total=1.0, what="")
    done: dict[str, list[RepeatDone]] = {run_id: [] for run_id, _ in series}

    def on_done(result: RepeatDone) -> None:
        done[result.run_id].append(result)
        progress.update(bars[(result.run_id, result.repeat)], completed=1.0, what=f"{result.wall_s:.1f} s")

    # a spawned worker: this process has run torch's OpenMP threads, which do not survive a fork
    _built.clear()  # a label names another checkpoint in another closed loop
    try:
        with one_thread_here():
            run_with_progress(simulate_series_repeat, tasks, jobs=jobs, key=lambda t: (t.run_id, t.repeat),
                              on_progress=lambda k, f: progress.update(bars[k], completed=f), on_done=on_done,
                              start="spawn", init=one_thread_per_worker)
    finally:
        _built.clear()
    for run_id, spec in series:
        _file_series(ws, run_id, done[run_id], spec is not None)


def _file_series(ws: Workspace, run_id: str, results: list[RepeatDone], has_policy: bool) -> None:
    manifest = load_manifest(ws, run_id)
    hosts_root = ws.run_dir(run_id) / ".sim-hosts"
    for result in results:
        record = manifest.repeats[str(result.repeat)]
        record.status, record.started, record.finished = "ok", result.started, result.finished
        record.wall_s, record.stats = result.wall_s, result.stats
    for host in manifest.run_topology().hosts:
        src = hosts_root / host / remote_run_dir(run_id).lstrip("/")
        if src.is_dir():
            shutil.move(str(src), str(ws.raw_dir(run_id) / host))
    shutil.rmtree(hosts_root, ignore_errors=True)
    manifest.status = "complete"
    manifest.timings = {"finished": utc_iso(), "run_wall_s": round(sum(r.wall_s for r in results), 3)}
    if has_policy:
        latencies = [x for r in results for x in r.latencies_s]
        manifest.steps["closed_loop"]["policy_latency_ms"] = latency_summary(latencies)
    save_manifest(ws, manifest)
    ensure_parsed(ws, run_id)


def _series_data(ws: Workspace, run_id: str, repeats: list[int] | None = None) -> SeriesData:
    """A series run's tables, its flows annotated with their class and real start (as ``load_run`` does)."""
    packets, flows = read_packets(ws, run_id), read_flows(ws, run_id)
    manifest = load_manifest(ws, run_id)
    flows = annotate_run_flows(flows, manifest, scenario_and_rate(manifest)[0])
    if repeats is not None:
        packets = packets[packets["repeat"].isin(repeats)]
        flows = flows[flows["repeat"].isin(repeats)]
    return SeriesData(packets, flows)


def _policies(splits: PoolSplits, checkpoint: Path, every: tuple[int, ...], seed: int):
    """(slug, PolicySpec) for the learned policy at each N and the learned baselines at N=1."""
    # lazy: loads torch, slow to import
    from l4stb.model.evaluate import fit_baselines

    features = tuple(splits.meta.feature_names)
    for n in every:
        yield f"llm-n{n}", PolicySpec(f"L4S-LLM every {n}", n, features, checkpoint=str(checkpoint))
    norm = splits.meta.norm
    for name, clf in fit_baselines(splits.train, norm, seed=seed).items():
        slug = name.replace("_", "-")
        yield slug, PolicySpec(f"{name.replace('_', ' ')} every 1", 1, features, classifier=clf, norm=norm)


def _row(label: str, m: M.RunMetrics, repeats: list[int], result: SeriesResult | None) -> dict:
    c, l_ = m.queues.get("C"), m.queues.get("L")
    return {"label": label, "repeats": ", ".join(map(str, repeats)),
            "c_p95_ms": c.delay.get(95) if c and c.delay.n else float("nan"),
            "l_p95_ms": l_.delay.get(95) if l_ and l_.delay.n else float("nan"),
            "utilization": m.utilization.mean, "jain": m.jain.mean, "jain_na": m.bulk_na,
            "c_drop": c.drop_fraction if c else float("nan"), "l_drop": l_.drop_fraction if l_ else float("nan"),
            "c_mark": c.mark_fraction if c else float("nan"), "l_mark": l_.mark_fraction if l_ else float("nan"),
            "cc_mbps": {cc: iv.mean for cc, iv in m.cc.items()},
            "latency_p50_ms": result.latency_ms.get("p50") if result else None,
            "latency_p99_ms": result.latency_ms.get("p99") if result else None,
            "decisions": result.decisions if result else 0,
            "run_id": result.run_id if result else None, "wall_s": result.wall_s if result else 0.0}


def _fmt_num(x, fmt: str) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def closed_loop_section(ws: Workspace, run_id: str, record: dict) -> tuple[ReportSection, list[dict]]:
    """The closed-loop section from the series' saved runs (so `l4stb report` can redraw it without simulating).

    ``record`` is ``manifest.steps["closed_loop"]`` of the source run: the repeats, the repeats the model
    trained on, and each series' label and run id (the first series is DualPI2).
    """
    repeats = [int(r) for r in record["repeats"]]
    series: dict[str, SeriesData] = {}
    results: dict[str, SeriesResult] = {}
    for entry in record["series"]:
        if not ws.manifest_file(entry["run_id"]).is_file():
            raise FileNotFoundError(entry["run_id"])
        series[entry["label"]] = _series_data(ws, entry["run_id"])
        m = load_manifest(ws, entry["run_id"])
        info = m.steps.get("closed_loop", {})
        lat = info.get("policy_latency_ms") or {}
        results[entry["label"]] = SeriesResult(entry["label"], entry["run_id"], int(info.get("every", 0) or 0), lat,
                                               int(lat.get("n", 0) or info.get("decisions", 0) or 0),
                                               float(m.timings.get("run_wall_s", 0.0) or 0.0))
    source = load_manifest(ws, run_id)
    source_scenario = source.run_scenario()
    rate = capacity_of(source_scenario, source_scenario.bottleneck.rate)
    metrics = series_metrics(series, rate)
    labels = list(series)
    base_label = labels[0]
    ccs = sorted(set.intersection(*[set(m.cc) for m in metrics.values()])) if metrics else []
    verdicts = {lab: compare_series(metrics[base_label], metrics[lab], ccs) for lab in labels[1:]}
    rows = [_row(lab, metrics[lab], repeats, results.get(lab) if lab != base_label else None) for lab in labels]
    for row in rows[1:]:
        row["verdicts"] = {v.metric.key: v.word for v in verdicts[row["label"]]}

    fresh = [int(r) for r in record.get("fresh", [])]
    intro = [f"Every series runs scenario `{source.scenario.get('name')}` on the same seeds: repeats "
             f"{', '.join(map(str, repeats))}"
             + (f" ({', '.join(map(str, fresh))} are new seeds after the run's last repeat)" if fresh else "")
             + f". {base_label} is the AQM alone; each other series lets the policy decide every N-th packet and "
             "DualPI2 the rest. Verdicts compare each series with DualPI2 repeat by repeat (paired, 95% t-interval) "
             f"and need at least 3 paired repeats; below that they read \"too few repeats to tell\"."]
    trained = [int(r) for r in record.get("trained_on", [])]
    if trained:
        intro.append(f"**Repeat(s) {', '.join(map(str, trained))} of this closed loop were in the model's training "
                     "or validation data: on them it replays what it learned from, so its numbers there flatter it.**")
    intro += [summary_sentence(lab, verdicts[lab]) for lab in labels[1:]]
    fig_dir = ws.run_dir(run_id) / "closed-loop" / "figures"  # copied into the report by render_report
    section = comparison_section("Closed loop: learned policy vs DualPI2", series, fig_dir, rate_bps=rate,
                                 intro="\n\n".join(intro), name="closed_loop", metrics=metrics)
    cc_cols = [f"{cc} Mbit/s" for cc in ccs]
    table = ReportTable(
        ["series", "C p95 (ms)", "L p95 (ms)", "utilisation", *cc_cols, "Jain", "C drop", "C mark", "L drop",
         "L mark", "policy decisions", "latency p50 (ms)", "latency p99 (ms)", "run"],
        [[r["label"], _fmt_num(r["c_p95_ms"], ".2f"), _fmt_num(r["l_p95_ms"], ".2f"), _fmt_num(r["utilization"], ".1%"),
          *[_fmt_num(r["cc_mbps"].get(cc), ".2f") for cc in ccs], ("n/a" if r.get("jain_na") else _fmt_num(r["jain"], ".3f")),
          _fmt_num(r["c_drop"], ".2%"), _fmt_num(r["c_mark"], ".2%"), _fmt_num(r["l_drop"], ".2%"),
          _fmt_num(r["l_mark"], ".2%"), f"{r['decisions']:,}", _fmt_num(r["latency_p50_ms"], ".3f"),
          _fmt_num(r["latency_p99_ms"], ".3f"), r["run_id"] or "—"] for r in rows],
        caption="Closed-loop series: delays pooled over the repeats, the rest means of repeats; latency is the "
                "policy's own decision time")
    verdict_rows = [[lab, v.metric.label, v.word, v.numbers()] for lab in labels[1:] for v in verdicts[lab]]
    verdict_table = ReportTable(["series", "metric", "verdict", "numbers (series vs DualPI2)"], verdict_rows,
                                caption="Verdict per metric (paired over repeats; 95% t-interval of the difference)")
    section.tables = [table, verdict_table, *section.tables]
    return section, rows


def run_closed_loop(ws: Workspace, run_id: str, splits: PoolSplits, report, job, *,
                    console: Console, extra_policies: tuple = (), jobs: int | None = None,
                    ) -> tuple[ReportSection | None, list[dict]]:
    """``extra_policies``: more (slug, PolicySpec) series, e.g. the distilled tree deciding every packet.
    ``jobs``: repeats simulated at once, in worker processes (default: every core)."""
    source = load_manifest(ws, run_id)
    if source.provider != "sim" or source.kind != "run":
        what = f"ran on the {source.provider} provider" if source.kind == "run" else f"is a {source.kind} run"
        console.print(f"[yellow]closed loop skipped[/]: run {run_id} {what}; the closed loop replays a sim run's "
                      "scenario and seeds in the simulator (run the scenario with the sim provider for one).")
        return None, []
    held = closed_loop_repeats(ws, run_id, splits, job.closed_loop_repeats)
    repeats = held.repeats
    every = tuple(job.policy_every) or DEFAULT_EVERY
    console.print(f"closed loop on repeats {repeats} of {run_id}"
                  + (f" ({', '.join(map(str, held.fresh))} with new seeds)" if held.fresh else "")
                  + f": L4S-LLM every {', '.join(map(str, every))} packets, and the learned baselines, against "
                  "DualPI2 on the same seeds")
    feature_extractor(splits.meta.feature_names)  # a pool whose features the router does not log is refused here
    series = [("dualpi2", "DualPI2", None, {"policy": "DualPI2", "every": 0})]
    for slug, spec in [*_policies(splits, report.checkpoint_dir, every, seed=0), *extra_policies]:
        series.append((slug, spec.label, spec, {"policy": spec.label, "every": spec.every,
                                                 "checkpoint": ws.stored(report.checkpoint_dir)}))
    runs = [(_series_run(ws, source, slug, repeats, info), spec) for slug, _label, spec, info in series]
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[what]}"),
                  TimeElapsedColumn(), console=console) as progress:
        _simulate_all(ws, runs, progress, jobs or available_cores())
    entries = [{"label": label, "run_id": run_id} for (_slug, label, _spec, _info), (run_id, _) in zip(series, runs)]
    record = {"status": "done", "finished": utc_iso(), "repeats": repeats, "fresh": held.fresh,
              "trained_on": held.trained_on, "series": entries}
    update_manifest(ws, run_id, lambda m: m.steps.__setitem__("closed_loop", record))
    return closed_loop_section(ws, run_id, record)
