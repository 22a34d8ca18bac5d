"""The "Real-Linux runs (qemu provider)" section of docs/data.md, generated from the capture matcher's field sources and the tc CSV's columns."""

from __future__ import annotations

from l4stb.linuxvm.capture_log import FIELD_SOURCES, QDISC_DROP_AT
from l4stb.linuxvm.tcstats import COLUMN_MEANINGS, CSV_COLUMNS
from l4stb.logformat import L4STB_FIELD_NAMES


def render_markdown_section() -> str:
    """Markdown for docs/data.md (it ends with a blank line)."""
    drop_rules = ", ".join(f"{k}: at {v}" for k, v in sorted(QDISC_DROP_AT.items()))
    out = [
        "## Real-Linux runs (qemu provider)",
        "",
        "On the real-Linux provider the router's per-packet decisions are not printed by the qdisc: they are "
        "observed by two packet captures in the router's namespace, one on the client-facing interface(s) "
        "(arrivals) and one on the server-facing interface (departures). `l4stb.linuxvm.capture_log` matches "
        "the two by (addresses, protocol, ports, IP ID, TCP sequence number) and writes one l4stb line per data "
        "packet towards a server (UDP datagrams and TCP segments with a payload, as the simulator logs; pure "
        "ACKs get no line but occupy the queue): forwarded when it left unchanged, CE-marked when its ECN field "
        "became CE, dropped when a packet queued behind it (same flow, same queue) left first. Packets still "
        "queued when the capture ended get no line. A dropped packet's time is its arrival for qdiscs that drop "
        f"on enqueue, else the departure that proved the drop ({drop_rules}). Counters (queue length, totals, "
        "drops) are counted from the capture's start, per queue: dualpi2's L and C queues, or the whole qdisc.",
        "",
        "### packets: what a capture fills in",
        "",
        "| field | value on the qemu provider |",
        "|---|---|",
    ]
    out += [f"| `{name}` | {FIELD_SOURCES[name].replace('|', '/')} |" for name in L4STB_FIELD_NAMES]
    out += [
        "",
        "### tc samples",
        "",
        "`tc -s qdisc show` on the bottleneck interface is sampled through the run (about every 270 ms under "
        "TCG). The raw file is a sequence of `@<unix ns>` lines, each followed by tc's output "
        "(`l4stb.linuxvm.tcstats` says how a busybox shell writes it); it is parsed into one CSV row per qdisc "
        "per sample (CSV, so any tool reads it; the samples are few). Cells a qdisc's kind does not print are "
        "empty; so is a delay tc read as 4294967295 us (a race in the kernel's statistics read, not a delay).",
        "",
        "| column | unit | meaning |",
        "|---|---|---|",
    ]
    out += [f"| `{c}` | {COLUMN_MEANINGS[c][0]} | {COLUMN_MEANINGS[c][1].replace('|', '/')} |" for c in CSV_COLUMNS]
    out.append("")
    return "\n".join(out)
