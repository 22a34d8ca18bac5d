"""The report's frame: sections, tables, and the writing of ``index.html`` and ``summary.md``.

Every stage that shows results (the network sections of :mod:`l4stb.analysis.report`, the model and closed-loop
sections of :mod:`l4stb.pipeline`, ``compare``) hands over :class:`ReportSection` records; this module renders
them. A section's text, tables and figures appear in both ``index.html`` (figures embedded as base64 PNG, inline
CSS, no network reference, so it opens offline) and ``summary.md`` (figures linked from ``figures/``; SVGs sit
beside). It knows nothing of runs or networks.
"""

from __future__ import annotations

import base64
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Mapping, Sequence

import jinja2
from markupsafe import Markup

from l4stb.workspace import atomic_write_text, staged_folder, utc_iso

FIGURES_DIR = "figures"


@dataclass
class ReportTable:
    """A table shown in both index.html and summary.md. Cells are rendered with ``str()`` (floats: 4 significant digits)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""


@dataclass
class ReportSection:
    """One section of the report.

    ``markdown`` is rendered to HTML for index.html and copied as is into summary.md; ``html`` is a
    trusted HTML fragment inserted as is into index.html (summary.md gets its text). ``figures`` are
    ``(caption, path)`` pairs: a PNG (or SVG) anywhere on disk, copied into ``report/figures/<anchor>/``
    (with an SVG of the same stem beside it, if there is one) unless it is already inside the report
    folder, and embedded in index.html.
    """

    title: str
    markdown: str = ""
    html: str = ""
    figures: Sequence[tuple[str, Path]] = ()
    tables: Sequence[ReportTable] = ()
    anchor: str = ""

    def __post_init__(self) -> None:
        if not self.anchor:
            self.anchor = re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "section"


@dataclass
class _Figure:
    caption: str
    png: str  # relative to the report dir
    svg: str | None
    data_uri: str


@dataclass
class _Rendered:
    section: ReportSection
    body_html: Markup
    body_md: str
    tables: list[ReportTable]
    figures: list[_Figure] = field(default_factory=list)


def render_model_report(out: Path, title: str, sections: Sequence[ReportSection],
                        extra_files: Mapping[str, str] | None = None) -> Path:
    """A report of model sections only, for a model trained on a pool outside any run (no network data)."""
    with staged_folder(Path(out)) as stage:
        write_report(stage, title, sections, footer=title, extra_files=extra_files)
    return Path(out) / "index.html"


def write_report(out: Path, title: str, sections: Sequence[ReportSection], *, footer: str,
                  scenario: Any = None, testbed: str = "",
                  extra_files: Mapping[str, str] | None = None) -> tuple[Path, list[_Rendered]]:
    """Render ``sections`` into out/index.html and out/summary.md (atomically); return the index and the parts.

    Every file of the report is made world-readable (0644, folders 0755): a results folder is served to
    colleagues, and the temp files of atomic writes are created private.
    """
    out.mkdir(parents=True, exist_ok=True)
    rendered = [_render_section(s, out) for s in sections]
    html_text = _environment().get_template("report.html.j2").render(
        title=title, run_id=footer, generated=utc_iso(), sections=rendered, scenario=scenario, testbed=testbed)
    index = out / "index.html"
    atomic_write_text(index, html_text)
    atomic_write_text(out / "summary.md", (f"*Testbed: {testbed}.*\n\n" if testbed else "")
                      + _markdown_report(title, rendered))
    for name, text in (extra_files or {}).items():  # e.g. train-and-report's headline.json, inside the set
        atomic_write_text(out / name, text)
    publish_permissions(out)
    return index, rendered


def publish_permissions(folder: Path) -> None:
    """0644 for files and 0755 for folders under ``folder`` (and itself)."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def md_code(text: str) -> str:
    return text.replace("`", "'")[:200]


def md_plain(text: str) -> str:
    """User text shown as itself inside markdown: every markdown and HTML special character escaped, lines
    joined, so a scenario description can add no image, link or tag to the offline report."""
    return re.sub(r"([\\`*_\[\]()!<>|~])", r"\\\1", " ".join(str(text).split()))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("l4stb.analysis", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["cell"] = cell_text
    return env


def _md_to_html(text: str) -> str:
    from markdown_it import MarkdownIt  # comes with rich

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag, attrs) -> None:
        if tag in ("p", "br", "li", "tr", "div", "h1", "h2", "h3", "h4"):
            self.parts.append("\n")


def _html_to_text(fragment: str) -> str:
    parser = _TextOnly()
    parser.feed(fragment)
    return re.sub(r"\n{3,}", "\n\n", "".join(parser.parts)).strip()


def cell_text(v: Any) -> str:
    if isinstance(v, float):
        return "—" if not math.isfinite(v) else f"{v:.4g}"
    return str(v)


def _place_figure(path: Path, out: Path, anchor: str) -> tuple[str, str | None]:
    """The figure's path relative to the report dir; a figure from elsewhere is copied (with its SVG sibling)
    to ``figures/<section anchor>/``, so it never overwrites a figure of another section."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"report figure {path} does not exist")
    try:
        rel = path.resolve().relative_to(out.resolve())
    except ValueError:
        fig_dir = out / FIGURES_DIR / anchor
        fig_dir.mkdir(parents=True, exist_ok=True)
        target = fig_dir / path.name
        shutil.copyfile(path, target)
        svg = path.with_suffix(".svg")
        if path.suffix != ".svg" and svg.is_file():
            shutil.copyfile(svg, target.with_suffix(".svg"))
        rel = target.relative_to(out)
    svg_rel = rel.with_suffix(".svg")
    return rel.as_posix(), svg_rel.as_posix() if (out / svg_rel).is_file() else None


def _render_section(section: ReportSection, out: Path) -> _Rendered:
    parts = []
    if section.markdown:
        parts.append(_md_to_html(section.markdown))
    if section.html:
        parts.append(section.html)
    md = section.markdown or (_html_to_text(section.html) if section.html else "")
    r = _Rendered(section, Markup("\n".join(parts)), md, list(section.tables))
    for caption, path in section.figures:
        rel, svg = _place_figure(Path(path), out, section.anchor)
        mime = "image/svg+xml" if rel.endswith(".svg") else "image/png"
        data = base64.b64encode((out / rel).read_bytes()).decode("ascii")
        r.figures.append(_Figure(caption, rel, svg, f"data:{mime};base64,{data}"))
    return r


def _md_table(t: ReportTable) -> str:
    def esc(v: Any) -> str:
        return cell_text(v).replace("|", "\\|").replace("\n", " ")

    lines = []
    if t.caption:
        lines += [f"*{t.caption}*", ""]
    lines.append("| " + " | ".join(esc(c) for c in t.columns) + " |")
    lines.append("|" + "|".join("---" for _ in t.columns) + "|")
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def _markdown_report(title: str, rendered: Sequence[_Rendered]) -> str:
    out = [f"# {title}", ""]
    out += [f"- [{r.section.title}](#{r.section.anchor})" for r in rendered]
    for r in rendered:
        out += ["", f"## {r.section.title}", ""]
        if r.body_md:
            out += [r.body_md, ""]
        for t in r.tables:
            out += [_md_table(t), ""]
        for f in r.figures:
            out += [f"![{f.caption}]({f.png})", "", f"*{f.caption}*" + (f" ([SVG]({f.svg}))" if f.svg else ""), ""]
    return "\n".join(out).rstrip() + "\n"
