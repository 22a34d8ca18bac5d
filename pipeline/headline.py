"""The name and reader of headline.json, the train-and-report job's figures of merit and fingerprint.

Both the job (which writes it) and the saved report sections (which re-render a trained run) read it, so it
lives below both of them.
"""

from __future__ import annotations

import json
from pathlib import Path

HEADLINE = "headline.json"
"""The job's figures of merit and fingerprint: saved in the model folder and copied beside the report."""


def read_headline(folder: Path) -> dict:
    """``folder/headline.json`` as a dict; empty when it is missing or not a JSON object."""
    try:
        doc = json.loads((folder / HEADLINE).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}
