"""Simulated FreeBSD senders against the public FreeBSD 14.1 SIFTR traces: the derived reference numbers, cell by cell.

The numbers below are not the logs: each is the smallest and largest value of one metric
(:func:`l4stb.analysis.cwnd_metrics.flow_metrics`) over the real sender's samples, as
:func:`l4stb.analysis.siftr_compare.real_metrics` derives them: for the single-run cells ("l4s 1Mbps" and
"l4s 10Mbps": MPTCP-FreeBSD/FreeBSD-L4S-Experiments, "Misc/Experiment Scripts/Old/2 queue L4S NEWRENO VS
DCTCP/client1_data/l4s_<rate>_20ms_ecn_newreno_src1.siftr.log" and ".../client2_data/l4s_<rate>_20ms_ecn_dctcp_
src2.siftr.log"; "fq_codel 1Mbps"/"fq_codel 10Mbps" the fq_codel_<rate>_20ms_ecn_* logs of the same folder) one
sample per 10 s window after a 5 s warm-up; for "l4s 8Mbps 10ms" ("L4S-LLM Data
Collection/client1_data/<r>_<r>_l4s_8Mbps_10ms_newreno_src1.siftr.log", ports 5101 cubic and 5102 newreno, and
".../client2_data/<r>_<r>_l4s_8Mbps_10ms_dctcp_src2.siftr.log", r = 1..10) one sample per iteration. ``agrees``
is what ``bench/siftr_compare.py --repeats 5`` said when the table was made: the simulated median lies in the
range widened by the traces' resolution. The simulated check holds the model to that record (a model change
that moves a metric across the range edge fails it: update the table and docs/freebsd-siftr.md); the real
check recomputes the numbers from the traces when ``L4STB_SIFTR_TRACES`` points at a checkout.
"""

import os
import statistics

import pytest

from l4stb.analysis.siftr_compare import CELLS, RESOLUTION, real_metrics, sim_metrics

# (cell, cc, metric, real min, real max, samples, the simulated median lies inside)
REFERENCE = [
    ('l4s 1Mbps 20ms ecn', 'newreno', 'goodput_mbps', 0.2398, 0.2769, 5, False),  # sim 0.2019: below by 16%
    ('l4s 1Mbps 20ms ecn', 'newreno', 'cwnd_mean', 9.986, 11.98, 5, False),  # sim 9.545: below by 4%
    ('l4s 1Mbps 20ms ecn', 'newreno', 'cut_period_s', 3.333, 5, 5, True),  # sim 3.387: agrees
    ('l4s 1Mbps 20ms ecn', 'newreno', 'cut_depth_p50', 0.5021, 0.5408, 5, True),  # sim 0.5: agrees
    ('l4s 1Mbps 20ms ecn', 'newreno', 'srtt_p50_ms', 462.2, 546.6, 5, True),  # sim 514.6: agrees
    ('l4s 1Mbps 20ms ecn', 'newreno', 'srtt_p95_ms', 596.5, 670.3, 5, True),  # sim 660.9: agrees
    ('l4s 1Mbps 20ms ecn', 'newreno', 'reduction_ms_p50', 104.5, 534.3, 5, False),  # sim 0: below by 100%
    ('l4s 1Mbps 20ms ecn', 'newreno', 'ecn_cut_share', 1, 1, 5, False),  # sim 0.125: below by 88%
    ('l4s 1Mbps 20ms ecn', 'dctcp', 'goodput_mbps', 0.1402, 0.2039, 5, False),  # sim 0.2463: above by 21%
    ('l4s 1Mbps 20ms ecn', 'dctcp', 'cwnd_mean', 8.644, 11.22, 5, True),  # sim 11.14: agrees
    ('l4s 1Mbps 20ms ecn', 'dctcp', 'cut_period_s', 0.7692, 1.429, 5, False),  # sim 3.024: above by 112%
    ('l4s 1Mbps 20ms ecn', 'dctcp', 'cut_depth_p50', 0.4628, 0.5756, 5, True),  # sim 0.5: agrees
    ('l4s 1Mbps 20ms ecn', 'dctcp', 'srtt_p50_ms', 461.9, 550.3, 5, True),  # sim 485.4: agrees
    ('l4s 1Mbps 20ms ecn', 'dctcp', 'srtt_p95_ms', 622.5, 682.2, 5, True),  # sim 631.4: agrees
    ('l4s 1Mbps 20ms ecn', 'dctcp', 'reduction_ms_p50', 0, 0, 5, True),  # sim 0: agrees
    ('l4s 1Mbps 20ms ecn', 'dctcp', 'ecn_cut_share', 0.5385, 0.7, 5, False),  # sim 0.05556: below by 90%
    ('l4s 10Mbps 20ms ecn', 'newreno', 'goodput_mbps', 2.29, 2.609, 5, False),  # sim 2.004: below by 13%
    ('l4s 10Mbps 20ms ecn', 'newreno', 'cwnd_mean', 49.8, 64.29, 5, False),  # sim 47.72: below by 4%
    ('l4s 10Mbps 20ms ecn', 'newreno', 'cut_period_s', 5, 10, 5, True),  # sim 6.856: agrees
    ('l4s 10Mbps 20ms ecn', 'newreno', 'cut_depth_p50', 0.5008, 0.5111, 5, True),  # sim 0.5034: agrees
    ('l4s 10Mbps 20ms ecn', 'newreno', 'srtt_p50_ms', 218.8, 282.8, 5, False),  # sim 288.7: above by 2%
    ('l4s 10Mbps 20ms ecn', 'newreno', 'srtt_p95_ms', 295.3, 367.5, 5, True),  # sim 361.5: agrees
    ('l4s 10Mbps 20ms ecn', 'newreno', 'reduction_ms_p50', 155.9, 8359, 4, True),  # sim 180: agrees
    ('l4s 10Mbps 20ms ecn', 'newreno', 'ecn_cut_share', 1, 1, 5, False),  # sim 0.625: below by 38%
    ('l4s 10Mbps 20ms ecn', 'dctcp', 'goodput_mbps', 1.829, 2.195, 5, False),  # sim 2.519: above by 15%
    ('l4s 10Mbps 20ms ecn', 'dctcp', 'cwnd_mean', 44.76, 51.77, 5, False),  # sim 62.79: above by 21%
    ('l4s 10Mbps 20ms ecn', 'dctcp', 'cut_period_s', 0.3571, 2, 5, False),  # sim 4.561: above by 128%
    ('l4s 10Mbps 20ms ecn', 'dctcp', 'cut_depth_p50', 0.1489, 0.5, 5, False),  # sim 0.1055: below by 29%
    ('l4s 10Mbps 20ms ecn', 'dctcp', 'srtt_p50_ms', 252.2, 309.4, 5, True),  # sim 288.8: agrees
    ('l4s 10Mbps 20ms ecn', 'dctcp', 'srtt_p95_ms', 307.8, 365.4, 5, True),  # sim 356.3: agrees
    ('l4s 10Mbps 20ms ecn', 'dctcp', 'reduction_ms_p50', 0, 0, 5, True),  # sim 0: agrees
    ('l4s 10Mbps 20ms ecn', 'dctcp', 'ecn_cut_share', 0.4286, 0.6667, 5, True),  # sim 0.6667: agrees
    ('l4s 8Mbps 10ms ecn', 'cubic', 'goodput_mbps', 1.038, 1.501, 10, False),  # sim 1.021: below by 2%
    ('l4s 8Mbps 10ms ecn', 'cubic', 'cwnd_mean', 113.2, 161.8, 10, False),  # sim 27.1: below by 76%
    ('l4s 8Mbps 10ms ecn', 'cubic', 'cut_period_s', 1.078, 3.763, 10, True),  # sim 2.378: agrees
    ('l4s 8Mbps 10ms ecn', 'cubic', 'cut_depth_p50', 0.2602, 0.5, 10, True),  # sim 0.4073: agrees
    ('l4s 8Mbps 10ms ecn', 'cubic', 'srtt_p50_ms', 1033, 1269, 10, False),  # sim 286.2: below by 72%
    ('l4s 8Mbps 10ms ecn', 'cubic', 'srtt_p95_ms', 1588, 1978, 10, False),  # sim 340.5: below by 79%
    ('l4s 8Mbps 10ms ecn', 'cubic', 'reduction_ms_p50', 0, 0, 10, False),  # sim 155: above
    ('l4s 8Mbps 10ms ecn', 'cubic', 'ecn_cut_share', 0.3056, 0.6, 10, True),  # sim 0.4348: agrees
    ('l4s 8Mbps 10ms ecn', 'newreno', 'goodput_mbps', 0.2885, 0.693, 10, False),  # sim 0.7948: above by 15%
    ('l4s 8Mbps 10ms ecn', 'newreno', 'cwnd_mean', 23.81, 53.09, 10, False),  # sim 19.86: below by 17%
    ('l4s 8Mbps 10ms ecn', 'newreno', 'cut_period_s', 2.687, 19.03, 9, True),  # sim 2.738: agrees
    ('l4s 8Mbps 10ms ecn', 'newreno', 'cut_depth_p50', 0.2353, 0.5063, 9, True),  # sim 0.5: agrees
    ('l4s 8Mbps 10ms ecn', 'newreno', 'srtt_p50_ms', 992.8, 1218, 10, False),  # sim 294.4: below by 70%
    ('l4s 8Mbps 10ms ecn', 'newreno', 'srtt_p95_ms', 1160, 2061, 10, False),  # sim 349: below by 70%
    ('l4s 8Mbps 10ms ecn', 'newreno', 'reduction_ms_p50', 0, 1157, 9, True),  # sim 190: agrees
    ('l4s 8Mbps 10ms ecn', 'newreno', 'ecn_cut_share', 0.5, 0.8095, 9, True),  # sim 0.5: agrees
    ('l4s 8Mbps 10ms ecn', 'dctcp', 'goodput_mbps', 0.9525, 1.436, 10, False),  # sim 1.891: above by 32%
    ('l4s 8Mbps 10ms ecn', 'dctcp', 'cwnd_mean', 82.76, 122, 10, False),  # sim 46: below by 44%
    ('l4s 8Mbps 10ms ecn', 'dctcp', 'cut_period_s', 4.415, 28.49, 8, True),  # sim 13.69: agrees
    ('l4s 8Mbps 10ms ecn', 'dctcp', 'cut_depth_p50', 0.01407, 0.5014, 8, True),  # sim 0.06779: agrees
    ('l4s 8Mbps 10ms ecn', 'dctcp', 'srtt_p50_ms', 844.1, 1100, 10, False),  # sim 282.2: below by 67%
    ('l4s 8Mbps 10ms ecn', 'dctcp', 'srtt_p95_ms', 1262, 1900, 10, False),  # sim 329.6: below by 74%
    ('l4s 8Mbps 10ms ecn', 'dctcp', 'reduction_ms_p50', 0, 0, 8, True),  # sim 0: agrees
    ('l4s 8Mbps 10ms ecn', 'dctcp', 'ecn_cut_share', 0.5, 1, 8, True),  # sim 0.75: agrees
    ('fq_codel 1Mbps 20ms ecn', 'newreno', 'goodput_mbps', 0.2016, 0.2189, 5, False),  # sim 0.2192: above by 0%
    ('fq_codel 1Mbps 20ms ecn', 'newreno', 'cwnd_mean', 4.311, 4.664, 5, True),  # sim 4.598: agrees
    ('fq_codel 1Mbps 20ms ecn', 'newreno', 'cut_period_s', 1, 1.111, 5, True),  # sim 1.07: agrees
    ('fq_codel 1Mbps 20ms ecn', 'newreno', 'cut_depth_p50', 0.5014, 0.5729, 5, True),  # sim 0.5: agrees
    ('fq_codel 1Mbps 20ms ecn', 'newreno', 'srtt_p50_ms', 243.4, 253.1, 5, False),  # sim 253.9: above by 0%
    ('fq_codel 1Mbps 20ms ecn', 'newreno', 'srtt_p95_ms', 270.9, 291.6, 5, True),  # sim 281.2: agrees
    ('fq_codel 1Mbps 20ms ecn', 'newreno', 'reduction_ms_p50', 0, 170.3, 5, True),  # sim 0: agrees
    ('fq_codel 1Mbps 20ms ecn', 'newreno', 'ecn_cut_share', 0.8889, 1, 5, True),  # sim 1: agrees
    ('fq_codel 1Mbps 20ms ecn', 'dctcp', 'goodput_mbps', 0.2525, 0.263, 5, False),  # sim 0.2519: below by 0%
    ('fq_codel 1Mbps 20ms ecn', 'dctcp', 'cwnd_mean', 6.06, 6.257, 5, False),  # sim 6.757: above by 8%
    ('fq_codel 1Mbps 20ms ecn', 'dctcp', 'cut_period_s', 0.3125, 0.3846, 5, False),  # sim 0.4591: above by 19%
    ('fq_codel 1Mbps 20ms ecn', 'dctcp', 'cut_depth_p50', 0.1782, 0.2055, 5, False),  # sim 0.3036: above by 48%
    ('fq_codel 1Mbps 20ms ecn', 'dctcp', 'srtt_p50_ms', 264.7, 282.8, 5, False),  # sim 296.2: above by 5%
    ('fq_codel 1Mbps 20ms ecn', 'dctcp', 'srtt_p95_ms', 318.8, 399.7, 5, True),  # sim 331.6: agrees
    ('fq_codel 1Mbps 20ms ecn', 'dctcp', 'reduction_ms_p50', 0, 0, 5, True),  # sim 0: agrees
    ('fq_codel 1Mbps 20ms ecn', 'dctcp', 'ecn_cut_share', 1, 1, 5, True),  # sim 1: agrees
    ('fq_codel 10Mbps 20ms ecn', 'newreno', 'goodput_mbps', 2.028, 2.136, 5, True),  # sim 2.051: agrees
    ('fq_codel 10Mbps 20ms ecn', 'newreno', 'cwnd_mean', 22.2, 23.68, 5, True),  # sim 22.27: agrees
    ('fq_codel 10Mbps 20ms ecn', 'newreno', 'cut_period_s', 1.667, 2, 5, True),  # sim 1.893: agrees
    ('fq_codel 10Mbps 20ms ecn', 'newreno', 'cut_depth_p50', 0.5019, 0.5181, 5, True),  # sim 0.5: agrees
    ('fq_codel 10Mbps 20ms ecn', 'newreno', 'srtt_p50_ms', 126.9, 128.1, 5, True),  # sim 127.6: agrees
    ('fq_codel 10Mbps 20ms ecn', 'newreno', 'srtt_p95_ms', 141.2, 143.4, 5, False),  # sim 139.1: below by 2%
    ('fq_codel 10Mbps 20ms ecn', 'newreno', 'reduction_ms_p50', 105.9, 111.4, 5, False),  # sim 80: below by 24%
    ('fq_codel 10Mbps 20ms ecn', 'newreno', 'ecn_cut_share', 1, 1, 5, True),  # sim 1: agrees
    ('fq_codel 10Mbps 20ms ecn', 'dctcp', 'goodput_mbps', 2.558, 2.618, 5, False),  # sim 2.638: above by 1%
    ('fq_codel 10Mbps 20ms ecn', 'dctcp', 'cwnd_mean', 29.27, 29.85, 5, False),  # sim 30.75: above by 3%
    ('fq_codel 10Mbps 20ms ecn', 'dctcp', 'cut_period_s', 0.25, 0.3226, 5, False),  # sim 0.5084: above by 58%
    ('fq_codel 10Mbps 20ms ecn', 'dctcp', 'cut_depth_p50', 0.1218, 0.134, 5, False),  # sim 0.1658: above by 24%
    ('fq_codel 10Mbps 20ms ecn', 'dctcp', 'srtt_p50_ms', 132.8, 134.4, 5, False),  # sim 136.8: above by 2%
    ('fq_codel 10Mbps 20ms ecn', 'dctcp', 'srtt_p95_ms', 150, 163.4, 5, True),  # sim 153.6: agrees
    ('fq_codel 10Mbps 20ms ecn', 'dctcp', 'reduction_ms_p50', 10.43, 30.34, 5, False),  # sim 0: below by 100%
    ('fq_codel 10Mbps 20ms ecn', 'dctcp', 'ecn_cut_share', 1, 1, 5, True),  # sim 1: agrees
]

CELL = {c.name: c for c in CELLS}


def _inside(value, lo, hi, metric):
    tol = RESOLUTION.get(metric, 0.0)
    return lo - tol <= value <= hi + tol


@pytest.mark.parametrize("cell", [
    "l4s 1Mbps 20ms ecn",
    pytest.param("l4s 10Mbps 20ms ecn", marks=pytest.mark.slow),
    pytest.param("l4s 8Mbps 10ms ecn", marks=pytest.mark.slow),
    "fq_codel 1Mbps 20ms ecn",
    pytest.param("fq_codel 10Mbps 20ms ecn", marks=pytest.mark.slow),
])
def test_the_simulated_freebsd_sender_agrees_with_the_traces_exactly_where_the_table_says(cell):
    sim = sim_metrics(CELL[cell], 5)
    for _c, cc, metric, lo, hi, _n, agrees in (r for r in REFERENCE if r[0] == cell):
        values = [getattr(m, metric) for m in sim[cc] if getattr(m, metric) is not None]
        assert values, f"{cell} {cc} {metric}: no simulated value"
        med = statistics.median(values)
        assert _inside(med, lo, hi, metric) == agrees, (
            f"{cell} {cc} {metric}: simulated median {med:.4g} against FreeBSD {lo:.4g}..{hi:.4g}; the table says "
            f"{'agrees' if agrees else 'disagrees'} -- a model change moved it: update REFERENCE and "
            "docs/freebsd-siftr.md")


@pytest.mark.skipif(not os.environ.get("L4STB_SIFTR_TRACES"),
                    reason="set L4STB_SIFTR_TRACES to a checkout of MPTCP-FreeBSD/FreeBSD-L4S-Experiments")
@pytest.mark.parametrize("cell", sorted(CELL))
def test_the_reference_numbers_are_what_the_traces_give(cell):
    real = real_metrics(CELL[cell], os.environ["L4STB_SIFTR_TRACES"])
    for _c, cc, metric, lo, hi, n, _agrees in (r for r in REFERENCE if r[0] == cell):
        values = [getattr(m, metric) for m in real[cc] if getattr(m, metric) is not None]
        assert len(values) == n
        assert min(values) == pytest.approx(lo, rel=1e-3, abs=1e-6)
        assert max(values) == pytest.approx(hi, rel=1e-3, abs=1e-6)


def test_a_traces_folder_without_the_cells_logs_is_a_user_error_naming_the_missing_file(tmp_path):
    from l4stb.errors import L4stbError

    with pytest.raises(L4stbError, match="l4s_1Mbps_20ms_ecn_newreno_src1.siftr.log: missing.*the cell .l4s 1Mbps"):
        real_metrics(CELL["l4s 1Mbps 20ms ecn"], tmp_path)
