"""`l4stb distill`: turn a run's trained policy into the integer decision tree the router and the simulator run."""

from __future__ import annotations

import click

from l4stb.console import console


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
@click.pass_obj
def distill(c, run_id: str | None, model: str | None, **limits) -> None:
    """Distil the learned AQM into a small integer decision tree (a policy blob for aqm `policy`)."""
    from l4stb.model.distill import DistillConfig
    from l4stb.model.distill_job import distill_run, print_summary

    cfg = DistillConfig(**limits).validated()
    with c.ws.locked("distill"):
        run = c.ws.resolve_run(run_id)
        result = distill_run(c.ws, run, cfg, console=console, model=model)
    print_summary(result, console)
