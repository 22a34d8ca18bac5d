"""The calibration matrix and its verdicts: cells both providers can run, bands floored and widened by the kernel's spread."""

from __future__ import annotations

import math

import pytest

from l4stb.analysis.calibration import BANDS, compare_cell, render_markdown
from l4stb.calibrate import Cell, matrix
from l4stb.config import load_topology
from l4stb.errors import L4stbError
from l4stb.linuxvm import guest


def _summary(utils: list[float], l_packets: int = 1000, l_marks: float = 0.3, dctcp_mbps=None, cubic_mbps=None):
    """A summary JSON with what cell_metrics reads, per repeat."""
    per = []
    for i, u in enumerate(utils):
        flows = [{"cc": "dctcp", "throughput_mbps": (dctcp_mbps or [u * 8] * len(utils))[i]}]
        if cubic_mbps:
            flows.append({"cc": "cubic", "throughput_mbps": cubic_mbps[i]})
        per.append({"utilization": u, "flows": flows,
                    "queues": {"L": {"delay_ms": {"p50": 0.4, "p99": 3.0}}, "C": {"delay_ms": {}}}})
    return {"repeats": {"per_repeat": per}, "coexistence": None,
            "queues": {"L": {"packets": l_packets, "mark_rate": l_marks, "drop_rate": 0.0},
                       "C": {"packets": 0}}}


def _row(rows, metric):
    return next(r for r in rows if r.metric == metric)


def test_a_simulated_value_inside_the_floor_agrees_and_one_outside_differs():
    real = _summary([0.86, 0.86, 0.86])
    assert _row(compare_cell("c", _summary([0.92] * 3), real), "utilisation").verdict == "agrees"  # 7 % off
    assert _row(compare_cell("c", _summary([0.97] * 3), real), "utilisation").verdict == "differs"  # 13 % off


def test_the_band_widens_to_the_real_kernels_own_spread():
    real = _summary([0.5, 0.9, 0.7])  # the kernel disagrees with itself by far more than 10 %
    row = _row(compare_cell("c", _summary([0.95] * 3), real), "utilisation")
    assert row.band > BANDS["utilisation"].width(0.7) and row.verdict == "agrees"


def test_mark_rates_are_judged_in_absolute_terms():
    real = _summary([0.9] * 3, l_marks=0.30)
    assert _row(compare_cell("c", _summary([0.9] * 3, l_marks=0.34), real), "L mark rate").verdict == "agrees"
    assert _row(compare_cell("c", _summary([0.9] * 3, l_marks=0.40), real), "L mark rate").verdict == "differs"


def test_a_metric_one_side_lacks_is_undefined_not_judged():
    real = _summary([0.9] * 3, l_packets=0)
    rows = compare_cell("c", _summary([0.9] * 3), real)
    assert _row(rows, "L delay p50 (ms)").verdict == "undefined"
    text = render_markdown(rows, "t", "ctx")
    assert "n/a" in text and "undefined" in text and "nan" not in text


def test_shares_are_compared_per_cc_when_flows_share_the_link():
    real = _summary([0.9] * 3, dctcp_mbps=[5.0] * 3, cubic_mbps=[2.0] * 3)
    sim = _summary([0.9] * 3, dctcp_mbps=[5.2] * 3, cubic_mbps=[1.9] * 3)
    rows = compare_cell("c", sim, real)
    assert math.isclose(_row(rows, "share dctcp").real, 5 / 7)
    assert _row(rows, "share cubic").verdict == "agrees"


@pytest.mark.parametrize("name", ["ci", "quick", "full"])
def test_every_cell_runs_on_both_providers(name):
    topo = load_topology("dumbbell-4")
    for cell in matrix(name):
        sim = cell.scenario(duration_s=10, repeats=3, seed=1, provider="sim")
        real = cell.scenario(duration_s=10, repeats=3, seed=1, provider="qemu")
        sim.check_against(topo)
        guest.check_supported(real)
        assert sim.bottleneck.shaper == "htb" and all(sim.host(h).stack == "linux" for h in topo.clients)


def test_classic_flows_stay_out_of_the_l_queue_under_any_ect():
    assert Cell("cubic+dctcp", "any-ect", 8, 10).classic_ecn is False
    assert Cell("dctcp", "any-ect", 8, 10).classic_ecn is True
    assert Cell("paper-mix", "linux-defaults", 8, 10).classic_ecn is True


def test_the_full_matrix_is_the_issues_matrix():
    cells = matrix("full")
    assert {c.rate_mbps for c in cells} == {8, 20, 40} and {c.rtt_ms for c in cells} == {10, 40}
    assert len(cells) == 3 * 2 * (4 * 3 + 1)


def test_an_unknown_matrix_is_refused():
    with pytest.raises(L4stbError, match="ci, quick or full"):
        matrix("huge")


def test_reuse_takes_the_newest_complete_run_of_the_same_cell_and_names_a_missing_one(tmp_path):
    """`calibrate --reuse qemu` re-runs only the simulator: the other side's runs are found by their exact
    scenario (here the sim side stands in for it, as it runs in seconds)."""
    from l4stb.calibrate import run_matrix
    from l4stb.workspace import Workspace

    ws = Workspace.at(tmp_path / "w")
    cell = Cell("dctcp", "any-ect", 8, 10)
    first = run_matrix(ws, [cell], duration_s=5, repeats=2, seed=7, providers=("sim",))[0].runs["sim"]
    again = run_matrix(ws, [cell], duration_s=5, repeats=2, seed=7, providers=("sim",), reuse=("sim",))
    assert again[0].runs["sim"] == first
    with pytest.raises(L4stbError, match="no complete sim run of cell dctcp-any-ect-8m-10ms with 2 repeats of 5 s "
                                         "and seed 8"):
        run_matrix(ws, [cell], duration_s=5, repeats=2, seed=8, providers=("sim",), reuse=("sim",))
