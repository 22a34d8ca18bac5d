"""Parse the router's sampled ``tc -s qdisc show`` output into timestamped, typed per-qdisc records, and write them as CSV.

Sample file format (what the qemu provider's sampler writes, one file per repeat)
================================================================================

A sequence of samples. Each sample is one timestamp line followed by the unmodified output of
``tc -s qdisc show dev <bottleneck egress>``::

    @1765000000123456789
    qdisc htb 1: root refcnt 2 r2q 10 default 0x1 direct_packets_stat 0 direct_qlen 1000
     Sent 1523412 bytes 1034 pkt (dropped 0, overlimits 812 requeues 0)
     backlog 0b 0p requeues 0
    qdisc dualpi2 10: parent 1:1 limit 10000p memlimit 30280000B target 15ms tupdate 16ms alpha 0.156250 ...
     Sent 1523412 bytes 1034 pkt (dropped 3, overlimits 0 requeues 0)
     backlog 4542b 3p requeues 0
    prob 0.012345 delay_c 0us delay_l 2103us
    pkts_in_c 2 pkts_in_l 1035 maxq 41
    ecn_mark 17 step_mark 230
    credit -12112 (L-queue)
    memory_used 6912 (max 81920) of memory limit 30280000
    @1765000000393456789
    ...

* The timestamp line is ``@`` and the Unix time in integer nanoseconds (busybox/coreutils ``date +%s%N``), or in
  seconds with a fraction (``@1765000000.393456``). A busybox shell produces the file with::

      while :; do echo "@$(date +%s%N)"; /usr/sbin/tc -s qdisc show dev eth1; sleep 0.2; done > tc.samples

  (or one ``tc -s -batch -`` process fed ``qdisc show dev eth1`` lines, each preceded by an echoed ``@`` line
  once tc's previous output was flushed). The timestamp is when the sample was asked for.
* Blank lines are ignored; text before the first ``@`` line is an error. A qdisc block cut short (the sampler
  killed mid-write) is dropped when it is the file's last one, and is an error anywhere else.

What is read, as iproute2's printers write it (checked in iproute2/iproute2 at commit ee2a4a8, whose
include/version.h says 7.1.0; the VM runs Debian's 7.3, so compare the first real sample with the tests' samples):
tc/tc_qdisc.c ``print_qdisc`` (header line), tc/tc_util.c ``print_tcstats2_attr`` (the ``Sent``/``backlog``
lines; the backlog goes through ``sprint_size``, lib/json_print_math.c, which prints whole Kb/Mb/Gb when the size
is within 16 bytes / 1 KiB of one: then ``backlog_exact`` is false), tc/q_dualpi2.c ``dualpi2_print_xstats``,
tc/q_pie.c ``pie_print_xstats``, tc/q_fq_codel.c ``fq_codel_print_xstats``; htb and pfifo print no qdisc xstats.
Times printed with ``sprint_time`` (lib/utils.c: ``%.3gs``, ``%.3gms`` or ``%uus``) are converted to
microseconds (three significant digits above 1 ms).

A dualpi2 ``delay_c``/``delay_l`` of 4294967295 us (U32_MAX, a race between the stats read and the queue heads)
and a pie delay of 4.29e9 us or more are read as missing (None), never as a delay.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from l4stb.errors import L4stbError
from l4stb.workspace import atomic_write_text

U32_MAX = 4_294_967_295
_PIE_MISSING_US = 4_290_000_000  # U32_MAX us as pie's sprint_time prints it: "4.29e+03s"

_TS = re.compile(r"@(\d+)(?:\.(\d+))?\s*$")
_SENT = re.compile(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+) requeues (\d+)\)")
_BACKLOG = re.compile(r"backlog ([0-9.e+]+)(G|M|K)?b (\d+)p requeues (\d+)")
_NUM = r"(-?[0-9][0-9.e+-]*)"
_TIME = r"([0-9][0-9.e+-]*(?:us|ms|s))"
_SIZE_SCALE = {None: 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}


@dataclass(frozen=True)
class QdiscSample:
    """One qdisc in one sample. Fields that the qdisc's kind does not print are None."""

    t_ns: int
    kind: str
    handle: str
    parent: str
    options: str
    sent_bytes: int
    sent_packets: int
    dropped: int
    overlimits: int
    requeues: int
    backlog_bytes: int | None
    backlog_exact: bool | None
    backlog_packets: int | None
    # dualpi2 (tc_dualpi2_xstats) and pie share prob/maxq/ecn_mark
    prob: float | None = None
    delay_c_us: int | None = None
    delay_l_us: int | None = None
    pkts_in_c: int | None = None
    pkts_in_l: int | None = None
    maxq: int | None = None
    ecn_mark: int | None = None
    step_marks: int | None = None
    credit: int | None = None
    memory_used: int | None = None
    max_memory_used: int | None = None
    memory_limit: int | None = None
    # pie (tc_pie_xstats)
    delay_us: int | None = None
    pkts_in: int | None = None
    overlimit: int | None = None
    aqm_dropped: int | None = None
    avg_dq_rate: int | None = None
    # fq_codel (tc_fq_codel_xstats, qdisc part)
    maxpacket: int | None = None
    drop_overlimit: int | None = None
    new_flow_count: int | None = None
    ce_mark: int | None = None
    drop_overmemory: int | None = None
    new_flows_len: int | None = None
    old_flows_len: int | None = None


CSV_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(QdiscSample))
"""The CSV's header, in order: one column per :class:`QdiscSample` field."""

COLUMN_MEANINGS: dict[str, tuple[str, str]] = {
    "t_ns": ("ns", "Unix time the sample was taken (its `@` line)"),
    "kind": ("name", "qdisc kind (htb, dualpi2, pie, fq_codel, pfifo, ...)"),
    "handle": ("id", "qdisc handle, e.g. `10:`"),
    "parent": ("id", "`root` or the parent class, e.g. `1:1`"),
    "options": ("text", "the qdisc's parameters as tc printed them (e.g. dualpi2's `l4s_ect`/`any_ect`)"),
    "sent_bytes": ("bytes", "bytes dequeued since the qdisc was created"),
    "sent_packets": ("pkts", "packets dequeued since the qdisc was created"),
    "dropped": ("pkts", "packets the qdisc dropped"),
    "overlimits": ("count", "overlimit events (htb: the rate held a packet back)"),
    "requeues": ("count", "requeues"),
    "backlog_bytes": ("bytes", "bytes queued at the sample (rounded when tc printed Kb/Mb/Gb)"),
    "backlog_exact": ("bool", "false when tc rounded the backlog to whole Kb/Mb/Gb"),
    "backlog_packets": ("pkts", "packets queued at the sample"),
    "prob": ("probability in [0, 1]", "dualpi2: the base PI probability p'; pie: its drop probability"),
    "delay_c_us": ("us", "dualpi2: sojourn of the C queue's head; empty when tc read 4294967295 (a stats race)"),
    "delay_l_us": ("us", "dualpi2: sojourn of the L queue's head; empty when tc read 4294967295 (a stats race)"),
    "pkts_in_c": ("pkts", "dualpi2: packets enqueued into C"),
    "pkts_in_l": ("pkts", "dualpi2: packets enqueued into L"),
    "maxq": ("pkts", "dualpi2: the C queue's largest length; pie: the largest queue length"),
    "ecn_mark": ("pkts", "dualpi2: CE marks from the PI probability; pie, fq_codel: CE marks"),
    "step_marks": ("pkts", "dualpi2: CE marks from the L queue's step (tc's `step_mark`)"),
    "credit": ("bytes", "dualpi2: the WRR credit (positive: C is served next)"),
    "memory_used": ("bytes", "dualpi2, fq_codel: memory the queued packets use"),
    "max_memory_used": ("bytes", "dualpi2: the largest memory_used"),
    "memory_limit": ("bytes", "dualpi2: its memory limit"),
    "delay_us": ("us", "pie: queue delay estimate (3 significant digits above 1 ms); empty at 4.29e9 us"),
    "pkts_in": ("pkts", "pie: packets enqueued"),
    "overlimit": ("pkts", "pie: packets dropped at the queue limit"),
    "aqm_dropped": ("pkts", "pie: packets its AQM dropped (tc's xstats `dropped`)"),
    "avg_dq_rate": ("bytes/s", "pie: dequeue rate estimate (only with dq_rate_estimator)"),
    "maxpacket": ("bytes", "fq_codel: largest packet seen"),
    "drop_overlimit": ("pkts", "fq_codel: drops at the queue limit"),
    "new_flow_count": ("count", "fq_codel: flows that became new"),
    "ce_mark": ("pkts", "fq_codel: CE marks above ce_threshold"),
    "drop_overmemory": ("pkts", "fq_codel: drops at the memory limit"),
    "new_flows_len": ("count", "fq_codel: flows in the new list"),
    "old_flows_len": ("count", "fq_codel: flows in the old list"),
}
"""Unit and meaning of every CSV column (docs/data.md is generated from it)."""

# kind -> (field, regex) for the kind's xstats; a key absent from the text stays None
_XSTATS: dict[str, tuple[tuple[str, re.Pattern], ...]] = {
    "dualpi2": tuple((f, re.compile(p)) for f, p in (
        ("prob", rf"\bprob {_NUM} "), ("delay_c_us", r"\bdelay_c (\d+)us"), ("delay_l_us", r"\bdelay_l (\d+)us"),
        ("pkts_in_c", r"\bpkts_in_c (\d+)"), ("pkts_in_l", r"\bpkts_in_l (\d+)"), ("maxq", r"\bmaxq (\d+)"),
        ("ecn_mark", r"\becn_mark (\d+)"), ("step_marks", r"\bstep_mark (\d+)"), ("credit", r"\bcredit (-?\d+)"),
        ("memory_used", r"\bmemory_used (\d+)"), ("max_memory_used", r"\(max (\d+)\)"),
        ("memory_limit", r"\bof memory limit (\d+)"))),
    "pie": tuple((f, re.compile(p)) for f, p in (
        ("prob", rf"\bprob {_NUM}"), ("delay_us", rf"\bdelay {_TIME}"), ("avg_dq_rate", r"\bavg_dq_rate (\d+)"),
        ("pkts_in", r"\bpkts_in (\d+)"), ("overlimit", r"\boverlimit (\d+)"), ("aqm_dropped", r"\bdropped (\d+)"),
        ("maxq", r"\bmaxq (\d+)"), ("ecn_mark", r"\becn_mark (\d+)"))),
    "fq_codel": tuple((f, re.compile(p)) for f, p in (
        ("maxpacket", r"\bmaxpacket (\d+)"), ("drop_overlimit", r"\bdrop_overlimit (\d+)"),
        ("new_flow_count", r"\bnew_flow_count (\d+)"), ("ecn_mark", r"\becn_mark (\d+)"),
        ("ce_mark", r"\bce_mark (\d+)"), ("memory_used", r"\bmemory_used (\d+)"),
        ("drop_overmemory", r"\bdrop_overmemory (\d+)"), ("new_flows_len", r"\bnew_flows_len (\d+)"),
        ("old_flows_len", r"\bold_flows_len (\d+)"))),
}
_FLOATS = {"prob"}
_TIMES = {"delay_us"}


def tc_time_us(text: str) -> int:
    """A time as iproute2's ``sprint_time`` prints it (``2103us``, ``1.5ms``, ``4.29e+03s``) in microseconds."""
    for unit, scale in (("us", 1), ("ms", 1000), ("s", 1_000_000)):
        if text.endswith(unit):
            return round(float(text[:-len(unit)]) * scale)
    raise ValueError(text)


def _parse_block(lines: list[str], t_ns: int) -> QdiscSample | None:
    """One ``qdisc ...`` block; None when its statistics are cut short."""
    head = lines[0].split()
    kind, handle = head[1], head[2] if len(head) > 2 else ""
    rest = head[3:]
    if rest[:1] == ["dev"]:
        rest = rest[2:]
    parent = "root" if rest[:1] == ["root"] else rest[1] if rest[:1] == ["parent"] and len(rest) > 1 else ""
    rest = rest[1:] if parent == "root" else rest[2:] if parent else rest
    if rest[:1] == ["refcnt"]:
        rest = rest[2:]
    body = " ".join(x.strip() for x in lines[1:])
    sent = _SENT.search(body)
    back = _BACKLOG.search(body)
    if sent is None or back is None:
        return None
    size = float(back.group(1))
    exact = back.group(2) is None
    xstats = body[:sent.start()] + " " + body[sent.end():back.start()] + " " + body[back.end():]
    values: dict[str, object] = {}
    for name, rx in _XSTATS.get(kind, ()):
        m = rx.search(xstats)
        if m is None:
            continue
        raw = m.group(1)
        values[name] = float(raw) if name in _FLOATS else tc_time_us(raw) if name in _TIMES else int(raw)
    for name in ("delay_c_us", "delay_l_us"):
        if values.get(name) == U32_MAX:
            values[name] = None
    if values.get("delay_us") is not None and values["delay_us"] >= _PIE_MISSING_US:
        values["delay_us"] = None
    return QdiscSample(
        t_ns=t_ns, kind=kind, handle=handle, parent=parent, options=" ".join(rest),
        sent_bytes=int(sent.group(1)), sent_packets=int(sent.group(2)), dropped=int(sent.group(3)),
        overlimits=int(sent.group(4)), requeues=int(sent.group(5)),
        backlog_bytes=int(round(size * _SIZE_SCALE[back.group(2)])), backlog_exact=exact,
        backlog_packets=int(back.group(3)), **values)


def _timestamp(line: str, where: str, line_no: int) -> int:
    m = _TS.match(line.strip())
    if m is None:
        hint = (" (the date command printed %N literally: it was built without nanoseconds; use a date that "
                "has them, e.g. coreutils', or print seconds with a fraction)" if "N" in line else "")
        raise L4stbError(f"{where} line {line_no}: {line.strip()[:60]!r} is not a sample timestamp: expected "
                         f"@<unix ns> or @<unix seconds>.<fraction>{hint}.")
    whole, frac = m.group(1), m.group(2)
    if frac is None:
        return int(whole)
    return int(whole) * 1_000_000_000 + int((frac + "0" * 9)[:9])


def parse_tc_samples(text: str, *, where: str = "tc samples") -> list[QdiscSample]:
    """Every qdisc of every sample in ``text`` (the format in the module docstring), in file order.

    ``where`` names the file in error messages. A malformed timestamp, a qdisc block before the first
    timestamp, or a block cut short anywhere but at the very end raise :class:`~l4stb.errors.L4stbError`."""
    out: list[QdiscSample] = []
    t_ns: int | None = None
    block: list[str] = []
    block_line = 0
    lines = text.splitlines()

    def flush(at_end: bool) -> None:
        if not block:
            return
        rec = _parse_block(block, t_ns)  # type: ignore[arg-type]
        if rec is None:
            if at_end:
                return
            raise L4stbError(f"{where} line {block_line}: qdisc block without its `Sent ...`/`backlog ...` "
                             "statistics: sample with `tc -s qdisc show` (the -s matters).")
        out.append(rec)

    for no, line in enumerate(lines, start=1):
        if line.startswith("@"):
            flush(False)
            block = []
            t_ns = _timestamp(line, where, no)
        elif line.startswith("qdisc "):
            if t_ns is None:
                raise L4stbError(f"{where} line {no}: a qdisc block before any `@<time>` line: the sampler must "
                                 "echo `@$(date +%s%N)` before each `tc -s qdisc show`.")
            flush(False)
            block, block_line = [line], no
        elif line.strip() and block:
            block.append(line)
        elif line.strip() and t_ns is None:
            raise L4stbError(f"{where} line {no}: {line.strip()[:60]!r} before any `@<time>` line: this is not a "
                             "tc sample file (see l4stb.linuxvm.tcstats).")
    flush(True)
    return out


def read_tc_samples(path: str | Path) -> list[QdiscSample]:
    """:func:`parse_tc_samples` of the file at ``path`` (errors name the file)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise L4stbError(f"{path}: cannot read the tc samples ({exc.strerror}); check that the file was "
                         "fetched.") from exc
    return parse_tc_samples(text, where=str(path))


def samples_to_csv(samples: list[QdiscSample]) -> str:
    """CSV text: header :data:`CSV_COLUMNS`, one row per qdisc per sample; None is an empty cell."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for s in samples:
        w.writerow(["" if v is None else v for v in asdict(s).values()])
    return buf.getvalue()


def write_tc_csv(samples: list[QdiscSample], path: str | Path) -> Path:
    """Write :func:`samples_to_csv` to ``path`` atomically (temp file + rename)."""
    atomic_write_text(Path(path), samples_to_csv(samples))
    return Path(path)
