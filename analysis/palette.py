"""The one colour per congestion control, queue and action (and one line style per series) that every figure uses.

Colours are from the Okabe-Ito colour-blind-safe palette. A CC or a queue has the same colour in every
figure of every report; when several series (AQMs, a learned policy, baselines) share one plot they are
told apart by line style and marker, never by recolouring a CC or a queue. Where a panel holds one queue only
(the delay ECDF, one panel per queue) the queue colour says nothing, so there the series also take a hue each
(:data:`SERIES_COLORS`): hue and dash, for readers who cannot tell dashes apart at a glance.
"""

from __future__ import annotations

import hashlib

CC_COLORS: dict[str, str] = {
    "cubic": "#0072B2",  # blue
    "newreno": "#56B4E9",  # sky blue
    "dctcp": "#D55E00",  # vermillion
    "prague": "#CC79A7",  # reddish purple
}
"""Classic CCs in blues, scalable (L4S) CCs in warm colours, so the two classes read apart at a glance."""

QUEUE_COLORS: dict[str, str] = {
    "C": "#009E73",  # bluish green: the Classic queue
    "L": "#E69F00",  # orange: the L4S queue
}

QUEUE_LABELS: dict[str, str] = {"C": "Classic queue (C)", "L": "L4S queue (L)"}

ACTION_COLORS: dict[str, str] = {
    "forward": "#BBBBBB",  # grey: the uneventful majority
    "drop": "#222222",  # near-black
    "mark": "#F0E442",  # yellow (CE mark)
}

SERIES_COLORS: tuple[str, ...] = ("#000000", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
"""One hue per series (Okabe-Ito, black first) where a panel's queue is given by its title."""

SERIES_LINESTYLES: tuple[str, ...] = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))
SERIES_MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*")
SERIES_HATCHES: tuple[str, ...] = ("", "//", "..", "xx", "\\\\", "++")

_SPARE = ("#000000", "#7F7F7F", "#8C564B", "#9467BD", "#17BECF", "#BCBD22")


def cc_color(cc: str) -> str:
    """The colour of congestion control ``cc``, bare (``dctcp``) or with its sender stack (``dctcp (Linux)``,
    :func:`l4stb.analysis.senders.cc_label`): the CC's hue, darker from a Linux sender, so FreeBSD's and Linux's
    DCTCP read as one CC on two stacks. An unknown name gets a stable spare colour (same name, same colour)."""
    base, _, stack = cc.partition(" (")
    color = CC_COLORS.get(base) or _spare(base)
    return _darker(color) if stack.startswith("Linux") else color


def _darker(color: str, keep: float = 0.6) -> str:
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return "#{:02X}{:02X}{:02X}".format(*(round(keep * c) for c in (r, g, b)))


def queue_color(queue: str) -> str:
    return QUEUE_COLORS.get(queue) or _spare(queue)


def action_color(action: str) -> str:
    return ACTION_COLORS.get(action) or _spare(action)


def series_color(index: int) -> str:
    return SERIES_COLORS[index % len(SERIES_COLORS)]


def series_linestyle(index: int):
    return SERIES_LINESTYLES[index % len(SERIES_LINESTYLES)]


def series_marker(index: int) -> str:
    return SERIES_MARKERS[index % len(SERIES_MARKERS)]


def series_hatch(index: int) -> str:
    return SERIES_HATCHES[index % len(SERIES_HATCHES)]


def _spare(name: str) -> str:
    digest = hashlib.sha256(name.encode()).digest()
    return _SPARE[digest[0] % len(_SPARE)]
