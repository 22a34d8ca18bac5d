"""Units and meanings of every column l4stb exports, from one source: the log fields of testbed/logformat.py plus the
parser's own columns. Parquet files carry them in their metadata, and docs/data.md is generated from them
(``python -m l4stb.analysis.schema_docs > docs/data.md``; a test fails when the page is stale)."""

from __future__ import annotations

from dataclasses import dataclass

from l4stb.linuxvm.datadoc import render_markdown_section
from l4stb.logformat import CODEL_MEANINGS, EXTRA_FIELD_NAMES, FIELDS, PROBABILITY_FIELDS


@dataclass(frozen=True)
class Column:
    name: str
    unit: str
    meaning: str


def _packet_columns() -> tuple[Column, ...]:
    head = (Column("repeat", "count", "the repeat (1-based); one repeat is one episode of the experience pool"),
            Column("line_format", "enum", "the log line's prefix: l4s_ecn_marking-start (paper), "
                                          "dualpi2_ecn_marking-start (old, no packet_length), l4stb_aqm-start (l4stb)"))
    fields = tuple(Column(f.name, "probability in [0, 1]" if f.name in PROBABILITY_FIELDS else f.unit,
                          f"DualPI2: {f.dualpi2}. Paper's l4s-pie: {f.l4s_pie}. CoDel, FQ-CoDel: "
                          f"{CODEL_MEANINGS[f.name]}." + (
                              " Unscaled from 2^31-1 by the parser." if f.name in PROBABILITY_FIELDS else ""))
                   for f in FIELDS)
    extra_meaning = {"timestamp_us": ("us", "monotonic time of the decision (l4stb lines; -1 when the line has none)"),
                     "flow_id": ("id", "the stream: its index in the scenario (simulator) or (source port << 16) | "
                                       "destination port (FreeBSD module); -1 when the line has none"),
                     "decided_by": ("enum", "who decided: 0 the AQM itself (DualPI2, PIE, ...), 1 the learned policy "
                                            "(aqm policy, closed loop); -1 for lines without the field")}
    extra = tuple(Column(n, *extra_meaning[n]) for n in EXTRA_FIELD_NAMES)
    tail = (Column("queue", "enum", "C (Classic, queue_type 0) or L (L4S, queue_type 1)"),
            Column("action", "enum", "0 forward, 1 drop, 2 CE-mark (dequeue_action - 1)"),
            Column("t_s", "s", "seconds since the repeat's first decision (from timestamp_us, else the syslog time; "
                               "NaN when neither)"))
    return head + fields + extra + tail


PACKET_COLUMNS: tuple[Column, ...] = _packet_columns()

FLOW_COLUMNS: tuple[Column, ...] = (
    Column("repeat", "count", "the repeat (1-based)"),
    Column("host", "name", "the client host that ran the iperf3 sender"),
    Column("cc", "name", "congestion control of the flow"),
    Column("file", "path", "the iperf3 JSON (or udp_prague report) file, relative to the run's raw/ folder"),
    Column("group", "count", "the scenario's flow group (one iperf3 command line); -1 when the file name does not say"),
    Column("connection", "count", "the iperf3 process within the group (1-based)"),
    Column("stream", "id", "iperf3's stream id (the socket)"),
    Column("start_s", "s", "interval start, seconds since the flow's start"),
    Column("end_s", "s", "interval end, seconds since the flow's start"),
    Column("bytes", "bytes", "bytes the sender wrote in the interval (iperf3 counts whole socket writes)"),
    Column("throughput_mbps", "Mbit/s", "8 * bytes / interval length / 1e6"),
    Column("retransmits", "packets", "TCP retransmissions in the interval; -1 when not reported"),
    Column("snd_cwnd", "bytes", "sender's congestion window at the interval's end; -1 when not reported"),
    Column("rtt_us", "us", "sender's smoothed RTT at the interval's end; -1 when not reported"),
    Column("rttvar_us", "us", "RTT variation; -1 when not reported"),
    Column("omitted", "bool", "iperf3 -O interval (left out of iperf3's own totals)"),
    Column("sender", "bool", "the row comes from the sending side"),
    Column("flow_class", "name", "bulk (long-running), short (a size each) or unresponsive (cc: udp); throughput, "
                                 "Jain and the scalable/classic ratio are over bulk flows only"),
    Column("flow_start_s", "s", "when the flow started, seconds after the repeat's start (the scenario's start or "
                                "seeded Poisson arrival; add it to start_s/end_s for the repeat's clock)"),
    Column("cc_label", "name", "the CC with its sender's stack and transport, as every table and figure names it: "
                               "dctcp (FreeBSD), dctcp (Linux), prague (FreeBSD, udp_prague), prague (Linux, TCP "
                               "Prague); runs without a stack (vagrant, imported logs) are FreeBSD 14.1"),
)

SUMMARY_COLUMNS: tuple[Column, ...] = (
    Column("repeat", "count", "the repeat; 0 is the whole run (delays pooled, rates and ratios means of repeats)"),
    *(Column(f"{q}_delay_p{p}_ms", "ms", f"p{p} of the {q} queue's queue delay over its forwarded and marked packets")
      for q in ("C", "L") for p in (50, 90, 95, 99)),
    *(Column(f"{q}_{what}_rate", "fraction", f"share of the {q} queue's decisions that {verb} the packet")
      for q in ("C", "L") for what, verb in (("drop", "dropped"), ("mark", "CE-marked"))),
    Column("utilization", "fraction", "bytes the iperf3 senders reported after the warm-up over the capacity offered "
                                      "in that time (rate schedule or trace), clipped to 1"),
    Column("jain", "index", "Jain's fairness index over the bulk flows' steady-state throughputs; empty (n/a) when "
                            "the bulk flows carried under 1 % of the capacity offered"),
    Column("scalable_classic_ratio", "ratio", "mean throughput of one scalable bulk flow over that of one classic bulk "
                                              "flow; empty (n/a) where undefined"),
    Column("capacity_mbps", "Mbit/s", "mean capacity the bottleneck offered over the repeat (its schedule or trace, "
           "as the router applied it where its helper recorded the steps)"),
    Column("throughput_mbps_<cc>_<stack>", "Mbit/s", "one column per congestion control and sender stack (its "
                                                     "cc_label in lower case, e.g. throughput_mbps_dctcp_freebsd, "
                                                     "throughput_mbps_prague_linux_tcp_prague): mean steady-state "
                                                     "throughput of one of its bulk flows; before l4stb named the "
                                                     "stack, throughput_mbps_<cc>"),
    Column("overload_share", "fraction", "share of logged PI updates with DualPI2's overload flag (flags bit1)"),
)

FLOWMAP_COLUMNS: tuple[Column, ...] = (
    Column("flow_id", "id", "the flow id in packets.parquet (the simulator: the stream's index in the scenario; "
                            "l4stb's FreeBSD module: (source port << 16) | destination port)"),
    Column("host", "name", "the client host that sent the flow"),
    Column("cc", "name", "congestion control of the flow group (udp: an unresponsive sender)"),
    Column("cc_label", "name", "the CC with its sender's stack and transport, as reports name it"),
    Column("stack", "name", "the sender's stack: freebsd (FreeBSD 14.1) or linux"),
    Column("transport", "name", "how the flow ran: tcp, udp (iperf3 -u), or udp_prague (cc prague on FreeBSD)"),
    Column("group", "count", "the scenario's flow group"),
    Column("connection", "count", "the iperf3 process within the group (1-based)"),
    Column("stream", "count", "the stream within the connection (0-based, iperf3 -P)"),
    Column("port", "port", "the server port of the connection"),
    Column("flow_class", "name", "bulk, short or unresponsive"),
)

TABLES: dict[str, tuple[Column, ...]] = {"packets": PACKET_COLUMNS, "flows": FLOW_COLUMNS, "summary": SUMMARY_COLUMNS,
                                         "flowmap": FLOWMAP_COLUMNS}


def render_markdown() -> str:
    """docs/data.md: every exported table, its columns, units and meanings, and how to load a run."""
    out = ["<!-- GENERATED by `python -m l4stb.analysis.schema_docs > docs/data.md`; do not edit by hand. -->",
           "# l4stb data files",
           "",
           "A run's tables, as `l4stb export --run ID --format csv|parquet --what packets|flows|summary|flowmap` writes them and",
           "`l4stb.load_run(ID)` returns them. Parquet files carry each column's unit and meaning in their field",
           "metadata (`unit`, `meaning`) and the table's name in the schema metadata (`l4stb.table`).",
           "",
           "```python",
           "import l4stb",
           "run = l4stb.load_run(\"dctcp-8mbps-20250101T000000Z\", workdir=\"l4stb-work\")  # default: the latest run",
           "run.packets   # pandas.DataFrame, one row per router decision",
           "run.flows     # pandas.DataFrame, iperf3 intervals per stream, with flow_class and flow_start_s",
           "run.summary   # dict, the JSON of `l4stb summary --json`",
           "```",
           ""]
    for table, cols in TABLES.items():
        out += [f"## {table}", "", "| column | unit | meaning |", "|---|---|---|"]
        out += [f"| `{c.name}` | {c.unit} | {c.meaning.replace('|', '/')} |" for c in cols]
        out.append("")
    out.append(render_markdown_section())
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover - the generator entry point
    print(render_markdown(), end="")
