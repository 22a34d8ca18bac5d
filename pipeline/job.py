"""`l4stb train-and-report`: runs -> parsed data -> experience pool -> training -> closed loop -> one HTML report.

The job is the top of the pipeline, so it may import every stage. Each step is idempotent where the
stage is (fetch, parse, pool), and every output is written atomically by the stage that owns it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from l4stb.fetch import fetch_run
from l4stb.analysis.pool import PoolSplits, load_pool
from l4stb.analysis.report_frame import render_model_report
from l4stb.console import safe
from l4stb.errors import L4stbError
from l4stb.manifest import load_manifest, update_manifest
from l4stb.model.distill import DistillConfig
from l4stb.pipeline.closed_loop_policy import PolicySpec
from l4stb.pipeline.distill_job import DISTILLED_SUFFIX, distill_pool_model, distill_run
from l4stb.pipeline.headline import HEADLINE, read_headline
from l4stb.pipeline.verdicts import metric_label
from l4stb.workspace import (Workspace, atomic_write_json, atomic_write_text, staged_folder, stored_path, utc_iso,
                             validate_name)


@dataclass
class TrainJob:
    """The options of `l4stb train-and-report` (see its --help)."""

    run_ids: tuple[str, ...] = ()
    test_runs: tuple[str, ...] = ()
    pool: str | None = None
    preset: str | None = None  # None: paper7 when building from runs, the pool's own with --pool
    reward: str | None = None  # None: paper when building from runs, the pool's own with --pool
    backbone: str = "tiny-gpt2"
    layers: int | None = None
    epochs: int = 2
    lora_rank: int | None = None
    max_train_windows: int | None = None
    closed_loop: bool = True
    policy_every: tuple[int, ...] = ()
    name: str | None = None
    closed_loop_repeats: int = 3
    force: bool = False
    distill: bool = True
    jobs: int | None = None  # closed-loop repeats simulated at once (None: every core); never changes a result


    @property
    def model_name(self) -> str:
        return self.name or Path(self.backbone).name.replace("/", "-")


@dataclass
class JobOutcome:
    report: Path | None
    model_dir: Path
    metrics: dict
    closed_loop: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    distill: dict | None = None

    def to_json(self, root: Path | None = None) -> dict:
        """The numbers the job ends with (written beside the report as headline.json); paths relative to the
        workdir ``root`` when given (so the workdir can move)."""
        def stored(p: Path) -> str:
            return stored_path(root, p) if root is not None else str(p)

        m = self.metrics
        keep = ("test", "baselines", "latency_ms", "decisions_per_s", "params", "memory", "train_seconds",
                "backbone", "epochs_run", "best_epoch", "data")
        return {"report": stored(self.report) if self.report else None, "model_dir": stored(self.model_dir),
                "wall_s": round(self.wall_s, 1), "metrics": {k: m[k] for k in keep if k in m},
                "closed_loop": self.closed_loop, "distill": self.distill}

    def headline(self) -> str:
        m = self.metrics
        test, base = m.get("test", {}), m.get("baselines", {})
        lines = [f"[green]done[/] in {self.wall_s:.0f} s. Model: {safe(self.model_dir)}"]
        f1, f1_forward = test.get("macro_f1"), base.get("always_forward", {}).get("macro_f1")
        if f1 is not None and f1_forward is not None and f1 < f1_forward:
            lines.insert(0, f"[bold red]the model is worse than always-forward[/] on the held-out test split "
                            f"(macro-F1 {f1:.3f} vs {f1_forward:.3f}): it has not learned the drop/mark decisions.")
        # lazy: loads matplotlib, slow to import
        from l4stb.pipeline.report_sections import baseline_gap_warning

        gap = baseline_gap_warning(m)
        if gap:
            lines.insert(0, f"[bold yellow]warning[/]: {gap}")
        if self.report:
            lines.append(f"report: [bold]{safe(self.report)}[/]")
        lines.append(
            f"held-out test: macro-F1 {test.get('macro_f1', float('nan')):.3f} (always-forward "
            f"{base.get('always_forward', {}).get('macro_f1', float('nan')):.3f}, decision tree "
            f"{base.get('decision_tree', {}).get('macro_f1', float('nan')):.3f}), balanced accuracy "
            f"{test.get('balanced_accuracy', float('nan')):.3f}, accuracy {test.get('accuracy', float('nan')):.3f}")
        lat = m.get("latency_ms", {})
        if lat:
            lines.append(f"decision latency at batch 1: p50 {lat.get('p50', float('nan')):.2f} ms, "
                         f"p99 {lat.get('p99', float('nan')):.2f} ms; {m.get('decisions_per_s', 0):,.0f} decisions/s "
                         f"batched; trainable params {m.get('params', {}).get('trainable', 0):,}")
        if self.distill:
            d = self.distill
            c_ns = d["latency_ns"]["c"]
            lines.append(f"distilled tree: {d['blob']['bytes']:,} bytes, depth {d['blob']['depth']}, agreement with the "
                         f"LLM {d['agreement_with_teacher']:.1%}, test macro-F1 {d['test']['macro_f1']:.3f}, "
                         + (f"{c_ns:.0f} ns per decision in C" if c_ns is not None else "no C compiler for its latency"))
        for row in self.closed_loop:
            verdicts = row.get("verdicts") or {}
            worse = [metric_label(k) for k, w in verdicts.items() if w.startswith("worse")]
            jain = "n/a" if row.get("jain_na") or not math.isfinite(row["jain"]) else f"{row['jain']:.3f}"
            lines.append(f"closed loop {safe(row['label'])}: C-queue p95 delay {row['c_p95_ms']:.1f} ms, L-queue p95 "
                         f"delay {row['l_p95_ms']:.1f} ms, utilisation {row['utilization']:.1%}, Jain index {jain}"
                         + (f"; worse than DualPI2 on {', '.join(worse)}" if worse else "")
                         + ("; too few repeats to tell" if verdicts and all(w.startswith("too few") for w in verdicts.values())
                            else ""))
        return "\n".join(lines)


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(), console=console)


def _ensure_fetched(ws: Workspace, run_id: str, console: Console) -> None:
    manifest = load_manifest(ws, run_id)
    if manifest.kind != "run":
        return
    fetch = manifest.steps.get("fetch")
    if not (isinstance(fetch, dict) and fetch.get("status") == "done"):
        console.print(f"run {run_id} was not fetched yet: fetching its logs first")
        fetch_run(ws, run_id)


def _train_config(job: TrainJob):
    # lazy: loads torch, slow to import
    from l4stb.model.config import TrainConfig

    overrides: dict[str, Any] = {"backbone": job.backbone, "layers": job.layers, "epochs": job.epochs}
    if job.lora_rank is not None:
        overrides["lora_rank"] = job.lora_rank
    if job.max_train_windows is not None:  # 0 on the command line means "no cap"
        overrides["max_train_windows"] = job.max_train_windows or None
    return TrainConfig(**overrides)


def _resolve_pool(ws: Workspace, spec: str) -> Path:
    path = Path(spec).expanduser()
    if (path / "meta.json").is_file():
        return path
    named = ws.pool_dir(None, spec) if "/" not in spec else path
    if (named / "meta.json").is_file():
        return named
    raise L4stbError(f"no experience pool '{spec}' in {ws.root / 'pools'} and no pool folder at {path}. Import one "
                     "with `l4stb pool import FILE.pkl`, or train from runs with --run.")


def _check_pool_options(job: TrainJob, splits: PoolSplits) -> None:
    """--preset and --reward choose how a pool is built from runs; a pool given with --pool already has both,
    so a different (or unknown) value is refused instead of silently ignored."""
    # lazy: loads pyarrow, slow to import
    from l4stb.analysis.pool_build import get_reward, preset_features

    for option, given, has in (("--preset", job.preset, splits.meta.preset), ("--reward", job.reward, splits.meta.reward)):
        if given is None or given == has:
            continue
        try:
            (preset_features if option == "--preset" else get_reward)(given)
        except L4stbError as exc:  # an unknown name: say which option carried it
            raise L4stbError(f"{option} {given}: {exc}") from None
        raise L4stbError(f"{option} {given}: the pool '{splits.meta.name}' was built with {option.lstrip('-')} "
                         f"'{has}', and --pool trains on it as it is. Drop {option}, or build a pool with it from "
                         "runs (`--run ID`).")


def validate_job(job: TrainJob):
    """Check every option before anything is fetched, parsed or built; return the validated TrainConfig."""
    # lazy: loads torch, slow to import
    from l4stb.analysis.pool_build import get_reward, preset_features
    from l4stb.model.backbones import check_backbone_name

    check_backbone_name(job.backbone)
    if job.layers is not None and job.layers < 1:
        raise L4stbError(f"--layers must be at least 1 (got {job.layers}); leave it out to keep every block.")
    if job.max_train_windows is not None and job.max_train_windows < 0:
        raise L4stbError(f"--max-train-windows must be 0 (no cap) or positive, got {job.max_train_windows}.")
    bad_every = [n for n in job.policy_every if n < 1]
    if bad_every:
        raise L4stbError(f"--policy-every must be at least 1 (the policy decides every N-th packet), got {bad_every[0]}.")
    if job.closed_loop_repeats < 1:
        raise L4stbError(f"--closed-loop-repeats must be at least 1, got {job.closed_loop_repeats}.")
    if job.name is not None:
        validate_name(job.name, "model name (--name)")
    if not job.pool:
        preset_features(job.preset or "paper7")
        get_reward(job.reward or "paper")
    return _train_config(job).validated()


def train_and_report(ws: Workspace, job: TrainJob, *, console: Console) -> JobOutcome:
    # lazy: loads torch, slow to import
    from l4stb.model.run import train_and_evaluate

    t0 = time.perf_counter()
    cfg = validate_job(job)
    splits, run_id = _job_pool(ws, job, console)
    # Models of a pool outside any run live side by side under workdir/models/: name them after the pool too.
    model_name = job.model_name if job.name or run_id is not None else f"{splits.meta.name}-{job.model_name}"
    model_dir = ws.model_dir(run_id, model_name)
    fingerprint = _fingerprint(job, splits)
    report_index = (ws.report_dir(run_id) if run_id is not None else model_dir / "report") / "index.html"
    if not job.force:
        done = _up_to_date(ws, run_id, model_name, model_dir, report_index, fingerprint, console)
        if done is not None:
            return done
    console.print(f"pool [bold]{safe(splits.meta.name)}[/]: {len(splits.meta.feature_names)} features, "
                  + ", ".join(f"{s} {len(splits.split(s)):,} rows" for s in ("train", "val", "test"))
                  + f" ({safe(splits.meta.split)}); training {safe(cfg.backbone)} for {cfg.epochs} epochs")
    # The model folder is one output set (checkpoint, metrics, figures, job.json and, for a pool, its report):
    # it is built in a staging folder and swapped in whole, so an interrupt never mixes two trainings.
    with staged_folder(model_dir) as stage:
        with _progress(console) as progress:
            report = train_and_evaluate(splits, stage, cfg, progress=progress)
        # lazy: loads matplotlib, slow to import
        from l4stb.pipeline.report_sections import model_sections

        sections = model_sections(report.metrics, report.history, stage / "figures")
        distilled = _distill_stage(ws, run_id, splits, stage, model_dir, console) if job.distill else None
        if distilled is not None:
            # lazy: loads matplotlib, slow to import
            from l4stb.pipeline.distill_report import distill_section

            sections.append(distill_section(distilled.summary))
        closed_rows: list[dict] = []
        if job.closed_loop:
            if run_id is None:
                console.print("[yellow]closed loop skipped[/]: the model was trained on a pool outside any run, so "
                              "there is no scenario to replay; train from a sim run (`--run ID`) to get it.")
            else:
                # lazy: loads matplotlib, slow to import
                from l4stb.pipeline.closed_loop import run_closed_loop

                extra = (_distilled_series(distilled),) if distilled is not None else ()
                section, closed_rows = run_closed_loop(ws, run_id, splits, report, job, console=console,
                                                       extra_policies=extra, jobs=job.jobs)
                if section is not None:
                    sections.append(section)
        outcome = JobOutcome(report_index, model_dir, report.metrics, closed_rows, time.perf_counter() - t0,
                             distilled.summary if distilled is not None else None)
        headline = _json_text({**outcome.to_json(ws.root), "fingerprint": fingerprint})
        atomic_write_text(stage / HEADLINE, headline)
        if run_id is None:
            render_model_report(stage / "report", f"model {model_name} on pool {splits.meta.name}", sections,
                                extra_files={HEADLINE: headline})
        atomic_write_json(stage / "job.json", {"fingerprint": fingerprint, "options": _options(job)})
    # A run's report lives in the run, outside the model folder: it is a second output set, rendered after the
    # model is in place and carrying the model's fingerprint in its headline.json. Stopped in between, the next
    # `train-and-report` finds the model up to date and renders the report from it (not training again).
    if run_id is not None:
        _publish_run_report(ws, run_id, model_name, model_dir, _relocated(sections, stage, model_dir))
    return outcome


def _job_pool(ws: Workspace, job: TrainJob, console: Console) -> tuple[PoolSplits, str | None]:
    """The pool the job trains on and the run it belongs to: ``--pool`` as it is (no run), or one built from the
    runs (fetched first where needed), which belongs to the first of them."""
    if job.pool:
        if job.run_ids or job.test_runs:
            raise L4stbError("give either --pool or --run/--test-run, not both.")
        splits = load_pool(_resolve_pool(ws, job.pool))
        _check_pool_options(job, splits)
        return splits, None
    run_ids = list(job.run_ids) or [ws.resolve_run(None)]
    for r in run_ids + list(job.test_runs):
        ws.resolve_run(r)
        _ensure_fetched(ws, r, console)
    return _build_pool(ws, run_ids, list(job.test_runs), job, console), run_ids[0]


def _up_to_date(ws: Workspace, run_id: str | None, model_name: str, model_dir: Path, report_index: Path,
                fingerprint: str, console: Console) -> JobOutcome | None:
    """The outcome of an earlier job with the same fingerprint whose outputs are all there, else None. A model
    that was swapped in before the command stopped short of the run's report gets its report rendered now."""
    done = _finished_outcome(model_dir, report_index, fingerprint)
    if (done is None and run_id is not None and _model_finished(model_dir, fingerprint)
            and read_headline(model_dir).get("fingerprint") == fingerprint):
        # the model was swapped in but the command stopped before the run's report was rendered
        console.print(f"the model in {safe(model_dir)} is up to date; rendering the run's report from it")
        _publish_run_report(ws, run_id, model_name, model_dir, None)
        done = _finished_outcome(model_dir, report_index, fingerprint)
    if done is not None:
        console.print(f"[green]up to date[/]: {safe(model_dir)} was trained with these options on this pool "
                      "(`--force` trains again)")
    return done


def _relocated(sections: list, stage: Path, final: Path) -> list:
    """The sections with each figure drawn inside the staging folder pointed at the same file in the folder
    it was swapped in as."""
    def moved(path: Path) -> Path:
        path = Path(path)
        return final / path.relative_to(stage) if path.is_relative_to(stage) else path

    return [replace(s, figures=[(caption, moved(path)) for caption, path in s.figures]) for s in sections]


def _model_finished(model_dir: Path, fingerprint: str) -> bool:
    """The model folder holds a finished training with this fingerprint: job.json and the checkpoint."""
    try:
        return (json.loads((model_dir / "job.json").read_text()).get("fingerprint") == fingerprint
                and (model_dir / "checkpoint").is_dir())
    except (OSError, ValueError, AttributeError):
        return False


def _publish_run_report(ws: Workspace, run_id: str, model_name: str, model_dir: Path, sections: list | None) -> None:
    """Record the run's trained model in its manifest, then render the run's report with the model's sections
    (``None``: rebuilt from the model's saved files, as `l4stb report` does) and its headline.json."""
    # lazy: loads matplotlib, slow to import
    from l4stb.analysis.report import render_report
    from l4stb.pipeline.saved_sections import saved_model_sections

    headline_text = (model_dir / HEADLINE).read_text()
    metrics = json.loads(headline_text).get("metrics") or {}
    update_manifest(ws, run_id, lambda m: m.steps.__setitem__(
        "train", {"status": "done", "finished": utc_iso(), "model": model_name, "model_dir": ws.stored(model_dir),
                  "test_macro_f1": metrics.get("test", {}).get("macro_f1")}))
    if sections is None:
        sections = saved_model_sections(ws, run_id)
    render_report(ws, run_id, sections, extra_files={HEADLINE: headline_text})


def _options(job: TrainJob) -> dict:
    """The options that decide what the job produces (not --force, not how many processes it uses)."""
    return {k: v for k, v in asdict(job).items() if k not in ("force", "jobs")}


def _json_text(obj: dict) -> str:
    return json.dumps(obj, indent=2, default=str) + "\n"


def _fingerprint(job: TrainJob, splits: PoolSplits) -> str:
    """What a training depends on: the job's options and the pool's rows (not its name or where it lives)."""
    h = hashlib.sha256(json.dumps(_options(job), sort_keys=True, default=str).encode())
    h.update(json.dumps(splits.meta.feature_names).encode())
    for name in ("train", "val", "test"):
        part = splits.split(name)
        for arr in (part.states, part.actions, part.rewards, part.dones, part.episode):
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _finished_outcome(model_dir: Path, report_index: Path, fingerprint: str) -> JobOutcome | None:
    """The outcome of an earlier job with the same fingerprint whose model and report are both in place."""
    headline = read_headline(report_index.parent)
    if not (_model_finished(model_dir, fingerprint) and headline.get("fingerprint") == fingerprint
            and report_index.is_file()):
        return None
    try:
        return JobOutcome(report_index, model_dir, dict(headline.get("metrics") or {}),
                          list(headline.get("closed_loop") or []), float(headline.get("wall_s") or 0.0),
                          headline.get("distill"))
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def _distill_stage(ws: Workspace, run_id: str | None, splits: PoolSplits, staged_model: Path, model_dir: Path,
                   console: Console):
    """The distilled tree of the model just trained (with DAgger rollouts when the run is a sim run).

    The teacher is read from the staging folder it is being built in; the tree is written beside the model's
    final folder (``<model>-distilled``), as ``l4stb distill`` would write it."""
    if run_id is None:
        return distill_pool_model(splits, staged_model, model_dir, console=console, root=ws.root)
    return distill_run(ws, run_id, DistillConfig(), console=console, model=str(staged_model), splits=splits,
                       out_dir=model_dir.parent / f"{model_dir.name}{DISTILLED_SUFFIX}")


def _distilled_series(distilled) -> tuple[str, PolicySpec]:
    """The closed-loop series of the distilled tree: the simulator's twin of the C evaluator, every packet."""
    return "distilled", PolicySpec("distilled tree every 1", 1, blob=distilled.blob)


def _build_pool(ws: Workspace, run_ids: list[str], test_runs: list[str], job: TrainJob, console: Console) -> PoolSplits:
    # lazy: loads pyarrow, slow to import
    from l4stb.analysis.packets import ensure_parsed
    from l4stb.analysis.pool_build import build_pool

    for r in run_ids + test_runs:
        result = ensure_parsed(ws, r)
        console.print(f"parsed {r}: {result.parsed:,} packet decisions"
                      + (f", {result.skipped_total:,} lines skipped" if result.skipped_total else "")
                      + (" (up to date)" if result.reused else ""))
    return build_pool(ws, run_ids, preset=job.preset or "paper7", reward=job.reward or "paper", test_run_ids=test_runs)
