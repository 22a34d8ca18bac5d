"""Numbers with every kind of traffic: bulk, short and UDP flows apart; real start times; a changing link; dead series."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from l4stb.analysis import metrics as M
from l4stb.analysis.capacity import Capacity, capacity_of
from l4stb.analysis.class_metrics import short_flow_fcts, udp_rows
from l4stb.analysis.coexistence import coexistence
from l4stb.analysis.figure_data import throughput_timeseries_data
from l4stb.analysis.traffic import BULK, SHORT, UNRESPONSIVE, annotate_flows
from l4stb.config import load_scenario

MIX = ("flows=[{host: client1, cc: cubic}, {host: client2, cc: dctcp}, {host: client2, cc: udp, rate: 2Mbit}, "
       "{host: client2, cc: dctcp, connections: 3, size: 100KB, mean_gap: 300ms}]")


def _scenario(*sets: str):
    return load_scenario("dctcp-8mbps", [MIX, "duration=10s", *sets])


def _rows(repeat, group, cc, host, intervals, *, connection=1, stream=5):
    """intervals: (start_s, end_s, bytes) in the flow's own time."""
    return [{"repeat": repeat, "host": host, "cc": cc, "file": f"{host}-{cc}-g{group}-c{connection}.json",
             "group": group, "connection": connection, "stream": stream, "start_s": a, "end_s": b, "bytes": n,
             "throughput_mbps": n * 8 / (b - a) / 1e6, "retransmits": 0, "rtt_us": 20000, "omitted": False}
            for a, b, n in intervals]


def _second(mbps: float, seconds: int, start: float = 0.0):
    return [(start + i, start + i + 1.0, int(mbps * 1e6 / 8)) for i in range(seconds)]


def _mix_flows(repeat=1, cubic=3.0, dctcp=3.0, udp=2.0):
    rows = _rows(repeat, 0, "cubic", "client1", _second(cubic, 10))
    rows += _rows(repeat, 1, "dctcp", "client2", _second(dctcp, 10))
    rows += _rows(repeat, 2, "udp", "client2", _second(udp, 10))
    # three short flows: each one 128 KiB write acked a few ms into its life (the 28.9 Mbit/s "throughput")
    for c in (1, 2, 3):
        rows += _rows(repeat, 3, "dctcp", "client2", [(0.0, 0.036, 131072)], connection=c)
    return pd.DataFrame(rows)


def _metrics(flows, sc, capacity=None):
    annotated = annotate_flows(flows, sc, {})
    return annotated, M.run_metrics(M.empty_packets(), annotated, capacity or capacity_of(sc, sc.bottleneck.rate))


def test_each_flow_gets_its_class_from_the_scenario():
    flows, _ = _metrics(_mix_flows(), _scenario())
    by_group = flows.groupby("group")["flow_class"].first().to_dict()
    assert by_group == {0: BULK, 1: BULK, 2: UNRESPONSIVE, 3: SHORT}


def test_short_and_udp_flows_stay_out_of_jain_the_ratio_and_per_cc_throughput():
    sc = _scenario()
    _, m = _metrics(_mix_flows(cubic=3.0, dctcp=3.0), sc)
    rm = m.repeats[0]
    # the two bulk flows have equal shares: Jain is 1 over them, whatever the short and UDP flows did
    assert rm.jain == pytest.approx(1.0)
    co = coexistence(m)
    assert co.per_flow.mean == pytest.approx(1.0)
    assert set(co.pairs) == {("dctcp", "cubic")}, "the UDP flow is not a classic flow of the L/C ratio"
    assert set(m.cc) == {"cubic", "dctcp"} and rm.cc["dctcp"].flows == 1
    assert m.cc["dctcp"].mean == pytest.approx(3.0, rel=1e-3), "short flows do not lift the DCTCP throughput"


def test_a_short_flow_is_measured_over_its_lifetime_never_from_one_interval():
    sc = _scenario()
    rows = _rows(1, 3, "dctcp", "client2", [(0.0, 1.0, 50_000), (1.0, 1.004, 131072)])  # 1.004 s of life
    rows += _rows(1, 0, "cubic", "client1", _second(4.0, 10))
    _, m = _metrics(pd.DataFrame(rows), sc)
    short = [f for f in m.repeats[0].flows if f.flow_class == SHORT][0]
    assert short.throughput_mbps == pytest.approx((50_000 + 131072) * 8 / 1.004 / 1e6)
    assert short.throughput_mbps < 2, "not the 262 Mbit/s of its last 4 ms interval"


def test_a_bulk_flow_that_lasts_under_twice_the_warmup_is_measured_over_its_lifetime():
    rows = _rows(1, 0, "cubic", "client1", [(0.0, 1.0, 100_000), (1.0, 1.01, 131072)])
    (f,) = M.flow_throughputs(pd.DataFrame(rows))
    assert f.throughput_mbps == pytest.approx((100_000 + 131072) * 8 / 1.01 / 1e6)


def test_short_flow_completion_times_count_the_unfinished():
    sc = _scenario()
    rows = _rows(1, 3, "dctcp", "client2", [(0.0, 0.25, 131072)], connection=1)
    rows += _rows(1, 3, "dctcp", "client2", [(0.0, 0.5, 131072)], connection=2)
    # connection 3 was still sending when the test stopped: its report runs to the end with too few bytes
    rows += _rows(1, 3, "dctcp", "client2", [(0.0, 1.0, 0), (1.0, 9.6, 0)], connection=3)
    (sf,) = short_flow_fcts(sc, pd.DataFrame(rows), n_repeats=1)
    assert (sf.started, sf.finished, sf.unfinished) == (3, 2, 1)
    assert sf.fct_ms.tolist() == [250.0, 500.0], "the unfinished flow is not given the test's end as its FCT"
    assert sf.to_json()["fct_ms"]["p50"] == 375.0 and sf.size_bytes == 100_000


def test_udp_rows_give_configured_offered_delivered_loss_and_marks():
    sc = _scenario()
    flows, m = _metrics(_mix_flows(udp=2.0), sc)
    udp_fid = next(s.fid for s in sc.streams() if s.group == 2)
    actions = [M.ACTION_FORWARD] * 90 + [M.ACTION_DROP] * 6 + [M.ACTION_MARK] * 4
    packets = pd.DataFrame({"repeat": 1, "queue": pd.Categorical(["C"] * 100, categories=["C", "L"]),
                            "action": pd.Series(actions, dtype="int8"), "current_queue_delay": 1000,
                            "packet_length": 1500, "t_s": np.linspace(0, 9, 100), "flow_id": udp_fid})
    (row,) = udp_rows(sc, m, packets)
    assert row.configured_mbps == 2.0 and row.offered_mbps == pytest.approx(2.0, rel=1e-3)
    assert row.loss == pytest.approx(0.06) and row.marks == pytest.approx(0.04)
    assert row.delivered_mbps == pytest.approx(2.0 * 0.94, rel=1e-3) and row.router_na == ""
    (no_ids,) = udp_rows(sc, m, packets.assign(flow_id=-1))
    assert math.isnan(no_ids.delivered_mbps) and "flow ids" in no_ids.router_na


def test_each_flow_is_placed_at_its_real_start_time():
    sc = _scenario()
    flows = annotate_flows(_mix_flows(), sc, {1: 4242})
    arrivals = sc.connection_starts_us(4242, 3)
    starts = flows[flows["group"] == 3].groupby("connection")["flow_start_s"].first().tolist()
    assert starts == [a / 1e6 for a in arrivals] and len(set(starts)) == 3
    bulk_start = sc.connection_starts_us(4242, 0)[0] / 1e6
    assert (flows[flows["group"] == 0]["flow_start_s"] == bulk_start).all() and 0 <= bulk_start < 0.05  # jitter
    xs = throughput_timeseries_data(flows).frame
    first_x = xs[xs["series"].str.contains("g3 c2")]["x"].min()
    assert first_x == pytest.approx(arrivals[1] / 1e6), "the figure data puts the flow where it started"


def test_a_full_link_that_halves_reads_full_not_against_its_nominal_rate():
    sc = load_scenario("dctcp-8mbps", ["flows=[{host: client1, cc: cubic}]", "duration=20s", "bottleneck.rate=40Mbit",
                                       "start_jitter=0ms",
                                       "bottleneck.rate_schedule=[{at: 5s, rate: 20Mbit}, {at: 15s, rate: 40Mbit}]"])
    cap = capacity_of(sc, sc.bottleneck.rate)
    assert cap.changes() == [(5.0, 20e6), (15.0, 40e6)] and cap.mean_bps(0, 20) == pytest.approx(30e6)
    # a sender that fills the link: 40, then 20, then 40 Mbit/s
    rows = _rows(1, 0, "cubic", "client1", [(i, i + 1.0, int((20 if 5 <= i < 15 else 40) * 1e6 / 8)) for i in range(20)])
    flows = annotate_flows(pd.DataFrame(rows), sc, {})
    m = M.run_metrics(M.empty_packets(), flows, cap)
    assert m.repeats[0].utilization == pytest.approx(1.0)
    assert m.repeats[0].capacity_bps == pytest.approx(30e6)
    (series,) = M.utilization_timeseries(flows, cap, 1.0)
    assert np.allclose(series.utilization, 1.0), "the bins of the drop are full, not 50 %"
    # against the nominal rate the same run read 74 % (the 71 %): 560 of 760 Mbit from 1 s to 20 s
    assert M.window_utilization(flows, Capacity.fixed(40e6)) == pytest.approx(560 / 760)


def test_router_side_utilisation_uses_the_capacity_offered_per_bin():
    cap = Capacity((0.0, 2.0), (8e6, 4e6), "schedule")
    t = np.r_[np.linspace(0, 2, 1334, endpoint=False), np.linspace(2, 4, 667, endpoint=False)]  # 1500 B each
    packets = pd.DataFrame({"repeat": 1, "queue": "C", "action": np.zeros(len(t), dtype="int8"),
                            "packet_length": 1500, "t_s": t})
    (s,) = M.link_utilization_timeseries(packets, cap, 1.0)
    assert np.allclose(s.utilization, 1.0, atol=0.01)
    assert M.link_utilization(packets, cap) == pytest.approx(1.0, abs=0.01)


def test_jain_and_the_ratio_are_na_with_a_reason_when_bulk_flows_carry_nothing():
    sc = _scenario()
    dead = _mix_flows(cubic=0.0, dctcp=0.0, udp=0.0)
    dead = dead[dead["group"] < 2]
    _, m = _metrics(dead, sc)
    rm = m.repeats[0]
    assert math.isnan(rm.jain) and "no throughput to share" in rm.bulk_na
    assert m.jain.n == 0 and "no throughput to share" in m.bulk_na
    co = coexistence(m)
    assert not co.defined and "no throughput to share" in co.na
    assert math.isnan(M.jain_index([0.0, 0.0])), "all starved is not perfectly fair"


def test_summary_prints_na_for_jain_of_a_dead_run(tmp_path, monkeypatch):
    from fake_run import install_fake_parser, make_run
    from l4stb.analysis.summary import print_summary, summarize
    from rich.console import Console

    install_fake_parser(monkeypatch)
    flows = _mix_flows(cubic=0.0, dctcp=0.0)
    flows = flows[flows["group"] < 2].assign(group=lambda d: d["group"].where(d["cc"] != "dctcp", 4))
    ws, run_id = make_run(tmp_path, repeats=(1,), flows=flows)
    s = summarize(ws, run_id)
    out = s.to_json()
    assert out["jain"] is None and "no throughput to share" in out["na"]["jain"]
    console = Console(record=True, width=200)
    print_summary(s, console)
    text = console.export_text()
    assert "Jain fairness (bulk flows)" in text and "n/a (bulk flows carried 0.000 Mbit/s" in text
    assert "1.000" not in text


# ---------------------------------------------------------------------------------------------
# verdicts and the model warning
# ---------------------------------------------------------------------------------------------


def _run(per_repeat_mbps: list[tuple[float, float]]):
    """A run of bulk cubic + dctcp flows with the given throughputs per repeat, on an 8 Mbit/s link."""
    rows = []
    for r, (a, b) in enumerate(per_repeat_mbps, start=1):
        rows += _rows(r, 0, "cubic", "client1", _second(a, 10))
        rows += _rows(r, 1, "dctcp", "client2", _second(b, 10))
    return M.run_metrics(M.empty_packets(), pd.DataFrame(rows), 8e6)


def test_a_dead_series_is_never_called_better_on_fairness():
    from l4stb.pipeline.verdicts import compare_series, summary_sentence

    base = _run([(5.0, 2.9), (5.2, 2.7), (5.1, 2.8), (4.9, 3.0)])
    dead = _run([(0.0, 0.0)] * 4)
    verdicts = {v.metric.key: v for v in compare_series(base, dead, ["cubic", "dctcp"])}
    assert verdicts["util"].word == "worse"
    assert verdicts["jain"].word.startswith("n/a") and "no throughput to share" in verdicts["jain"].word
    assert verdicts["lc"].word.startswith("n/a")
    assert "Jain" not in summary_sentence("dead", list(verdicts.values())).split("worse on")[0]


def test_a_series_that_loses_utilisation_is_not_called_better_on_fairness():
    from l4stb.pipeline.verdicts import NOT_BETTER_WHEN_UTIL_WORSE, compare_series

    base = _run([(5.0, 2.9), (5.2, 2.7), (5.1, 2.8), (4.9, 3.0)])
    starved = _run([(1.0, 1.0), (1.1, 1.1), (0.9, 0.9), (1.0, 1.0)])  # equal shares of an idle link
    verdicts = {v.metric.key: v for v in compare_series(base, starved, ["cubic", "dctcp"])}
    assert verdicts["util"].word == "worse"
    assert verdicts["jain"].word == NOT_BETTER_WHEN_UTIL_WORSE
    assert verdicts["lc"].word == NOT_BETTER_WHEN_UTIL_WORSE


def test_a_learned_model_far_below_the_baselines_is_warned_in_report_and_terminal(tmp_path):
    from l4stb.pipeline.job import JobOutcome
    from l4stb.pipeline.report_sections import baseline_gap_warning, model_sections

    metrics = {"test": {"macro_f1": 0.69}, "baselines": {"always_forward": {"macro_f1": 0.33},
                                                         "logistic_regression": {"macro_f1": 0.91},
                                                         "decision_tree": {"macro_f1": 0.92}}}
    warning = baseline_gap_warning(metrics)
    assert "0.690" in warning and "decision tree 0.920" in warning and "logistic regression 0.910" in warning
    assert baseline_gap_warning({**metrics, "test": {"macro_f1": 0.90}}) == ""
    sections = model_sections(metrics, [], tmp_path / "figs")
    assert "Warning: The learned model is far below" in sections[0].markdown
    assert "far below the simple baselines" in JobOutcome(None, tmp_path, metrics).headline()


def test_the_terminal_names_closed_loop_metrics_as_the_report_does(tmp_path):
    from l4stb.pipeline.job import JobOutcome

    row = {"label": "L4S-LLM every 10", "c_p95_ms": 20.0, "l_p95_ms": 2.0, "utilization": 0.0, "jain": float("nan"),
           "jain_na": "bulk flows carried 0.000 Mbit/s", "verdicts": {"c_p95": "worse (x)", "lc": "worse (further from 1)",
                                                                        "util": "worse"}}
    text = JobOutcome(None, tmp_path, {}, closed_loop=[row]).headline()
    assert "C-queue p95 delay" in text and "scalable/classic throughput ratio" in text and "Jain index n/a" in text
    assert "c_p95" not in text and " lc" not in text


# ---------------------------------------------------------------------------------------------
# the simulator, end to end
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_simulated_mix_of_bulk_short_and_udp_flows_reports_each_class_apart(l4stb, workdir, tmp_path):
    scen = tmp_path / "mix.yaml"
    scen.write_text("name: mix\ntopology: dumbbell-4\nduration: 6s\nrepeats: 2\nseed: 1\n"
                    "bottleneck: {rate: 12Mbit, delay: 10ms, rate_schedule: [{at: 2s, rate: 6Mbit}, {at: 4s, rate: 12Mbit}]}\n"
                    "aqm: {name: dualpi2}\nflows:\n  - {host: client1, cc: cubic}\n  - {host: client2, cc: dctcp}\n"
                    "  - {host: client2, cc: udp, rate: 1Mbit}\n"
                    "  - {host: client2, cc: dctcp, connections: 8, size: 100KB, mean_gap: 300ms}\n")
    assert l4stb("up").exit_code == 0
    assert l4stb("run", "--scenario", str(scen)).exit_code == 0
    assert l4stb("fetch-logs").exit_code == 0
    out = l4stb("summary", "--json")
    assert out.exit_code == 0, out.output
    s = json.loads(out.stdout)
    classes = {(f["group"], f["class"]) for f in s["flows"]}
    assert classes == {(0, "bulk"), (1, "bulk"), (2, "unresponsive"), (3, "short")}
    assert set(s["repeats"]["ci95"]["cc_throughput_mbps"]) == {"cubic (FreeBSD)", "dctcp (FreeBSD)"}
    assert set(s["coexistence"]["pairs"]) == {"dctcp (FreeBSD)/cubic (FreeBSD)"}
    assert s["capacity"]["mean_offered_mbps"] == pytest.approx(10.0, rel=0.05)
    (sf,) = s["short_flows"]
    assert sf["flows"] + sf["unfinished"] == 16 and sf["fct_ms"]["p50"] is not None
    (udp,) = s["udp"]
    assert udp["configured_mbps"] == 1.0 and 0.8 < udp["offered_mbps"] < 1.1 and udp["delivered_mbps"] <= udp["offered_mbps"]
    assert 0.5 < s["utilization"] <= 1.0
    assert l4stb("report").exit_code == 0
    md = next((workdir / "runs").glob("mix-*")).joinpath("report", "summary.md").read_text()
    assert "## Short flows" in md and "## Unresponsive flows" in md and "rate schedule" in md

