"""Every over-time figure uses one time origin, the scenario's t=0 (issue 21, figures: "one time origin everywhere").

The run below has three clocks that disagree: iperf3 intervals count from each flow's own start, the router log from
its first decision, and the rate schedule from the scenario's t=0. Every flow starts at 2 s, so the router's first
decision is at scenario time 2 s, and the link halves at 6 s (router time 4 s).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fake_run import install_fake_parser, make_run

from l4stb.analysis.timebase import TIME_LABEL

START_S = 2.0
CHANGE_S = 6.0
END_S = 10.0
SCENARIO = """\
name: late-start
description: "two flows that start at 2 s; the link halves at 6 s"
topology: dumbbell-4
duration: 10s
repeats: 1
seed: 1
bottleneck: {rate: 8Mbit, delay: 10ms, rate_schedule: [{at: 6s, rate: 4Mbit}]}
aqm: {name: dualpi2, ecn: true}
flows:
  - {host: client1, cc: cubic, start: 2s}
  - {host: client2, cc: dctcp, start: 2s}
"""


def _rate_bps(t_scenario: np.ndarray) -> np.ndarray:
    return np.where(t_scenario < CHANGE_S, 8e6, 4e6)


def _packets() -> pd.DataFrame:
    """A full link from the first flow's start: 1500-byte packets at the capacity offered, alternating flows 0 and 1
    (the simulator's flow ids), timed from the first decision as the parser writes t_s."""
    t, times = START_S, []
    while t < END_S:
        times.append(t - START_S)
        t += 1500 * 8 / float(_rate_bps(np.array([t]))[0])
    n = len(times)
    fid = np.arange(n) % 2
    return pd.DataFrame({"repeat": np.int16(1), "queue": pd.Categorical(np.where(fid == 1, "L", "C"),
                                                                        categories=["C", "L"]),
                         "action": np.zeros(n, np.int8), "current_queue_delay": np.full(n, 2000, np.int64),
                         "packet_length": np.full(n, 1500, np.int64), "t_s": np.array(times),
                         "flags": np.zeros(n, np.int64), "measurement_start_time": np.zeros(n, np.int64),
                         "flow_id": fid.astype(np.int32), "queue_length": np.full(n, 3, np.int64),
                         "accumulated_probability": np.zeros(n, np.int64)})


def _flows() -> pd.DataFrame:
    """iperf3 intervals of each flow, from its own start (0 to 8 s), each flow half the capacity offered."""
    rows = []
    for g, (host, cc) in enumerate((("client1", "cubic"), ("client2", "dctcp"))):
        for i in range(int(END_S - START_S)):
            mbps = float(_rate_bps(np.array([START_S + i + 0.5]))[0]) / 2e6
            rows.append({"repeat": 1, "host": host, "cc": cc, "file": f"{host}/{host}-{cc}-g{g}-c1.json", "group": g,
                         "connection": 1, "stream": 5, "start_s": float(i), "end_s": float(i + 1),
                         "bytes": int(mbps * 1e6 / 8), "throughput_mbps": mbps, "retransmits": 0,
                         "snd_cwnd": 20000, "rtt_us": 25000, "rttvar_us": 2000, "omitted": False, "sender": True})
    df = pd.DataFrame(rows)
    df["repeat"] = df["repeat"].astype("int16")
    return df


@pytest.fixture(scope="module")
def report_figures(tmp_path_factory):
    """The report of the run, rendered once for the tests of this module."""
    from l4stb.analysis.report import render_report

    tmp_path = tmp_path_factory.mktemp("late-start")
    with pytest.MonkeyPatch.context() as monkeypatch:
        install_fake_parser(monkeypatch)
        scen = tmp_path / "late-start.yaml"
        scen.write_text(SCENARIO)
        ws, run_id = make_run(tmp_path / "work", repeats=(1,), scenario=str(scen),
                              run_id="late-start-20250101T000000Z", packets=_packets(), flows=_flows())
        render_report(ws, run_id)
    return ws.report_dir(run_id) / "figures"


def test_every_over_time_figure_says_its_one_time_origin(report_figures):
    for stem in ("throughput_timeseries", "utilization", "aqm_timeseries"):
        spec = json.loads((report_figures / f"{stem}.json").read_text())
        assert spec["xlabel"] == TIME_LABEL, stem


def test_router_log_iperf3_and_cwnd_panels_start_when_the_flows_started(report_figures):
    iperf = pd.read_csv(report_figures / "throughput_timeseries.csv")
    assert iperf["x"].min() == pytest.approx(START_S)
    over = pd.read_csv(report_figures / "aqm_timeseries.csv")
    router = over[over["panel"] == "router-side throughput"]
    assert router["x"].min() == pytest.approx(START_S + 0.05)  # the first 100 ms bin of the router log
    sojourn = over[(over["panel"] == "sojourn") & over["y"].notna()]  # bins without decisions have no mean
    assert sojourn["x"].min() == pytest.approx(START_S, abs=0.01)
    cwnd = over[over["panel"] == "cwnd"]
    assert cwnd["x"].min() == pytest.approx(START_S + 0.5)  # the middle of iperf3's first interval
    # router-side and iperf3 throughput agree bin for bin once both are on one clock: 4 Mbit/s a flow before the
    # link halves at 6 s, 2 Mbit/s after
    cubic = router[router["series"].str.startswith("client1 cubic")]
    before = cubic[(cubic["x"] > START_S + 0.5) & (cubic["x"] < CHANGE_S - 0.5)]["y"]
    after = cubic[(cubic["x"] > CHANGE_S + 0.5) & (cubic["x"] < END_S - 0.5)]["y"]
    assert before.mean() == pytest.approx(4.0, rel=0.05) and after.mean() == pytest.approx(2.0, rel=0.05)


def test_router_log_utilisation_meets_the_rate_schedule_at_its_own_time(report_figures):
    util = pd.read_csv(report_figures / "utilization.csv")
    router = util[util["series"].str.startswith("router log")]
    busy = router[router["x"] > START_S + 0.5]
    # a full link reads 100 % in every bin, across the change; on the router's own clock the 4 Mbit/s after the
    # change would be measured against 8 Mbit/s (50 %) and the 8 Mbit/s before it against 4 (200 %)
    assert busy["y"].to_numpy() == pytest.approx(100.0, abs=3.0)
    iperf = util[util["series"].str.startswith("iperf3")]
    assert iperf.loc[iperf["x"] > START_S + 0.5, "y"].to_numpy() == pytest.approx(100.0, abs=3.0)
