"""`l4stb summary`: load a parsed run, compute its metrics, and print them as rich tables or one JSON object."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.table import Table

from l4stb.analysis import metrics as M
from l4stb.analysis.aqm_state import OverloadShare, QueueRates, overload_share, queue_rates
from l4stb.analysis.capacity import Capacity, applied_capacities, capacity_of
from l4stb.analysis.packet_repeats import PacketRepeats
from l4stb.analysis.rawfiles import inventory
from l4stb.analysis.class_metrics import ShortFlowFcts, UdpRow, short_flow_fcts, udp_rows
from l4stb.analysis.coexistence import Coexistence, coexistence
from l4stb.analysis.senders import PRAGUE_WORDS, STACKS, Senders, label_flows, manifest_senders
from l4stb.analysis.traffic import BULK, annotate_flows
from l4stb.config import SCALABLE_CCS, Aqm, Scenario, explain
from l4stb.errors import L4stbError
from l4stb.manifest import Manifest, load_manifest, run_aqm
from l4stb.units import format_rate, parse_rate_bps
from l4stb.workspace import Workspace, read_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParseStats:
    """What the parser read: ``data/parse.json``."""

    lines_read: int = 0
    parsed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    """Up to a few skipped lines per reason, as the parser recorded them."""

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ParseStats":
        skipped = {str(k): int(v) for k, v in (data.get("skipped") or {}).items()}
        raw = data.get("examples") or {}
        examples: dict[str, list[str]] = {}
        if isinstance(raw, dict):
            for k, v in raw.items():
                examples[str(k)] = [str(x) for x in (v if isinstance(v, list) else [v])]
        elif isinstance(raw, list):
            examples["skipped"] = [str(x) for x in raw]
        return cls(int(data.get("lines_read", 0) or 0), int(data.get("parsed", 0) or 0), skipped, examples)

    def to_json(self) -> dict:
        return {"lines_read": self.lines_read, "parsed": self.parsed, "skipped": dict(self.skipped)}


@dataclass
class RunData:
    """A parsed run as the metrics and the report read it."""

    run_id: str
    manifest: Manifest
    scenario: Scenario | None
    """None when the manifest's scenario does not validate (e.g. an imported run without one)."""
    rate_bps: float | None
    packets: pd.DataFrame
    flows: pd.DataFrame
    parse: ParseStats
    repeat_capacity: dict[int, Capacity] = field(default_factory=dict)
    """A repeat's capacity as the router applied its rate schedule, where it recorded one
    (:func:`~l4stb.analysis.capacity.applied_capacities`); the other repeats use :attr:`capacity`."""

    @property
    def log_sample_every(self) -> int:
        """The router logged every N-th decision (``logging.sample_every``; 1 when unknown)."""
        return self.scenario.logging.sample_every if self.scenario else 1

    @property
    def aqm(self) -> str:
        return self.scenario.aqm.name if self.scenario else str(self.manifest.scenario.get("aqm", {}).get("name", "?"))

    @property
    def resolved_aqm(self) -> Aqm | None:
        """The AQM the run ran with every default filled (:func:`l4stb.manifest.run_aqm`); None without a
        scenario."""
        return run_aqm(self.manifest, self.scenario) if self.scenario else None

    @property
    def senders(self) -> Senders:
        """Each client's stack and Prague transport (what every CC label names, :mod:`l4stb.analysis.senders`)."""
        return manifest_senders(self.manifest, self.scenario)

    @property
    def label(self) -> str:
        """The series label of this run in figures: its AQM."""
        return self.aqm

    @property
    def capacity(self) -> Capacity:
        """The capacity the bottleneck offered over time (its schedule or trace; the fixed rate otherwise)."""
        return capacity_of(self.scenario, self.rate_bps)


@dataclass
class RunSummary:
    """The numbers of `l4stb summary` for one run (see :meth:`to_json` for the JSON shape)."""

    run_id: str
    scenario_name: str
    aqm: str
    rate_bps: float | None
    metrics: M.RunMetrics
    parse: ParseStats
    scalable_ccs: tuple[str, ...] = SCALABLE_CCS
    pipe_passes: int = 1
    """2 when the scenario's ipfw rule (``bottleneck.match: any``) sends every packet through the pipe twice."""
    short_flows: list[ShortFlowFcts] = field(default_factory=list)
    """Flow completion times of the scenario's short-flow groups (:func:`~l4stb.analysis.class_metrics.short_flow_fcts`)."""
    udp: list[UdpRow] = field(default_factory=list)
    """One row per unresponsive (``cc: udp``) group (:func:`~l4stb.analysis.class_metrics.udp_rows`)."""
    overrides: tuple[str, ...] = ()
    """The run's ``--set``/``--sweep`` overrides of the scenario, as given on the command line."""
    sweep: dict | None = None
    """The sweep this run is a point of: ``{"sweep_id", "values"}``; None for a plain run."""
    testbed: str = ""
    """Which testbed produced the run, in words (see :func:`testbed_words`)."""
    overload: OverloadShare | None = None
    """Share of PI updates in overload; None when the AQM is not DualPI2 (its flags mean something else)."""
    rates: dict[str, QueueRates] = field(default_factory=dict)
    coexistence: Coexistence | None = None
    log_sample_every: int = 1
    """The router logged every N-th decision: decision counts are the logged ones times N (estimates)."""

    def to_json(self) -> dict:
        """``run_id``, ``scenario``, ``aqm``, ``testbed``, ``overrides``, ``sweep``, then ``queues``, ``utilization``,
        ``flows``, ``jain``, ``coexistence``, ``overload``, ``repeats``, ``parse`` (NaN -> null), and
        ``short_flows``/``udp`` when the scenario has such groups, and ``log_sample_every`` (the router logged every
        N-th decision: the decision, drop and mark counts are the logged ones times N).

        ``flows`` lists every flow with its ``class`` (bulk, short, unresponsive); ``jain``, the coexistence
        ratios and ``cc_throughput_mbps`` are over bulk flows only. ``na`` maps a metric that is undefined
        (``jain``, ``scalable_classic_ratio``) to the reason, and the metric itself is null. ``capacity`` says
        what utilisation is measured against: the mean rate offered and the rate changes of a schedule or trace, and
        ``repeats_applied``, how many repeats used the schedule as the router applied it (vagrant) instead of the plan.

        ``queues.<q>`` also carries ``drop_rate``/``mark_rate`` (pooled share of the queue's decisions) and their
        95 % intervals over repeats. ``coexistence`` = the scalable/classic per-flow throughput ratio and one
        ratio per CC pair, each ``{mean, low, high, n}``. ``overload`` = the share of PI updates in overload
        (``flags`` bit1), null unless the AQM is DualPI2.

        ``queues``/``utilization``/``flows``/``jain`` are over the whole run (delays pooled over all repeats'
        packets; counts summed; utilisation, Jain and per-flow throughput are means of per-repeat values).
        ``repeats`` = ``{"n", "warmup_s", "per_repeat": [...], "ci95": {...}}``: each per-repeat object holds
        the same metrics for that repeat, and ``ci95`` the 95% t-intervals of the per-repeat values
        (``low``/``high`` null when n < 3: two near-identical repeats give no trustworthy interval).
        """
        m = self.metrics
        return {
            "run_id": self.run_id,
            "scenario": self.scenario_name,
            "aqm": self.aqm,
            "testbed": self.testbed,
            "overrides": list(self.overrides),
            "sweep": self.sweep,
            "queues": {q: {**s.to_json(), **(self.rates[q].to_json() if q in self.rates else {})}
                       for q, s in m.queues.items()},
            "utilization": M._num(m.utilization.mean),
            "capacity": self.capacity_json(),
            "flows": [f.to_json() for f in m.flows],
            "jain": M._num(m.jain.mean),
            "na": self.na,
            "coexistence": self.coexistence.to_json() if self.coexistence else None,
            "overload": self.overload.to_json() if self.overload else None,
            "repeats": {
                "n": m.n_repeats,
                "warmup_s": m.warmup_s,
                "per_repeat": [
                    {
                        "repeat": rm.repeat,
                        "queues": {q: s.to_json() for q, s in rm.queues.items()},
                        "utilization": M._num(rm.utilization),
                        "flows": [{"host": f.key.host, "cc": f.key.cc, "cc_label": f.key.cc_name, "group": f.key.group,
                                   "connection": f.key.connection, "stream": f.key.stream, "class": f.flow_class,
                                   "start_s": round(f.start_s, 6), "throughput_mbps": M._num(f.throughput_mbps)}
                                  for f in rm.flows],
                        "capacity_mbps": M._num(rm.capacity_bps / 1e6),
                        "jain": M._num(rm.jain),
                        **({"na": rm.bulk_na} if rm.bulk_na else {}),
                    }
                    for rm in m.repeats
                ],
                "ci95": {
                    "delay_ms": {q: {f"p{p}": iv.to_json() for p, iv in per.items()} for q, per in m.delay_ci.items()},
                    "utilization": m.utilization.to_json(),
                    "jain": m.jain.to_json(),
                    "cc_throughput_mbps": {cc: iv.to_json() for cc, iv in m.cc.items()},
                },
            },
            "parse": self.parse.to_json(),
            "log_sample_every": self.log_sample_every,
            **({"short_flows": [sf.to_json() for sf in self.short_flows]} if self.short_flows else {}),
            **({"udp": [u.to_json() for u in self.udp]} if self.udp else {}),
        }

    @property
    def na(self) -> dict[str, str]:
        """Metric -> why it is undefined (n/a), for the metrics that are."""
        out = {}
        if not self.metrics.jain.n:
            out["jain"] = self.metrics.bulk_na or "no repeat has bulk flow throughputs"
        if self.coexistence is not None and not self.coexistence.defined:
            out["scalable_classic_ratio"] = self.coexistence.na
        return out

    def capacity_json(self) -> dict:
        cap = self.metrics.capacity or M.as_capacity(self.rate_bps or float("nan"))
        means = [rm.capacity_bps for rm in self.metrics.repeats]
        applied = sum(1 for rm in self.metrics.repeats if rm.capacity_source == "applied")
        return {"source": cap.source, "nominal_mbps": M._num(cap.nominal_bps / 1e6),
                "repeats_applied": applied,
                "mean_offered_mbps": M._num(float(np.nanmean(means)) / 1e6) if means else None,
                "changes": [{"at_s": t, "rate_mbps": r / 1e6} for t, r in cap.changes()[:1000]]}


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------


def ensure_run_parsed(ws: Workspace, run_id: str, progress=None) -> None:
    """Run the parser (``l4stb.analysis.packets.ensure_parsed``) so data/*.parquet exist and are current."""
    try:
        # lazy: the log parser may be absent; then the data already parsed is used
        from l4stb.analysis.packets import damaged_outputs, ensure_parsed
    except ImportError as exc:
        if ws.packets_file(run_id).is_file():
            log.warning("log parser unavailable (%s); using the existing %s", exc, ws.packets_file(run_id))
            return
        raise L4stbError(
            f"run {run_id} has no parsed data ({ws.packets_file(run_id)}) and this l4stb has no log parser "
            f"(l4stb.analysis.packets: {exc}). Reinstall l4stb, then run `l4stb fetch-logs --run {run_id}` first."
        ) from None
    raw = ws.raw_dir(run_id)
    has_raw = raw.is_dir() and any(p.is_file() for p in raw.rglob("*"))
    if not has_raw:
        if ws.packets_file(run_id).is_file():
            damaged = damaged_outputs(ws, run_id)
            if damaged:
                raise L4stbError(
                    f"run {run_id}: {', '.join(damaged)} in {ws.data_dir(run_id)} no longer match the size and "
                    "sha256 that parse.json recorded (changed or damaged after parsing), and raw/ holds no logs to "
                    f"parse again. Run `l4stb fetch-logs --run {run_id}` (or import the logs again), then retry.")
            log.info("run %s: no raw files, using the parsed data already in %s", run_id, ws.data_dir(run_id))
            return
        raise L4stbError(f"run {run_id} has no fetched logs under {raw}: run `l4stb fetch-logs --run {run_id}` "
                         f"first (or `l4stb import-logs` for existing files).")
    ensure_parsed(ws, run_id, progress=progress)


def load_run(ws: Workspace, run_id: str, progress=None, *, with_packets: bool = True) -> RunData:
    """Parse the run if needed and read its tables (only the columns the metrics use; ``with_packets=False``
    leaves the packets out, for a caller that reads them one repeat at a time)."""
    manifest = load_manifest(ws, run_id)
    ensure_run_parsed(ws, run_id, progress=progress)
    if not ws.packets_file(run_id).is_file():
        raise L4stbError(f"run {run_id}: {ws.packets_file(run_id)} is missing after parsing; "
                         f"run `l4stb fetch-logs --run {run_id}` first.")
    packets = _read_parquet(ws.packets_file(run_id), M.PACKET_COLUMNS) if with_packets else M.empty_packets()
    flows = _read_parquet(ws.flows_file(run_id), M.FLOW_COLUMNS) if ws.flows_file(run_id).is_file() else M.empty_flows()
    stats_file = ws.parse_stats_file(run_id)
    parse = ParseStats.from_json(read_json(stats_file, "parse statistics")) if stats_file.is_file() else ParseStats()
    scenario, rate = scenario_and_rate(manifest, str(ws.manifest_file(run_id)))
    applied = applied_capacities(scenario, inventory(ws, run_id, manifest).evidence)
    return RunData(run_id, manifest, scenario, rate, packets, annotate_run_flows(flows, manifest, scenario), parse,
                   applied)


def annotate_run_flows(flows: pd.DataFrame, manifest: Manifest, scenario: Scenario | None) -> pd.DataFrame:
    """The flows table with each flow's class and real start (:func:`l4stb.analysis.traffic.annotate_flows`),
    from the repeats' seeds in ``manifest``, and its CC named with the sender's stack and transport (``cc_label``,
    :func:`l4stb.analysis.senders.label_flows`)."""
    seeds = {int(k): int(r.seed) for k, r in manifest.repeats.items() if getattr(r, "seed", None) is not None}
    return label_flows(annotate_flows(flows, scenario, seeds), manifest_senders(manifest, scenario))


def scenario_and_rate(manifest: Manifest, where: str = "") -> tuple[Scenario | None, float | None]:
    """The typed scenario of a manifest and its bottleneck rate in bit/s (None when unknown).

    A run l4stb made carries a complete scenario: one that no longer validates (a manifest edited by hand, a
    rate of "fast") is a user error naming ``where`` (the manifest file) and the field. Only an imported run may
    carry a partial one: then the scenario is None and the rate is read when it is one."""
    try:
        scenario = manifest.run_scenario()
        return scenario, float(scenario.bottleneck.rate)
    except ValidationError as exc:
        if manifest.kind != "imported":
            raise L4stbError(explain(exc, f"{where or 'the manifest of run ' + manifest.run_id}, field scenario",
                                     Scenario) + " Restore the manifest from a backup or run the scenario again.") from None
    rate = (manifest.scenario.get("bottleneck") or {}).get("rate")
    try:
        return None, float(parse_rate_bps(rate)) if rate is not None else None
    except (ValueError, TypeError):
        return None, None


def _read_parquet(path, wanted) -> pd.DataFrame:
    names = set(pq.read_schema(path).names)
    return pd.read_parquet(path, columns=[c for c in wanted if c in names])


# ---------------------------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------------------------


def testbed_words(manifest: Manifest) -> str:
    """Which testbed produced a run, for the top of every report and summary; on the simulator, the sender stack
    of each client (FreeBSD 14.1 or Linux) and how ``cc: prague`` ran there."""
    if manifest.kind == "imported":
        return "imported from existing log files"
    if manifest.provider == "sim":
        what = (f"simulated by l4stb's sim provider (packet-level simulator; senders: {sender_stacks(manifest)}; "
                "router: FreeBSD 14.1 dummynet)")
        return what + (", closed loop" if manifest.kind == "closed-loop" else "")
    if manifest.provider == "vagrant":
        return "FreeBSD 14.1 VMs (vagrant provider)"
    if manifest.provider == "qemu":
        facts = next(iter(manifest.host_facts.values()), {}) if manifest.host_facts else {}
        return (f"a real Linux kernel ({facts.get('kernel', 'unknown version')}, Debian) under QEMU "
                f"({facts.get('accel', '?')}), hosts as network namespaces (qemu provider)")
    return f"the {manifest.provider} provider"


def sender_stacks(manifest: Manifest) -> str:
    """``client1 FreeBSD 14.1, client2 Linux (Prague = TCP Prague)``: each client's stack in the run's scenario
    (:func:`l4stb.analysis.senders.manifest_senders`)."""
    try:
        sc = manifest.run_scenario()
    except Exception:  # noqa: BLE001 - an imported or partial scenario: say what is known
        return "FreeBSD 14.1"
    senders = manifest_senders(manifest, sc)
    words = []
    for host in sorted({f.host for f in sc.flows}):
        h = senders.of(host)
        text = f"{host} {'FreeBSD 14.1' if h.stack == 'freebsd' else STACKS[h.stack]}"
        if any(f.cc == "prague" for f in sc.flows if f.host == host):
            text += f" (Prague = {PRAGUE_WORDS[h.prague]})"
        words.append(text)
    return ", ".join(words) or "FreeBSD 14.1"


def aqm_words(data: RunData) -> str:
    """The AQM that decided the run's packets: the scenario's, or for a closed-loop series the policy that decided
    every N-th packet with the AQM deciding the rest."""
    info = data.manifest.steps.get("closed_loop") if data.manifest.kind == "closed-loop" else None
    if isinstance(info, dict) and info.get("policy") and int(info.get("every", 0) or 0) > 0:
        n = int(info["every"])
        return (f"{info['policy']} deciding every {'' if n == 1 else f'{n}th '}packet"
                + (f", {data.aqm} the rest" if n > 1 else f" (on {data.aqm})"))
    return data.aqm


SUMMARY_PACKET_COLUMNS: tuple[str, ...] = ("repeat", "queue", "action", "current_queue_delay", "packet_length", "t_s",
                                           "flags", "measurement_start_time", "flow_id")
"""The packets.parquet columns the summary reads (queue stats, link utilisation, overload, UDP rows)."""
_UDP_COLUMNS = ["repeat", "flow_id", "t_s", "action"]


def _with_overload(data: RunData) -> bool:
    return data.aqm in ("dualpi2", "policy")


def _with_udp(data: RunData) -> bool:
    return data.scenario is not None and any(g.cc == "udp" for g in data.scenario.flows)


def _run_summary(data: RunData, metrics: M.RunMetrics, overload: OverloadShare | None, udp_packets: pd.DataFrame,
                 ) -> RunSummary:
    name = data.scenario.name if data.scenario else str(data.manifest.scenario.get("name", data.run_id))
    passes = data.scenario.bottleneck.pipe_passes if data.scenario else 1
    return RunSummary(data.run_id, name, aqm_words(data), data.rate_bps, metrics, data.parse, pipe_passes=passes,
                      overrides=tuple(data.manifest.overrides), sweep=data.manifest.sweep,
                      testbed=testbed_words(data.manifest), overload=overload,
                      rates=queue_rates(metrics), coexistence=coexistence(metrics),
                      short_flows=short_flow_fcts(data.scenario, data.flows, metrics.n_repeats, data.senders),
                      udp=udp_rows(data.scenario, metrics, udp_packets), log_sample_every=data.log_sample_every)


def summarize_data(data: RunData, warmup_s: float = M.WARMUP_S) -> RunSummary:
    """The summary of a run whose packets are in memory (the report and compare, which draw them too)."""
    metrics = M.run_metrics(data.packets, data.flows, data.capacity, warmup_s, sample_every=data.log_sample_every,
                            repeat_capacity=data.repeat_capacity)
    return _run_summary(data, metrics, overload_share(data.packets) if _with_overload(data) else None, data.packets)


def summarize(ws: Workspace, run_id: str, progress=None, warmup_s: float = M.WARMUP_S) -> RunSummary:
    """Parse the run if needed (``ensure_parsed``) and compute its summary, reading the packets one repeat at a
    time (:class:`~l4stb.analysis.packet_repeats.PacketRepeats`): the same numbers as :func:`summarize_data`,
    with memory bounded by the largest repeat rather than the run."""
    data = load_run(ws, run_id, progress=progress, with_packets=False)
    return summarize_repeats(data, PacketRepeats(ws.packets_file(run_id), SUMMARY_PACKET_COLUMNS), warmup_s)


def summarize_repeats(data: RunData, repeats: PacketRepeats, warmup_s: float = M.WARMUP_S,
                      visit: Callable[[int, pd.DataFrame], None] | None = None) -> RunSummary:
    """The summary of ``data`` (loaded without its packets) from its packets given one repeat at a time;
    ``visit`` sees each repeat's frame too (the report's figures are drawn from the same pass)."""
    overloads: list[OverloadShare] = []
    udp_parts: list[pd.DataFrame] = []
    want_overload, want_udp = _with_overload(data), _with_udp(data)

    def each(repeat: int, packets: pd.DataFrame) -> None:
        if want_overload:
            overloads.append(overload_share(packets))
        if want_udp and {"flow_id", "t_s"} <= set(packets.columns):
            timed = (packets["flow_id"].to_numpy() >= 0) & np.isfinite(packets["t_s"].to_numpy(dtype=float))
            udp_parts.append(packets.loc[timed, _UDP_COLUMNS])
        if visit is not None:
            visit(repeat, packets)

    metrics = M.run_metrics_by_repeat(repeats.repeat_ids, repeats, data.flows, data.capacity, warmup_s, each,
                                      sample_every=data.log_sample_every, repeat_capacity=data.repeat_capacity)
    udp_packets = pd.concat(udp_parts, ignore_index=True) if udp_parts else data.packets
    return _run_summary(data, metrics, OverloadShare.merge(overloads) if want_overload else None, udp_packets)


def _ms(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:.2f}"


def _ms3(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _pct(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{100 * x:.1f}%"


def _frac(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:.3f}"


def na_text(reason: str) -> str:
    """How an undefined metric reads wherever a person reads it."""
    return f"n/a ({reason})"


def print_summary(summary: RunSummary, console: Console) -> None:
    """Rich tables: one row per repeat, then the overall numbers with their 95% CIs, then the flows by class."""
    m = summary.metrics
    rate = format_rate(int(summary.rate_bps)) if summary.rate_bps else "unknown rate"
    cap = m.capacity
    if cap is not None and cap.varies:
        rate += f" nominal, {cap.source} with {len(cap.changes())} rate change(s)"
    console.print(f"[bold]{summary.run_id}[/]: scenario {summary.scenario_name}, AQM {summary.aqm}, bottleneck "
                  f"{rate}, {m.n_repeats} repeat(s); bulk-flow throughput from iperf3 after the first {m.warmup_s:g} s")
    console.print(_per_repeat_table(m))
    console.print(_overall_table(summary))
    if summary.pipe_passes == 2:
        console.print("[dim]utilisation is the flows' goodput over the bottleneck rate; with bottleneck.match: any "
                      "every byte crosses the pipe twice, so 50 % is a full pipe.[/]")
    if m.n_repeats < M.MIN_CI_REPEATS:
        console.print(f"{m.n_repeats} repeat(s): no confidence intervals (they need at least {M.MIN_CI_REPEATS} "
                      "repeats).")
    flows = _bulk_flows_table(m)
    if flows.row_count:
        console.print(flows)
    if summary.short_flows:
        console.print(_short_flows_table(summary))
    if summary.udp:
        console.print(_udp_table(summary))
        for u in summary.udp:
            if u.router_na:
                console.print(f"[dim]UDP group {u.group}: delivered, loss and marks are n/a: {u.router_na}.[/]")
    p = summary.parse
    skipped = ", ".join(f"{k}: {v}" for k, v in sorted(p.skipped.items())) or "none"
    console.print(f"parse: {p.lines_read} lines read, {p.parsed} parsed, skipped {p.skipped_total} ({skipped})")
    if summary.log_sample_every > 1:
        console.print(sampled_log_text(summary.log_sample_every))
    applied = summary.capacity_json()["repeats_applied"]
    if applied:
        console.print(f"utilisation of {applied} repeat(s) is against the rate schedule as the router applied it "
                      "(its helper's record), the others against the planned schedule.")


def _per_repeat_table(m: M.RunMetrics) -> Table:
    """Delay percentiles and drops/marks per queue, utilisation and Jain's index, one row per repeat."""
    per = Table(title="per repeat", box=box.SIMPLE_HEAD)
    per.add_column("rep", justify="right")
    for q in M.QUEUES:
        per.add_column(f"{q} delay (ms)\np50/p95/p99", justify="right", no_wrap=True)
        per.add_column(f"{q} drops\n/marks", justify="right", no_wrap=True)
    per.add_column("util.", justify="right", no_wrap=True)
    per.add_column("Jain\n(bulk)", justify="right", no_wrap=True)
    for rm in m.repeats:
        row = [str(rm.repeat)]
        for q in M.QUEUES:
            s = rm.queues[q]
            row += ["/".join(_ms3(s.delay.get(p)) for p in (50, 95, 99)), f"{s.drops}/{s.marks}"]
        per.add_row(*row, _pct(rm.utilization), "n/a" if rm.bulk_na else _frac(rm.jain))
    return per


def _overall_table(summary: RunSummary) -> Table:
    """The pooled and the mean-of-repeats numbers of the run, with their intervals."""
    m = summary.metrics
    overall = Table(title="overall (delays pooled over repeats; ± = 95% t-interval of per-repeat values)", box=box.SIMPLE_HEAD)
    overall.add_column("metric")
    overall.add_column("pooled", justify="right")
    overall.add_column("mean of repeats ± CI", justify="right")
    for q in M.QUEUES:
        s = m.queues[q]
        for p in M.PERCENTILES:
            overall.add_row(f"{q} queue delay p{p} (ms)", _ms(s.delay.get(p)), m.delay_ci[q][p].format(2))
        overall.add_row(f"{q} decisions / drops / marks", f"{s.packets} / {s.drops} / {s.marks}",
                        f"drop {_pct(s.drop_fraction)}, mark {_pct(s.mark_fraction)}")
    overall.add_row("utilisation (of the capacity offered)", "", m.utilization.format(1, scale=100, unit="%"))
    na = summary.na
    overall.add_row("Jain fairness (bulk flows)", "", na_text(na["jain"]) if "jain" in na else m.jain.format(3))
    co = summary.coexistence
    if co is not None:
        overall.add_row("scalable/classic throughput per flow (bulk)", "",
                        co.per_flow.format(2) if co.defined else na_text(co.na))
        for (sc, cl), iv in co.pairs.items():
            overall.add_row(f"  {sc}/{cl}", "", iv.format(2))
    if summary.overload is not None:
        overall.add_row("DualPI2 PI updates in overload", "", summary.overload.interval.format(1, scale=100, unit="%"))
    for name, iv in m.cc.items():
        overall.add_row(f"{name} throughput per bulk flow (Mbit/s)", "", iv.format(2))
    return overall


def _bulk_flows_table(m: M.RunMetrics) -> Table:
    flows = Table(title="bulk flows (steady-state throughput, mean over repeats)", box=box.SIMPLE_HEAD)
    for col in ("host", "cc", "group", "connection", "stream"):
        flows.add_column(col)
    flows.add_column("Mbit/s", justify="right")
    for f in m.flows:
        if f.flow_class == BULK:
            flows.add_row(f.key.host, f.key.cc_name, str(f.key.group), str(f.key.connection), str(f.key.stream),
                          f.throughput.format(2))
    return flows


def _short_flows_table(summary: RunSummary) -> Table:
    fct = Table(title="short flows: completion time (ms), every connection of every repeat", box=box.SIMPLE_HEAD)
    for col in ("group", "host", "cc", "bytes", "finished", "unfinished", "p50", "p95", "p99", "mean"):
        fct.add_column(col, justify="right" if col not in ("host", "cc") else "left")
    for sf in summary.short_flows:
        t = sf.to_json()["fct_ms"]
        fct.add_row(str(sf.group), sf.host, sf.cc_name, f"{sf.size_bytes:,}", str(sf.finished), str(sf.unfinished),
                    *("—" if t[k] is None else f"{t[k]:.1f}" for k in ("p50", "p95", "p99", "mean")))
    return fct

def sampled_log_text(every: int) -> str:
    """What a sampled router log means for the numbers, wherever a person reads them."""
    return (f"The router log is sampled: it holds every {every}th decision (logging.sample_every = {every}). Decision, "
            f"drop and mark counts and router-side utilisation are the logged ones times {every} (estimates); drop "
            "and mark shares and delay percentiles are of the logged decisions.")


def _udp_table(summary: RunSummary) -> Table:
    udp = Table(title="unresponsive (UDP) flows, mean over repeats", box=box.SIMPLE_HEAD)
    for col in ("group", "host", "ECN", "configured", "offered", "delivered", "loss", "marks"):
        udp.add_column(col, justify="right" if col not in ("host", "ECN") else "left")
    for u in summary.udp:
        udp.add_row(str(u.group), u.host, u.ecn, f"{u.configured_mbps:.2f} Mbit/s", f"{_ms(u.offered_mbps)} Mbit/s",
                    f"{_ms(u.delivered_mbps)} Mbit/s" if not u.router_na else "n/a", _pct(u.loss), _pct(u.marks))
    return udp
