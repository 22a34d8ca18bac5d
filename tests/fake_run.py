"""Small synthetic parsed runs (manifest + data/*.parquet + parse.json) for the metrics, summary and report tests.

The tables follow the parser's schema (docs/data.md): packets.parquet one row per router decision,
flows.parquet iperf3 intervals per stream. Numbers look like the dctcp-8mbps scenario under DualPI2:
Classic delays around 15 ms, L4S around 1–2 ms, 4 cubic + 4 newreno streams and one DCTCP stream.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd

from l4stb.config import load_scenario
from l4stb.logformat import FIELD_NAMES
from l4stb.manifest import FileRecord, Manifest, RepeatRecord, save_manifest
from l4stb.workspace import Workspace, atomic_write_json

FLOW_RATES_MBPS = {"cubic": 0.55, "newreno": 0.5, "dctcp": 2.9}


def packets_frame(repeats=(1, 2, 3), n_per_repeat=4000, seed=0, l_share=0.45) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for r in repeats:
        n = n_per_repeat
        is_l = rng.random(n) < l_share
        delay_us = np.where(is_l, rng.gamma(4.0, 350.0, n), rng.gamma(9.0, 1700.0, n)).astype(np.int64)
        u = rng.random(n)
        action = np.zeros(n, dtype=np.int8)
        action[(~is_l) & (u < 0.01)] = 1  # C drops
        action[(~is_l) & (u >= 0.01) & (u < 0.02)] = 2  # C marks (ECN-capable classic)
        action[is_l & (u < 0.08)] = 2  # L marks
        df = pd.DataFrame({name: np.zeros(n, dtype=np.int64) for name in FIELD_NAMES})
        df["queue_type"] = is_l.astype(np.int64)
        df["current_queue_delay"] = delay_us
        df["packet_length"] = 1500
        df["dequeue_action"] = action.astype(np.int64) + 1
        df["drop_probability"] = rng.random(n) * 0.05
        df["accumulated_probability"] = rng.random(n) * 0.2
        df.insert(0, "repeat", np.int16(r))
        df.insert(1, "line_format", pd.Categorical(["l4stb"] * n))
        ts = np.sort(rng.integers(0, 60_000_000, n))
        df["timestamp_us"] = ts
        df["flow_id"] = np.int32(-1)
        df["queue"] = pd.Categorical(np.where(is_l, "L", "C"), categories=["C", "L"])
        df["action"] = action
        df["t_s"] = (ts - ts[0]) / 1e6
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def flows_frame(repeats=(1, 2, 3), seconds=20, seed=0, rates=None) -> pd.DataFrame:
    rates = rates or FLOW_RATES_MBPS
    rng = np.random.default_rng(seed + 1)
    rows = []
    groups = [("client1", "cubic", 2, 2), ("client1", "newreno", 2, 2), ("client2", "dctcp", 1, 1)]
    for r in repeats:
        for group, (host, cc, conns, par) in enumerate(groups):
            for c in range(conns):
                for s in range(par):
                    sock = 5 + 2 * s
                    for i in range(seconds):
                        start, end = float(i), float(i + 1)
                        mbps = rates[cc] * (0.3 if i == 0 else rng.uniform(0.85, 1.15))
                        rows.append({"repeat": r, "host": host, "cc": cc, "file": f"{host}/iperf3-{cc}-{c}-r{r}.json",
                                     "group": group, "connection": c, "stream": sock, "start_s": start, "end_s": end,
                                     "bytes": int(mbps * 1e6 / 8 * (end - start)), "throughput_mbps": mbps,
                                     "retransmits": int(rng.integers(0, 3)), "snd_cwnd": 20000,
                                     "rtt_us": int(rng.uniform(20000, 30000)), "rttvar_us": 2000,
                                     "omitted": False, "sender": True})
    df = pd.DataFrame(rows)
    df["repeat"] = df["repeat"].astype("int16")
    return df


def make_run(root: Path, repeats=(1, 2, 3), scenario="dctcp-8mbps", run_id="dctcp-8mbps-20250101T000000Z",
             packets: pd.DataFrame | None = None, flows: pd.DataFrame | None = None,
             overrides: tuple[str, ...] = ()) -> tuple[Workspace, str]:
    """A workdir with one parsed run: manifest, packets.parquet, flows.parquet and parse.json."""
    ws = Workspace.at(root)
    sc = load_scenario(scenario, [f"repeats={len(repeats)}", *overrides]).model_dump(mode="json")
    m = Manifest(run_id=run_id, status="complete", scenario=sc, topology={"name": "dumbbell-4"},
                 versions={"l4stb": "0.1.0", "python": "3.11", "git_sha": "abc123"},
                 host_facts={"router": {"uname": "FreeBSD 14.1-RELEASE", "sysctls": {"kern.hz": "1000"}}},
                 repeats={str(r): RepeatRecord(repeat=r, seed=1000 + r, status="ok", wall_s=1.5) for r in repeats},
                 timings={"run_s": 12.5}, steps={"fetch": {"finished": "2025-01-01T00:01:00+00:00"}})
    m.files["router/var/log/dualpi2.log"] = FileRecord(host="router", remote_path="/var/log/dualpi2.log",
                                                       size=1234, sha256="0" * 64)
    save_manifest(ws, m)
    raw_log = ws.raw_dir(run_id) / "router" / "var" / "log" / "dualpi2.log"
    raw_log.parent.mkdir(parents=True, exist_ok=True)
    raw_log.write_text("(the parsed tables below stand for this file)\n")
    ws.data_dir(run_id).mkdir(parents=True, exist_ok=True)
    (packets if packets is not None else packets_frame(repeats)).to_parquet(ws.packets_file(run_id))
    (flows if flows is not None else flows_frame(repeats)).to_parquet(ws.flows_file(run_id))
    atomic_write_json(ws.parse_stats_file(run_id), {"lines_read": 12100, "parsed": 12000,
                                                    "skipped": {"unrelated": 90, "truncated": 10},
                                                    "examples": {"truncated": ["l4stb_aqm-start,1,2,3"]}})
    return ws, run_id


def install_fake_parser(monkeypatch) -> list:
    """Replace ``l4stb.analysis.packets`` with a stub whose ensure_parsed only records its calls."""
    calls: list = []
    mod = types.ModuleType("l4stb.analysis.packets")

    def ensure_parsed(ws, run_id, progress=None):
        calls.append(run_id)

    mod.ensure_parsed = ensure_parsed
    mod.damaged_outputs = lambda ws, run_id: []  # the fake's outputs are what the test wrote
    monkeypatch.setitem(sys.modules, "l4stb.analysis.packets", mod)
    return calls


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
