"""Prague flows on the FreeBSD testbed run as udp_prague: their text reports become flow rows like iperf3's.

The report lines follow the printf formats of L4STeam/udp_prague's app_stuff.h (``printInfo`` and
``PrintSender``); no real udp_prague output from a FreeBSD testbed exists beside this repo.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from l4stb.fetch import fetch_run
from l4stb.analysis.packets import ensure_parsed
from l4stb.analysis.udp_prague import udp_prague_table
from l4stb.layout import remote_repeat_dir
from logfixtures import sim_run, sim_testbed

RUN = "prague-8mbps-20250101T000000Z"


def sender_report(rates=(2.1, 3.4, 3.5), rtts=(18.2, 14.1, 13.9), windows=(3, 4, 4), size=1400) -> str:
    lines = [f"UDP Prague sender connecting to 10.0.3.13 on port 5103 with max packet size {size} bytes."]
    for i, (rate, rtt, w) in enumerate(zip(rates, rtts, windows), start=1):
        lines.append(f"[SENDER]: {i:.2f} sec, Sent: {rate + 0.01:.3f} Mbps, Rcvd: {rate:.3f} Mbps, RTT: {rtt:.3f} ms, "
                     f"Mark: 21.30%(63/296), Lost: 0.00%(0/296), Pacing rate: {rate:.3f} Mbps, "
                     f"InFlight/W: {w}/{w} packets, InBurst/B: 1/1 packets")
    return "\n".join(lines) + "\n"


RECEIVER = ("UDP Prague receiver listening at 0.0.0.0 on port 5103 with max packet size 1400 bytes.\n"
            "[RECEIVER]: 1.00 sec, Rcvd: 2.100 Mbps, Sent: 0.050 Mbps, Mark: 21.30%(63/296), Lost: 0.00%(0/296)\n")


def test_sender_report_lines_become_one_interval_row_each(tmp_path):
    path = tmp_path / "client2-prague-g1-c1.udp_prague.txt"
    path.write_text(sender_report())
    table, stats = udp_prague_table([(1, "client2", path)])
    rows = table.to_pylist()
    assert [(r["start_s"], r["end_s"]) for r in rows] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    assert [r["throughput_mbps"] for r in rows] == [2.1, 3.4, 3.5]
    assert [r["bytes"] for r in rows] == [262_500, 425_000, 437_500]
    assert [r["rtt_us"] for r in rows] == [18_200, 14_100, 13_900]
    assert [r["snd_cwnd"] for r in rows] == [4200, 5600, 5600]
    assert {(r["cc"], r["group"], r["connection"], r["retransmits"], r["sender"]) for r in rows} == {
        ("prague", 1, 1, -1, True)}
    assert stats.client_files == 1 and stats.rows == 3 and not stats.errors


def test_receiver_reports_are_skipped_and_garbage_is_an_error_naming_the_file(tmp_path):
    recv = tmp_path / "server-5103.udp_prague.txt"
    recv.write_text(RECEIVER)
    junk = tmp_path / "client2-prague-g1-c2.udp_prague.txt"
    junk.write_text("udp_prague_sender: connect: Connection refused\n")
    table, stats = udp_prague_table([(1, "server", recv), (1, "client2", junk)], rel=lambda p: p.name)
    assert table.num_rows == 0
    assert stats.server_files == 1
    assert [e["file"] for e in stats.errors] == ["client2-prague-g1-c2.udp_prague.txt"]
    assert "not a udp_prague sender report" in stats.errors[0]["error"]


@pytest.fixture
def fetched(tmp_path):
    """A fetched run whose client2 left a udp_prague sender report and the server its receiver report."""
    ws = sim_testbed(tmp_path / "work")
    sim_run(ws, RUN, repeats=(1,))
    rdir = remote_repeat_dir(RUN, 1).lstrip("/")
    (ws.host_dir("client2") / rdir / "client2-prague-g1-c1.udp_prague.txt").write_text(sender_report())
    (ws.host_dir("server") / rdir / "server-5103.udp_prague.txt").write_text(RECEIVER)
    fetch_run(ws, RUN)
    return ws


def test_parsed_run_has_prague_flow_rows_next_to_iperf3_ones(fetched):
    ensure_parsed(fetched, RUN)
    doc = json.loads(fetched.parse_stats_file(RUN).read_text())
    flows = pq.read_table(fetched.flows_file(RUN)).to_pandas()
    assert set(flows["cc"]) == {"cubic", "dctcp", "prague"}
    prague = flows[flows["cc"] == "prague"]
    assert prague["host"].unique().tolist() == ["client2"] and len(prague) == 3
    assert doc["udp_prague"]["client_files"] == 1 and doc["udp_prague"]["server_files_skipped"] == 1
    assert not any(p.endswith(".udp_prague.txt") for p in doc["ignored_files"])
