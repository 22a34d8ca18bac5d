"""The report reads a run's packets one repeat at a time (memory at 1 Gbit/s scale); what it shows must be exactly
what the whole packets table gives: the same numbers, figure data, figures and sections."""

from __future__ import annotations

import numpy as np
import pytest

from fake_run import install_fake_parser, make_run, packets_frame
from l4stb.analysis import metrics as M
from l4stb.analysis.flowview import flow_points, has_flow_ids
from l4stb.analysis.report import TimeseriesView, network_sections, utilization_bin_s
from l4stb.analysis.report_packets import RunPacketViews, summarize_for_report
from l4stb.analysis.summary import load_run, summarize_data
from l4stb.analysis.timebase import router_offsets_s


def _packets_with_flows():
    """Fixture packets whose rows carry flow ids: the scenario's in every repeat, and in the last one an id the
    scenario cannot name (so naming must look at the whole run's ids, not one repeat's)."""
    pk = packets_frame((1, 2, 3), n_per_repeat=1500, seed=3)
    rng = np.random.default_rng(5)
    fid = rng.integers(0, 9, len(pk)).astype(np.int32)
    fid[rng.random(len(pk)) < 0.1] = -1
    last = (pk["repeat"] == 3).to_numpy()
    fid[np.flatnonzero(last)[:40]] = 777_000
    pk["flow_id"] = fid
    return pk


def _whole_table_views(data, view: TimeseriesView) -> RunPacketViews:
    """The views as the report computed them from every packet of the run at once."""
    pk = data.packets
    repeats = sorted(int(r) for r in pk["repeat"].unique())
    timed = not pk.empty and bool(np.isfinite(pk["t_s"].to_numpy(dtype=float)).any())
    shown = view.repeat if view.repeat is not None else repeats[0]
    return RunPacketViews(
        repeats=repeats,
        delays=M.DelaySamples.from_packets(pk),
        link_utilization=M.link_utilization_timeseries(
            pk, data.capacity, utilization_bin_s(data), data.log_sample_every, router_offsets_s(data.flows)
        ),
        flow_points=flow_points(pk, data.scenario, M.WARMUP_S, data.senders) if has_flow_ids(pk) else None,
        timed=timed,
        shown=pk[pk["repeat"] == shown],
    )


def _sections_text(sections) -> list:
    return [
        (
            s.title,
            s.markdown,
            s.html,
            [(t.columns, t.rows, t.caption) for t in s.tables],
            [(c, p.name) for c, p in s.figures],
        )
        for s in sections
    ]


@pytest.mark.parametrize("view", [TimeseriesView(), TimeseriesView(repeat=3, window=(1.0, 20.0), bin_s=0.05)])
def test_report_read_one_repeat_at_a_time_equals_the_report_of_all_packets_at_once(tmp_path, monkeypatch, view):
    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path / "w", packets=_packets_with_flows())
    # small row groups: repeats straddle them, as in a large parsed run
    _packets_with_flows().to_parquet(ws.packets_file(run_id), row_group_size=577)

    lean = load_run(ws, run_id, with_packets=False)
    summary, views = summarize_for_report(ws, lean, view.repeat, utilization_bin_s(lean))
    by_repeat = network_sections(lean, summary, views, tmp_path / "by-repeat", view)

    whole = load_run(ws, run_id)
    whole_summary = summarize_data(whole)
    at_once = network_sections(whole, whole_summary, _whole_table_views(whole, view), tmp_path / "whole", view)

    assert summary.to_json() == whole_summary.to_json()
    # the scenario names flows 0-8, but not 777000 of repeat 3: a run holding both is named by flow id throughout
    assert {p.label for p in views.flow_points if p.repeat == 1} == {f"flow {i}" for i in range(9)}
    assert _sections_text(by_repeat) == _sections_text(at_once)
    files = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "by-repeat").iterdir())
    assert {"aqm_timeseries.csv", "flow_throughput_vs_own_delay.csv", "queue_delay_ecdf.csv"} <= set(files)
    for name in files:
        assert (tmp_path / "by-repeat" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
