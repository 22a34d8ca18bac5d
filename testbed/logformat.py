"""The router log line: the single source of truth for its fields, shared by the simulator, the parser and the C module.

Three line shapes exist:

* ``l4s_ecn_marking-start,<24 ints>,end`` -- the paper's FreeBSD L4S scheduler (PIE-based);
* ``dualpi2_ecn_marking-start,<23 ints>,end`` -- older data, without ``packet_length``;
* ``l4stb_aqm-start,<24 ints>,<timestamp_us>,<flow_id>,<decided_by>,end`` -- l4stb's own kernel module and
  simulator (lines written before ``decided_by`` existed end after ``flow_id``; the parser reads both).

The C header used by ``freebsd_module`` is generated from this module (:func:`render_c_header`) and a
test fails when the checked-in header drifts from it.
"""

from __future__ import annotations

from dataclasses import dataclass

PROB_SCALE = (1 << 31) - 1
"""Probabilities are logged as integers scaled by 2^31-1 (PIE_MAX_PROB in dn_aqm_pie.h)."""

ACTION_FORWARD, ACTION_DROP, ACTION_MARK = 1, 2, 3
"""Logged ``dequeue_action`` codes (dn_aqm_pie.h enum); the experience pool shifts them to 0/1/2."""

PAPER_PREFIX = "l4s_ecn_marking-start"
OLD_PREFIX = "dualpi2_ecn_marking-start"
L4STB_PREFIX = "l4stb_aqm-start"
LINE_END = "end"
SYSLOG_TAG = "dualpi2"
"""The module logs ``dualpi2: <line>`` so that a syslog.conf ``!dualpi2`` block can route it."""


@dataclass(frozen=True)
class LogField:
    """One integer field of the log line, with what it means under each AQM."""

    name: str
    unit: str
    dualpi2: str
    l4s_pie: str


FIELDS: tuple[LogField, ...] = (
    LogField("queue_type", "enum", "0 = Classic (C) queue, 1 = L4S (L) queue", "0 = Classic, 1 = L4S (ECT(1))"),
    LogField("qdelay_reference", "us", "PI target delay (15 ms by default)", "PIE qdelay_ref (target)"),
    LogField("tupdate", "us", "PI update interval Tupdate", "PIE tupdate"),
    LogField("max_burst", "us", "unused by DualPI2, logged as 0", "PIE max_burst"),
    LogField("max_ecn_threshold", "prob", "p_Cmax, the Classic overload threshold (scaled)", "PIE max_ecnth (scaled by 2^13 in the kernel)"),
    LogField("alpha_coefficient", "mHz", "PI integral gain alpha in milli-Hz", "PIE alpha (scaled by 2^13)"),
    LogField("beta_coefficient", "mHz", "PI proportional gain beta in milli-Hz", "PIE beta (scaled by 2^13)"),
    LogField("flags", "bits", "bit0 ECN enabled, bit1 overload, bit2 step (not ramp) L AQM", "PIE flags"),
    LogField("burst_allowance", "us", "always 0 (no burst allowance in DualPI2)", "PIE burst allowance left"),
    LogField("drop_probability", "prob", "this queue's applied probability: p_C for C, p_L for L (scaled)", "the queue's PIE drop_prob"),
    LogField("current_queue_delay", "us", "sojourn time of this queue's head packet, in microseconds as measured", "PIE current_qdelay (tick-quantised)"),
    LogField("previous_queue_delay", "us", "the PI's queue delay input at its last update, in microseconds", "PIE qdelay_old"),
    LogField("accumulated_probability", "prob", "base PI probability p' (scaled)", "PIE accu_prob: a running sum used for derandomisation, so it can exceed 1 after unscaling"),
    LogField("measurement_start_time", "us", "time of the last PI update", "PIE measurement_start"),
    LogField("average_dequeue_time", "us", "not measured, logged as 0", "PIE avg_dq_time (0 in the paper's data)"),
    LogField("dequeue_count", "pkts", "packets dequeued from this queue before this decision", "PIE dq_count"),
    LogField("status_flags", "bits", "bit0 PI active, bit1 C queue non-empty, bit2 L queue non-empty", "PIE sflags"),
    LogField("total_packets", "pkts", "packets ever enqueued into this queue", "q->stats.tot_pkts"),
    LogField("total_bytes", "bytes", "bytes ever enqueued into this queue", "q->stats.tot_bytes"),
    LogField("queue_length", "pkts", "packets in this queue when the decision is made", "q->stats.length"),
    LogField("length_in_bytes", "bytes", "bytes in this queue when the decision is made", "q->stats.len_bytes"),
    LogField("total_drops", "pkts", "packets this queue dropped before this decision (so it never reveals it)", "q->stats.drops"),
    LogField("packet_length", "bytes", "IP length of the packet being decided", "m_pkthdr.len"),
    LogField("dequeue_action", "enum", "1 forwarded, 2 dropped, 3 CE-marked", "1 enqueued, 2 dropped, 3 ECN-marked"),
)
"""The 24 fields of the paper's line, in order."""

CODEL_MEANINGS: dict[str, str] = {
    "queue_type": "0 (one queue; fq_codel's flow queues are not told apart here, flow_id is)",
    "qdelay_reference": "CoDel's target",
    "tupdate": "CoDel's interval",
    "max_burst": "0",
    "max_ecn_threshold": "0",
    "alpha_coefficient": "0",
    "beta_coefficient": "0",
    "flags": "bit0 ECN on, bit1 the packet's queue is in CoDel's dropping state after the decision, bit2 Linux's "
             "CoDel (codel_semantics linux), bit3 ce_threshold set",
    "burst_allowance": "0",
    "drop_probability": "0 (CoDel has no probability: its drop rate is count / interval after each drop)",
    "current_queue_delay": "the packet's sojourn in its queue (FreeBSD: in dummynet ticks); for a drop at the "
                           "buffer limit, the head packet's",
    "previous_queue_delay": "the sojourn of the packet this queue examined before",
    "accumulated_probability": "0",
    "measurement_start_time": "while dropping: the time of the next scheduled drop or mark (CoDel's drop_next, "
                              "on its clock), else 0",
    "average_dequeue_time": "0",
    "dequeue_count": "packets taken off the queue(s) before this decision, sent or dropped",
    "status_flags": "bit1: packets remain queued after the decision",
    "total_packets": "packets ever queued (fq_codel: in all its flow queues)",
    "total_bytes": "bytes ever queued",
    "queue_length": "packets queued, the decided one included (fq_codel: all flow queues)",
    "length_in_bytes": "bytes queued, the decided one included",
    "total_drops": "packets dropped before this decision (CoDel and buffer drops)",
    "packet_length": "IP length of the packet being decided",
    "dequeue_action": "1 forwarded, 2 dropped (at dequeue by CoDel, or at enqueue by the buffer limit), 3 CE-marked",
}
"""What each field means on a codel or fq_codel line (l4stb.sim.aqm_codel.log_fields writes them; a test checks
the fields documented as 0 are 0). There is no L queue: summary and report show CoDel's decisions as the C
queue's."""

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
PROBABILITY_FIELDS: tuple[str, ...] = ("drop_probability", "accumulated_probability")
"""The per-packet probabilities, unscaled from 2^31-1 wherever a log record becomes Python values."""
OLD_FIELD_NAMES: tuple[str, ...] = tuple(n for n in FIELD_NAMES if n != "packet_length")
EXTRA_FIELD_NAMES: tuple[str, ...] = ("timestamp_us", "flow_id", "decided_by")
L4STB_FIELD_NAMES: tuple[str, ...] = FIELD_NAMES + EXTRA_FIELD_NAMES
LEGACY_L4STB_FIELD_NAMES: tuple[str, ...] = L4STB_FIELD_NAMES[:-1]
"""l4stb lines from before ``decided_by``: the parser reads them with ``decided_by`` = -1 (unknown)."""
DECIDED_BY_AQM, DECIDED_BY_POLICY = 0, 1
"""``decided_by``: 0 = the AQM itself (DualPI2, PIE, ...), 1 = the learned policy (aqm ``policy``, closed loop)."""
FIELD_INDEX: dict[str, int] = {name: i for i, name in enumerate(L4STB_FIELD_NAMES)}

LINE_SHAPES: dict[str, tuple[str, ...]] = {
    PAPER_PREFIX: FIELD_NAMES,
    OLD_PREFIX: OLD_FIELD_NAMES,
    L4STB_PREFIX: L4STB_FIELD_NAMES,
}
"""Prefix -> the ordered field names its lines carry."""


MAX_COUPLING = 16
"""The largest coupling factor k a scenario may set (config ``aqm.coupling_factor``): DualPI2 logs the L queue's
p_CL = k x p' unclamped (freebsd_module/dualpi2_core.c), so a logged probability reaches k, not 1."""
_DAY_US = 86_400_000_000
_U32 = (1 << 32) - 1
_EXACT_IN_FLOAT = 1 << 53
FIELD_RANGES: dict[str, tuple[int, int]] = {
    "queue_type": (0, 1),
    "qdelay_reference": (0, _DAY_US),
    "tupdate": (0, _DAY_US),
    "max_burst": (0, _DAY_US),
    "max_ecn_threshold": (0, PROB_SCALE),
    "alpha_coefficient": (0, _U32),
    "beta_coefficient": (0, _U32),
    "flags": (0, _U32),
    "burst_allowance": (0, _DAY_US),
    "drop_probability": (0, MAX_COUPLING * PROB_SCALE),
    "current_queue_delay": (0, _DAY_US),
    "previous_queue_delay": (0, _DAY_US),
    "accumulated_probability": (0, _U32 * PROB_SCALE),
    "measurement_start_time": (0, _EXACT_IN_FLOAT),
    "average_dequeue_time": (0, _DAY_US),
    "dequeue_count": (0, _EXACT_IN_FLOAT),
    "status_flags": (0, _U32),
    "total_packets": (0, _EXACT_IN_FLOAT),
    "total_bytes": (0, _EXACT_IN_FLOAT),
    "queue_length": (0, _U32),
    "length_in_bytes": (0, _EXACT_IN_FLOAT),
    "total_drops": (0, _EXACT_IN_FLOAT),
    "packet_length": (0, 65_535),
    "dequeue_action": (ACTION_FORWARD, ACTION_MARK),
    "timestamp_us": (0, _EXACT_IN_FLOAT),
    "flow_id": (0, (1 << 31) - 1),
    "decided_by": (-1, 1),  # -1 only as the parser's filler for lines written before the field existed
}
UNKNOWN = -1
"""A field the logger could not observe. l4stb's module and simulator know every field; a real-Linux run's log set
is derived from packet captures (the qemu provider), which cannot see the qdisc's internal state, so it writes
-1 there (docs/data.md lists, per field, what a capture knows). The parser stores it as a missing value."""
MAY_BE_UNKNOWN: tuple[str, ...] = (
    "qdelay_reference", "tupdate", "max_burst", "max_ecn_threshold", "alpha_coefficient", "beta_coefficient",
    "flags", "burst_allowance", "drop_probability", "current_queue_delay", "previous_queue_delay",
    "accumulated_probability", "measurement_start_time", "average_dequeue_time", "status_flags")
"""The fields a capture-derived line may leave -1: the qdisc's parameters and internal state, and the sojourn of a
dropped packet (l4stb.linuxvm.capture_log.FIELD_SOURCES). Counters, lengths, the queue, the action, the time and
the flow are always known, so -1 there is out of range as before."""
FIELD_RANGES = {name: (min(lo, UNKNOWN) if name in MAY_BE_UNKNOWN else lo, hi)
                for name, (lo, hi) in FIELD_RANGES.items()}
"""The values each field can take (inclusive). A line outside them is skipped as ``out_of_range`` by the parser,
never stored: delays and times at most a day in microseconds; probabilities in [0, 1] scaled by 2^31-1, except
the L queue's coupled probability (up to :data:`MAX_COUPLING`) and PIE's accumulated probability (a running sum,
up to 2^32); counters and clocks exact in a float64;
flags 32 bits; an IP packet at most 65535 bytes (its 16-bit total length); flow ids as the int32 they are stored as."""


def format_line(values: tuple[int, ...] | list[int]) -> str:
    """Render one l4stb line (24 fields + timestamp_us + flow_id + decided_by) exactly as the kernel module prints it."""
    if len(values) != len(L4STB_FIELD_NAMES):
        raise ValueError(f"expected {len(L4STB_FIELD_NAMES)} values, got {len(values)}")
    return f"{L4STB_PREFIX},{','.join(str(int(v)) for v in values)},{LINE_END}"


def read_l4stb_rows(path: str) -> list[list[int]]:
    """The integers of every l4stb line in a router log file, in order, syslog prefixes and other lines skipped.

    A reader for tests and benches that need raw fields without pandas; the pipeline's parser (analysis/logparse)
    is the one that validates, range-checks and counts what it skips."""
    marker = L4STB_PREFIX + ","
    tail = "," + LINE_END
    rows = []
    with open(path) as fh:
        for line in fh:
            i = line.find(marker)
            if i >= 0:
                rows.append([int(v) for v in line[i + len(marker):].rstrip().removesuffix(tail).split(",")])
    return rows


def render_c_header() -> str:
    """The C header ``freebsd_module/dualpi2_log_fields.h``, generated from :data:`FIELDS`."""
    lines = [
        "/* GENERATED by l4stb.logformat.render_c_header() -- do not edit; run",
        " *   python -m l4stb.logformat > freebsd_module/dualpi2_log_fields.h",
        " * A test fails when this file and the Python field list drift apart. */",
        "#ifndef DUALPI2_LOG_FIELDS_H",
        "#define DUALPI2_LOG_FIELDS_H",
        "",
        f'#define DUALPI2_LOG_TAG "{SYSLOG_TAG}"',
        f'#define DUALPI2_LOG_PREFIX "{L4STB_PREFIX}"',
        f'#define DUALPI2_LOG_END "{LINE_END}"',
        f"#define DUALPI2_PROB_SCALE {PROB_SCALE}U",
        f"#define DUALPI2_ACTION_FORWARD {ACTION_FORWARD}",
        f"#define DUALPI2_ACTION_DROP {ACTION_DROP}",
        f"#define DUALPI2_ACTION_MARK {ACTION_MARK}",
        f"#define DUALPI2_LOG_NFIELDS {len(L4STB_FIELD_NAMES)}",
        f"#define DUALPI2_DECIDED_BY_AQM {DECIDED_BY_AQM}",
        f"#define DUALPI2_DECIDED_BY_POLICY {DECIDED_BY_POLICY}",
        "",
        "enum dualpi2_log_field {",
    ]
    for i, f in enumerate(FIELDS):
        lines.append(f"\tDUALPI2_F_{f.name.upper()} = {i},\t/* {f.unit}: {f.dualpi2} */")
    for j, name in enumerate(EXTRA_FIELD_NAMES, start=len(FIELDS)):
        lines.append(f"\tDUALPI2_F_{name.upper()} = {j},")
    lines += [
        "};",
        "",
        "/* Field names in log order, for the test harness and for humans. */",
        "static const char *const dualpi2_log_field_names[DUALPI2_LOG_NFIELDS] = {",
    ]
    lines += [f'\t"{name}",' for name in L4STB_FIELD_NAMES]
    lines += ["};", "", "#endif /* DUALPI2_LOG_FIELDS_H */", ""]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - a generator entry point
    print(render_c_header(), end="")
