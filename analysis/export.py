"""`l4stb export` and `l4stb.load_run`: a run's packets, flows and summary as files or DataFrames, with their schema."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from l4stb.analysis.schema_docs import TABLES, Column
from l4stb.analysis.senders import cc_slug, manifest_senders
from l4stb.analysis.summary import annotate_run_flows, scenario_and_rate, summarize
from l4stb.analysis.traffic import group_class
from l4stb.errors import L4stbError
from l4stb.manifest import load_manifest
from l4stb.workspace import Workspace, atomic_path


@dataclass
class LoadedRun:
    """One run for a notebook: ``packets`` and ``flows`` as DataFrames, ``summary`` as `l4stb summary --json`."""

    run_id: str
    packets: pd.DataFrame
    flows: pd.DataFrame
    summary: dict


def load_run(run_id: str | None = None, workdir: str | Path | None = None) -> LoadedRun:
    """Load a parsed run by id (default: the latest) from ``workdir`` (default: $L4STB_WORKDIR or ./l4stb-work),
    parsing its fetched logs first if needed."""
    ws = Workspace.at(workdir or os.environ.get("L4STB_WORKDIR") or "./l4stb-work")
    run_id = ws.resolve_run(run_id)
    summary = summarize(ws, run_id)
    packets = pd.read_parquet(ws.packets_file(run_id))
    return LoadedRun(run_id, packets, annotated_flows(ws, run_id), summary.to_json())


@dataclass
class LoadedSweep:
    """One sweep for a notebook: ``table`` (one row per combination), ``json`` (`l4stb summary --sweep --json`) and
    the ``runs`` of its combinations."""

    sweep_id: str
    table: pd.DataFrame
    json: dict
    runs: list[str]


def load_sweep(sweep_id: str | None = None, workdir: str | Path | None = None) -> LoadedSweep:
    """Load a sweep by id (default: the latest) from ``workdir`` (default: $L4STB_WORKDIR or ./l4stb-work), parsing
    its runs' fetched logs first if needed."""
    # lazy: loads matplotlib, slow to import
    from l4stb.analysis.sweep_report import sweep_table

    ws = Workspace.at(workdir or os.environ.get("L4STB_WORKDIR") or "./l4stb-work")
    table = sweep_table(ws, sweep_id)
    return LoadedSweep(table.record.sweep_id, table.frame(), table.to_json(), [r["run_id"] for r in table.rows])


def annotated_flows(ws: Workspace, run_id: str) -> pd.DataFrame:
    """Every column of flows.parquet plus ``flow_class`` and ``flow_start_s`` (:mod:`l4stb.analysis.traffic`) and
    ``cc_label``, the CC with its sender's stack and transport (:mod:`l4stb.analysis.senders`)."""
    if not ws.flows_file(run_id).is_file():
        return pd.DataFrame()
    manifest = load_manifest(ws, run_id)
    return annotate_run_flows(pd.read_parquet(ws.flows_file(run_id)), manifest, scenario_and_rate(manifest)[0])


def summary_frame(summary) -> pd.DataFrame:
    """One row per repeat and a row ``repeat = 0`` for the whole run, in docs/data.md's summary columns."""
    m = summary.metrics
    co = summary.coexistence

    def row(repeat: int, queues, utilization: float, jain: float, ratio: float, overload: float,
            capacity_bps: float) -> dict:
        out: dict = {"repeat": repeat}
        for q in ("C", "L"):
            s = queues[q]
            for p in (50, 90, 95, 99):
                out[f"{q}_delay_p{p}_ms"] = s.delay.get(p)
            out[f"{q}_drop_rate"], out[f"{q}_mark_rate"] = s.drop_fraction, s.mark_fraction
        out.update(utilization=utilization, jain=jain, scalable_classic_ratio=ratio, overload_share=overload,
                   capacity_mbps=capacity_bps / 1e6)
        return out

    nan = float("nan")
    per_ratio = co.per_repeat if co is not None else {}
    overload = summary.overload.per_repeat if summary.overload else {}
    caps = [rm.capacity_bps for rm in m.repeats]
    ccs = sorted(m.cc)  # per CC and sender stack: "dctcp (FreeBSD)" -> column throughput_mbps_dctcp_freebsd
    col = {cc: f"throughput_mbps_{cc_slug(cc)}" for cc in ccs}
    rows = [{**row(0, m.queues, m.utilization.mean, m.jain.mean, co.per_flow.mean if co else nan,
                   summary.overload.interval.mean if summary.overload else nan, sum(caps) / len(caps) if caps else nan),
             **{col[cc]: m.cc[cc].mean for cc in ccs}}]
    rows += [{**row(rm.repeat, rm.queues, rm.utilization, rm.jain, per_ratio.get(rm.repeat, nan),
                    overload.get(rm.repeat, nan), rm.capacity_bps),
              **{col[cc]: rm.cc[cc].mean_per_flow_mbps if cc in rm.cc else nan for cc in ccs}}
             for rm in m.repeats]
    fixed = [c.name for c in TABLES["summary"] if "<" not in c.name]
    return pd.DataFrame(rows, columns=fixed + [col[cc] for cc in ccs])


def flow_map(ws: Workspace, run_id: str) -> pd.DataFrame:
    """flow_id -> host, CC, stack, transport, group, connection, stream, port and class, for every stream of the
    run's scenario (docs/data.md, table flowmap); empty when the run carries no complete scenario."""
    manifest = load_manifest(ws, run_id)
    scenario = scenario_and_rate(manifest)[0]
    cols = [c.name for c in TABLES["flowmap"]]
    if scenario is None:
        return pd.DataFrame(columns=cols)
    senders = manifest_senders(manifest, scenario)
    rows = []
    for s in scenario.streams():
        host = senders.of(s.host)
        rows.append({"flow_id": s.fid, "host": s.host, "cc": s.cc, "cc_label": host.label(s.cc), "stack": host.stack,
                     "transport": host.transport(s.cc),
                     "group": s.group, "connection": s.connection, "stream": s.stream, "port": s.port,
                     "flow_class": group_class(scenario, s.group, s.cc)})
    return pd.DataFrame(rows, columns=cols)


def with_schema(table: pa.Table, name: str, columns: Sequence[Column]) -> pa.Table:
    """The table with each known column's unit and meaning in its field metadata, and the table name in the schema's."""
    docs = {c.name: c for c in columns}
    fields = []
    for f in table.schema:
        c = docs.get(f.name)
        fields.append(f.with_metadata({"unit": c.unit, "meaning": c.meaning}) if c else f)
    meta = {**(table.schema.metadata or {}), b"l4stb.table": name.encode(),
            b"l4stb.docs": b"docs/data.md"}
    return table.cast(pa.schema(fields, metadata=meta))


def export_run(ws: Workspace, run_id: str, *, fmt: str, what: Sequence[str], out: Path | None = None) -> list[Path]:
    """Write the chosen tables of a run into ``out`` (default runs/<id>/export/) as CSV or parquet."""
    if fmt not in ("csv", "parquet"):
        raise L4stbError(f"--format {fmt}: use csv or parquet.")
    unknown = sorted(set(what) - set(TABLES))
    if unknown:
        raise L4stbError(f"--what {', '.join(unknown)}: use packets, flows, summary or flowmap.")
    summary = summarize(ws, run_id)  # parses the run first when its tables are missing or stale
    folder = Path(out) if out else ws.run_dir(run_id) / "export"
    written = []
    for name in what:
        if name == "summary":
            table = pa.Table.from_pandas(summary_frame(summary), preserve_index=False)
        elif name == "flowmap":
            table = pa.Table.from_pandas(flow_map(ws, run_id), preserve_index=False)
        elif name == "flows":
            if not ws.flows_file(run_id).is_file():
                raise L4stbError(f"run {run_id} has no {ws.flows_file(run_id).name}; run `l4stb fetch-logs --run "
                                 f"{run_id}` first.")
            table = pa.Table.from_pandas(annotated_flows(ws, run_id), preserve_index=False)
        else:
            path = ws.packets_file(run_id) if name == "packets" else ws.flows_file(run_id)
            if not path.is_file():
                raise L4stbError(f"run {run_id} has no {path.name}; run `l4stb fetch-logs --run {run_id}` first.")
            table = pq.read_table(path)
        target = folder / f"{name}.{fmt}"
        with atomic_path(target) as tmp:
            if fmt == "parquet":
                pq.write_table(with_schema(table, name, TABLES[name]), tmp)
            else:
                table.to_pandas().to_csv(tmp, index=False)
        written.append(target)
    if fmt == "csv":
        target = folder / "columns.json"
        with atomic_path(target) as tmp:
            tmp.write_text(json.dumps({n: [c.__dict__ for c in TABLES[n]] for n in what}, indent=2) + "\n")
        written.append(target)
    return written
