"""docs/reliability.md (the README's Reliability section, in depth) names the test behind each promise: every name it
gives must be a test here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_the_reliability_page_names_exists():
    readme = (ROOT / "README.md").read_text()
    assert "(docs/reliability.md)" in readme, "the README's Reliability section links the page"
    section = (ROOT / "docs" / "reliability.md").read_text()
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", section))
    assert len(named) >= 20, "the Reliability section names the tests behind its promises"
    defined = {name for path in (ROOT / "tests").glob("test_*.py")
               for name in re.findall(r"^def (test_[a-z0-9_]+)", path.read_text(), re.MULTILINE)}
    assert not named - defined, f"README names tests that do not exist: {sorted(named - defined)}"
