"""The README's Reliability section names the test behind each promise: every name it gives must be a test here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_the_readme_names_exists():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Reliability"):readme.index("\n## ", readme.index("## Reliability") + 1)]
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", section))
    assert len(named) >= 20, "the Reliability section names the tests behind its promises"
    defined = {name for path in (ROOT / "tests").glob("test_*.py")
               for name in re.findall(r"^def (test_[a-z0-9_]+)", path.read_text(), re.MULTILINE)}
    assert not named - defined, f"README names tests that do not exist: {sorted(named - defined)}"
