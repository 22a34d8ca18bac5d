"""`l4stb plot`: redraw any saved report figure from the data saved beside it (``<figure>.csv`` + ``<figure>.json``).

Every figure l4stb writes has its numbers in long form beside it (:class:`~l4stb.analysis.plots.FigureData`).
This module draws them again with the size, style and series the user chooses, in the same colour-blind-
safe palette, each series told apart by colour and marker or line style, and writes PNG, SVG and PDF.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from l4stb.analysis.palette import series_linestyle, series_marker
from l4stb.analysis.plots import FigureData, save_figure
from l4stb.analysis.senders import base_cc
from l4stb.errors import L4stbError

OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
"""The Okabe-Ito palette (colour-blind safe), in an order whose neighbours differ most."""

STYLES = {"paper": {"font.size": 8, "lines.linewidth": 1.2}, "talk": {"font.size": 14, "lines.linewidth": 2.2},
          "default": {}}


@dataclass(frozen=True)
class PlotOptions:
    width_in: float = 7.0
    height_in: float = 4.0
    style: str = "default"
    series: tuple[str, ...] = ()
    """Only these series; all when empty. A name is a series' label, or the start of labels as the legend groups
    them ("router log (forwarded bytes)" for each repeat of it, "cubic" for every cubic flow); case is ignored."""
    logy: bool = False


def load_figure_data(csv: Path) -> FigureData:
    csv = Path(csv)
    spec_file = csv.with_suffix(".json")
    if not csv.is_file() or not spec_file.is_file():
        raise L4stbError(f"{csv} (and its spec {spec_file.name}) not found: every figure's data sits beside it in the "
                         "report's figures/ folder; list them with `l4stb plot --run ID --list`.")
    try:
        spec = json.loads(spec_file.read_text())
        frame = pd.read_csv(csv, dtype={"panel": object, "series": object})
    except (ValueError, OSError) as exc:
        raise L4stbError(f"{csv} or {spec_file.name} cannot be read ({exc}); re-render the report to rewrite them.") from None
    if spec.get("kind") not in ("step", "line", "scatter", "errorbar", "bar", "box"):
        raise L4stbError(f"{spec_file} names no figure kind l4stb can draw ({spec.get('kind')!r}).")
    frame["panel"] = [("" if isinstance(v, float) else str(v)) for v in frame["panel"]]
    frame["series"] = frame["series"].astype(str)
    ylabels = spec.get("panel_ylabels")
    return FigureData(spec["kind"], frame, spec.get("xlabel", ""), spec.get("ylabel", ""), spec.get("title", ""),
                      bool(spec.get("categorical_x")), ylabels if isinstance(ylabels, dict) else None)


def redraw(data: FigureData, options: PlotOptions = PlotOptions()) -> Figure:
    if options.style not in STYLES:
        raise L4stbError(f"unknown style '{options.style}'; use one of {', '.join(STYLES)}.")
    frame = data.frame
    if options.series:
        known = sorted(set(frame["series"]))
        chosen = {name: _matching(name, known, frame) for name in options.series}
        missing = sorted(n for n, hits in chosen.items() if not hits)
        if missing:
            raise L4stbError(f"series {', '.join(missing)} not in this figure; it has: {', '.join(known)}.")
        frame = frame[frame["series"].isin({s for hits in chosen.values() for s in hits})]
    panels = list(dict.fromkeys(frame["panel"])) or [""]
    all_series = list(dict.fromkeys(frame["series"]))
    with matplotlib.rc_context(STYLES[options.style]):
        fig = Figure(figsize=(options.width_in, options.height_in), layout="constrained")
        FigureCanvasAgg(fig)
        stacked = bool(data.panel_ylabels)  # panels of different units over one time axis, one above the other
        axes = (fig.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0] if stacked
                else fig.subplots(1, len(panels), squeeze=False)[0])
        cats = list(dict.fromkeys(frame["x"])) if data.categorical_x else []
        for ax, panel in zip(axes, panels):
            part = frame[frame["panel"] == panel]
            for i, name in enumerate(all_series):
                _draw(ax, data, part[part["series"] == name], name, i, len(all_series), cats)
            ax.set_title(panel, fontsize="medium")
            if not stacked or ax is axes[-1]:
                ax.set_xlabel(data.xlabel)
            ax.set_ylabel((data.panel_ylabels or {}).get(panel, data.ylabel))
            if stacked and part["series"].nunique() > 1:
                ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
            if options.logy:
                ax.set_yscale("log")
            if cats:
                ax.set_xticks(range(len(cats)), [str(c) for c in cats])
            ax.grid(True, alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        if handles and not stacked:
            fig.legend(handles, labels, loc="outside lower center", fontsize="small", ncols=min(4, len(handles)))
    return fig


def _matching(name: str, known: list[str], frame: pd.DataFrame) -> set[str]:
    """The series a --series name selects: the one it names, or every series whose label starts with it (a word
    boundary after it), or whose ``cc`` column is it (with or without its sender stack); case is ignored."""
    want = name.strip().lower()
    exact = {s for s in known if s.lower() == want}
    if exact:
        return exact
    hits = {s for s in known if s.lower().startswith(want) and s[len(want):len(want) + 1] in (" ", ",", ":", "(", "")}
    hits |= {s for s in known if any(w == want for w in s.lower().replace(",", " ").replace(":", " ").split())}
    if "cc" in frame:  # the CC with its stack ("dctcp (linux)"), or the bare CC for every stack ("dctcp")
        cc = frame["cc"].astype(str).str.lower()
        hits |= set(frame.loc[(cc == want) | (cc.map(base_cc) == want), "series"])
    return hits


def _draw(ax, data: FigureData, g: pd.DataFrame, name: str, i: int, n: int, cats: list) -> None:
    if g.empty:
        return
    color = OKABE_ITO[i % len(OKABE_ITO)]
    x = g["x"].map({c: j for j, c in enumerate(cats)}).to_numpy(dtype=float) if cats else g["x"].to_numpy(dtype=float)
    if cats and data.kind in ("bar", "box", "scatter", "errorbar"):
        x = x + (i - (n - 1) / 2) * (0.8 / max(n, 1))
    style = dict(color=color, label=name)
    if data.kind == "step":
        ax.step(x, g["y"], where="post", linestyle=series_linestyle(i), **style)
    elif data.kind == "line":
        ax.plot(x, g["y"], linestyle=series_linestyle(i), marker=series_marker(i), markevery=max(1, len(x) // 12),
                **style)
    elif data.kind == "scatter":
        ax.scatter(x, g["y"], marker=series_marker(i), s=18, **style)
    elif data.kind == "errorbar":
        y = g["y"].to_numpy(dtype=float)
        low = g["y_low"].to_numpy(dtype=float) if "y_low" in g else np.full(len(y), np.nan)
        high = g["y_high"].to_numpy(dtype=float) if "y_high" in g else np.full(len(y), np.nan)
        err = np.vstack([np.nan_to_num(y - low), np.nan_to_num(high - y)])
        ax.errorbar(x, y, yerr=err, marker=series_marker(i), linestyle=series_linestyle(i), capsize=3, **style)
    elif data.kind == "bar":
        ax.bar(x, g["y"], width=0.8 / max(n, 1), edgecolor="#333333", hatch=("", "//", "..", "xx")[i % 4], **style)
    elif data.kind == "box":
        stats = [{"label": "", **{k: float(r[k]) for k in ("whislo", "q1", "med", "q3", "whishi", "mean")},
                  "fliers": []} for _, r in g.iterrows()]
        art = ax.bxp(stats, positions=list(x), widths=0.6 / max(n, 1), showmeans=True, patch_artist=True)
        for box in art["boxes"]:
            box.set_facecolor(color)
        ax.plot([], [], color=color, linewidth=6, label=name)


def figures_of(report_dir: Path) -> list[Path]:
    """The saved figure data files of a report (CSV with a spec beside it), relative names sorted."""
    folder = Path(report_dir) / "figures"
    return sorted(p for p in folder.rglob("*.csv") if p.with_suffix(".json").is_file()) if folder.is_dir() else []


def replot(csv: Path, out_base: Path, options: PlotOptions) -> Path:
    fig = redraw(load_figure_data(csv), options)
    return save_figure(fig, out_base).png


def find_figure(report_dir: Path, name: str) -> Path:
    """A figure by its stem (``queue_delay_ecdf``) or its path under figures/; a clear error listing the choices."""
    found = figures_of(report_dir)
    matches = [p for p in found if p.stem == name or p.relative_to(report_dir).with_suffix("").as_posix() == name
               or p.relative_to(report_dir / "figures").with_suffix("").as_posix() == name]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(p.relative_to(report_dir / "figures").with_suffix("").as_posix() for p in found) or "none"
    why = "is ambiguous" if matches else "is not a saved figure"
    raise L4stbError(f"figure '{name}' {why} in {report_dir}; saved figures: {names}. Render the report first "
                     "(`l4stb report`) if it has none.")


def parse_series(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(v.strip() for item in values for v in item.split(",") if v.strip())
