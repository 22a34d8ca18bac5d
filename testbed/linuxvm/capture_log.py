"""Turn the router's two packet captures (before and after the bottleneck qdisc) into l4stb router log lines.

Contract for the qemu provider
==============================

Call :func:`capture_to_log_lines` with the pcap file(s) tcpdump wrote in the router's namespace on the
interface(s) facing the clients (``ingress``: the packets arriving to be queued) and on the interface facing the
server (``egress``: the packets the bottleneck let out). It yields one line per data packet that crossed the
bottleneck towards a server, in the l4stb shape of :mod:`l4stb.logformat` (``l4stb_aqm-start,<27 ints>,end``,
no newline), ordered by the time of the packet's fate, ready to be written to the router's log file.

How the captures should be taken (what the matching below assumes):

* both tcpdumps run in the router's namespace, so both files are stamped by one kernel clock;
* start the egress capture first and stop it last (stop the ingress capture, wait longer than the largest queue
  delay, then stop the egress one); ingress packets that arrived before the packet first seen leaving (they may
  have left before the egress capture started) are never declared dropped, and packets with no evidence at the
  end are "unresolved", not dropped;
* check tcpdump's exit line "0 packets dropped by kernel" on the egress capture (``-B`` enlarges its buffer):
  a packet the *capture* lost on the egress side is indistinguishable from a packet the qdisc dropped;
* capture direction with ``-Q in`` (ingress) / ``-Q out`` (egress) if wanted; the matcher keeps only packets
  addressed to ``servers`` anyway. GRO/GSO/TSO off (one capture record per wire packet);
* nothing but the bottleneck (htb and its child qdisc) may hold packets between the two capture points: a netem
  delay on the egress interface would be counted as queueing (put base delays on the other hops).

Matching
--------

A packet is identified by (source, destination, protocol, ports, IP ID, TCP sequence number) -- for UDP the IP
ID alone tells packets apart (Linux gives a connected socket's packets consecutive IDs: ``ip_select_ident_segs``
in torvalds/linux include/net/ip.h; a TCP retransmission therefore gets a new ID). The ECN bits are not part of
the key: they are what the qdisc may change.

Every qdisc handled here keeps each *unit* = (flow, queue) first in, first out: the whole qdisc for pfifo,
pie and codel, each of the L and C queues for dualpi2 (both plain FIFOs: ``dualpi2_init`` creates the L queue as a pfifo,
torvalds/linux net/sched/sch_dualpi2.c), each flow's queue for fq_codel (a flow never spans two hash buckets).
So within a unit the egress order is the ingress order with the dropped packets taken out, and the matcher
walks each unit in order: an egress packet is matched to the first not-yet-passed ingress packet of its key;
every packet of the unit that it passes over was dropped (it can no longer come out). This also resolves IP ID
wrap-around: an older packet with the same key was passed over long before its ID came round again.

Fates and times
---------------

* **forwarded** (action 1): matched, ECN bits unchanged; ``current_queue_delay`` = out - in timestamps (us).
* **CE-marked** (action 3): matched, the ECN field became CE (it was not CE on arrival).
* **dropped** (action 2): passed over as above. Its time is its arrival for qdiscs that drop on enqueue
  (pfifo tail drop, pie: ``pie_qdisc_enqueue`` decides before queueing, net/sched/sch_pie.c; dualpi2 with
  ``drop_enqueue``), else the departure of the packet that proved the drop (dualpi2's default ``drop_dequeue``
  and fq_codel/CoDel drop at dequeue, just before that packet leaves), an upper bound on the real moment.
* **unresolved**: no later packet of its unit left (still queued when the capture ended, or dropped at the very
  end): no line, counted in :class:`CaptureStats`.

Which packets get a line
------------------------

Packets addressed to one of ``servers`` that carry data: UDP datagrams and TCP segments with a payload. The
simulator logs only data segments at the bottleneck (its senders have no handshake, and ACKs travel the return
path: ``l4stb.sim.link``), so pure ACKs, SYNs and FINs without payload get no line; they still count in the
queue occupancy below because they really occupy the qdisc.

Flow ids follow the simulator (``l4stb.config.Scenario.streams``: the scenario's iperf3 streams numbered 0, 1, ...
in scenario order) when ``streams`` lists them (:class:`Stream`): the observed flows from a stream's client
address to its server port and protocol, in the order of their first packet, take the listed flow ids in order;
with ``iperf3_control`` the first TCP connection to each (client, port) is iperf3's control connection (iperf3
connects it before any test stream: ``iperf_connect`` in esnet/iperf src/iperf_client_api.c) and gets no line.
Without ``streams`` every flow towards a server is numbered 0, 1, ... in the order of its first packet.

Fields the capture cannot know are :data:`UNKNOWN` (-1); :data:`FIELD_SOURCES` says, per field, where each
value comes from (docs: "Real-Linux runs (qemu provider)" in docs/data.md).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterator, Sequence

import numpy as np

from l4stb.errors import L4stbError
from l4stb.linuxvm.pcap import PROTO_TCP, PROTO_UDP, PacketTable, PcapStats, ip_to_int, read_pcap
from l4stb.logformat import (ACTION_DROP, ACTION_FORWARD, ACTION_MARK, DECIDED_BY_AQM, L4STB_FIELD_NAMES,
                             format_line)

UNKNOWN = -1
"""The value of every field a packet capture cannot observe."""
ECN_CE = 3
QDISC_DROP_AT = {"dualpi2": "dequeue", "fq_codel": "dequeue", "codel": "dequeue", "pie": "enqueue",
                 "pfifo": "enqueue"}
"""Where each qdisc drops by default (dualpi2 ``drop_dequeue`` default: ``dualpi2_reset_default``, sch_dualpi2.c)."""
CLASSIFIER_MASK = {"l4s_ect": 1, "any_ect": 3}
"""dualpi2's ``ecn_mask``: a packet goes to L when ``ect & ecn_mask`` (``dualpi2_skb_classify``, sch_dualpi2.c;
TC_DUALPI2_ECN_MASK_L4S_ECT = 1 = ECT(1) bit, ANY_ECT = 3, include/uapi/linux/pkt_sched.h). So ``l4s_ect``:
ECT(1) and CE -> L; ``any_ect``: ECT(0), ECT(1) and CE -> L."""

_PARAM = "-1: a qdisc parameter, not visible in packets (the scenario has it, and the tc samples' `options`)"
FIELD_SOURCES: dict[str, str] = {
    "queue_type": "dualpi2: 1 (L) when the arriving packet's ECN codepoint matches the classifier (l4s_ect: "
                  "ECT(1)/CE; any_ect: ECT(0)/ECT(1)/CE), else 0 (C); other qdiscs: 0",
    "qdelay_reference": _PARAM,
    "tupdate": _PARAM,
    "max_burst": _PARAM,
    "max_ecn_threshold": _PARAM,
    "alpha_coefficient": _PARAM,
    "beta_coefficient": _PARAM,
    "flags": "-1: qdisc state (ECN, overload, step) is not visible in packets",
    "burst_allowance": "-1: qdisc state",
    "drop_probability": "-1: the probability applied to a packet is not visible; the tc samples carry p' (`prob`)",
    "current_queue_delay": "forwarded/marked: egress minus ingress capture timestamp in us (the qdisc's queueing "
                           "plus the rate limiter's hold and the router's forwarding); dropped: -1",
    "previous_queue_delay": "-1: the PI controller's input is qdisc state",
    "accumulated_probability": "-1: p' is sampled by tc (`prob` in the tc samples), not per packet",
    "measurement_start_time": "-1: the PI update times are not visible",
    "average_dequeue_time": "-1: not measured",
    "dequeue_count": "fates (forwarded, marked, dequeue-time drops) of this queue before this one, since the "
                     "capture started",
    "status_flags": "-1: whether the PI is active is qdisc state",
    "total_packets": "packets seen arriving for this queue up to this moment, since the capture started "
                     "(dropped ones included)",
    "total_bytes": "IP bytes of those packets",
    "queue_length": "packets of this queue that had arrived and had not yet met their fate, this one included "
                    "(an enqueue-time drop: excluded, as the simulator logs it); pure ACKs count, unresolved "
                    "packets stay counted to the end",
    "length_in_bytes": "IP bytes of those packets",
    "total_drops": "drops in this queue before this one, since the capture started",
    "packet_length": "IP total length of the packet",
    "dequeue_action": "1 forwarded, 2 dropped, 3 CE-marked (ECN field changed to CE between the captures)",
    "timestamp_us": "time of the fate in us since the Unix epoch minus time_origin_ns (forwarded/marked: it left; "
                    "dropped: its arrival for enqueue-dropping qdiscs, else the departure that proved the drop)",
    "flow_id": "the scenario's stream index (simulator convention) when streams are given, else the order of the "
               "flow's first packet",
    "decided_by": "0 (the kernel's qdisc decided)",
}
"""Where each logged field comes from, every field of the l4stb line; -1 is :data:`UNKNOWN`."""


@dataclass(frozen=True)
class Stream:
    """One scenario stream: its simulator flow id, its client's address, the server port and the protocol."""

    flow_id: int
    src: str
    dport: int
    proto: str = "tcp"


@dataclass
class CaptureStats:
    """What the matcher saw and decided; a caller passes one in to have it filled (packet counts)."""

    ingress: list[PcapStats] = field(default_factory=list)  # per ingress file: records kept and skipped
    egress: PcapStats | None = None
    tracked_in: int = 0  # TCP/UDP packets towards a server in the ingress capture(s)
    tracked_out: int = 0  # the same in the egress capture
    forwarded: int = 0  # left with their ECN field unchanged (or rewritten other than to CE: ecn_rewritten)
    marked: int = 0  # left CE-marked
    dropped: int = 0  # passed over by a later packet of their flow and queue
    unresolved: int = 0  # no fate known: queued at the end, or arrived before the first packet seen leaving
    unmatched_out: int = 0  # left without a matching arrival (ingress capture started late or lost it)
    ecn_rewritten: int = 0  # left with an ECN field changed to something other than CE (counted as forwarded)
    no_payload: int = 0  # with a fate but no line: pure ACKs, SYNs, FINs without data
    control: int = 0  # with a fate but no line: iperf3 control connections
    unlisted: int = 0  # with a fate but no line: flows not among the streams given
    lines: int = 0  # lines produced


@dataclass
class Fates:
    """Per tracked ingress packet (ingress time order): its queue, fate and fate time; arrays of equal length."""

    table: PacketTable
    queue_type: np.ndarray
    action: np.ndarray  # 0 = unresolved
    fate_ns: np.ndarray
    out_ns: np.ndarray  # -1 unless it left
    dequeue_fate: np.ndarray  # the fate happened at dequeue (counts in dequeue_count)
    flow: np.ndarray  # index into flows
    flows: list[tuple[int, int, int, int, int]]  # (src, dst, sport, dport, proto)


def _tables(paths: str | Path | Sequence[str | Path]) -> list[PacketTable]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return [read_pcap(p) for p in paths]


def _concat(tables: list[PacketTable]) -> PacketTable:
    if len(tables) == 1:
        t = tables[0]
    else:
        cols = {name: np.concatenate([getattr(t, name) for t in tables]) for name in tables[0].__dataclass_fields__
                if name not in ("stats", "path")}
        t = PacketTable(**cols, stats=PcapStats(), path=",".join(x.path for x in tables))
    return t.take(np.argsort(t.ts_ns, kind="stable"))


def _data_direction(t: PacketTable, servers: np.ndarray) -> PacketTable:
    keep = np.isin(t.dst, servers) & ((t.proto == PROTO_TCP) | (t.proto == PROTO_UDP))
    return t.take(keep)


def _server_array(servers: Collection[str]) -> np.ndarray:
    if isinstance(servers, str):
        servers = [servers]
    out = []
    for s in servers:
        try:
            out.append(ip_to_int(str(s)))
        except ValueError:
            raise L4stbError(f"capture matching: server address {s!r} is not an IPv4 address: pass the server "
                             "hosts' addresses from the topology.") from None
    if not out:
        raise L4stbError("capture matching: no server address given: pass the topology's server address(es).")
    return np.array(out, dtype=np.uint32)


def _flow_index(ingress: PacketTable, egress: PacketTable) -> tuple[np.ndarray, np.ndarray, list]:
    """A flow number per packet of each capture (shared numbering) and the flows' 5-tuples by number."""
    def five(t: PacketTable) -> np.ndarray:
        a = (t.src.astype(np.uint64) << np.uint64(32)) | t.dst.astype(np.uint64)
        b = ((t.sport.astype(np.uint64) << np.uint64(24)) | (t.dport.astype(np.uint64) << np.uint64(8))
             | t.proto.astype(np.uint64))
        return np.stack([a, b], axis=1)

    n = len(ingress)
    both = np.concatenate([five(ingress), five(egress)]) if n + len(egress) else np.zeros((0, 2), np.uint64)
    uniq, inv = np.unique(both, axis=0, return_inverse=True)
    inv = inv.reshape(-1).astype(np.int64)
    if len(uniq) >= 1 << 16:
        raise L4stbError(f"capture matching: {len(uniq)} flows towards the servers; the matcher keys packets by a "
                         "16-bit flow number: split the capture.")
    flows = [(int(a >> 32), int(a & 0xFFFFFFFF), int(b >> 24), int((b >> 8) & 0xFFFF), int(b & 0xFF))
             for a, b in uniq.tolist()]
    return inv[:n], inv[n:], flows


def _walk_egress(ingress: PacketTable, egress: PacketTable, flow_in: np.ndarray, flow_out: np.ndarray,
                 unit: np.ndarray, n_units: int) -> tuple[list[int], list[int], list[int], int | None, int]:
    """Match egress packets to arrivals unit by unit (module docstring): per ingress packet its departure time
    and ECN field (-1/0 if none) and the departure that proved it dropped (-1 if none); the arrival time of
    the first packet matched; the count of egress packets without an arrival."""
    n = len(ingress)
    by_unit = np.argsort(unit, kind="stable")
    counts = np.bincount(unit, minlength=n_units) if n else np.zeros(n_units, np.int64)
    start = np.concatenate(([0], np.cumsum(counts)[:-1])) if n_units else np.zeros(0, np.int64)
    pos = np.empty(n, dtype=np.int64)  # position of each ingress packet within its unit
    pos[by_unit] = np.arange(n) - np.repeat(start, counts)

    def keys(t: PacketTable, fl: np.ndarray) -> list[int]:
        k = (fl.astype(np.uint64) << np.uint64(48)) | (t.ip_id.astype(np.uint64) << np.uint64(32)) \
            | t.tcp_seq.astype(np.uint64)
        return k.tolist()

    cand: dict[int, list[int]] = defaultdict(list)  # key -> ingress packets with it, in arrival order
    for i, k in enumerate(keys(ingress, flow_in)):
        cand[k].append(i)
    head: dict[int, int] = {}  # per key: index into its candidate list of the first not yet passed
    in_ts = ingress.ts_ns.tolist()
    unit_l, pos_l, by_unit_l, start_l = unit.tolist(), pos.tolist(), by_unit.tolist(), start.tolist()
    ptr = [0] * n_units  # per unit: position of its first packet not yet matched or passed over
    out_ns, out_ecn, proof_ns = [-1] * n, [0] * n, [-1] * n
    first_in = None
    unmatched = 0
    for k, o_ts, o_ecn in zip(keys(egress, flow_out), egress.ts_ns.tolist(), egress.ecn.tolist()):
        lst = cand.get(k)
        if lst is None:
            unmatched += 1
            continue
        h = head.get(k, 0)
        while h < len(lst) and pos_l[lst[h]] < ptr[unit_l[lst[h]]]:
            h += 1  # passed over already: it was dropped (or matched) before this one left
        head[k] = h
        if h == len(lst) or in_ts[lst[h]] > o_ts:
            unmatched += 1
            continue
        i = lst[h]
        head[k] = h + 1
        u = unit_l[i]
        base = start_l[u]
        for p in range(ptr[u], pos_l[i]):  # FIFO: what this packet overtook in its unit was dropped
            proof_ns[by_unit_l[base + p]] = o_ts
        ptr[u] = pos_l[i] + 1
        if first_in is None:
            first_in = in_ts[i]
        out_ns[i] = o_ts
        out_ecn[i] = o_ecn
    return out_ns, out_ecn, proof_ns, first_in, unmatched


def match_fates(ingress: PacketTable, egress: PacketTable, *, qdisc: str, classifier: str = "l4s_ect",
                drop_at: str | None = None, stats: CaptureStats | None = None) -> Fates:
    """Decide every tracked ingress packet's fate (see the module docstring). Both tables hold only the data
    direction, each in time order."""
    if qdisc not in QDISC_DROP_AT:
        raise L4stbError(f"capture matching: qdisc {qdisc!r} is not one l4stb reads captures for; use one of "
                         f"{', '.join(sorted(QDISC_DROP_AT))}.")
    if qdisc == "dualpi2" and classifier not in CLASSIFIER_MASK:
        raise L4stbError(f"capture matching: dualpi2 classifier {classifier!r} is unknown; use l4s_ect or any_ect "
                         "(tc's names).")
    drop_at = drop_at or QDISC_DROP_AT[qdisc]
    if drop_at not in ("enqueue", "dequeue"):
        raise L4stbError(f"capture matching: drop_at {drop_at!r} must be 'enqueue' or 'dequeue'.")
    st = stats if stats is not None else CaptureStats()
    n = len(ingress)
    st.tracked_in, st.tracked_out = n, len(egress)
    if qdisc == "dualpi2":
        qt = ((ingress.ecn & CLASSIFIER_MASK[classifier]) != 0).astype(np.int64)
    else:
        qt = np.zeros(n, dtype=np.int64)

    flow_in, flow_out, flows = _flow_index(ingress, egress)
    walk = _walk_egress(ingress, egress, flow_in, flow_out, flow_in.astype(np.int64) * 2 + qt, 2 * len(flows))
    out_ns, out_ecn, proof_ns, first_in, st.unmatched_out = walk

    out_a = np.array(out_ns, dtype=np.int64)
    proof = np.array(proof_ns, dtype=np.int64)
    ts = ingress.ts_ns
    left = out_a >= 0
    ecn_out = np.array(out_ecn, dtype=np.int64)
    marked = left & (ecn_out == ECN_CE) & (ingress.ecn != ECN_CE)
    rewritten = left & ~marked & (ecn_out != ingress.ecn)
    before_egress = ts < first_in if first_in is not None else np.ones(n, bool)
    dropped = (proof >= 0) & ~left & ~before_egress
    action = np.zeros(n, dtype=np.int64)
    action[left] = ACTION_FORWARD
    action[marked] = ACTION_MARK
    action[dropped] = ACTION_DROP
    fate = np.where(left, out_a, np.where(dropped, proof if drop_at == "dequeue" else ts, -1))
    dequeue_fate = left | (dropped & (drop_at == "dequeue"))
    st.forwarded = int((left & ~marked).sum())
    st.marked = int(marked.sum())
    st.dropped = int(dropped.sum())
    st.unresolved = int((action == 0).sum())
    st.ecn_rewritten = int(rewritten.sum())
    return Fates(ingress, qt, action, fate, out_a, dequeue_fate, flow_in, flows)


def _flow_ids(fates: Fates, streams: Sequence[Stream] | None, iperf3_control: bool) -> np.ndarray:
    """flow id per flow index: >= 0 logged, -1 unlisted, -2 iperf3 control connection."""
    nflows = len(fates.flows)
    first = np.full(nflows, np.iinfo(np.int64).max, dtype=np.int64)
    if len(fates.flow):
        np.minimum.at(first, fates.flow, fates.table.ts_ns)
    seen = [f for f in np.argsort(first, kind="stable").tolist() if first[f] != np.iinfo(np.int64).max]
    ids = np.full(nflows, -1, dtype=np.int64)
    if streams is None:
        for n, f in enumerate(seen):
            ids[f] = n
        return ids
    proto_no = {"tcp": PROTO_TCP, "udp": PROTO_UDP}
    wanted: dict[tuple[int, int, int], list[int]] = defaultdict(list)
    given = [s.flow_id for s in streams]
    if len(set(given)) != len(given) or any(not 0 <= f < 2 ** 31 for f in given):
        raise L4stbError(f"capture matching: stream flow ids {given} must be distinct and in 0..2^31-1 (the "
                         "simulator's stream indexes).")
    for s in streams:
        if s.proto not in proto_no:
            raise L4stbError(f"capture matching: stream {s.flow_id} has protocol {s.proto!r}; use tcp or udp.")
        try:
            src = ip_to_int(s.src)
        except ValueError:
            raise L4stbError(f"capture matching: stream {s.flow_id}: client address {s.src!r} is not IPv4.") from None
        wanted[(src, s.dport, proto_no[s.proto])].append(s.flow_id)
    observed: dict[tuple[int, int, int], list[int]] = defaultdict(list)
    for f in seen:
        src, _dst, _sport, dport, proto = fates.flows[f]
        observed[(src, dport, proto)].append(f)
    for group, fl in observed.items():
        if iperf3_control and group[2] == PROTO_TCP and group in wanted:
            ids[fl[0]] = -2
            fl = fl[1:]
        for f, fid in zip(fl, wanted.get(group, [])):
            ids[f] = fid
    return ids


def _occupancy(fates: Fates, qtype: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per packet with a fate: queue_length, length_in_bytes, total_packets, total_bytes, dequeue_count,
    total_drops, in the order of :func:`np.lexsort` by (fate time, ingress index)."""
    n = len(fates.action)
    has = fates.action > 0
    length = fates.table.ip_len.astype(np.int64)
    res = [np.zeros(n, dtype=np.int64) for _ in range(6)]
    for q in np.unique(qtype).tolist():
        inq = qtype == q
        arr_ts = fates.table.ts_ns[inq]  # already in time order
        arr_bytes = np.concatenate(([0], np.cumsum(length[inq])))
        ev = np.flatnonzero(inq & has)
        ev = ev[np.lexsort((ev, fates.fate_ns[ev]))]
        t = fates.fate_ns[ev]
        gone_bytes = np.concatenate(([0], np.cumsum(length[ev])))[:-1]
        rank = np.arange(len(ev))
        arrived = np.searchsorted(arr_ts, t, side="right")
        arrived_bytes = arr_bytes[arrived]
        enq_drop = (fates.action[ev] == ACTION_DROP) & ~fates.dequeue_fate[ev]
        deq = np.concatenate(([0], np.cumsum(fates.dequeue_fate[ev])))[:-1]
        drops = np.concatenate(([0], np.cumsum(fates.action[ev] == ACTION_DROP)))[:-1]
        res[0][ev] = arrived - rank - enq_drop
        res[1][ev] = arrived_bytes - gone_bytes - np.where(enq_drop, length[ev], 0)
        res[2][ev] = arrived
        res[3][ev] = arrived_bytes
        res[4][ev] = deq
        res[5][ev] = drops
    return tuple(res)


def fates_to_lines(fates: Fates, *, streams: Sequence[Stream] | None = None, iperf3_control: bool = True,
                   time_origin_ns: int = 0, stats: CaptureStats | None = None) -> Iterator[str]:
    """The log lines of the packets that get one (module docstring), ordered by fate time; ``stats`` is complete
    when this returns (the lines are formatted as they are taken)."""
    st = stats if stats is not None else CaptureStats()
    t = fates.table
    ids = _flow_ids(fates, streams, iperf3_control)
    fid = ids[fates.flow] if len(fates.flow) else np.zeros(0, np.int64)
    has = fates.action > 0
    data = (t.proto == PROTO_UDP) | (t.payload_len > 0)
    st.no_payload = int((has & ~data).sum())
    st.control = int((has & data & (fid == -2)).sum())
    st.unlisted = int((has & data & (fid == -1)).sum())
    occ = _occupancy(fates, fates.queue_type)
    logged = np.flatnonzero(has & data & (fid >= 0))
    logged = logged[np.lexsort((logged, fates.fate_ns[logged]))]
    st.lines = len(logged)
    m = len(logged)
    cols = np.full((m, len(L4STB_FIELD_NAMES)), UNKNOWN, dtype=np.int64)
    ix = {name: i for i, name in enumerate(L4STB_FIELD_NAMES)}
    act = fates.action[logged]
    sojourn = (fates.out_ns[logged] - t.ts_ns[logged]) // 1000
    cols[:, ix["queue_type"]] = fates.queue_type[logged]
    cols[:, ix["current_queue_delay"]] = np.where(act == ACTION_DROP, UNKNOWN, sojourn)
    for name, arr in zip(("queue_length", "length_in_bytes", "total_packets", "total_bytes", "dequeue_count",
                          "total_drops"), occ):
        cols[:, ix[name]] = arr[logged]
    cols[:, ix["packet_length"]] = t.ip_len[logged]
    cols[:, ix["dequeue_action"]] = act
    cols[:, ix["timestamp_us"]] = (fates.fate_ns[logged] - time_origin_ns) // 1000
    if m and cols[0, ix["timestamp_us"]] < 0:
        raise L4stbError(f"capture matching: time_origin_ns {time_origin_ns} is after the capture's first decision "
                         f"({int(fates.fate_ns[logged[0]])} ns since the epoch): pass the run's start or 0.")
    cols[:, ix["flow_id"]] = fid[logged]
    cols[:, ix["decided_by"]] = DECIDED_BY_AQM
    return map(format_line, cols.tolist())


def capture_to_log_lines(ingress: str | Path | Sequence[str | Path], egress: str | Path, *,
                         servers: Collection[str], qdisc: str, classifier: str = "l4s_ect",
                         drop_at: str | None = None, streams: Sequence[Stream] | None = None,
                         iperf3_control: bool = True, time_origin_ns: int = 0,
                         stats: CaptureStats | None = None) -> Iterator[str]:
    """The l4stb log lines of a real-Linux run's bottleneck, from its ingress and egress captures.

    ``ingress``: the pcap file(s) of the client-facing interface(s) (several are merged by time); ``egress``: the
    server-facing one. ``servers``: IPv4 addresses of the data's destinations. ``qdisc``: dualpi2, pie,
    codel, fq_codel or pfifo (the bottleneck's child qdisc under htb). ``classifier``: dualpi2's l4s_ect or any_ect.
    ``drop_at``: where the qdisc drops ("enqueue"/"dequeue"; default per qdisc, :data:`QDISC_DROP_AT`; pass
    "enqueue" for dualpi2 ``drop_enqueue``). ``streams``/``iperf3_control``: flow numbering (module docstring).
    ``time_origin_ns``: subtracted from the Unix-epoch timestamps. ``stats``: filled with the counts when given.
    Bad files and arguments raise :class:`~l4stb.errors.L4stbError` from this call; ``stats`` is complete when it
    returns.
    """
    st = stats if stats is not None else CaptureStats()
    srv = _server_array(servers)
    ins = _tables(ingress)
    out = read_pcap(egress)
    st.ingress = [t.stats for t in ins]
    st.egress = out.stats
    fin = _data_direction(_concat(ins), srv)
    fout = _data_direction(_concat([out]), srv)
    fates = match_fates(fin, fout, qdisc=qdisc, classifier=classifier, drop_at=drop_at, stats=st)
    return fates_to_lines(fates, streams=streams, iperf3_control=iperf3_control, time_origin_ns=time_origin_ns,
                              stats=st)

