"""`l4stb calibrate`: the simulator's Linux stack against a real Linux kernel, cell by cell, with agreement bands."""

from __future__ import annotations

import click
from rich.status import Status

from l4stb.console import console, safe
from l4stb.errors import L4stbError


@click.command("calibrate")
@click.option("--matrix", "matrix_name", type=click.Choice(["ci", "quick", "full"]), default="quick",
              show_default=True, help="ci: 2 cells at 8 Mbit/s; quick: 11 cells at 10 ms; full: the whole matrix "
                                      "(78 cells: hours under TCG).")
@click.option("--repeats", type=click.IntRange(2, 50), default=3, show_default=True,
              help="Repeats per cell and provider (the real kernel's spread needs at least 2).")
@click.option("--duration", "duration_s", type=click.IntRange(5, 600), default=20, show_default=True,
              help="Seconds per repeat.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=1, show_default=True)
@click.option("--cell", "cell_names", multiple=True, metavar="NAME",
              help="Only this cell of the matrix (repeatable; names as the report shows them).")
@click.option("--reuse", type=click.Choice(["qemu", "sim"]), multiple=True,
              help="Take each cell's newest complete run on this provider (same scenario, repeats, duration and "
                   "seed) instead of running it again: `--reuse qemu` re-runs only the simulator against real-kernel "
                   "runs already made.")
@click.pass_obj
def calibrate(c, matrix_name: str, repeats: int, duration_s: int, seed: int, cell_names: tuple[str, ...],
              reuse: tuple[str, ...]) -> None:
    """Run a scenario matrix on sim (stack: linux) and on the real kernel (qemu), and compare them."""
    # lazy: the command's stage, imported when the command runs; loads pandas, slow to import
    from l4stb.analysis.calibration import compare_runs, write_report
    from l4stb.calibrate import matrix, output_dir, provider_workspace, run_matrix

    with c.ws.locked("calibrate"):  # the calibration's own workdirs live inside this one
        cells = matrix(matrix_name)
        if cell_names:
            unknown = sorted(set(cell_names) - {cell.name for cell in cells})
            if unknown:
                raise L4stbError(f"no cell {', '.join(unknown)} in the {matrix_name} matrix; its cells are "
                                 f"{', '.join(cell.name for cell in cells)}.")
            cells = [cell for cell in cells if cell.name in cell_names]
        with Status("calibrate: starting", console=console) as status:
            done = run_matrix(c.ws, cells, duration_s=duration_s, repeats=repeats, seed=seed, reuse=reuse,
                              say=lambda m: status.update(f"calibrate: {safe(m)}"))
        pairs = [(cr.cell.name, cr.runs["sim"], cr.runs["qemu"]) for cr in done]
        rows = compare_runs(provider_workspace(c.ws, "sim"), provider_workspace(c.ws, "qemu"), pairs)
        out = output_dir(c.ws, matrix_name + ("-" + "-".join(sorted(cell_names)) if cell_names else ""))
        context = (f"Matrix `{matrix_name}`: {len(cells)} cells, {repeats} repeats of {duration_s} s each, seed {seed}. "
                   "Simulator: l4stb's sim provider with every client on the Linux stack behind an htb shaper. Real "
                   "kernel: the qemu provider (Debian's kernel, the real sch_dualpi2, real TCP). A metric agrees when "
                   "the simulator is within max(band floor, the real kernel's 95 % run-to-run half-width).")
        write_report(out, rows, "Simulator vs real Linux kernel", context,
                     {"matrix": matrix_name, "repeats": repeats, "duration_s": duration_s, "seed": seed,
                      "runs": {cell: {"sim": s, "qemu": q} for cell, s, q in pairs}})
    agree = sum(r.verdict == "agrees" for r in rows)
    judged = sum(r.verdict != "undefined" for r in rows)
    console.print(f"calibration: {agree} of {judged} metrics agree within their bands; report "
                  f"{safe(out / 'calibration.md')}")
    for r in rows:
        if r.verdict == "differs":
            console.print(f"  [yellow]differs[/] {safe(r.cell)}: {safe(r.metric)} sim {r.sim:.3g} vs real "
                          f"{r.real:.3g} (band ±{r.band:.3g})")
