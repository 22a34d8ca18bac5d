"""The analysis commands that act on several runs or on saved outputs: `compare`, `export` and `plot`."""

from __future__ import annotations

from pathlib import Path

import click

from l4stb.console import console
from l4stb.errors import L4stbError


@click.command()
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--label", "labels", multiple=True, help="A label per run, in order (default: the run ids).")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Report folder (default: workdir/compare/<first run>-vs-...).")
@click.pass_obj
def compare(c, run_ids, labels, out) -> None:
    """One report that overlays runs: delay ECDFs per queue, throughput per CC, tradeoff, differences with CIs."""
    # lazy: the command's stage, imported when the command runs; loads pandas, slow to import
    from l4stb.analysis.compare import render_compare_report

    with c.ws.locked("compare"):
        ids = [c.ws.resolve_run(r) for r in run_ids]
        path = render_compare_report(c.ws, ids, labels=labels, out=Path(out) if out else None, console=console)
    console.print(f"[green]comparison report[/] of {len(ids)} runs: {path}")


@click.command()
@click.option("--run", "run_id", default=None, help="Run id (default: the latest run).")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="parquet", show_default=True)
@click.option("--what", "what", type=click.Choice(["packets", "flows", "summary", "flowmap"]), multiple=True,
              help="Which tables (repeatable; default: all four). flowmap: flow_id -> host, CC, stack, transport.")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Folder to write into (default: runs/<id>/export/).")
@click.pass_obj
def export(c, run_id, fmt, what, out) -> None:
    """Write a run's packets, flows and summary as CSV or parquet, with each column's unit and meaning."""
    # lazy: the command's stage, imported when the command runs; loads pandas, slow to import
    from l4stb.analysis.export import export_run

    with c.ws.locked("export"):
        run_id = c.ws.resolve_run(run_id)
        files = export_run(c.ws, run_id, fmt=fmt, what=tuple(what) or ("packets", "flows", "summary", "flowmap"),
                           out=Path(out) if out else None)
    for path in files:
        console.print(f"[green]wrote[/] {path}")


@click.command()
@click.argument("figure", required=False)
@click.option("--run", "run_id", default=None, help="Run id whose report holds the figure (default: the latest run).")
@click.option("--report-dir", default=None, type=click.Path(file_okay=False),
              help="A report folder instead of a run's (a compare or sweep report).")
@click.option("--list", "list_only", is_flag=True, help="List the figures that can be redrawn.")
@click.option("--width", type=float, default=7.0, show_default=True, help="Width in inches.")
@click.option("--height", type=float, default=4.0, show_default=True, help="Height in inches.")
@click.option("--style", type=click.Choice(["default", "paper", "talk"]), default="default", show_default=True)
@click.option("--series", "series", multiple=True, help="Only these series (repeatable or comma-separated).")
@click.option("--logy", is_flag=True, help="Logarithmic y axis.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Output base name (default: plots/<figure> beside the report folder, outside the report's own "
                   "files, so the next `l4stb report` keeps it); PNG, SVG and PDF are written.")
@click.pass_obj
def plot(c, figure, run_id, report_dir, list_only, width, height, style, series, logy, out) -> None:
    """Redraw a report figure from the data saved beside it, at another size, style or with fewer series."""
    # lazy: the command's stage, imported when the command runs; loads matplotlib, pandas, slow to import
    from l4stb.analysis.replot import PlotOptions, figures_of, find_figure, parse_series, replot

    if report_dir:
        folder = Path(report_dir)
    else:
        with c.reading("plot"):
            folder = c.ws.report_dir(c.ws.resolve_run(run_id))
    if list_only or not figure:
        names = [p.relative_to(folder / "figures").with_suffix("").as_posix() for p in figures_of(folder)]
        if not names:
            raise L4stbError(f"no saved figure data in {folder}; render the report first (`l4stb report`).")
        console.print("figures with saved data: " + ", ".join(names))
        return
    if not (0.5 <= width <= 40 and 0.5 <= height <= 40):
        raise L4stbError("--width and --height are inches between 0.5 and 40.")
    csv = find_figure(folder, figure)
    # a replot lives outside the report's output set: re-rendering the report swaps that set whole
    base = Path(out) if out else folder.parent / "plots" / csv.stem
    png = replot(csv, base, PlotOptions(width, height, style, parse_series(series), logy))
    console.print(f"[green]redrawn[/] {png} (and .svg, .pdf beside it)")
