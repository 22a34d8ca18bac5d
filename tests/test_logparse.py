"""The router log parser: line shapes, syslog prefixes, repeats, skipped lines, rotated sets, fast == slow path;
and the parse step that writes data/packets.parquet, data/flows.parquet and data/parse.json."""

from __future__ import annotations

import json
import os
import random
import time

import numpy as np
import pandas as pd
import pytest
from conftest import realdata
from l4stb.analysis.flows import flows_table
from l4stb.analysis.logparse import (
    SHAPE_NAMES,
    LogParser,
    classify_line,
    parse_log_files,
    syslog_seconds,
    unwrap_syslog_year,
)
from l4stb.logfiles import order_log_files
from l4stb.analysis.packets import PACKET_COLUMNS, ensure_parsed, read_flows, read_packets
from l4stb.errors import L4stbError
from l4stb.logformat import FIELD_NAMES, L4STB_PREFIX, OLD_PREFIX, PAPER_PREFIX, PROB_SCALE
from l4stb.manifest import load_manifest
from l4stb.workspace import Workspace
from logfixtures import (
    iperf3_doc,
    l4stb_line,
    old_line,
    paper_line,
    raw_run,
    sim_log_lines,
    syslog,
    values,
    write_log,
)


def parse(text: str, *, fast: bool = True, block_size: int = 1 << 20):
    p = LogParser(fast=fast, block_size=block_size)
    batch = p.parse_bytes(text.encode())
    return batch, p.stats[0]


def both(text: str, block_size: int = 1 << 20):
    """Parse with the fast and the per-line path, check they agree, return the fast result."""
    fb, fs = parse(text, fast=True, block_size=block_size)
    sb, ss = parse(text, fast=False, block_size=block_size)
    assert np.array_equal(fb.rows(), sb.rows())
    assert np.array_equal(fb.shape, sb.shape)
    assert np.allclose(fb.syslog_s, sb.syslog_s, equal_nan=True)
    assert fs.to_json() == ss.to_json()
    return fb, fs


# -- line shapes and prefixes -------------------------------------------------------------------------


def test_paper_line_behind_a_hostname_with_dashes_is_parsed():
    text = "\n".join(paper_line(values(i), prefix=syslog("Dec 30 10:00:01", "dummynet-vm-1.lab-net")) for i in range(3))
    batch, stats = both(text + "\n")
    assert len(batch) == 3 and stats.skipped_total == 0
    assert list(batch.column("dequeue_count")) == [0, 1, 2]
    assert batch.column("packet_length")[0] == 1500
    assert set(batch.shape) == {SHAPE_NAMES.index(PAPER_PREFIX)}
    assert (batch.column("timestamp_us") == -1).all() and (batch.column("flow_id") == -1).all()


def test_old_23_field_line_has_no_packet_length():
    batch, stats = both(old_line(values(7), prefix=syslog()) + "\n")
    assert len(batch) == 1 and stats.skipped_total == 0
    assert batch.column("packet_length")[0] == -1
    assert batch.column("dequeue_count")[0] == 7
    assert batch.shape[0] == SHAPE_NAMES.index(OLD_PREFIX)


def test_l4stb_line_carries_timestamp_and_flow_id():
    batch, _ = both(l4stb_line(values(3), ts_us=123456, flow_id=4, prefix=syslog(tag="dualpi2: ")) + "\n")
    assert batch.column("timestamp_us")[0] == 123456 and batch.column("flow_id")[0] == 4
    assert batch.shape[0] == SHAPE_NAMES.index(L4STB_PREFIX)


def test_line_without_syslog_prefix_is_parsed_without_time():
    batch, _ = both(paper_line(values(1)) + "\n")
    assert len(batch) == 1 and np.isnan(batch.syslog_s[0])


def test_mixed_shapes_in_one_file_keep_log_order():
    lines = [paper_line(values(0), syslog()), old_line(values(1), syslog()),
             l4stb_line(values(2), 5, 1, syslog()), paper_line(values(3), syslog())]
    batch, stats = both("\n".join(lines) + "\n")
    assert list(batch.column("dequeue_count")) == [0, 1, 2, 3]
    assert stats.shapes == {0: 2, 1: 1, 2: 1}


def test_every_field_comes_from_the_logformat_field_list():
    v = {name: 1000 + k for k, name in enumerate(FIELD_NAMES)}
    v["queue_type"], v["dequeue_action"] = 1, 3
    batch, _ = both(paper_line(v, syslog()) + "\n")
    for name in FIELD_NAMES:
        assert batch.column(name)[0] == v[name], name


# -- repeats ----------------------------------------------------------------------------------------------


def test_repeated_line_is_expanded_n_times():
    lines = [paper_line(values(1), syslog()), paper_line(values(2), syslog()),
             syslog("Dec 30 10:00:05").replace(" kernel: ", " ") + "last message repeated 4 times",
             paper_line(values(3), syslog())]
    batch, stats = both("\n".join(lines) + "\n")
    assert list(batch.column("dequeue_count")) == [1, 2, 2, 2, 2, 2, 3]
    assert stats.repeat_lines == 1 and stats.repeated_copies == 4 and stats.decisions == 7


def test_consecutive_repeat_lines_refer_to_the_same_original():
    lines = [paper_line(values(1), syslog()), "Dec 30 10:00:30 r1 last message repeated 2 times",
             "Dec 30 10:01:30 r1 last message repeated 3 times"]
    batch, _ = both("\n".join(lines) + "\n")
    assert list(batch.column("dequeue_count")) == [1] * 6


def test_repeat_of_an_unrelated_message_adds_no_decisions():
    lines = [paper_line(values(1), syslog()), "Dec 30 10:00:00 r1 kernel: em0: link state changed to UP",
             "Dec 30 10:00:01 r1 last message repeated 9 times"]
    batch, stats = both("\n".join(lines) + "\n")
    assert len(batch) == 1 and stats.unrelated == 10 and stats.skipped_total == 0


def test_repeat_across_a_block_boundary_and_across_rotated_files(tmp_path):
    lines = [paper_line(values(i), syslog()) for i in range(40)] + ["Dec 30 10:00:01 r1 last message repeated 2 times"]
    batch, _ = both("\n".join(lines) + "\n", block_size=512)
    assert list(batch.column("dequeue_count")[-3:]) == [39, 39, 39]
    write_log(tmp_path / "messages.0", [paper_line(values(5), syslog())], ".bz2")
    write_log(tmp_path / "messages", ["Dec 30 10:00:02 r1 last message repeated 3 times"])
    batch, stats = parse_log_files([tmp_path / "messages", tmp_path / "messages.0.bz2"])
    assert list(batch.column("dequeue_count")) == [5, 5, 5, 5]


# -- skipped lines ----------------------------------------------------------------------------------------


def test_unrelated_kernel_lines_are_skipped_and_counted_but_not_errors():
    lines = ["Dec 30 10:00:00 r1 kernel: em1: link state changed to DOWN",
             paper_line(values(1), syslog()),
             "Dec 30 10:00:00 r1 newsyslog[1027]: logfile turned over due to size>1000K",
             "Dec 30 10:00:00 r1 kernel: pid 77 (iperf3), jid 0, uid 0: exited on signal 6, core dumped",
             "",
             paper_line(values(2), syslog())]
    batch, stats = both("\n".join(lines) + "\n")
    assert len(batch) == 2
    assert stats.unrelated == 3 and stats.blank == 1 and stats.skipped_total == 0 and stats.lines == 6


def test_truncated_last_line_is_counted_not_crashing():
    good = [paper_line(values(i), syslog()) for i in range(3)]
    text = "\n".join(good) + "\n" + paper_line(values(9), syslog())[:70]  # cut, no newline
    batch, stats = both(text)
    assert len(batch) == 3 and stats.skipped == {"truncated": 1} and stats.lines == 4
    assert stats.examples["truncated"][0].startswith("line 4: ")


@pytest.mark.parametrize("line, reason", [
    (paper_line(values(1), syslog()).replace(",1500,", ",1500,7,"), "field_count"),
    (paper_line(values(1), syslog()).replace(",1500,", ",15x0,"), "not_integer"),
    (paper_line(values(1), syslog()).replace(",1500,", ",,"), "empty_field"),
    (paper_line(values(1, action=4), syslog()), "bad_action"),
    (paper_line(values(1, queue=2), syslog()), "bad_queue_type"),
    (paper_line(values(1), syslog()) + "junk", "bad_end"),
    (syslog() + "l4s_ecn_marking", "truncated"),
    (paper_line(values(1), syslog()).replace(",end", ""), "truncated"),
])
def test_garbled_line_is_skipped_and_counted_by_reason(line, reason):
    text = "\n".join([paper_line(values(0), syslog()), line, paper_line(values(2), syslog())]) + "\n"
    batch, stats = both(text)
    assert list(batch.column("dequeue_count")) == [0, 2]
    assert stats.skipped == {reason: 1}
    assert len(stats.examples[reason]) == 1


def test_a_line_cut_short_and_glued_to_the_next_keeps_the_next():
    cut = syslog("Dec 30 10:00:00") + "l4s_ecn_marking-start,0,15000,15"
    glued = cut + syslog("Dec 30 10:00:01") + paper_line(values(5))
    no_comma_cut = syslog() + "l4s_ecn_marking-sta" + syslog() + paper_line(values(6))
    batch, stats = both("\n".join([glued, no_comma_cut]) + "\n")
    assert list(batch.column("dequeue_count")) == [5, 6]
    assert stats.skipped == {"truncated": 1}  # the second cut is an unknown fragment inside a good line's prefix
    two_whole = paper_line(values(7), syslog(), trailing="") + syslog() + paper_line(values(8))
    batch, stats = both(two_whole + "\n")
    assert list(batch.column("dequeue_count")) == [7, 8] and stats.skipped_total == 0


def test_examples_are_capped_per_reason():
    bad = [paper_line(values(i, action=9), syslog()) for i in range(10)]
    _, stats = both("\n".join(bad) + "\n")
    assert stats.skipped == {"bad_action": 10} and len(stats.examples["bad_action"]) == 3


def test_crlf_and_stray_cr_lines_are_read():
    lines = [paper_line(values(i), syslog()) for i in range(3)]
    batch, _ = both("\r\n".join(lines) + "\r\n")
    assert len(batch) == 3
    batch, stats = both(lines[0] + "\n" + "Dec 30 r1 kernel: odd\rtext\n" + lines[1] + "\n")
    assert len(batch) == 2 and stats.unrelated == 1


def _messy_log(seed: int, n: int = 400) -> tuple[str, int]:
    """A random mix of good lines of every shape, noise, repeats and damaged lines; returns (text, good lines)."""
    rng = random.Random(seed)
    out, good = [], 0
    for i in range(n):
        u = rng.random()
        host = rng.choice(["router", "dummynet-VM1", "r-1-a"])
        stamp = f"Dec {rng.randint(1, 31):2d} 10:00:{rng.randint(0, 59):02d}"
        v = values(i, queue=rng.randint(0, 1), action=rng.choice([1, 1, 1, 2, 3]))
        if u < 0.55:
            out.append(paper_line(v, syslog(stamp, host)))
            good += 1
        elif u < 0.62:
            out.append(l4stb_line(v, i * 10, i % 3, syslog(stamp, host, "dualpi2: ")))
            good += 1
        elif u < 0.66:
            out.append(old_line(v, syslog(stamp, host)))
            good += 1
        elif u < 0.74:
            out.append(f"{stamp} {host} kernel: unrelated message, with, commas {i}")
        elif u < 0.78:
            out.append(f"{stamp} {host} last message repeated {rng.randint(1, 5)} times")
        elif u < 0.84:
            line = paper_line(v, syslog(stamp, host))
            out.append(line[: rng.randint(1, len(line) - 6)])  # cut before ",end "
        elif u < 0.88:
            out.append("")
        elif u < 0.92:
            out.append(paper_line(v, syslog(stamp, host)).replace(",0,", ",x,", 1))
        else:
            out.append(paper_line(v, syslog(stamp, host)))
            good += 1
    return "\n".join(out) + "\n", good


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("block_size", [300, 4096, 1 << 20])
def test_fast_path_and_per_line_path_agree_on_messy_logs(seed, block_size):
    text, _ = _messy_log(seed)
    both(text, block_size=block_size)


def test_no_well_formed_line_is_dropped():
    text, good = _messy_log(42, n=2000)
    batch, stats = both(text)
    assert stats.decisions - stats.repeated_copies == good
    assert len(batch) == stats.decisions


# -- syslog timestamps ----------------------------------------------------------------------------------


def test_syslog_timestamps_in_rfc3164_and_iso_forms():
    assert syslog_seconds(b"Dec 30 10:00:01 host kernel: x") - syslog_seconds(b"Dec 30 10:00:00 h kernel: x") == 1
    assert syslog_seconds(b"Jan  2 00:00:00 h x") - syslog_seconds(b"Jan  1 00:00:00 h x") == 86400
    iso = syslog_seconds(b"2024-12-30T10:00:00.250000+00:00 host kernel: x")
    assert iso == pytest.approx(1735552800.25)
    assert np.isnan(syslog_seconds(b"l4s_ecn_marking-start"))


def test_year_wrap_of_syslog_timestamps_is_unwrapped():
    dec31 = syslog_seconds(b"Dec 31 23:59:59 h x")
    jan1 = syslog_seconds(b"Jan  1 00:00:00 h x")
    out, last = unwrap_syslog_year(np.array([dec31, jan1]), float("nan"))
    assert out[1] - out[0] == 1
    out2, _ = unwrap_syslog_year(np.array([jan1]), dec31)
    assert out2[0] - dec31 == 1


# -- rotated sets ------------------------------------------------------------------------------------------


def test_rotation_order_is_oldest_first(tmp_path):
    names = ["dualpi2.log", "dualpi2.log.0.bz2", "dualpi2.log.10.bz2", "dualpi2.log.2.bz2", "messages",
             "messages.0.gz", "dualpi2.log.1.xz"]
    ordered = [p.name for p in order_log_files([tmp_path / n for n in names])]
    assert ordered == ["dualpi2.log.10.bz2", "dualpi2.log.2.bz2", "dualpi2.log.1.xz", "dualpi2.log.0.bz2",
                       "dualpi2.log", "messages.0.gz", "messages"]


def test_rotated_set_in_every_compression_is_read_in_order(tmp_path):
    lines = [paper_line(values(i), syslog()) for i in range(50)]
    write_log(tmp_path / "dualpi2.log.3", lines[0:10], ".xz")
    write_log(tmp_path / "dualpi2.log.2", lines[10:20], ".gz")
    write_log(tmp_path / "dualpi2.log.1", lines[20:30], "")
    write_log(tmp_path / "dualpi2.log.0", lines[30:40], ".bz2")
    write_log(tmp_path / "dualpi2.log", lines[40:50])
    files = list(tmp_path.iterdir())
    random.Random(1).shuffle(files)
    batch, stats = parse_log_files(files)
    assert list(batch.column("dequeue_count")) == list(range(50))
    assert [os.path.basename(s.file) for s in stats][0] == "dualpi2.log.3.xz"


def test_compression_is_detected_by_content_not_name(tmp_path):
    p = write_log(tmp_path / "weird", [paper_line(values(1), syslog())], ".gz")
    p = p.rename(tmp_path / "weird.txt")
    batch, _ = parse_log_files([p])
    assert len(batch) == 1


# -- the parse step: packets.parquet, flows.parquet, parse.json -----------------------------------------


def test_packets_parquet_has_typed_columns_repeats_and_time(tmp_path):
    ws = Workspace.at(tmp_path / "w")
    logs = {1: sim_log_lines(50, start=0, t0_us=5_000_000) + ["Nov 21 10:00:06 router last message repeated 2 times"],
            2: [paper_line(values(i, queue=i % 2, action=1 + i % 3), syslog(f"Dec 30 10:00:{i:02d}"))
                for i in range(10)]}
    raw_run(ws, "r1", logs, iperf3={1: [iperf3_doc("client1", "cubic", 3, sockets=(5, 7))]})
    res = ensure_parsed(ws, "r1")
    assert res.packets == 62 and res.flows == 6 and not res.reused
    df = read_packets(ws, "r1")
    assert tuple(df.columns) == PACKET_COLUMNS
    assert df["repeat"].dtype == np.int16 and df["action"].dtype == np.int8 and df["flow_id"].dtype == np.int32
    assert isinstance(df["queue"].dtype, pd.CategoricalDtype) and set(df["queue"].cat.categories) == {"C", "L"}
    assert isinstance(df["line_format"].dtype, pd.CategoricalDtype)
    assert df["drop_probability"].dtype == np.float64 and df["drop_probability"].between(0, 1).all()
    assert df["drop_probability"].iloc[0] == pytest.approx(int(0.05 * PROB_SCALE) / PROB_SCALE)
    r1, r2 = df[df.repeat == 1], df[df.repeat == 2]
    assert r1["t_s"].iloc[0] == 0 and r1["t_s"].iloc[49] == pytest.approx(0.049)
    assert list(r1["t_s"].iloc[-3:]) == pytest.approx([0.049] * 3)  # the repeated copies
    assert list(r2["t_s"]) == list(range(10))  # from the syslog time alone
    assert (r2["timestamp_us"] == -1).all() and (r2["flow_id"] == -1).all()
    assert list(r2["action"]) == [i % 3 for i in range(10)] and list(r2["queue"]) == ["C", "L"] * 5
    stats = json.loads(ws.parse_stats_file("r1").read_text())
    assert stats["lines_read"] == 61 and stats["parsed"] == 62 and stats["repeat_lines"] == 1
    assert set(stats["repeats"]) == {"1", "2"} and len(stats["files"]) == 2
    assert load_manifest(ws, "r1").steps["parse"]["status"] == "done"


def test_parse_is_skipped_when_outputs_are_newer_than_raw_files(tmp_path):
    ws = Workspace.at(tmp_path / "w")
    raw_run(ws, "r1", {1: sim_log_lines(20)})
    assert not ensure_parsed(ws, "r1").reused
    first = ws.packets_file("r1").stat().st_mtime_ns
    assert ensure_parsed(ws, "r1").reused
    assert ws.packets_file("r1").stat().st_mtime_ns == first
    time.sleep(0.01)
    log = ws.raw_dir("r1") / "router" / "r01" / "dualpi2.log"
    log.write_text(log.read_text() + sim_log_lines(1, start=99)[0] + "\n")
    res = ensure_parsed(ws, "r1")
    assert not res.reused and res.packets == 21


def test_parse_of_a_run_without_files_says_what_to_do(tmp_path):
    ws = Workspace.at(tmp_path / "w")
    raw_run(ws, "r1", {})
    with pytest.raises(L4stbError, match="nothing to parse"):
        ensure_parsed(ws, "r1")


def test_flows_skip_server_side_files_and_take_cc_from_json(tmp_path):
    files = []
    for name, doc in [("client1-cubic-g0-c2.json", iperf3_doc("client1", "cubic", 4, sockets=(5, 7))),
                      ("server-5101.json", iperf3_doc("server", "cubic", 4, server=True)),
                      ("broken.json", None)]:
        p = tmp_path / name
        p.write_text(json.dumps(doc) if doc else "{not json")
        files.append((1, "client1", p))
    table, stats = flows_table(files)
    df = table.to_pandas()
    assert len(df) == 8 and set(df["stream"]) == {5, 7} and (df["connection"] == 2).all() and (df["group"] == 0).all()
    assert stats.server_files == 1 and len(stats.errors) == 1
    assert df["throughput_mbps"].iloc[0] == pytest.approx(2.0)
    assert list(df.columns) == ["repeat", "host", "cc", "file", "group", "connection", "stream", "start_s", "end_s",
                                "bytes", "throughput_mbps", "retransmits", "snd_cwnd", "rtt_us", "rttvar_us",
                                "omitted", "sender"]


def test_flows_from_real_freebsd_iperf3_files():
    folder = realdata("iperf3-freebsd-10mbps-20ms")
    files = [(1, "client1", p) for p in sorted(folder.glob("*.json"))]
    table, stats = flows_table(files)
    df = table.to_pandas()
    assert stats.client_files == 40 and not stats.errors
    assert set(df["cc"]) == {"cubic", "dctcp"}
    per_file = df.groupby("file").size()
    assert (per_file >= 60).all()  # 60 s tests, 1 s intervals
    mean = df.groupby("file")["throughput_mbps"].mean()
    assert mean.between(0.1, 10.5).all()  # a 10 Mbit/s bottleneck
    assert (df["rtt_us"] > 20_000).all()  # at least the 20 ms path delay


def test_read_packets_of_an_unparsed_run_is_a_user_error(tmp_path):
    ws = Workspace.at(tmp_path / "w")
    raw_run(ws, "r1", {1: sim_log_lines(3)})
    with pytest.raises(L4stbError):
        read_packets(ws, "r1")
    ensure_parsed(ws, "r1")
    assert len(read_flows(ws, "r1")) == 0


def test_classify_line_recognises_repeat_lines():
    assert classify_line(b"Dec 30 10:00:00 host last message repeated 12 times") == [("repeat", 12)]
    assert classify_line(b"   ") == [("blank",)]


def test_a_block_of_only_unrelated_and_blank_lines_is_counted_like_the_per_line_path():
    # the first block holds no decision-like bytes (counted in bulk); the repeat in the next refers to its last line
    quiet = ["Dec 30 10:00:00 r1 kernel: em1: link state changed to UP", "", "  \r", "x"] * 200
    lines = quiet + [paper_line(values(1), syslog()), *quiet[:3], "Dec 30 10:00:01 r1 last message repeated 4 times"]
    batch, stats = both("\n".join(lines) + "\n", block_size=1024)
    assert len(batch) == 1 and stats.unrelated == 400 + 1 + 4 and stats.blank == 400 + 2
    assert stats.skipped_total == 0 and stats.lines == len(lines)
