"""A CC is named with its sender's stack and transport everywhere (issue 21, item 5): DCTCP from a FreeBSD and from a
Linux client are two rows, and a Prague row says udp_prague or TCP Prague."""

from __future__ import annotations

import pandas as pd
import pytest
from fake_run import install_fake_parser, make_run, packets_frame

from l4stb.analysis.senders import cc_label, cc_slug, run_senders

SCENARIO = """\
name: two-stacks
description: "client1 FreeBSD DCTCP and udp_prague, client2 Linux DCTCP and Cubic"
topology: dumbbell-4
duration: 10s
repeats: 2
seed: 1
ecn: true
bottleneck: {rate: 8Mbit, delay: 10ms}
aqm: {name: dualpi2, ecn: true}
hosts:
  client2: {stack: linux}
flows:
  - {host: client1, cc: dctcp, connections: 1}
  - {host: client2, cc: dctcp, connections: 1}
  - {host: client1, cc: prague, connections: 1}
  - {host: client2, cc: cubic, connections: 1}
"""
GROUPS = [("client1", "dctcp", 3.0), ("client2", "dctcp", 1.0), ("client1", "prague", 2.0), ("client2", "cubic", 1.5)]
LABELS = {"dctcp (FreeBSD)": 3.0, "dctcp (Linux)": 1.0, "prague (FreeBSD, udp_prague)": 2.0, "cubic (Linux)": 1.5}


def _flows(repeats=(1, 2), seconds=10) -> pd.DataFrame:
    rows = []
    for r in repeats:
        for g, (host, cc, mbps) in enumerate(GROUPS):
            for i in range(seconds):
                rows.append({"repeat": r, "host": host, "cc": cc, "file": f"{host}/{host}-{cc}-g{g}-c1.json",
                             "group": g, "connection": 1, "stream": 5, "start_s": float(i), "end_s": float(i + 1),
                             "bytes": int(mbps * 1e6 / 8), "throughput_mbps": mbps, "retransmits": 0,
                             "snd_cwnd": 20000, "rtt_us": 25000, "rttvar_us": 2000, "omitted": False, "sender": True})
    df = pd.DataFrame(rows)
    df["repeat"] = df["repeat"].astype("int16")
    return df


@pytest.fixture()
def two_stack_run(tmp_path, monkeypatch):
    install_fake_parser(monkeypatch)
    scen = tmp_path / "two-stacks.yaml"
    scen.write_text(SCENARIO)
    return make_run(tmp_path / "work", repeats=(1, 2), scenario=str(scen), run_id="two-stacks-20250101T000000Z",
                    packets=packets_frame(repeats=(1, 2), n_per_repeat=2000), flows=_flows())


def test_one_cc_on_two_stacks_is_two_rows_in_summary_json_and_export(two_stack_run):
    from l4stb.analysis.export import export_run
    from l4stb.analysis.summary import summarize

    ws, run_id = two_stack_run
    s = summarize(ws, run_id).to_json()
    per_cc = s["repeats"]["ci95"]["cc_throughput_mbps"]
    assert set(per_cc) == set(LABELS)
    for name, mbps in LABELS.items():
        assert per_cc[name]["mean"] == pytest.approx(mbps, rel=1e-6)
    assert {(f["cc"], f["cc_label"]) for f in s["flows"]} == {(cc, name) for (_, cc, _), name in zip(GROUPS, LABELS)}
    assert set(s["coexistence"]["pairs"]) == {"dctcp (FreeBSD)/cubic (Linux)", "dctcp (Linux)/cubic (Linux)",
                                             "prague (FreeBSD, udp_prague)/cubic (Linux)"}

    flowmap, summary = export_run(ws, run_id, fmt="csv", what=("flowmap", "summary"))[:2]
    fm = pd.read_csv(flowmap)
    assert list(fm["cc_label"]) == list(LABELS)
    assert list(fm["transport"]) == ["tcp", "tcp", "udp_prague", "tcp"]
    table = pd.read_csv(summary)
    assert table.loc[table["repeat"] == 0, "throughput_mbps_dctcp_freebsd"].item() == pytest.approx(3.0)
    assert table.loc[table["repeat"] == 0, "throughput_mbps_dctcp_linux"].item() == pytest.approx(1.0)
    assert "throughput_mbps_dctcp" not in table


def test_the_report_tables_legends_and_figure_data_name_the_stack(two_stack_run):
    from l4stb.analysis.report import render_report

    ws, run_id = two_stack_run
    render_report(ws, run_id)
    md = (ws.report_dir(run_id) / "summary.md").read_text()
    for name, mbps in LABELS.items():
        assert f"| {name} | 1 | {mbps:.2f}" in md, name  # the per-CC table: one row per CC and stack
        assert f"| {name} throughput (Mbit/s) |" in md
    assert "| client2 | dctcp (Linux) | 1 |" in md  # the per-flow table
    figs = ws.report_dir(run_id) / "figures"
    ts = pd.read_csv(figs / "throughput_timeseries.csv")
    assert set(ts["cc"]) == set(LABELS)
    assert any(s.startswith("client1 dctcp (FreeBSD) g0") for s in ts["series"])
    box = pd.read_csv(figs / "throughput_box.csv")
    assert set(box["x"]) == set(LABELS)
    trade = pd.read_csv(figs / "throughput_vs_p95_delay.csv")
    assert set(trade["series"]) == set(LABELS)


def test_the_stack_comes_from_the_provider_and_falls_back_to_the_freebsd_testbed():
    from l4stb.config import Scenario

    sc = Scenario.model_validate({"name": "x", "flows": [{"host": "client1", "cc": "prague"},
                                                         {"host": "client2", "cc": "prague"}],
                                  "hosts": {"client2": {"stack": "linux"}}})
    sim = run_senders(sc, "sim")
    assert (sim.label("client1", "prague"), sim.label("client2", "prague")) == (
        "prague (FreeBSD, udp_prague)", "prague (Linux, TCP Prague)")
    # vagrant is all FreeBSD; an imported run without a scenario comes from the FreeBSD testbed
    assert run_senders(sc, "vagrant").label("client2", "dctcp") == "dctcp (FreeBSD)"
    assert run_senders(None, "imported").label("client9", "prague") == "prague (FreeBSD, udp_prague)"
    # the qemu provider records every host as Linux in its facts
    qemu = run_senders(None, "qemu", {"client1": {"stack": "linux"}, "router": {"stack": "linux"}})
    assert qemu.label("client1", "cubic") == "cubic (Linux)" and qemu.label("client7", "dctcp") == "dctcp (Linux)"
    # prague_transport overrides the stack's own
    sc2 = Scenario.model_validate({"name": "x", "flows": [{"host": "client2", "cc": "prague"}],
                                   "hosts": {"client2": {"stack": "linux", "prague_transport": "udp"}}})
    assert run_senders(sc2, "sim").label("client2", "prague") == "prague (Linux, udp_prague)"
    assert cc_label("dctcp", None) == "dctcp"
    assert cc_slug("prague (Linux, TCP Prague)") == "prague_linux_tcp_prague"


def test_summary_terminal_tables_name_the_stack(two_stack_run):
    from rich.console import Console

    from l4stb.analysis.summary import print_summary, summarize

    ws, run_id = two_stack_run
    console = Console(record=True, width=200)
    print_summary(summarize(ws, run_id), console)
    text = console.export_text()
    assert "dctcp (FreeBSD) throughput per bulk flow" in text and "dctcp (Linux) throughput per bulk flow" in text
