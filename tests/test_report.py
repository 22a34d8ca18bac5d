"""`l4stb report`: a self-contained HTML report plus summary.md and PNG/SVG figures that follow the figure rules."""

from __future__ import annotations

import re

import matplotlib.colors as mcolors
import pytest
from matplotlib.figure import Figure

from fake_run import flows_frame, install_fake_parser, load_json, make_run, packets_frame
from l4stb.analysis import metrics as M
from l4stb.analysis import plots as P
from l4stb.analysis.palette import CC_COLORS, QUEUE_COLORS
from l4stb.analysis.report import SeriesData, comparison_section, render_report
from l4stb.analysis.report_frame import ReportSection, ReportTable

FIGURES = ("queue_delay_ecdf", "queue_delay_box", "throughput_timeseries", "throughput_box", "utilization",
           "throughput_vs_p95_delay", "action_mix", "aqm_timeseries")


@pytest.fixture
def run(tmp_path, monkeypatch):
    install_fake_parser(monkeypatch)
    return make_run(tmp_path / "work")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One fixture run with its report rendered once, for the tests that only read the report."""
    with pytest.MonkeyPatch.context() as mp:
        install_fake_parser(mp)
        ws, run_id = make_run(tmp_path_factory.mktemp("work"))
        index = render_report(ws, run_id)
    return ws, run_id, index


def _all_figures(series_count: int) -> dict[str, Figure]:
    """Every figure function, fed ``series_count`` series of fixture data."""
    data = {}
    for i, name in enumerate(["dualpi2", "l4s-llm", "fifo"][:series_count]):
        pk, fl = packets_frame((1, 2), n_per_repeat=1500, seed=i), flows_frame((1, 2), seconds=6, seed=i)
        data[name] = (pk, fl, M.run_metrics(pk, fl, 8e6))
    return {
        "ecdf": P.delay_ecdf_figure({k: M.DelaySamples.from_packets(v[0]) for k, v in data.items()},
                                    {"C": [("PI2 target", 15.0)]}),
        "box": P.delay_box_figure({k: M.DelaySamples.from_packets(v[0]) for k, v in data.items()}),
        "timeseries": P.throughput_timeseries_figure(next(iter(data.values()))[1], fair_share_mbps=8 / 9),
        "tbox": P.throughput_box_figure({k: [f for rm in v[2].repeats for f in rm.flows] for k, v in data.items()},
                                        fair_share_mbps=8 / 9),
        "util": P.utilization_figure({k: M.utilization_timeseries(v[1], 8e6) for k, v in data.items()}),
        "tradeoff": P.tradeoff_figure({k: M.tradeoff_points(v[2], ("dctcp",)) for k, v in data.items()}),
        "actions": P.action_mix_figure({k: v[2].queues for k, v in data.items()}),
    }


def _is_categorical(axis) -> bool:
    texts = [t.get_text().replace("−", "-") for t in axis.get_ticklabels() if t.get_text()]
    return any(not re.fullmatch(r"-?[\d.,]+(e[+-]?\d+)?", t) for t in texts)


@pytest.mark.parametrize("series_count", [1, 3])
def test_every_axis_has_a_unit_label_and_a_legend(series_count):
    for name, fig in _all_figures(series_count).items():
        fig.canvas.draw()
        assert fig.legends or any(ax.get_legend() for ax in fig.axes), f"{name}: no legend"
        for ax in fig.axes:
            for which, axis, label in (("x", ax.xaxis, ax.get_xlabel()), ("y", ax.yaxis, ax.get_ylabel())):
                shown = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
                if not label and not shown:
                    continue  # stacked panels: only the bottom one shows the shared x axis
                assert label, f"{name}: {which} axis has no label"
                if not _is_categorical(axis):
                    assert re.search(r"\((ms|s|Mbit/s|%[^)]*|fraction[^)]*)\)", label), f"{name}: '{label}' has no unit"


def test_each_cc_and_queue_keeps_one_colour_across_figures():
    figs = _all_figures(1)
    want = {mcolors.to_hex(c) for c in CC_COLORS.values()}
    line_colours = {mcolors.to_hex(line.get_color()) for ax in figs["timeseries"].axes for line in ax.lines
                    if line.get_linestyle() == "-"}
    assert line_colours <= want  # flows are coloured by their CC and nothing else
    assert {mcolors.to_hex(CC_COLORS[cc]) for cc in ("cubic", "newreno", "dctcp")} <= line_colours
    for ax in figs["ecdf"].axes:
        q = "C" if ax.get_title().startswith("Classic") else "L"
        data_lines = [line for line in ax.lines if line.get_linestyle() != ":"]
        assert data_lines and all(mcolors.to_hex(line.get_color()) == mcolors.to_hex(QUEUE_COLORS[q]) for line in data_lines)
    box_faces = {mcolors.to_hex(p.get_facecolor()) for ax in figs["box"].axes for p in ax.patches}
    assert box_faces == {mcolors.to_hex(QUEUE_COLORS["C"]), mcolors.to_hex(QUEUE_COLORS["L"])}


def test_report_writes_index_summary_md_and_png_svg_figures(rendered):
    ws, run_id, index = rendered
    out = ws.report_dir(run_id)
    assert index == out / "index.html" and index.is_file() and (out / "summary.md").is_file()
    for name in FIGURES:
        assert (out / "figures" / f"{name}.png").stat().st_size > 5000
        assert (out / "figures" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    html = index.read_text()
    for title in ("Overview", "Queue delay", "Throughput", "Utilisation", "Fairness", "Actions", "Parse statistics",
                  "Provenance"):
        assert f">{title}</h2>" in html
    md = (out / "summary.md").read_text()
    assert "## Queue delay" in md and "](figures/queue_delay_ecdf.png)" in md and "| metric |" in md


def test_report_is_self_contained_offline(rendered):
    ws, run_id, index = rendered
    html = index.read_text()
    assert not re.search(r"https?://", html)
    assert "<script" not in html and "<link" not in html and "@import" not in html
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) == len(FIGURES) and all(s.startswith("data:image/png;base64,") for s in srcs)
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert all(h.startswith("#") or re.fullmatch(r"figures/[\w./-]+\.svg", h) for h in hrefs)
    for h in hrefs:
        if not h.startswith("#"):
            assert (ws.report_dir(run_id) / h).is_file()


def test_report_shows_headline_numbers_with_what_they_measure(rendered):
    html = rendered[2].read_text()
    assert "what it measures" in html and "C queue delay p95 (ms)" in html and "(n=3)" in html
    assert "not the cumulative sum" in html  # the ECDF note
    assert "Jain" in html and "utilisation" in html


def test_report_provenance_comes_from_the_manifest(rendered):
    html = rendered[2].read_text()
    for text in ("abc123", "FreeBSD 14.1-RELEASE", "kern.hz", "0" * 64, "/var/log/dualpi2.log", "1003"):
        assert text in html  # git sha, host facts, file sha256, remote path, repeat seed


def test_extra_sections_appear_in_both_html_and_markdown(run, tmp_path):
    ws, run_id = run
    fig = Figure()
    ax = fig.subplots()
    ax.plot([0, 1], [1, 0], label="loss")
    ax.legend()
    elsewhere = P.save_figure(fig, tmp_path / "elsewhere" / "training_curve")
    section = ReportSection(
        "Training",
        markdown="Loss fell from **1.0** to 0.1.",
        tables=[ReportTable(["class", "recall"], [["forward", 0.99], ["drop", float("nan")]], caption="Recall")],
        figures=[("Training loss per epoch.", elsewhere.png)],
    )
    raw = ReportSection("Latency", html="<p>p99 decision latency <b>2.1 ms</b></p>")
    index = render_report(ws, run_id, sections=[section, raw])
    out = ws.report_dir(run_id)
    html = index.read_text()
    assert '<h2>Training</h2>' in html and "<strong>1.0</strong>" in html and "<b>2.1 ms</b>" in html
    assert html.count("data:image/png;base64,") == len(FIGURES) + 1
    copied = out / "figures" / "training"
    assert (copied / "training_curve.png").is_file() and (copied / "training_curve.svg").is_file()
    assert html.index("<h2>Training</h2>") < html.index("<h2>Parse statistics</h2>")  # before the appendix
    md = (out / "summary.md").read_text()
    assert "## Training" in md and "**1.0**" in md and "| forward | 0.99 |" in md and "| drop | — |" in md
    assert "![Training loss per epoch.](figures/training/training_curve.png)" in md
    assert "## Latency" in md and "p99 decision latency 2.1 ms" in md
    assert load_json(ws.manifest_file(run_id))["steps"]["report"]["sections"][-3:] == [
        "Latency", "Parse statistics", "Provenance"]


def test_text_from_tables_and_markdown_is_escaped(run):
    ws, run_id = run
    section = ReportSection("Odd", markdown="<script>alert(1)</script>",
                            tables=[ReportTable(["x"], [["<img src=x onerror=alert(1)>"]])])
    html = render_report(ws, run_id, sections=[section]).read_text()
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html


def test_report_records_its_step_in_the_manifest(rendered):
    ws, run_id, _ = rendered
    step = load_json(ws.manifest_file(run_id))["steps"]["report"]
    assert step["index"] == "report/index.html" and step["summary_md"] == "report/summary.md"
    assert "figures/queue_delay_ecdf.png" in step["figures"] and len(step["sha256"]["index.html"]) == 64
    assert load_json(ws.manifest_file(run_id))["steps"]["fetch"]  # other steps are kept


def test_report_of_one_repeat_without_l_traffic_says_there_is_no_ci(tmp_path, monkeypatch):
    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path, repeats=(1,), packets=packets_frame((1,), l_share=0.0), flows=flows_frame((1,)))
    html = render_report(ws, run_id).read_text()
    assert "no confidence intervals" in html and "(n=1, no CI)" in html
    assert "<td>L</td><td>0</td><td>0 (—)</td>" in html  # the empty L queue shows no shares, not NaN
    assert ">nan" not in html.lower() and "nan %" not in html.lower()


def test_cli_report_prints_the_path(run):
    from click.testing import CliRunner

    from l4stb.cli import cli

    ws, run_id = run
    result = CliRunner().invoke(cli, ["--workdir", str(ws.root), "report"])
    assert result.exit_code == 0, result.output
    assert (ws.report_dir(run_id) / "index.html").is_file()


def test_a_comparison_section_puts_several_series_on_the_same_figures(run, tmp_path):
    ws, run_id = run
    series = {"dualpi2": SeriesData(packets_frame((1, 2), n_per_repeat=1500, seed=0), flows_frame((1, 2), seconds=6)),
              "l4s-llm": SeriesData(packets_frame((1, 2), n_per_repeat=1500, seed=1), flows_frame((1, 2), seconds=6))}
    section = comparison_section("Closed loop", series, tmp_path / "cmp", rate_bps=8e6, intro="Same seeds.")
    assert len(section.figures) == 6 and all(p.is_file() for _, p in section.figures)
    assert [row[0] for row in section.tables[0].rows] == ["dualpi2", "l4s-llm"]
    html = render_report(ws, run_id, sections=[section]).read_text()
    assert "<h2>Closed loop</h2>" in html and "Headline numbers per series" in html
    assert (ws.report_dir(run_id) / "figures" / "closed-loop" / "compare_delay_ecdf.png").is_file()


def test_report_of_an_imported_run_without_a_scenario_still_renders(tmp_path, monkeypatch):
    from l4stb.manifest import update_manifest

    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path, repeats=(1, 2), packets=packets_frame((1, 2)), flows=flows_frame((1, 2)))

    def imported(m):
        m.kind, m.status, m.scenario = "imported", "imported", {}

    update_manifest(ws, run_id, imported)
    html = render_report(ws, run_id).read_text()
    assert "no complete scenario" in html and "<h2>Queue delay</h2>" in html


def test_one_epoch_training_curves_have_readable_axes_and_no_legend_over_data():
    import warnings

    from l4stb.pipeline.report_sections import training_curves_figure

    history = [{"epoch": 0, "train_loss": 0.9, "val_loss": 0.85, "train_accuracy": 0.97, "val_accuracy": 0.96,
                "train_macro_f1": 0.5, "val_macro_f1": 0.48, "best": True}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = training_curves_figure(history)
    loss, acc, f1 = fig.axes
    assert list(loss.get_xticks()) == [1], "whole epochs, not 0.945 ... 1.065"
    assert acc.get_ylim() == (0, 1.02) and f1.get_ylim() == (0, 1.02)
    assert loss.get_ylim()[0] == 0 and loss.get_ylim()[1] > 0.9
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
