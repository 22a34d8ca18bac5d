"""Sweeps, comparisons, exports, redrawn figures and the metrics a researcher publishes from (issue 13, issue 12 item 1.6)."""

from __future__ import annotations

import json
import re
import stat
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fake_run import flows_frame, install_fake_parser, make_run, packets_frame
from l4stb.analysis import metrics as M
from l4stb.analysis.aqm_state import overload_share
from l4stb.analysis.compare import difference, render_compare_report
from l4stb.analysis.coexistence import coexistence
from l4stb.analysis.export import export_run
from l4stb.analysis.replot import PlotOptions, find_figure, replot
from l4stb.analysis.report import render_report
from l4stb.analysis.schema_docs import render_markdown
from l4stb.errors import L4stbError
from l4stb.manifest import load_manifest
from l4stb.pipeline.verdicts import compare_series
from l4stb.runner import sweep_slug


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.text: list[str] = []
        self.skip = False

    def handle_starttag(self, tag, attrs):
        self.skip = tag in ("style", "script")

    def handle_endtag(self, tag):
        self.skip = False

    def handle_data(self, data):
        if not self.skip:
            self.text.append(data)


def visible_text(html: str) -> str:
    p = _Text()
    p.feed(html)
    return " ".join(p.text)


def assert_no_nan_or_raw_dict(html: str) -> None:
    text = visible_text(html)
    assert not re.search(r"\bnan\b", text, re.IGNORECASE), re.search(r".{60}\bnan\b.{60}", text, re.I | re.S)
    assert not re.search(r"\{\s*['\"]", text), re.search(r".{60}\{\s*['\"].{60}", text, re.S)


# -- metrics -------------------------------------------------------------------------------------------------


def test_overload_share_counts_pi_updates_not_packets():
    # update at t=0 (3 packets, overload) and t=16000 (1 packet, no overload): half the updates, 3/4 of the packets
    df = pd.DataFrame({"repeat": [1, 1, 1, 1], "measurement_start_time": [0, 0, 0, 16000], "flags": [3, 3, 3, 1]})
    share = overload_share(df)
    assert share.per_repeat == {1: 0.5} and share.updates == {1: 2}


def test_coexistence_ratio_is_scalable_over_classic_per_flow_with_pairs(tmp_path, monkeypatch):
    flows = flows_frame((1, 2, 3), rates={"cubic": 1.0, "newreno": 0.5, "dctcp": 3.0})
    m = M.run_metrics(packets_frame((1, 2, 3)), flows, 8e6)
    co = coexistence(m)
    assert co.per_flow.n == 3
    assert 3.0 / 0.75 * 0.85 < co.per_flow.mean < 3.0 / 0.75 * 1.15
    assert 2.5 < co.pairs[("dctcp", "cubic")].mean < 3.5 and 5 < co.pairs[("dctcp", "newreno")].mean < 7


def test_welch_difference_has_no_interval_with_one_repeat_and_excludes_zero_for_a_clear_shift():
    assert difference([1.0], [2.0]).low is None
    d = difference([1.0, 1.1, 0.9, 1.0], [2.0, 2.1, 1.9, 2.0])
    assert d.significant and 0.8 < d.mean < 1.2


def _metrics(jain_values, repeats):
    flows = flows_frame(repeats)
    m = M.run_metrics(packets_frame(repeats), flows, 8e6)
    reps = [M.RepeatMetrics(**{**rm.__dict__, "jain": j}) for rm, j in zip(m.repeats, jain_values)]
    return M.RunMetrics(**{**m.__dict__, "repeats": reps})


def test_closed_loop_verdict_needs_three_repeats():
    base, worse = _metrics([0.95, 0.94], (1, 2)), _metrics([0.5, 0.4], (1, 2))
    words = {v.metric.key: v.word for v in compare_series(base, worse, ["cubic", "dctcp"])}
    assert set(words.values()) == {"too few repeats to tell"}


def test_closed_loop_verdict_calls_a_fairness_collapse_worse():
    base, bad = _metrics([0.95, 0.94, 0.96], (1, 2, 3)), _metrics([0.31, 0.30, 0.33], (1, 2, 3))
    words = {v.metric.key: v.word for v in compare_series(base, bad, ["cubic", "dctcp"])}
    assert words["jain"] == "worse"
    assert words["c_p95"] == "no clear difference"  # same packets: the delay did not change


# -- sweeps, manifests, CLI ------------------------------------------------------------------------------------


def test_sweep_slug_names_the_swept_values():
    assert sweep_slug({"bottleneck.rate": "20Mbit", "bottleneck.delay": "40ms"}) == "rate-20Mbit_delay-40ms"


@pytest.mark.slow
def test_sweep_runs_carry_their_values_and_get_a_table_report_and_figures(l4stb, workdir):
    assert l4stb("up").exit_code == 0
    r = l4stb("run", "--scenario", "dctcp-8mbps", "--set", "duration=3s", "--repeats", "2",
              "--sweep", "bottleneck.rate=8Mbit,20Mbit")
    assert r.exit_code == 0, r.output
    assert "fetch-logs --sweep" in r.stdout
    sweep = json.loads(next((workdir / "sweeps").glob("*.json")).read_text())
    ids = [c["run_id"] for c in sweep["combinations"]]
    assert ids[1].startswith("dctcp-8mbps_rate-20Mbit-")
    from l4stb.workspace import Workspace

    m = load_manifest(Workspace.at(workdir), ids[1])
    assert "--sweep bottleneck.rate=8Mbit,20Mbit" in m.command and "bottleneck.rate=20Mbit" in m.overrides
    assert m.sweep == {"sweep_id": sweep["sweep_id"], "values": {"bottleneck.rate": "20Mbit"}}
    assert m.versions.get("git_dirty") in ("true", "false", None)
    unfetched = l4stb("summary", "--sweep")
    assert unfetched.exit_code == 2 and "fetch-logs --sweep" in unfetched.stderr
    assert l4stb("fetch-logs", "--sweep").exit_code == 0
    table = json.loads(l4stb("summary", "--sweep", "--json").stdout)
    assert [row["bottleneck.rate"] for row in table["rows"]] == ["8Mbit", "20Mbit"]
    assert table["rows"][0]["utilization_pct"]["n"] == 2
    rep = l4stb("report", "--sweep", sweep["sweep_id"])
    assert rep.exit_code == 0, rep.output
    out = workdir / "sweeps" / sweep["sweep_id"] / "report"
    assert (out / "sweep.csv").read_text().startswith("bottleneck.rate,run_id,")
    assert (out / "figures" / "jain_vs_bottleneck_rate.pdf").is_file()
    assert_no_nan_or_raw_dict((out / "index.html").read_text())
    both = l4stb("summary", "--run", ids[0], "--run", ids[1], "--json")
    assert [o["run_id"] for o in json.loads(both.stdout)] == ids  # not silently only the last one


@pytest.mark.slow
def test_commands_do_what_they_say(l4stb, workdir):
    empty = workdir.parent / "empty"
    assert l4stb("summary", "--workdir", str(empty)).exit_code == 2  # --workdir after the subcommand
    assert not empty.exists()  # a read-only command creates nothing, not even the lock
    plan = l4stb("run", "--scenario", "dctcp-8mbps", "--dry-run")
    assert plan.exit_code == 0 and "sim" in plan.stdout and "--provider vagrant" in plan.stdout
    assert l4stb("up").exit_code == 0
    assert l4stb("run", "--scenario", "dctcp-8mbps", "--set", "duration=2s", "--repeats", "1").exit_code == 0
    from l4stb.workspace import Workspace

    ws = Workspace.at(workdir)
    run_id = ws.resolve_run(None)
    hint = l4stb("summary")
    assert hint.exit_code == 2 and f"fetch-logs --run {run_id}" in hint.stderr
    before = ws.manifest_file(run_id).read_bytes()
    again = l4stb("run", "--resume", run_id)
    assert again.exit_code == 0 and "nothing to do" in again.stdout
    assert ws.manifest_file(run_id).read_bytes() == before
    bad = l4stb("train-and-report", "--backbone", "no-such-model")
    assert bad.exit_code == 2 and "unknown backbone" in bad.stderr
    assert not ws.raw_dir(run_id).exists()  # it failed before fetching anything


# -- report, compare, export, plot -------------------------------------------------------------------------


def test_report_has_no_nan_or_raw_dict_names_the_testbed_and_is_world_readable(tmp_path, monkeypatch):
    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path, packets=packets_frame((1, 2, 3), l_share=0.0))  # an empty L queue: NaN delays
    index = render_report(ws, run_id)
    html = index.read_text()
    assert_no_nan_or_raw_dict(html)
    assert "Testbed: simulated by l4stb's sim provider" in visible_text(html)
    assert 'class="table-wrap"' in html and "word-break: break-word" not in html
    for path in ws.report_dir(run_id).rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), path
    assert (ws.report_dir(run_id) / "figures" / "queue_delay_ecdf.pdf").read_bytes().startswith(b"%PDF")


def test_every_report_figure_can_be_redrawn_from_its_saved_data(tmp_path, monkeypatch):
    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path)
    render_report(ws, run_id)
    folder = ws.report_dir(run_id)
    pngs = {p.stem for p in (folder / "figures").glob("*.png")}
    csvs = {p.stem for p in (folder / "figures").glob("*.csv")}
    assert pngs == csvs
    for stem in sorted(csvs):
        out = replot(find_figure(folder, stem), tmp_path / "re" / stem, PlotOptions(4, 3, "paper"))
        assert out.is_file()
    with pytest.raises(L4stbError, match="not in this figure"):
        replot(find_figure(folder, "queue_delay_ecdf"), tmp_path / "x", PlotOptions(series=("nope",)))


def test_compare_overlays_runs_with_a_differences_table(tmp_path, monkeypatch):
    install_fake_parser(monkeypatch)
    ws, a = make_run(tmp_path)
    _, b = make_run(tmp_path, run_id="dctcp-8mbps-20250102T000000Z",
                    flows=flows_frame((1, 2, 3), rates={"cubic": 0.3, "newreno": 0.3, "dctcp": 5.0}))
    from rich.console import Console

    term = Console(record=True, width=250)
    index = render_compare_report(ws, [a, b], labels=["before", "after"], console=term)
    html = index.read_text()
    assert "after − before [95% CI]" in html and "Jain index" in html and "(n=3 vs 3)" in html
    printed = term.export_text()
    assert "after − before [95% CI]" in printed and "Jain index" in printed, "compare prints the table too"
    assert_no_nan_or_raw_dict(html)
    with pytest.raises(L4stbError, match="one label per run"):
        render_compare_report(ws, [a, b], labels=["only-one"])


def test_export_parquet_carries_units_and_meanings_and_csv_writes_the_tables(tmp_path, monkeypatch):
    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path)
    files = export_run(ws, run_id, fmt="parquet", what=("packets", "flows", "summary"))
    schema = pq.read_schema(files[0])
    field = schema.field("current_queue_delay")
    assert field.metadata[b"unit"] == b"us" and b"sojourn" in field.metadata[b"meaning"]
    assert schema.metadata[b"l4stb.table"] == b"packets"
    summary = pd.read_parquet(files[2])
    assert list(summary["repeat"]) == [0, 1, 2, 3] and np.isfinite(summary["jain"]).all()
    csvs = export_run(ws, run_id, fmt="csv", what=("flows",), out=tmp_path / "csv")
    assert pd.read_csv(csvs[0]).shape[0] == len(flows_frame())


def test_export_has_a_flow_map_and_per_cc_throughput_in_the_summary(tmp_path, monkeypatch):
    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path, scenario="prague-8mbps")
    flowmap, summary = export_run(ws, run_id, fmt="parquet", what=("flowmap", "summary"))
    fm = pd.read_parquet(flowmap)
    assert len(fm) == 9 and list(fm["flow_id"]) == list(range(9))
    prague = fm[fm["cc"] == "prague"].iloc[0]
    assert (prague["host"], prague["stack"], prague["transport"]) == ("client2", "freebsd", "udp_prague")
    assert prague["cc_label"] == "prague (FreeBSD, udp_prague)"
    assert set(fm["flow_class"]) == {"bulk"}
    s = pd.read_parquet(summary)
    assert {"throughput_mbps_cubic_freebsd", "throughput_mbps_newreno_freebsd"} <= set(s.columns)
    assert np.isfinite(s["throughput_mbps_cubic_freebsd"]).all()


def test_docs_data_md_is_generated_from_the_log_format():
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "data.md"
    assert page.read_text() == render_markdown(), "regenerate: python -m l4stb.analysis.schema_docs > docs/data.md"


def test_load_run_returns_packets_flows_and_summary(tmp_path, monkeypatch):
    import l4stb

    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path)
    run = l4stb.load_run(run_id, workdir=tmp_path)
    assert len(run.packets) == len(packets_frame()) and run.summary["run_id"] == run_id and not run.flows.empty


def test_a_redrawn_figure_outlives_the_next_report(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from l4stb.cli import cli

    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path)
    render_report(ws, run_id)
    out = CliRunner().invoke(cli, ["--workdir", str(tmp_path), "plot", "queue_delay_ecdf", "--run", run_id])
    assert out.exit_code == 0, out.output
    replotted = ws.run_dir(run_id) / "plots" / "queue_delay_ecdf.png"
    assert replotted.is_file()
    render_report(ws, run_id)
    assert replotted.is_file(), "re-rendering the report keeps a figure the user redrew"


def test_the_over_time_figure_is_redrawn_with_its_panels_and_their_units(tmp_path, monkeypatch):
    from l4stb.analysis.replot import load_figure_data, redraw

    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path)
    render_report(ws, run_id)
    data = load_figure_data(find_figure(ws.report_dir(run_id), "aqm_timeseries"))
    panels = list(dict.fromkeys(data.frame["panel"]))
    assert panels[:3] == ["sojourn", "queue length", "probability"]
    fig = redraw(data, PlotOptions(6, 8))
    ylabels = [ax.get_ylabel() for ax in fig.axes]
    assert ylabels[:3] == ["sojourn (ms)", "queue length (pkts)", "probability"], "ms, packets and probabilities apart"
    assert len(fig.axes) == len(panels)


def test_plot_series_takes_the_names_the_legend_shows(tmp_path, monkeypatch):
    from l4stb.analysis.replot import load_figure_data, redraw

    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path)
    render_report(ws, run_id)
    folder = ws.report_dir(run_id)
    util = load_figure_data(find_figure(folder, "utilization"))
    fig = redraw(util, PlotOptions(series=("iperf3 (sender bytes)",)))  # the legend's name, not "..., repeat 1"
    drawn = {t.get_text() for leg in fig.legends for t in leg.get_texts()}
    assert len(drawn) == 3 and all(t.startswith("iperf3 (sender bytes), repeat") for t in drawn)
    tput = load_figure_data(find_figure(folder, "throughput_timeseries"))
    shown = redraw(tput, PlotOptions(series=("Cubic",)))
    labels = {t.get_text() for leg in shown.legends for t in leg.get_texts()}
    assert labels and all("cubic" in t for t in labels), "every cubic flow, by the CC the legend names"


def test_delay_ecdf_series_differ_in_hue_as_well_as_dash():
    import matplotlib.colors as mcolors

    from l4stb.analysis import metrics as M
    from l4stb.analysis.plots import delay_ecdf_figure

    rng = np.random.default_rng(0)
    series = {name: M.DelaySamples({"C": rng.exponential(5, 500), "L": rng.exponential(1, 500)})
              for name in ("DualPI2", "L4S-LLM every 10")}
    fig = delay_ecdf_figure(series)
    for ax in fig.axes:
        lines = [ln for ln in ax.get_lines() if ln.get_label().startswith(("DualPI2", "L4S-LLM"))]
        hues = {mcolors.to_hex(ln.get_color()) for ln in lines}
        dashes = {str(ln.get_linestyle()) for ln in lines}
        assert len(lines) == 2 and len(hues) == 2 and len(dashes) == 2


def test_closed_loop_box_labels_do_not_overlap():
    from l4stb.analysis import metrics as M
    from l4stb.analysis.plots import delay_box_figure

    rng = np.random.default_rng(1)
    names = ["DualPI2", "L4S-LLM every 10", "L4S-LLM every 100", "logistic regression every 1",
             "decision tree every 1", "distilled tree every 1"]
    fig = delay_box_figure({n: M.DelaySamples({"C": rng.exponential(5, 300), "L": rng.exponential(1, 300)})
                            for n in names})
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    for ax in fig.axes:
        boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
        assert len(boxes) == len(names)
        for a, b in zip(boxes, boxes[1:]):
            assert not a.overlaps(b), "neighbouring series names overlap"
