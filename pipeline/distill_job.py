"""`l4stb distill` and the distill stage of train-and-report: find a run's teacher and pool, distil, record it."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from l4stb.analysis.pool import PoolSplits, load_pool
from l4stb.console import safe
from l4stb.errors import L4stbError
from l4stb.manifest import load_manifest, update_manifest
from l4stb.model.distill import DistillConfig, DistillResult, Teacher, distill
from l4stb.workspace import Workspace, utc_iso

DISTILLED_SUFFIX = "-distilled"


def teacher_dir(ws: Workspace, run_id: str, model: str | None) -> Path:
    """The teacher's model folder: ``model`` as a path or a name under the run, else the run's trained model."""
    if model:
        path = Path(model).expanduser()
        folder = path if (path / "checkpoint").is_dir() else ws.model_dir(run_id, model)
    else:
        train = load_manifest(ws, run_id).steps.get("train") or {}
        if not train.get("model_dir"):
            raise L4stbError(f"run {run_id} has no trained model to distil; run `l4stb train-and-report --run "
                             f"{run_id}` first, or name one with --model.")
        folder = ws.from_stored(train["model_dir"])
    if not (folder / "checkpoint").is_dir():
        raise L4stbError(f"{folder} holds no trained model (no checkpoint/ folder); train one with "
                         "`l4stb train-and-report`, or give --model the folder it wrote.")
    return folder


def _teacher_metrics(folder: Path) -> dict:
    path = folder / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _eval_returns(folder: Path) -> str:
    meta = folder / "checkpoint" / "meta.json"
    cfg = json.loads(meta.read_text()).get("train_config", {}) if meta.is_file() else {}
    return cfg.get("eval_returns", "target")


def _pool_of(ws: Workspace, run_id: str, metrics: dict) -> PoolSplits:
    name = metrics.get("data", {}).get("pool")
    if not name:
        raise L4stbError(f"the teacher's metrics.json names no pool; retrain it with `l4stb train-and-report --run "
                         f"{run_id}`.")
    return load_pool(ws.pool_dir(run_id, name))


def distill_run(ws: Workspace, run_id: str, cfg: DistillConfig, *, console: Console, model: str | None = None,
                splits: PoolSplits | None = None, out_dir: Path | None = None,
                name: str | None = None) -> DistillResult:
    """Distil the run's teacher (its trained model, or ``model``) into ``out_dir``, by default
    ``<teacher>-distilled`` beside it; ``name`` puts it in the run's ``model/<name>`` instead (the teacher's own
    folder stays what distill.json names)."""
    folder = teacher_dir(ws, run_id, model)
    metrics = _teacher_metrics(folder)
    splits = splits or _pool_of(ws, run_id, metrics)
    manifest = load_manifest(ws, run_id)
    scenario = topology = None
    if manifest.provider == "sim" and manifest.kind == "run":
        scenario = manifest.run_scenario()
        topology = manifest.run_topology()
    elif cfg.dagger_rounds:
        console.print(f"[yellow]DAgger skipped[/]: run {run_id} is a {manifest.kind} run on the {manifest.provider} "
                      "provider; rollouts replay a sim run's scenario. The tree learns from the teacher's labels only.")
    if name:
        out_dir = ws.model_dir(run_id, name)
    out_dir = out_dir or folder.parent / f"{folder.name}{DISTILLED_SUFFIX}"
    # the model's name, also while it is being staged
    teacher_name = folder.name if name else out_dir.name.removesuffix(DISTILLED_SUFFIX)
    teacher_final = folder if name else out_dir.parent / teacher_name
    console.print(f"distilling [bold]{safe(teacher_name)}[/] into a tree of depth <= {cfg.max_depth}, <= {cfg.max_leaves} "
                  f"leaves, <= {cfg.max_bytes:,} bytes ({cfg.dagger_rounds} DAgger round(s))")
    with Progress(SpinnerColumn(), TextColumn("[bold]distill[/] {task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("starting", total=None)
        result = distill(splits, _teacher(folder, teacher_final), out_dir, cfg,
                         scenario=scenario, topology=topology, run_id=run_id, teacher_metrics=metrics,
                         progress=lambda text: progress.update(task, description=text), root=ws.root)
    s = result.summary
    update_manifest(ws, run_id, lambda m: m.steps.__setitem__("distill", {
        "status": "done", "finished": utc_iso(),
        "teacher": ws.stored(teacher_final), "out_dir": ws.stored(out_dir),
        "sha256": s["blob"]["sha256"], "bytes": s["blob"]["bytes"], "agreement": s["agreement_with_teacher"],
        "test_macro_f1": s["test"]["macro_f1"]}))
    return result


def distill_pool_model(splits: PoolSplits, folder: Path, final_folder: Path, *, console: Console,
                       root: Path | None = None) -> DistillResult:
    """Distil a model trained on a pool outside any run (read from ``folder``, which may be the staging folder of
    ``final_folder``) into ``<final_folder>-distilled``: imitation only, as there is no scenario to roll out."""
    console.print("distilling the model into a decision tree (no run to roll out: imitation only)")
    out_dir = final_folder.parent / f"{final_folder.name}{DISTILLED_SUFFIX}"
    return distill(splits, _teacher(folder, final_folder), out_dir, DistillConfig(dagger_rounds=0),
                   teacher_metrics=_teacher_metrics(folder), root=root)


def _teacher(folder: Path, final_folder: Path) -> Teacher:
    """The teacher in ``folder``, labelling as it was evaluated, and named after the folder it ends up in."""
    return Teacher(folder / "checkpoint", eval_returns=_eval_returns(folder),
                   final_checkpoint=final_folder / "checkpoint")


def print_summary(result: DistillResult, console: Console) -> None:
    # lazy: loads matplotlib, pandas, slow to import
    from l4stb.pipeline.distill_report import fidelity_rows

    table = Table(title="Distilled policy on the held-out test split")
    for col in ("model", "agreement with teacher", "accuracy", "balanced acc.", "macro-F1", "size", "decision latency"):
        table.add_column(col)
    for row in fidelity_rows(result.summary):
        table.add_row(*row)
    console.print(table)
    console.print(f"blob: [bold]{result.out_dir / 'policy.l4pb'}[/] (use it with `--set aqm.name=policy --set "
                  f"aqm.policy={result.out_dir}`)")
