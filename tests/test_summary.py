"""`l4stb summary`: the run summary, its JSON shape, the rich tables and the errors a user can fix."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from click.testing import CliRunner
from rich.console import Console

from fake_run import flows_frame, install_fake_parser, make_run, packets_frame
from l4stb.analysis.summary import print_summary, summarize
from l4stb.cli import cli
from l4stb.errors import L4stbError


def test_summary_json_has_the_documented_keys(tmp_path, monkeypatch):
    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path)
    out = summarize(ws, run_id).to_json()
    assert list(out) == ["run_id", "scenario", "aqm", "testbed", "overrides", "sweep", "queues", "utilization",
                         "capacity", "flows", "jain", "na", "coexistence", "overload", "repeats", "parse",
                         "log_sample_every"]
    assert out["na"] == {} and out["capacity"]["source"] == "fixed" and out["capacity"]["changes"] == []
    assert out["log_sample_every"] == 1 and out["capacity"]["repeats_applied"] == 0
    assert out["run_id"] == run_id and out["scenario"] == "dctcp-8mbps" and out["overrides"] == []
    assert set(out["queues"]) == {"C", "L"}
    for q in out["queues"].values():
        assert set(q) == {"delay_ms", "packets", "drops", "marks", "drop_rate", "mark_rate", "drop_rate_ci95",
                          "mark_rate_ci95"}
        assert set(q["delay_ms"]) == {"p50", "p90", "p95", "p99"}
    assert 0.0 <= out["utilization"] <= 1.0
    assert 0.0 < out["jain"] <= 1.0
    assert {"host", "cc", "stream", "class", "throughput_mbps"} <= set(out["flows"][0])
    assert {f["class"] for f in out["flows"]} == {"bulk"}
    assert len({(f["host"], f["cc"], f["group"], f["connection"], f["stream"]) for f in out["flows"]}) == 9
    assert out["repeats"]["n"] == 3 and len(out["repeats"]["per_repeat"]) == 3
    rep = out["repeats"]["per_repeat"][0]
    assert {"repeat", "queues", "utilization", "flows", "jain"} <= set(rep)
    ci = out["repeats"]["ci95"]
    assert set(ci) == {"delay_ms", "utilization", "jain", "cc_throughput_mbps"}
    assert ci["utilization"]["low"] <= out["utilization"] <= ci["utilization"]["high"]
    assert out["parse"] == {"lines_read": 12100, "parsed": 12000, "skipped": {"unrelated": 90, "truncated": 10}}


def test_summary_json_is_strict_json_even_with_an_empty_queue_and_one_repeat(tmp_path, monkeypatch):
    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path, repeats=(1,), packets=packets_frame((1,), l_share=0.0), flows=flows_frame((1,)))
    out = summarize(ws, run_id).to_json()
    json.dumps(out, allow_nan=False)  # NaN would not be valid JSON
    assert out["queues"]["L"]["delay_ms"]["p95"] is None and out["queues"]["L"]["packets"] == 0
    assert out["repeats"]["ci95"]["utilization"]["low"] is None  # n = 1: no CI


def test_summary_asks_the_parser_to_bring_the_data_up_to_date(tmp_path, monkeypatch):
    calls = install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path)
    summarize(ws, run_id)
    assert calls == [run_id]


def test_parsed_data_whose_raw_files_are_gone_is_used_as_is(tmp_path, monkeypatch):
    calls = install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path)
    shutil.rmtree(ws.raw_dir(run_id))
    assert summarize(ws, run_id).metrics.n_repeats == 3
    assert calls == []


def test_a_run_that_was_never_fetched_says_run_fetch_logs_first(tmp_path, monkeypatch):
    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path)
    ws.packets_file(run_id).unlink()
    shutil.rmtree(ws.raw_dir(run_id))
    with pytest.raises(L4stbError, match="l4stb fetch-logs"):
        summarize(ws, run_id)


def test_a_missing_parser_module_is_a_clear_user_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "l4stb.analysis.packets", None)  # import fails
    ws, run_id = make_run(tmp_path)
    summarize(ws, run_id)  # parsed data already there: still works
    ws.packets_file(run_id).unlink()
    with pytest.raises(L4stbError, match=r"l4stb\.analysis\.packets.*fetch-logs"):
        summarize(ws, run_id)


def test_print_summary_shows_a_table_per_repeat_and_the_overall_numbers(tmp_path, monkeypatch):
    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path)
    console = Console(record=True, width=120)
    print_summary(summarize(ws, run_id), console)
    text = console.export_text()
    assert "per repeat" in text and "overall" in text and "flows" in text
    assert "C queue delay p95 (ms)" in text and "(n=3)" in text and "±" in text
    assert "12100 lines read" in text and "truncated: 10" in text


def test_print_summary_of_one_repeat_says_there_is_no_ci(tmp_path, monkeypatch):
    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path, repeats=(1,), packets=packets_frame((1,)), flows=flows_frame((1,)))
    console = Console(record=True, width=120)
    print_summary(summarize(ws, run_id), console)
    assert "no confidence intervals" in console.export_text()


def test_cli_summary_json_prints_one_object(tmp_path, monkeypatch):
    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path)
    result = CliRunner().invoke(cli, ["--workdir", str(tmp_path), "summary", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert {"run_id", "scenario", "overrides", "queues", "utilization", "flows", "jain", "coexistence", "overload",
            "repeats", "parse"} <= set(out)
    assert out["run_id"] == run_id


def test_summary_says_how_to_read_utilisation_when_every_byte_crosses_the_pipe_twice(l4stb):
    """With the original ipfw rule (match: any) goodput over the rate tops out at 50 %: the summary says so."""
    assert l4stb("up").exit_code == 0
    run = l4stb("run", "--scenario", "paper-l4s-pie-10mbps-20ms", "--repeats", "1", "--set", "duration=5s")
    assert run.exit_code == 0, run.output
    assert l4stb("fetch-logs").exit_code == 0
    out = l4stb("summary")
    assert out.exit_code == 0, out.output
    assert "every byte crosses the pipe twice" in " ".join(out.stdout.split())


def test_a_run_with_linux_senders_is_not_called_a_freebsd_testbed():
    from l4stb.analysis.summary import testbed_words
    from l4stb.config import load_scenario
    from l4stb.manifest import Manifest

    sc = load_scenario("prague-8mbps", ["hosts.client2.stack=linux"]).model_dump(mode="json")
    words = testbed_words(Manifest(run_id="r", status="complete", scenario=sc, provider="sim"))
    assert "client2 Linux (Prague = TCP Prague)" in words and "client1 FreeBSD 14.1" in words
    assert "simulator of the FreeBSD 14.1 testbed" not in words
    freebsd = load_scenario("prague-8mbps", []).model_dump(mode="json")
    assert "client2 FreeBSD 14.1 (Prague = udp_prague)" in testbed_words(
        Manifest(run_id="r", status="complete", scenario=freebsd, provider="sim"))


def test_a_closed_loop_summary_names_the_policy_that_decided():
    from types import SimpleNamespace

    from l4stb.analysis.summary import aqm_words
    from l4stb.manifest import Manifest

    m = Manifest(run_id="r-cl-llm-n10", kind="closed-loop", status="complete",
                 steps={"closed_loop": {"policy": "L4S-LLM every 10", "every": 10}})
    assert aqm_words(SimpleNamespace(manifest=m, aqm="dualpi2")) == \
        "L4S-LLM every 10 deciding every 10th packet, dualpi2 the rest"
    plain = Manifest(run_id="r", kind="run", status="complete")
    assert aqm_words(SimpleNamespace(manifest=plain, aqm="dualpi2")) == "dualpi2"


def test_summary_prints_the_ratio_and_the_overload_share_the_readme_promises(tmp_path, monkeypatch):
    from rich.console import Console

    from l4stb.analysis.summary import print_summary

    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path)
    console = Console(record=True, width=200)
    print_summary(summarize(ws, run_id), console)
    text = console.export_text()
    assert "scalable/classic throughput per flow (bulk)" in text and "dctcp (FreeBSD)/cubic (FreeBSD)" in text
    assert "DualPI2 PI updates in overload" in text


@pytest.mark.parametrize("order", ["in_blocks", "shuffled"])
def test_summary_read_one_repeat_at_a_time_equals_the_summary_of_all_packets_at_once(tmp_path, monkeypatch, order):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fake_run import flows_frame
    from l4stb.analysis.summary import load_run, summarize_data

    install_fake_parser(monkeypatch)
    packets = packets_frame(repeats=(1, 2, 3), n_per_repeat=3000)
    rng = np.random.default_rng(5)
    packets["flags"] = rng.integers(0, 8, len(packets))  # some PI updates in overload
    packets["measurement_start_time"] = np.arange(len(packets)) // 7 * 16_000
    if order == "shuffled":  # repeats not in ascending blocks: read whole, then split
        packets = packets.iloc[rng.permutation(len(packets))].reset_index(drop=True)
    ws, run_id = make_run(tmp_path, repeats=(1, 2, 3, 4), packets=packets.iloc[0:0],
                          flows=flows_frame(repeats=(1, 2, 3, 4)))  # repeat 4: flows but no router rows
    # small row groups, some straddling two repeats, as the parse step writes them
    pq.write_table(pa.Table.from_pandas(packets, preserve_index=False), ws.packets_file(run_id), row_group_size=1100)
    streamed = summarize(ws, run_id).to_json()
    whole = summarize_data(load_run(ws, run_id)).to_json()
    assert streamed == whole
    assert streamed["repeats"]["n"] == 4 and streamed["queues"]["C"]["packets"] + streamed["queues"]["L"]["packets"] == 9000
    assert streamed["overload"]["pi_updates"] and len(streamed["overload"]["per_repeat"]) == 3


def test_a_sampled_log_scales_counts_by_n_and_says_so(tmp_path, monkeypatch):
    """logging.sample_every N: the log holds every N-th decision, so counts (and router-side bytes) are N times
    the logged ones; shares and delays are the logged decisions' own."""
    install_fake_parser(monkeypatch)
    packets = packets_frame()
    full = summarize(*make_run(tmp_path / "full", packets=packets))
    sampled = summarize(*make_run(tmp_path / "sampled", packets=packets, overrides=("logging.sample_every=10",)))
    for q in ("C", "L"):
        a, b = full.metrics.queues[q], sampled.metrics.queues[q]
        assert (b.packets, b.drops, b.marks) == (10 * a.packets, 10 * a.drops, 10 * a.marks) and b.packets > 0
        assert b.drop_fraction == a.drop_fraction and b.delay == a.delay
    assert sampled.metrics.repeats[0].link_utilization == pytest.approx(10 * full.metrics.repeats[0].link_utilization)
    out = sampled.to_json()
    assert out["log_sample_every"] == 10 and out["queues"]["C"]["sample_every"] == 10
    console = Console(record=True, width=200)
    print_summary(sampled, console)
    assert "holds every 10th decision" in console.export_text()


def test_utilisation_uses_the_schedule_the_router_applied_where_it_recorded_one(tmp_path, monkeypatch):
    """Repeat 1's helper applied the 10 s step 5 s late: its offered capacity is the applied one; repeat 2 has
    no record and keeps the planned schedule."""
    from l4stb import layout
    from l4stb.analysis.capacity import Capacity

    install_fake_parser(monkeypatch)
    ws, run_id = make_run(tmp_path, overrides=("bottleneck.rate_schedule=[{at: 10s, rate: 4Mbit}]",))
    record = ws.raw_dir(run_id) / "router" / layout.remote_repeat_dir(run_id, 1).lstrip("/") / layout.RATE_APPLIED_NAME
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("# l4stb_ratesched: start 1735689600.000000 (UTC epoch), times in us after it\n"
                      "l4stb-rate 10000000 14990000 15000000 4Mbit/s 0\n")
    summary = summarize(ws, run_id)
    r1, r2 = summary.metrics.repeats[0], summary.metrics.repeats[1]
    end = max(f.start_s + f.lifetime_s for f in r1.flows)
    assert r1.capacity_source == "applied" and r2.capacity_source == "schedule"
    assert r1.capacity_bps == pytest.approx(Capacity((0.0, 15.0), (8e6, 4e6)).mean_bps(0.0, end))
    assert r2.capacity_bps == pytest.approx(Capacity((0.0, 10.0), (8e6, 4e6)).mean_bps(0.0, end))
    assert r1.capacity_bps > r2.capacity_bps
    assert summary.to_json()["capacity"]["repeats_applied"] == 1
