"""The single rich Console through which everything a person reads is printed."""

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
