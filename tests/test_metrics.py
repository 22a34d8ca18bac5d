"""Network metrics: queue delay percentiles, ECDF, throughput, utilisation, Jain fairness, actions and CIs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fake_run import flows_frame, packets_frame
from l4stb.analysis import metrics as M


def _packets(rows):
    """rows: (repeat, queue, action, delay_us)."""
    return pd.DataFrame({
        "repeat": pd.Series([r[0] for r in rows], dtype="int16"),
        "queue": pd.Categorical([r[1] for r in rows], categories=["C", "L"]),
        "action": pd.Series([r[2] for r in rows], dtype="int8"),
        "current_queue_delay": pd.Series([r[3] for r in rows], dtype="int64"),
        "packet_length": pd.Series([1500] * len(rows), dtype="int64"),
        "t_s": np.arange(len(rows), dtype=float),
    })


def _flow(repeat, cc, values, *, stream=5, host="client1", start=0.0, length=1.0):
    rows, t = [], start
    for v in values:
        rows.append({"repeat": repeat, "host": host, "cc": cc, "file": f"{host}-{cc}-{repeat}.json", "connection": 0,
                     "stream": stream, "start_s": t, "end_s": t + length, "bytes": int(v * 1e6 / 8 * length),
                     "throughput_mbps": v, "retransmits": 0, "rtt_us": 20000})
        t += length
    return rows


# ---------------------------------------------------------------------------------------------
# ECDF and delay
# ---------------------------------------------------------------------------------------------


def test_ecdf_is_a_true_ecdf_not_a_cumsum():
    samples = [10.0, 1.0, 2.0, 1.0]
    e = M.ecdf(samples)
    assert e.x.tolist() == [1.0, 1.0, 2.0, 10.0]
    assert e.y.tolist() == [0.25, 0.5, 0.75, 1.0]  # y = i/n, every sample weighs 1/n
    assert e.at(1.0) == 0.5 and e.at(9.9) == 0.75 and e.at(0.5) == 0.0 and e.at(10) == 1.0
    cumsum_share = np.cumsum(np.sort(samples)) / np.sum(samples)  # what the original plots drew
    assert not np.allclose(e.y, cumsum_share)
    assert cumsum_share[2] == pytest.approx(4 / 14)  # "75% of packets are <= 2 ms" would read as 29%


def test_ecdf_drops_nan_and_thinning_keeps_the_step_function():
    x = np.r_[np.random.default_rng(0).exponential(5, 20_000), np.nan]
    e = M.ecdf(x)
    assert e.n == 20_000 and e.y[-1] == 1.0
    t = e.thinned(500)
    assert len(t.x) <= 500 and t.x[0] == e.x[0] and t.x[-1] == e.x[-1] and t.y[-1] == 1.0
    for xi, yi in zip(t.x[::50], t.y[::50]):  # every kept point lies on the full ECDF
        assert e.at(xi) >= yi


def test_delay_percentiles_come_from_forwarded_and_marked_packets_in_ms():
    rows = [(1, "C", 0, 1000 * d) for d in range(1, 101)]  # 1..100 ms, forwarded
    rows += [(1, "C", 1, 10_000_000)] * 50  # drops never leave the queue: excluded
    rows += [(1, "C", 2, 200_000)]  # a marked packet counts
    qs = M.queue_stats(_packets(rows))["C"]
    expected = np.percentile(np.r_[np.arange(1, 101), 200.0], [50, 90, 95, 99])
    assert [qs.delay.p50_ms, qs.delay.p90_ms, qs.delay.p95_ms, qs.delay.p99_ms] == pytest.approx(expected)
    assert qs.delay.n == 101
    assert (qs.packets, qs.forwarded, qs.drops, qs.marks) == (151, 100, 50, 1)


def test_an_empty_queue_has_zero_counts_and_null_delays():
    qs = M.queue_stats(_packets([(1, "C", 0, 5000)]))
    assert set(qs) == {"C", "L"}
    assert qs["L"].packets == 0 and math.isnan(qs["L"].delay.p95_ms)
    assert qs["L"].to_json() == {"delay_ms": {"p50": None, "p90": None, "p95": None, "p99": None},
                                 "packets": 0, "drops": 0, "marks": 0}


def test_drops_and_marks_are_counted_per_queue_and_action():
    rows = [(1, "C", 0, 1)] * 7 + [(1, "C", 1, 1)] * 2 + [(1, "C", 2, 1)] + [(1, "L", 0, 1)] * 3 + [(1, "L", 2, 1)]
    qs = M.queue_stats(_packets(rows))
    assert (qs["C"].drops, qs["C"].marks, qs["C"].forwarded) == (2, 1, 7)
    assert qs["C"].drop_fraction == pytest.approx(0.2) and qs["C"].mark_fraction == pytest.approx(0.1)
    assert (qs["L"].drops, qs["L"].marks, qs["L"].forwarded) == (0, 1, 3)
    assert qs["L"].count("mark") == 1


# ---------------------------------------------------------------------------------------------
# throughput, utilisation, fairness
# ---------------------------------------------------------------------------------------------


def test_jain_of_equal_flows_is_one():
    assert M.jain_index([2.0, 2.0, 2.0, 2.0]) == pytest.approx(1.0)


def test_jain_of_one_flow_taking_everything_is_one_over_n():
    assert M.jain_index([8.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)
    assert M.jain_index([3.0, 1.0]) == pytest.approx(16 / 20)
    assert math.isnan(M.jain_index([]))


def test_steady_state_throughput_skips_the_first_interval_and_weights_by_length():
    rows = _flow(1, "cubic", [0.1, 2.0, 2.0, 2.0])  # slow start in the first second
    rows += [{**rows[-1], "start_s": 4.0, "end_s": 4.25, "bytes": int(4.0e6 / 8 * 0.25), "throughput_mbps": 4.0}]
    (f,) = M.flow_throughputs(pd.DataFrame(rows))
    assert f.seconds == pytest.approx(3.25)
    assert f.throughput_mbps == pytest.approx((3 * 2.0 + 0.25 * 4.0) / 3.25, rel=1e-6)
    assert f.key == M.FlowKey("client1", "cubic", 0, 5)


def test_intervals_iperf3_omitted_are_left_out():
    rows = _flow(1, "cubic", [0.1, 2.0, 2.0])
    rows[1]["omitted"] = True
    rows[1]["bytes"] *= 10
    (f,) = M.flow_throughputs(pd.DataFrame(rows).fillna({"omitted": False}))
    assert f.throughput_mbps == pytest.approx(2.0, rel=1e-6) and f.seconds == pytest.approx(1.0)


def test_a_flow_with_only_warmup_intervals_uses_all_of_them():
    (f,) = M.flow_throughputs(pd.DataFrame(_flow(1, "dctcp", [3.0], length=0.5)))
    assert f.throughput_mbps == pytest.approx(3.0, rel=1e-6)


def test_utilization_is_the_sum_of_flows_over_the_bottleneck_rate_clipped_to_one():
    assert M.utilization([2.0, 2.0, 3.0], 8e6) == pytest.approx(7 / 8)
    assert M.utilization([5.0, 4.0], 8e6) == 1.0
    assert M.utilization([5.0, 4.0], 8e6, clip=False) == pytest.approx(9 / 8)
    assert math.isnan(M.utilization([], 8e6))


def test_utilization_timeseries_puts_each_interval_in_its_second():
    df = pd.DataFrame(_flow(1, "cubic", [2.0, 4.0, 4.0]) + _flow(1, "dctcp", [2.0, 4.0, 4.0], host="client2"))
    (u,) = M.utilization_timeseries(df, 8e6)
    assert u.repeat == 1
    assert u.t_s.tolist() == [0.5, 1.5, 2.5]
    assert u.utilization == pytest.approx([0.5, 1.0, 1.0], rel=1e-6)


def test_cc_throughput_is_the_mean_per_flow_and_the_total():
    df = pd.DataFrame(_flow(1, "cubic", [0, 1, 1], stream=5) + _flow(1, "cubic", [0, 3, 3], stream=7)
                      + _flow(1, "dctcp", [0, 4, 4], host="client2"))
    cc = M.cc_throughputs(M.flow_throughputs(df))
    assert cc["cubic"].flows == 2
    assert cc["cubic"].mean_per_flow_mbps == pytest.approx(2.0, rel=1e-6)
    assert cc["cubic"].total_mbps == pytest.approx(4.0, rel=1e-6)
    assert cc["dctcp"].total_mbps == pytest.approx(4.0, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# confidence intervals and whole runs
# ---------------------------------------------------------------------------------------------


def test_confidence_interval_is_the_t_interval_of_the_per_repeat_values():
    x = [0.9, 0.95, 0.92, 0.97, 0.91]
    iv = M.confidence_interval(x)
    half = stats.t.ppf(0.975, 4) * np.std(x, ddof=1) / np.sqrt(5)
    assert iv.n == 5 and iv.mean == pytest.approx(np.mean(x))
    assert (iv.low, iv.high) == pytest.approx((np.mean(x) - half, np.mean(x) + half))
    assert "±" in iv.format(3) and "(n=5)" in iv.format(3)


def test_one_repeat_has_no_confidence_interval():
    iv = M.confidence_interval([0.93])
    assert iv.n == 1 and iv.mean == 0.93 and iv.low is None and iv.high is None and not iv.has_ci
    assert iv.format(2) == "0.93 (n=1, no CI)"
    assert iv.to_json()["low"] is None
    assert M.confidence_interval([]).format() == "—"


def test_run_metrics_pool_delays_and_keep_per_repeat_values():
    packets, flows = packets_frame((1, 2, 3)), flows_frame((1, 2, 3))
    m = M.run_metrics(packets, flows, 8e6)
    assert [rm.repeat for rm in m.repeats] == [1, 2, 3]
    pooled = np.percentile(M.delay_samples_ms(packets, "L"), 95)
    assert m.queues["L"].delay.p95_ms == pytest.approx(pooled)
    assert m.queues["C"].drops == sum(rm.queues["C"].drops for rm in m.repeats)
    assert m.delay_ci["C"][95].n == 3 and m.delay_ci["C"][95].has_ci
    assert m.utilization.mean == pytest.approx(np.mean([rm.utilization for rm in m.repeats]))
    assert 0.0 < m.utilization.mean <= 1.0
    assert len(m.flows) == 9 and all(f.throughput.n == 3 for f in m.flows)
    assert set(m.cc) == {"cubic", "newreno", "dctcp"}


def test_tradeoff_points_put_scalable_ccs_on_the_l_queue():
    m = M.run_metrics(packets_frame((1, 2)), flows_frame((1, 2)), 8e6)
    pts = M.tradeoff_points(m, ("dctcp", "prague"))
    assert len(pts) == 2 * 3  # one point per repeat per CC
    by = {(p.repeat, p.cc): p for p in pts}
    assert by[(1, "dctcp")].queue == "L" and by[(1, "cubic")].queue == "C"
    assert by[(2, "dctcp")].p95_delay_ms == pytest.approx(m.repeats[1].queues["L"].delay.p95_ms)


def test_scalable_cc_falls_back_to_the_c_queue_when_there_is_no_l_traffic():
    m = M.run_metrics(packets_frame((1,), l_share=0.0), flows_frame((1,)), 8e6)
    assert {p.queue for p in M.tradeoff_points(m, ("dctcp",))} == {"C"}


def test_run_metrics_of_a_run_without_iperf3_data_has_no_throughput():
    m = M.run_metrics(packets_frame((1,)), M.empty_flows(), 8e6)
    assert m.flows == [] and math.isnan(m.utilization.mean) and math.isnan(m.jain.mean)
    assert m.queues["C"].packets > 0


def test_two_near_identical_repeats_give_no_interval_and_say_why():
    iv = M.confidence_interval([0.5, 0.5000001])
    assert not iv.has_ci and iv.n == 2
    assert iv.format(2) == "0.50 (n=2, no CI below 3 repeats)"


def test_an_interval_never_leaves_its_metric_range():
    iv = M.confidence_interval([0.99, 1.0, 0.95, 1.0], bounds=M.UNIT_RANGE)
    assert iv.high == 1.0 and iv.low < iv.mean
    assert iv.format(1, scale=100, unit="%") .startswith("98.5 [") and "100.0] %" in iv.format(1, scale=100, unit="%")
    drop = M.confidence_interval([0.0, 0.0, 0.0024], bounds=M.UNIT_RANGE)
    assert drop.low == 0.0, "a drop rate interval does not go below 0 (the issue's 0.08 ± 1.06 %)"
