"""`l4stb distill`: turn a run's trained policy into the integer decision tree the router and the simulator run."""

from __future__ import annotations

import re

import click

from l4stb.console import console
from l4stb.errors import L4stbError


@click.command("distill")
@click.option("--run", "run_id", default=None, help="The run whose trained model is the teacher (default: the latest).")
@click.option("--model", default=None, help="Teacher model: a name under the run's model/ or a model folder "
                                            "(default: the model train-and-report trained on the run).")
@click.option("--max-depth", type=int, default=8, show_default=True, help="Tree depth limit (kernel bound: 24).")
@click.option("--max-leaves", type=int, default=64, show_default=True, help="Leaf limit.")
@click.option("--max-bytes", type=int, default=4096, show_default=True, help="Blob size limit in bytes.")
@click.option("--dagger-rounds", type=int, default=1, show_default=True,
              help="Rounds in which the tree drives the simulated router on training seeds and the teacher labels "
                   "the states it visits (0 = imitation only).")
@click.option("--dagger-repeats", type=int, default=1, show_default=True, help="Training repeats per DAgger round.")
@click.option("--name", default=None,
              help="Write the tree to the run's model/NAME (default: <teacher>-distilled, which replaces the tree the "
                   "run's report describes).")
@click.pass_obj
def distill(c, run_id: str | None, model: str | None, name: str | None, **limits) -> None:
    """Distil the learned AQM into a small integer decision tree (a policy blob for aqm `policy`)."""
    # lazy: the command's stage, imported when the command runs
    from l4stb.model.distill import DistillConfig
    from l4stb.pipeline.distill_job import distill_run, print_summary

    cfg = DistillConfig(**limits).validated()
    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise L4stbError(f"--name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.")
    with c.ws.locked("distill"):
        run = c.ws.resolve_run(run_id)
        if name and (c.ws.model_dir(run, name) / "checkpoint").is_dir():
            raise L4stbError(f"--name {name}: {c.ws.model_dir(run, name)} holds a trained model, not a tree; pick "
                             "another name.")
        result = distill_run(c.ws, run, cfg, console=console, model=model, name=name)
    print_summary(result, console)
