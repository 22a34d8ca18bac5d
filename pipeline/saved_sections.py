"""The model sections of a trained run, rebuilt from its saved files, so `l4stb report` re-renders the full report."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from l4stb.analysis.report_frame import ReportSection
from l4stb.manifest import load_manifest
from l4stb.pipeline.distill_report import distill_section
from l4stb.pipeline.headline import HEADLINE, read_headline
from l4stb.pipeline.report_sections import model_sections
from l4stb.workspace import Workspace, read_json

log = logging.getLogger(__name__)


def saved_model_sections(ws: Workspace, run_id: str) -> list[ReportSection]:
    """Training, classification and cost sections from model_dir/metrics.json(l), and the closed loop from its
    series' runs; empty for a run that `train-and-report` never trained on. A series run that was deleted
    leaves the closed loop out, with a warning that says so."""
    manifest = load_manifest(ws, run_id)
    model_dir = _trained_model_dir(ws, manifest)
    if model_dir is None:
        return []
    metrics_file = model_dir / "metrics.json"
    if not metrics_file.is_file():
        log.warning("run %s was trained, but %s is gone: the report has no model sections", run_id, metrics_file)
        return []

    metrics = read_json(metrics_file, "model metrics")
    history_file = model_dir / "metrics.jsonl"
    history = [json.loads(line) for line in history_file.read_text().splitlines() if line.strip()] \
        if history_file.is_file() else []
    sections = model_sections(metrics, history, model_dir / "figures")
    headline = read_headline(model_dir)
    if isinstance(headline.get("distill"), dict):
        sections.append(distill_section(headline["distill"]))
    record = manifest.steps.get("closed_loop")
    if isinstance(record, dict) and record.get("series"):
        # lazy: the closed loop loads the log parser, which may be absent; only runs with a series need it
        from l4stb.pipeline.closed_loop import closed_loop_section

        try:
            section, _rows = closed_loop_section(ws, run_id, record)
            sections.append(section)
        except FileNotFoundError as exc:
            log.warning("closed-loop series run %s is gone: the report leaves the closed loop out", exc)
    return sections


def saved_extra_files(ws: Workspace, run_id: str) -> dict[str, str]:
    """headline.json of the run's trained model, which train-and-report puts beside the report: a report
    re-rendered from saved files keeps it (and `train-and-report` then still finds itself up to date)."""
    model_dir = _trained_model_dir(ws, load_manifest(ws, run_id))
    path = model_dir / HEADLINE if model_dir is not None else None
    return {HEADLINE: path.read_text()} if path is not None and path.is_file() else {}


def _trained_model_dir(ws: Workspace, manifest) -> Path | None:
    """The run's trained model folder in this workdir (an absolute path an older l4stb stored is migrated)."""
    train = manifest.steps.get("train")
    if not isinstance(train, dict) or train.get("status") != "done" or not train.get("model_dir"):
        return None
    return ws.from_stored(str(train["model_dir"]))
