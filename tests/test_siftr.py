"""The SIFTR 1.3 reader and the sender metrics, on real FreeBSD 14.1 lines and small made-up traces."""

import os
from pathlib import Path

import numpy as np
import pytest

from l4stb.analysis.cwnd_metrics import CwndTrace, flow_metrics
from l4stb.analysis.siftr import (FIELDS_1_3, TF_CONGRECOVERY, TF_FASTRECOVERY, iperf3_flows, read_siftr,
                                  srtt_quantum_us)
from l4stb.errors import L4stbError

# Real lines from MPTCP-FreeBSD/FreeBSD-L4S-Experiments, "Misc/Experiment Scripts/Old/2 queue L4S NEWRENO VS
# DCTCP/client1_data/l4s_10Mbps_20ms_ecn_newreno_src1.siftr.log" (FreeBSD 14.1, siftr 1.3.0): the header, two
# SSH lines, iperf3's control connection to port 5101, and the data connection in the PRR walk after a CE echo.
HEADER = ("enable_time_secs=1723651960\tenable_time_usecs=771285\tsiftrver=1.3.0\tsysname=FreeBSD\t"
          "sysver=1401000\tipmode=4\n")
SSH = """\
o,1723651960.771647,10.0.2.15,22,10.0.2.2,50588,1073725440,17746,1026,65535,65700,0,0,4,1460,312,0,16777220,240000,33580,172,65700,0,0,0,504056637,63
i,1723651960.772562,10.0.2.15,22,10.0.2.2,50588,1073725440,17746,1026,65535,65700,0,0,4,1460,312,0,16777220,240000,33580,172,65700,0,172,0,504056637,63
"""
CONTROL = """\
o,1723651965.460271,172.16.3.2,62120,172.16.1.2,5101,14362,14480,34,65535,65700,6,6,4,1460,268125,1,16778209,860000,33580,0,65700,0,0,0,1471504617,63
o,1723651965.460574,172.16.3.2,62120,172.16.1.2,5101,14362,14480,34,65535,65700,6,6,4,1460,268125,1,16778212,860000,33580,37,65700,0,0,0,1471504617,63
i,1723651965.589738,172.16.3.2,62120,172.16.1.2,5101,14362,14480,34,65535,65700,6,6,4,1460,268125,1,16778212,860000,33580,37,65700,0,37,0,1471504617,63
"""
DATA = """\
i,1723651977.801270,172.16.3.2,30848,172.16.1.2,5101,46336,65160,34,146432,65728,6,6,4,1460,313750,1,553649120,580000,189228,186332,65700,0,65160,0,3081664612,63
o,1723651977.801287,172.16.3.2,30848,172.16.1.2,5101,46336,62264,38,143552,65728,6,6,4,1460,312187,1,553649120,580000,189228,180540,65700,0,59368,0,3081664612,63
i,1723651977.802470,172.16.3.2,30848,172.16.1.2,5101,46336,62264,38,143552,65728,6,6,4,1460,312187,1,553649120,580000,189228,189228,65700,0,62264,0,3081664612,63
o,1723651977.802487,172.16.3.2,30848,172.16.1.2,5101,46336,60816,34,140672,65728,6,6,4,1460,312187,1,553649120,560000,189228,186332,65700,0,59368,0,3081664612,63
i,1723651977.817799,172.16.3.2,30848,172.16.1.2,5101,46336,60816,34,140672,65728,6,6,4,1460,312187,1,553649120,560000,189228,189228,65700,0,60816,0,3081664612,63
o,1723651977.817799,172.16.3.2,30848,172.16.1.2,5101,46336,59368,34,146432,65728,6,6,4,1460,313437,1,553649120,560000,189228,186332,65700,0,57920,0,3081664612,63
"""
FOOTER = ("disable_time_secs=1723652034\tdisable_time_usecs=409131\tnum_inbound_tcp_pkts=1\t"
          "total_skipped_tcp_pkts=14\tflow_list=10.0.2.15;22-10.0.2.2;50588,\n")


def write(tmp_path, text, name="x.siftr.log"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_real_lines_give_one_series_per_connection_with_kernel_units(tmp_path):
    log = read_siftr(write(tmp_path, HEADER + SSH + CONTROL + DATA + FOOTER))
    assert (log.version, log.sysver, log.skipped_lines) == ("1.3.0", 1401000, 0)
    assert [(f.lport, f.fport) for f in log.flows] == [(22, 50588), (62120, 5101), (30848, 5101)]
    data = log.flows[2]
    assert data.records == 6 and data.outbound_records == 3
    assert list(data.cwnd_bytes[:2]) == [65160, 62264]
    assert data.ssthresh_bytes[0] == 46336 and data.srtt_us[0] == 313750 and data.mss == 1460
    assert data.t_s[0] == pytest.approx(1723651977.801270 - 1723651960.771285)
    assert log.footer["total_skipped_tcp_pkts"] == "14"


def test_iperf3_flows_skip_ssh_and_take_the_data_connection_not_iperf3s_control_one(tmp_path):
    log = read_siftr(write(tmp_path, HEADER + SSH + CONTROL + DATA))
    assert [f.lport for f in iperf3_flows(log)] == [30848]


def test_acked_bytes_are_the_flight_drop_after_each_ack(tmp_path):
    data = iperf3_flows(read_siftr(write(tmp_path, HEADER + DATA)))[0]
    # the flight before each ACK (i line) minus the flight on the next line: 65160 - 59368 = four 1448-byte
    # segments, then two and two; the o lines ack nothing
    assert list(data.acked_bytes()) == [5792, 0, 2896, 0, 2896, 0]
    # over [first record, last record): the ACK on the last record's timestamp falls outside
    assert data.goodput_bps() == pytest.approx((5792 + 2896) * 8 / (1723651977.817799 - 1723651977.801270))


def test_t_flags_show_the_real_walk_down_is_ecn_congestion_recovery_not_loss_recovery(tmp_path):
    data = iperf3_flows(read_siftr(write(tmp_path, HEADER + DATA)))[0]
    assert all(f & TF_CONGRECOVERY for f in data.t_flags)
    assert not any(f & TF_FASTRECOVERY for f in data.t_flags)


def test_srtt_steps_reveal_kern_hz_100(tmp_path):
    data = iperf3_flows(read_siftr(write(tmp_path, HEADER + DATA)))[0]
    assert srtt_quantum_us(data) == 312.5


def test_a_log_without_its_header_line_is_read_with_times_from_its_first_line(tmp_path):
    # some public logs (Experiments DCTCP/datatest1/fqcodel1_ecn.siftr.log) start mid-stream
    log = read_siftr(write(tmp_path, DATA))
    assert (log.version, log.sysver) == ("", 0)
    assert log.flows[0].records == 6 and log.flows[0].t_s[0] == 0.0


def test_on_the_servers_log_the_connection_is_found_by_its_local_port(tmp_path):
    # the same lines seen from the server's end: addresses and ports swapped
    swapped = "\n".join(",".join(p[:2] + [p[4], p[5], p[2], p[3]] + p[6:]) for p in
                         (line.split(",") for line in DATA.splitlines())) + "\n"
    flows = iperf3_flows(read_siftr(write(tmp_path, HEADER + swapped)))
    assert [(f.lport, f.fport) for f in flows] == [(5101, 30848)]


def test_a_torn_last_line_is_counted_not_parsed(tmp_path):
    log = read_siftr(write(tmp_path, HEADER + DATA + DATA.splitlines()[0][:40]))
    assert log.skipped_lines == 1 and log.flows[0].records == 6


def test_the_field_list_has_siftr_13s_27_fields_in_order():
    assert len(FIELDS_1_3) == 27
    assert FIELDS_1_3[6:8] == ("snd_ssthresh", "snd_cwnd") and FIELDS_1_3[23] == "sent_inflight_bytes"


@pytest.mark.parametrize("text, words", [
    ("enable_time_secs=1\tenable_time_usecs=0\tsiftrver=1.2.4\thz=100\n", "siftrver=1.2.4"),
    ("o,1.0,1.2.3.4,1,5.6.7.8,2\n", "not a SIFTR header"),
])
def test_a_log_that_is_not_siftr_13_is_refused_with_the_reason(tmp_path, text, words):
    with pytest.raises(L4stbError, match=words):
        read_siftr(write(tmp_path, text))


def test_a_missing_log_is_a_user_error(tmp_path):
    with pytest.raises(L4stbError, match="no such SIFTR log"):
        read_siftr(tmp_path / "absent.siftr.log")


def trace(points, srtt_us=100_000.0):
    """(t, cwnd, ssthresh, acked) points at 10 ms spacing unless given."""
    a = np.array(points, dtype=float)
    return CwndTrace(t_s=a[:, 0], cwnd_segs=a[:, 1], ssthresh_segs=a[:, 2], srtt_us=np.full(len(a), srtt_us),
                     acked_bytes=a[:, 3], loss_recovery=np.zeros(len(a), dtype=bool))


def sawtooth(prr: bool):
    """Congestion avoidance from 10 to 20 segments, then a cut to ssthresh 10: at once, or one segment per
    ACK (PRR), then growth again; repeated for 20 s."""
    pts, t, cw, ss = [], 0.0, 10.0, 1e9
    while t < 20:
        while cw < 20:
            t += 0.1
            cw += 1
            pts.append((t, cw, ss, 1448))
        ss = 10.0
        if prr:
            while cw > ss:
                t += 0.01
                cw -= 1
                pts.append((t, cw, ss, 1448))
        else:
            t += 0.01
            cw = ss
            pts.append((t, cw, ss, 1448))
        t += 0.01
        cw += 2  # the first ACK once down: a slow-start step (cwnd <= ssthresh, abc_l_var = 2)
        pts.append((t, cw, ss, 2896))
    return trace(pts)


def test_a_prr_walk_down_is_one_cut_that_takes_time():
    m = flow_metrics(sawtooth(prr=True), warmup_s=1.0)
    assert m.cut_depth_p50 == pytest.approx(0.5)
    assert m.reduction_ms_p50 == pytest.approx(70, abs=1)  # from the first cut record (19) to ssthresh + 2
    assert m.step_after_cut_p50 == pytest.approx(2)  # down to ssthresh, then the slow-start step
    assert m.cut_period_s == pytest.approx(0.91, abs=0.05)  # 8 CA steps of 0.1 s, 10 PRR steps, 1 SS step


def test_an_immediate_cut_takes_no_time_and_the_next_ack_takes_a_slow_start_step():
    m = flow_metrics(sawtooth(prr=False), warmup_s=1.0)
    assert m.reduction_ms_p50 == 0  # the record of the cut is already at ssthresh
    assert m.step_after_cut_p50 == pytest.approx(2)
    assert m.cuts_per_min == pytest.approx(60 / 0.82, rel=0.05)  # 8 CA steps of 0.1 s, the cut, 1 SS step


def test_cuts_in_loss_recovery_do_not_count_as_ecn_cuts():
    tr = sawtooth(prr=False)
    assert flow_metrics(tr, warmup_s=1.0).ecn_cut_share == 1.0
    tr.loss_recovery[:] = True
    assert flow_metrics(tr, warmup_s=1.0).ecn_cut_share == 0.0


def test_a_flow_without_cuts_reports_none_not_a_number():
    m = flow_metrics(trace([(t / 10, 10 + t / 100, 1e9, 1448) for t in range(200)]), warmup_s=1.0)
    assert m.cut_period_s is None and m.cut_depth_p50 is None and m.reduction_ms_p50 is None
    assert m.ecn_cut_share is None
    assert m.goodput_mbps == pytest.approx(1448 * 8 / 0.1 / 1e6, rel=0.02)


@pytest.mark.skipif(not os.environ.get("L4STB_SIFTR_TRACES"),
                    reason="set L4STB_SIFTR_TRACES to a checkout of MPTCP-FreeBSD/FreeBSD-L4S-Experiments")
def test_every_log_of_the_public_dctcp_folder_parses():
    folder = Path(os.environ["L4STB_SIFTR_TRACES"]) / "Experiments DCTCP"
    if not folder.is_dir():
        pytest.skip("'Experiments DCTCP/' is in that repository's history (commit 95d7e108), not at its head")
    logs = sorted(folder.rglob("*.siftr.log"))
    assert logs
    for path in logs:
        log = read_siftr(path)
        assert log.flows, path
        if "datatest1" in path.parts and not path.name.startswith("codel"):  # the senders' logs
            assert len(iperf3_flows(log)) == 4, path  # ports 5101-5104, started 10 s apart
