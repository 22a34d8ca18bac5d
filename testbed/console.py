"""The single rich Console through which everything a person reads is printed, and the one helper that makes values safe to print."""

from __future__ import annotations

import re

from rich.console import Console
from rich.markup import escape

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
"""C0/C1 controls (ESC starts terminal sequences: titles, colours, hyperlinks) and bidi overrides; tab and
newline stay."""


def clean(value: object) -> str:
    """``value`` as text with every control character replaced by U+FFFD: safe to show on a terminal."""
    return _CONTROL_RE.sub("\ufffd", str(value))


def safe(value: object) -> str:
    """``value`` for interpolation into rich markup: controls removed and ``[...]`` escaped, so a scenario
    name such as ``[/x]`` or ``[link=file:///etc/passwd]`` prints as itself instead of being markup."""
    return escape(clean(value))


def print_error(message: object) -> None:
    """One paragraph on stderr: a red ``error:`` and the message as plain text (never markup), its line
    breaks folded into spaces (a YAML error or an OS message brings its own)."""
    err_console.print("[bold red]error:[/] " + safe(" ".join(str(message).split())), soft_wrap=True)
