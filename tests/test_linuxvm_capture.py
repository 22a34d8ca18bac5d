"""The real-Linux provider's capture readers: pcap files, in/out matching into log lines, and tc qdisc samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from l4stb.errors import L4stbError
from l4stb.linuxvm.capture_log import CaptureStats, Stream, capture_to_log_lines
from l4stb.linuxvm.pcap import iter_packets, read_pcap
from l4stb.logformat import FIELD_INDEX, L4STB_FIELD_NAMES, L4STB_PREFIX
from pcapfixtures import ACK, CE, ECT0, ECT1, NOT_ECT, frame, write_pcap

CLIENT, CLIENT2, SERVER = "10.0.1.2", "10.0.2.2", "10.0.3.2"
T0 = 1_765_000_000_000_000_000  # ns since the epoch


def rows(lines) -> list[dict[str, int]]:
    out = []
    for line in lines:
        assert line.startswith(L4STB_PREFIX + ",") and line.endswith(",end")
        vals = [int(v) for v in line[len(L4STB_PREFIX) + 1:-4].split(",")]
        assert len(vals) == len(L4STB_FIELD_NAMES)
        out.append(dict(zip(L4STB_FIELD_NAMES, vals)))
    return out


def run(tmp_path: Path, ingress, egress, **kw) -> tuple[list[dict[str, int]], CaptureStats]:
    i = write_pcap(tmp_path / "in.pcap", ingress)
    o = write_pcap(tmp_path / "out.pcap", egress)
    st = CaptureStats()
    kw.setdefault("qdisc", "dualpi2")
    lines = list(capture_to_log_lines(i, o, servers=[SERVER], stats=st, **kw))
    return rows(lines), st


def us(x: float) -> int:
    return T0 + int(x * 1000)


def tcp(n: int, ecn: int = ECT1, src: str = CLIENT, sport: int = 40000, **kw) -> bytes:
    return frame(src, SERVER, ip_id=n, seq=1000 + n * 1448, ecn=ecn, sport=sport, **kw)


# ------------------------------------------------------------------------------------------------ pcap reader


@pytest.mark.parametrize("nano", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_reads_both_precisions_and_byte_orders(tmp_path, nano, big_endian):
    ts = T0 + 123_456_789
    p = write_pcap(tmp_path / "x.pcap", [(ts, tcp(7, ecn=CE)), (ts + 5_000, frame(CLIENT, SERVER, proto="udp",
                                                                                     ip_id=9, ecn=ECT0,
                                                                                     sport=5000, dport=6000,
                                                                                     payload=100))],
                   nano=nano, big_endian=big_endian)
    t = read_pcap(p)
    assert len(t) == 2
    assert t.ts_ns.tolist() == ([ts, ts + 5_000] if nano else [T0 + 123_456_000, T0 + 123_461_000])
    pk = list(iter_packets(p))
    assert (pk[0].src, pk[0].dst, pk[0].proto, pk[0].sport, pk[0].dport) == (CLIENT, SERVER, 6, 40000, 5201)
    assert (pk[0].ip_id, pk[0].ecn, pk[0].ip_len, pk[0].tcp_seq, pk[0].payload_len) == (7, CE, 1500, 1000 + 7 * 1448,
                                                                                         1460)
    assert pk[0].tcp_flags == ACK | 0x08
    assert (pk[1].proto, pk[1].sport, pk[1].dport, pk[1].ip_id, pk[1].ecn, pk[1].ip_len, pk[1].payload_len,
            pk[1].tcp_seq) == (17, 5000, 6000, 9, ECT0, 128, 100, 0)


def test_pcap_reads_a_vlan_tagged_frame(tmp_path):
    t = read_pcap(write_pcap(tmp_path / "v.pcap", [(T0, tcp(3, vlan=True))]))
    assert len(t) == 1 and int(t.ip_id[0]) == 3 and int(t.dport[0]) == 5201


@pytest.mark.parametrize("linktype,head", [
    (276, b"\x08\x00" + bytes(18)),  # LINUX_SLL2 (tcpdump -i any): protocol first, 20-byte header
    (113, bytes(14) + b"\x08\x00"),  # LINUX_SLL: protocol at byte 14, 16-byte header
    (101, b""),                       # RAW: the IP header first
])
def test_pcap_reads_linux_cooked_and_raw_link_types(tmp_path, linktype, head):
    ip = tcp(3)[14:]
    t = read_pcap(write_pcap(tmp_path / "l.pcap", [(T0, head + ip)], linktype=linktype))
    assert len(t) == 1 and int(t.ip_id[0]) == 3 and int(t.ip_len[0]) == 1500


def test_unknown_link_type_is_refused(tmp_path):
    with pytest.raises(L4stbError, match="link type 105"):
        read_pcap(write_pcap(tmp_path / "w.pcap", [(T0, tcp(1))], linktype=105))


@pytest.mark.parametrize("cut", [1, 50, 90, 105])  # into the last record's data, and into its 16-byte header
def test_truncated_last_record_is_counted_and_the_rest_kept(tmp_path, cut):
    recs = [(T0 + k * 1000, tcp(k)) for k in range(5)]
    t = read_pcap(write_pcap(tmp_path / "t.pcap", recs, cut_tail=cut))
    assert len(t) == 4 and t.stats.truncated_tail == 1
    assert t.ip_id.tolist() == [0, 1, 2, 3]


def test_short_snaplen_and_non_ip_frames_are_counted_not_kept(tmp_path):
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(28)
    p = write_pcap(tmp_path / "s.pcap", [(T0, arp), (T0 + 1, tcp(1))], snaplen=40)  # 40 bytes: no TCP flags
    t = read_pcap(p)
    assert len(t) == 0 and t.stats.not_ipv4 == 1 and t.stats.short_capture == 1


@pytest.mark.parametrize("data,words", [
    (b"\x0a\x0d\x0d\x0a" + bytes(40), "pcapng"),
    (b"hello world, not a capture at all", "not a pcap file"),
    (b"\xd4\xc3\xb2\xa1", "shorter than a pcap file header"),
])
def test_files_that_are_not_classic_pcap_are_refused_with_advice(tmp_path, data, words):
    p = tmp_path / "bad.pcap"
    p.write_bytes(data)
    with pytest.raises(L4stbError, match=words):
        read_pcap(p)


def test_a_record_length_beyond_libpcaps_maximum_mid_file_is_corruption(tmp_path):
    p = write_pcap(tmp_path / "c.pcap", [(T0 + k, tcp(k)) for k in range(3000)])
    data = bytearray(p.read_bytes())
    data[24 + 8:24 + 12] = (10_000_000).to_bytes(4, "little")  # the first record's incl_len
    p.write_bytes(bytes(data))
    with pytest.raises(L4stbError, match="corrupt"):
        read_pcap(p)


# ------------------------------------------------------------------------------------------------ matching


def test_forward_mark_drop_and_in_flight_at_end(tmp_path):
    ingress = [(us(0), tcp(1)), (us(10), tcp(2)), (us(20), tcp(3)), (us(30), tcp(4)), (us(40), tcp(5))]
    egress = [(us(500), tcp(1)), (us(900), tcp(2, ecn=CE)), (us(1700), tcp(4))]  # 3 dropped, 5 still queued
    r, st = run(tmp_path, ingress, egress)
    assert [x["dequeue_action"] for x in r] == [1, 3, 2, 1]
    assert [x["current_queue_delay"] for x in r] == [500, 890, -1, 1670]
    # dualpi2 drops at dequeue: the drop is logged when packet 4, queued behind it, left
    assert [x["timestamp_us"] for x in r] == [(T0 // 1000) + t for t in (500, 900, 1700, 1700)]
    assert all(x["queue_type"] == 1 and x["flow_id"] == 0 and x["decided_by"] == 0 for x in r)
    assert all(x["packet_length"] == 1500 for x in r)
    assert (st.forwarded, st.marked, st.dropped, st.unresolved, st.lines) == (2, 1, 1, 1, 4)
    for name in ("qdelay_reference", "drop_probability", "accumulated_probability", "status_flags", "flags"):
        assert all(x[name] == -1 for x in r)


def test_queue_length_counts_packets_in_minus_out_including_the_decided_one(tmp_path):
    ingress = [(us(0), tcp(1)), (us(10), tcp(2)), (us(20), tcp(3)), (us(30), tcp(4)), (us(40), tcp(5))]
    egress = [(us(500), tcp(1)), (us(900), tcp(2, ecn=CE)), (us(1700), tcp(4))]
    r, _ = run(tmp_path, ingress, egress)
    # at 500: 5 in, none out -> 5; at 900: one out -> 4; the drop at 1700 (before 4 leaves) -> 3; then 4 -> 2
    assert [x["queue_length"] for x in r] == [5, 4, 3, 2]
    assert [x["length_in_bytes"] for x in r] == [7500, 6000, 4500, 3000]
    assert [x["total_packets"] for x in r] == [5] * 4 and [x["total_bytes"] for x in r] == [7500] * 4
    assert [x["dequeue_count"] for x in r] == [0, 1, 2, 3]
    assert [x["total_drops"] for x in r] == [0, 0, 0, 1]


def test_enqueue_dropping_qdisc_logs_the_drop_at_arrival_without_counting_it_queued(tmp_path):
    ingress = [(us(0), tcp(1)), (us(10), tcp(2)), (us(20), tcp(3))]
    egress = [(us(300), tcp(1)), (us(600), tcp(3))]
    r, _ = run(tmp_path, ingress, egress, qdisc="pie")
    assert [(x["dequeue_action"], x["timestamp_us"] - T0 // 1000) for x in r] == [(2, 10), (1, 300), (1, 600)]
    assert [x["queue_length"] for x in r] == [1, 2, 1]  # the dropped packet sees packet 1 queued, not itself
    assert all(x["queue_type"] == 0 for x in r)


@pytest.mark.parametrize("classifier,expected", [("l4s_ect", [0, 1, 1, 0]), ("any_ect", [1, 1, 1, 0])])
def test_dualpi2_queue_follows_the_codepoint_and_classifier(tmp_path, classifier, expected):
    cps = [ECT0, ECT1, CE, NOT_ECT]
    ingress = [(us(k * 10), tcp(k, ecn=cp, sport=41000 + k)) for k, cp in enumerate(cps)]
    egress = [(us(1000 + k * 10), tcp(k, ecn=cp, sport=41000 + k)) for k, cp in enumerate(cps)]
    r, _ = run(tmp_path, ingress, egress, classifier=classifier)
    assert [x["queue_type"] for x in r] == expected
    assert [x["dequeue_action"] for x in r] == [1, 1, 1, 1]  # CE on arrival and on departure is not a new mark


def test_l_packets_overtaking_a_queued_c_packet_are_not_drops(tmp_path):
    # DualPI2 serves L ahead of a waiting C packet: departures leave arrival order across queues, never within one
    c = tcp(1, ecn=ECT0, sport=1)
    ls = [tcp(k, sport=2) for k in range(2, 6)]
    ingress = [(us(0), c)] + [(us(10 * k), fr) for k, fr in enumerate(ls, start=1)]
    egress = [(us(100 + 10 * k), fr) for k, fr in enumerate(ls)] + [(us(400), c)]
    r, st = run(tmp_path, ingress, egress)
    assert st.dropped == 0 and [x["dequeue_action"] for x in r] == [1] * 5
    assert [x["queue_type"] for x in r] == [1, 1, 1, 1, 0] and r[-1]["current_queue_delay"] == 400


def test_non_dualpi2_qdiscs_log_every_packet_in_queue_0(tmp_path):
    ingress = [(us(0), tcp(1, ecn=ECT1)), (us(5), tcp(2, ecn=ECT0))]
    egress = [(us(100), tcp(1, ecn=CE)), (us(200), tcp(2))]
    r, _ = run(tmp_path, ingress, egress, qdisc="fq_codel")
    assert [(x["queue_type"], x["dequeue_action"]) for x in r] == [(0, 3), (0, 1)]


def test_udp_ip_id_wraparound_matches_in_order(tmp_path):
    # 65536 + 20 datagrams of one flow: IDs wrap; datagram 10 is dropped in the first round, its namesake 65546
    # (ID 10 again) is forwarded; the queue holds a few packets, so both share the key "ID 10" within seconds
    n = 65536 + 20
    ingress, egress = [], []
    for k in range(n):
        fr = frame(CLIENT, SERVER, proto="udp", sport=5000, dport=5201, ip_id=k, ecn=ECT1, payload=100)
        ingress.append((us(k * 10), fr))
        if k != 10:
            egress.append((us(k * 10 + 35), fr))
    r, st = run(tmp_path, ingress, egress)
    assert (st.dropped, st.forwarded, st.unresolved, st.unmatched_out, st.lines) == (1, n - 1, 0, 0, n)
    drops = [x for x in r if x["dequeue_action"] == 2]
    assert len(drops) == 1 and drops[0]["timestamp_us"] == T0 // 1000 + 11 * 10 + 35
    assert all(x["current_queue_delay"] == 35 for x in r if x["dequeue_action"] == 1)


def test_retransmission_with_a_new_ip_id_is_a_new_packet(tmp_path):
    first = frame(CLIENT, SERVER, ip_id=5, seq=1000)
    again = frame(CLIENT, SERVER, ip_id=9, seq=1000)  # same sequence number, Linux's next IP ID
    before = frame(CLIENT, SERVER, ip_id=4, seq=0)
    r, st = run(tmp_path, [(us(0), before), (us(10), first), (us(50_000), again)],
                [(us(300), before), (us(50_400), again)])
    assert [x["dequeue_action"] for x in r] == [1, 2, 1] and st.dropped == 1


def test_pure_acks_get_no_line_but_occupy_the_queue(tmp_path):
    ack = frame(CLIENT, SERVER, ip_id=2, seq=5000, payload=0, flags=ACK, ecn=NOT_ECT)
    ingress = [(us(0), tcp(1)), (us(1), ack), (us(2), tcp(3))]
    egress = [(us(100), tcp(1)), (us(101), ack), (us(200), tcp(3))]
    r, st = run(tmp_path, ingress, egress, classifier="any_ect")
    assert len(r) == 2 and st.no_payload == 1
    assert [x["queue_length"] for x in r] == [2, 1]  # the not-ECT ACK is queued in C, not beside the data in L
    r, st = run(tmp_path, ingress, egress, qdisc="pfifo")
    assert [x["queue_length"] for x in r] == [3, 1]  # one FIFO: the ACK is queued between the data packets


@pytest.mark.parametrize("side", ["ingress", "egress", "neither"])  # the one capture that holds packets
def test_captures_without_data_packets_give_no_lines(tmp_path, side):
    pk = [(us(0), tcp(1)), (us(10), tcp(2))]
    r, st = run(tmp_path, pk if side == "ingress" else [], pk if side == "egress" else [])
    assert r == [] and st.dropped == 0
    assert st.unresolved == (2 if side == "ingress" else 0) and st.unmatched_out == (2 if side == "egress" else 0)


def test_packets_to_other_hosts_and_unmatched_egress_are_ignored(tmp_path):
    back = frame(SERVER, CLIENT, ip_id=1, sport=5201, dport=40000, payload=0, flags=ACK)
    stray = tcp(77)
    r, st = run(tmp_path, [(us(0), tcp(1)), (us(1), back)], [(us(90), tcp(1)), (us(95), stray)])
    assert len(r) == 1 and st.unmatched_out == 1 and st.tracked_in == 1


def test_ingress_before_the_egress_capture_started_is_never_called_dropped(tmp_path):
    ingress = [(us(0), tcp(1)), (us(10), tcp(2))]
    egress = [(us(400), tcp(2))]  # 1 may have left before the egress capture started: unknowable
    r, st = run(tmp_path, ingress, egress)
    assert [x["dequeue_action"] for x in r] == [1] and st.dropped == 0 and st.unresolved == 1


def test_flow_ids_follow_the_scenario_streams_and_skip_iperf3_control(tmp_path):
    ctrl = frame(CLIENT, SERVER, sport=39999, ip_id=1, payload=37)  # iperf3's cookie on the control connection
    a = [frame(CLIENT, SERVER, sport=40001, ip_id=k, seq=k) for k in range(2)]
    b = [frame(CLIENT2, SERVER, sport=40002, dport=5202, ip_id=k, seq=k) for k in range(2)]
    ctrl2 = frame(CLIENT2, SERVER, sport=39998, dport=5202, ip_id=1, payload=37)
    ingress = [(us(0), ctrl), (us(1), ctrl2), (us(2), b[0]), (us(3), a[0]), (us(4), b[1]), (us(5), a[1])]
    egress = [(us(100 + k), fr) for k, (_, fr) in enumerate(ingress)]
    streams = [Stream(0, CLIENT, 5201), Stream(1, CLIENT2, 5202)]
    r, st = run(tmp_path, ingress, egress, streams=streams)
    assert [x["flow_id"] for x in r] == [1, 0, 1, 0] and st.control == 2
    r3, _ = run(tmp_path, ingress, egress, streams=streams, time_origin_ns=T0)
    assert [x["timestamp_us"] for x in r3] == [102, 103, 104, 105]
    r2, _ = run(tmp_path, ingress, egress)  # no streams: numbered by first packet, control included
    assert [x["flow_id"] for x in r2] == [0, 1, 2, 3, 2, 3]


def test_several_ingress_captures_are_merged_by_time(tmp_path):
    i1 = write_pcap(tmp_path / "i1.pcap", [(us(0), tcp(1)), (us(20), tcp(2))])
    i2 = write_pcap(tmp_path / "i2.pcap", [(us(10), tcp(1, src=CLIENT2, sport=5))])
    o = write_pcap(tmp_path / "o.pcap", [(us(100), tcp(1)), (us(110), tcp(1, src=CLIENT2, sport=5)),
                                         (us(120), tcp(2))])
    r = rows(capture_to_log_lines([i1, i2], o, servers=SERVER, qdisc="dualpi2"))  # one address alone is fine
    assert [x["current_queue_delay"] for x in r] == [100, 100, 100] and [x["queue_length"] for x in r] == [3, 2, 1]


def test_bad_arguments_are_refused_at_the_call(tmp_path):
    p = write_pcap(tmp_path / "p.pcap", [(T0, tcp(1))])
    with pytest.raises(L4stbError, match="qdisc 'cake'"):
        capture_to_log_lines(p, p, servers=[SERVER], qdisc="cake")
    with pytest.raises(L4stbError, match="classifier"):
        capture_to_log_lines(p, p, servers=[SERVER], qdisc="dualpi2", classifier="ect1")
    with pytest.raises(L4stbError, match="not an IPv4"):
        capture_to_log_lines(p, p, servers=["server"], qdisc="dualpi2")
    with pytest.raises(L4stbError, match="distinct"):
        capture_to_log_lines(p, p, servers=[SERVER], qdisc="dualpi2", streams=[Stream(0, CLIENT, 1),
                                                                               Stream(0, CLIENT, 2)])
    with pytest.raises(L4stbError, match="time_origin_ns"):
        capture_to_log_lines(p, write_pcap(tmp_path / "o.pcap", [(T0 + 5000, tcp(1))]), servers=[SERVER],
                             qdisc="dualpi2", time_origin_ns=T0 + 10**9)
    with pytest.raises(L4stbError, match="cannot read"):
        capture_to_log_lines(tmp_path / "missing.pcap", p, servers=[SERVER], qdisc="dualpi2")


def test_lines_are_read_back_by_the_logformat_reader(tmp_path):
    from l4stb.logformat import read_l4stb_rows
    ingress = [(us(k * 10), tcp(k)) for k in range(50)]
    egress = [(us(1000 + k * 10), tcp(k, ecn=CE if k % 7 == 0 else ECT1)) for k in range(50) if k not in (4, 13, 22)]
    i, o = write_pcap(tmp_path / "i.pcap", ingress), write_pcap(tmp_path / "o.pcap", egress)
    log = tmp_path / "router.log"
    log.write_text("".join(f"Jan  1 00:00:00 router kernel: dualpi2: {x}\n"
                           for x in capture_to_log_lines(i, o, servers=[SERVER], qdisc="dualpi2")))
    back = np.array(read_l4stb_rows(str(log)))
    assert back.shape == (50, 27)
    assert np.all(np.diff(back[:, FIELD_INDEX["timestamp_us"]]) >= 0)


def test_the_pipeline_parser_keeps_every_capture_line(tmp_path):
    from l4stb.analysis.logparse import parse_log_files
    ingress = [(us(k * 10), tcp(k)) for k in range(20)]
    egress = [(us(1000 + k * 10), tcp(k)) for k in range(20) if k != 3]
    i, o = write_pcap(tmp_path / "i.pcap", ingress), write_pcap(tmp_path / "o.pcap", egress)
    log = tmp_path / "router.log"
    log.write_text("".join(f"{x}\n" for x in capture_to_log_lines(i, o, servers=[SERVER], qdisc="dualpi2")))
    _batch, files = parse_log_files([log])
    assert files[0].decisions == 20 and files[0].skipped_total == 0


# ------------------------------------------------------------------------------------------------ tc samples
# Written the way iproute2 prints them: tc/tc_qdisc.c print_qdisc, tc/tc_util.c print_tcstats2_attr,
# tc/q_dualpi2.c dualpi2_print_xstats, tc/q_pie.c pie_print_xstats, tc/q_fq_codel.c fq_codel_print_xstats.

from l4stb.linuxvm.tcstats import (CSV_COLUMNS, parse_tc_samples, read_tc_samples, tc_time_us,  # noqa: E402
                                   write_tc_csv)

HTB = ("qdisc htb 1: root refcnt 2 r2q 10 default 0x1 direct_packets_stat 0 direct_qlen 1000\n"
       " Sent 1523412 bytes 1034 pkt (dropped 0, overlimits 812 requeues 0) \n"
       " backlog 0b 0p requeues 0\n")


def dualpi2_block(delay_l: int = 2103, backlog: str = "4542b 3p") -> str:
    return ("qdisc dualpi2 10: parent 1:1 limit 10000p memlimit 30280000B target 15ms tupdate 16ms alpha 0.156250 "
            "beta 3.195312 step_thresh 1ms min_qlen_step 0p coupling_factor 2 drop_on_overload drop_dequeue "
            "classic_protection 10% l4s_ect split_gso \n"
            " Sent 1523412 bytes 1034 pkt (dropped 3, overlimits 0 requeues 0) \n"
            f" backlog {backlog} requeues 0\n"
            f"prob 0.012345 delay_c 0us delay_l {delay_l}us\n"
            "pkts_in_c 2 pkts_in_l 1035 maxq 41\n"
            "ecn_mark 17 step_mark 230\n"
            "credit -12112 (L-queue)\n"
            "memory_used 6912 (max 81920) of memory limit 30280000\n"
            "\n")


def test_dualpi2_sample_becomes_typed_records_with_the_sample_time():
    recs = parse_tc_samples("@1765000000123456789\n" + HTB + dualpi2_block() + "@1765000000393456789\n" + HTB
                            + dualpi2_block(delay_l=4294967295))
    assert [(r.t_ns, r.kind) for r in recs] == [(1765000000123456789, "htb"), (1765000000123456789, "dualpi2"),
                                                (1765000000393456789, "htb"), (1765000000393456789, "dualpi2")]
    htb, d = recs[0], recs[1]
    assert (htb.handle, htb.parent, htb.overlimits, htb.prob, htb.delay_l_us) == ("1:", "root", 812, None, None)
    assert (d.handle, d.parent, d.sent_bytes, d.sent_packets, d.dropped, d.backlog_bytes, d.backlog_packets,
            d.backlog_exact) == ("10:", "1:1", 1523412, 1034, 3, 4542, 3, True)
    assert (d.prob, d.delay_c_us, d.delay_l_us, d.pkts_in_c, d.pkts_in_l, d.maxq, d.ecn_mark, d.step_marks,
            d.credit, d.memory_used, d.max_memory_used, d.memory_limit) == (
        0.012345, 0, 2103, 2, 1035, 41, 17, 230, -12112, 6912, 81920, 30280000)
    assert "l4s_ect" in d.options and "target 15ms" in d.options


def test_a_delay_of_u32_max_is_missing_not_a_delay():
    d = parse_tc_samples("@1\n" + dualpi2_block(delay_l=4294967295))[0]
    assert d.delay_l_us is None and d.delay_c_us == 0 and d.pkts_in_l == 1035


def test_pie_fq_codel_and_pfifo_samples():
    pie = ("qdisc pie 20: parent 1:1 limit 1000p target 15ms tupdate 15ms alpha 2 beta 20 ecn \n"
           " Sent 900 bytes 6 pkt (dropped 1, overlimits 2 requeues 0) \n backlog 3Kb 2p requeues 0\n"
           "  prob 0.0123 delay 2.1ms\n  pkts_in 7 overlimit 2 dropped 1 maxq 5 ecn_mark 4\n")
    fq = ("qdisc fq_codel 30: parent 1:1 limit 10240p flows 1024 quantum 1514 target 5ms ce_threshold 1ms "
          "interval 100ms memory_limit 32Mb ecn drop_batch 64 \n"
          " Sent 1000 bytes 8 pkt (dropped 0, overlimits 0 requeues 0) \n backlog 0b 0p requeues 0\n"
          "  maxpacket 1514 drop_overlimit 0 new_flow_count 5 ecn_mark 0 ce_mark 120\n"
          "  new_flows_len 0 old_flows_len 1\n")
    fifo = ("qdisc pfifo 40: parent 1:1 limit 1000p\n"
            " Sent 10 bytes 1 pkt (dropped 9, overlimits 0 requeues 0) \n backlog 1514b 1p requeues 0\n")
    p, f, o = parse_tc_samples("@1765000000.5\n" + pie + fq + fifo)
    assert p.t_ns == 1765000000_500000000
    assert (p.prob, p.delay_us, p.pkts_in, p.overlimit, p.aqm_dropped, p.maxq, p.ecn_mark) == (
        0.0123, 2100, 7, 2, 1, 5, 4)
    assert (p.dropped, p.backlog_bytes, p.backlog_exact) == (1, 3072, False)
    assert (f.maxpacket, f.new_flow_count, f.ce_mark, f.ecn_mark, f.old_flows_len, f.prob) == (1514, 5, 120, 0, 1, None)
    assert (o.kind, o.dropped, o.backlog_bytes, o.options) == ("pfifo", 9, 1514, "limit 1000p")


def test_tc_times_convert_to_microseconds():
    assert [tc_time_us(x) for x in ("2103us", "1.5ms", "15ms", "2.5s", "4.29e+03s")] == [
        2103, 1500, 15000, 2500000, 4290000000]


def test_pie_delay_at_u32_max_is_missing():
    pie = ("qdisc pie 20: root refcnt 2 limit 1000p\n Sent 1 bytes 1 pkt (dropped 0, overlimits 0 requeues 0) \n"
           " backlog 0b 0p requeues 0\n  prob 0 delay 4.29e+03s\n  pkts_in 1 overlimit 0 dropped 0 maxq 1 ecn_mark 0\n")
    assert parse_tc_samples("@5\n" + pie)[0].delay_us is None


def test_a_sample_cut_short_at_the_end_is_dropped_but_not_in_the_middle():
    cut = "@2\n" + dualpi2_block()[:dualpi2_block().index(" backlog")]  # header and Sent, no backlog
    assert len(parse_tc_samples("@1\n" + HTB + cut)) == 1
    with pytest.raises(L4stbError, match="line 6: qdisc block without"):
        parse_tc_samples("@1\n" + HTB + cut + "\n@3\n" + HTB)


@pytest.mark.parametrize("text,words", [
    (HTB, "before any `@<time>` line"),
    ("@1765000000%N\n" + HTB, "printed %N literally"),
    ("@yesterday\n" + HTB, "is not a sample timestamp"),
    ("garbage\n@1\n", "not a tc sample file"),
])
def test_malformed_sample_files_are_refused_with_advice(text, words):
    with pytest.raises(L4stbError, match=words):
        parse_tc_samples(text, where="raw/router/tc.samples")


def test_tc_sample_file_is_read_and_a_missing_one_named(tmp_path):
    f = tmp_path / "tc.samples"
    f.write_text("@7\n" + HTB)
    assert [r.kind for r in read_tc_samples(f)] == ["htb"]
    with pytest.raises(L4stbError, match="nope.samples: cannot read"):
        read_tc_samples(tmp_path / "nope.samples")


def test_tc_samples_csv_has_one_row_per_qdisc_and_empty_cells_for_missing(tmp_path):
    import csv
    recs = parse_tc_samples("@10\n" + HTB + dualpi2_block(delay_l=4294967295))
    path = write_tc_csv(recs, tmp_path / "tc.csv")
    with open(path) as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0].keys()) == CSV_COLUMNS and len(table) == 2
    assert table[1]["kind"] == "dualpi2" and table[1]["delay_l_us"] == "" and table[1]["delay_c_us"] == "0"
    assert table[1]["prob"] == "0.012345" and table[0]["prob"] == "" and table[1]["t_ns"] == "10"
    assert [p.name for p in tmp_path.iterdir()] == ["tc.csv"]


# ------------------------------------------------------------------------------------------------ docs


def test_every_log_field_and_tc_column_is_documented_for_real_linux_runs():
    from l4stb.linuxvm.capture_log import FIELD_SOURCES
    from l4stb.linuxvm.datadoc import render_markdown_section
    from l4stb.linuxvm.tcstats import COLUMN_MEANINGS
    assert tuple(FIELD_SOURCES) == L4STB_FIELD_NAMES
    assert tuple(COLUMN_MEANINGS) == CSV_COLUMNS
    page = render_markdown_section()
    assert page.startswith("## Real-Linux runs (qemu provider)")
    assert all(f"| `{n}` |" in page for n in L4STB_FIELD_NAMES + CSV_COLUMNS)


def test_fields_documented_as_unknown_are_minus_one_in_the_lines(tmp_path):
    from l4stb.linuxvm.capture_log import FIELD_SOURCES
    r, _ = run(tmp_path, [(us(0), tcp(1)), (us(5), tcp(2))], [(us(100), tcp(1)), (us(200), tcp(2))])
    unknown = {n for n, src in FIELD_SOURCES.items() if src.startswith("-1:")}
    assert unknown and all(x[n] == -1 for x in r for n in unknown)
    assert all(x[n] >= 0 for x in r for n in set(L4STB_FIELD_NAMES) - unknown)


def test_a_capture_derived_run_builds_a_capture_pool_and_refuses_the_papers_features(tmp_path):
    """Real-Linux log sets lack the qdisc's probabilities: the paper's presets are refused with advice; the
    capture preset builds a pool with no missing value (a drop takes its queue's last observed sojourn)."""
    from l4stb.analysis.importer import import_logs
    from l4stb.analysis.pool_build import build_pool
    from l4stb.errors import L4stbError
    from l4stb.workspace import Workspace

    ingress = [(us(k * 10), tcp(k)) for k in range(40)]
    egress = [(us(1000 + k * 10), tcp(k)) for k in range(40) if k not in (5, 17)]
    i, o = write_pcap(tmp_path / "i.pcap", ingress), write_pcap(tmp_path / "o.pcap", egress)
    log = tmp_path / "dualpi2.log"
    log.write_text("".join(f"{x}\n" for x in capture_to_log_lines(i, o, servers=[SERVER], qdisc="dualpi2")))
    ws = Workspace.at(tmp_path / "w")
    run_id = import_logs(ws, [log], [])
    with pytest.raises(L4stbError, match="--preset capture"):
        build_pool(ws, [run_id], preset="paper7")
    pool = build_pool(ws, [run_id], preset="capture", split="by-position")
    states = np.concatenate([pool.train.states, pool.val.states, pool.test.states])
    assert len(states) == 40 and np.isfinite(states).all()
    assert int((np.concatenate([pool.train.actions, pool.val.actions, pool.test.actions]) == 1).sum()) == 2
    chunked = build_pool(ws, [run_id], preset="capture", split="by-position", name="chunked", chunk_rows=3)
    for s in ("train", "val", "test"):  # the missing sojourns are completed over the repeat, not per chunk
        assert np.array_equal(chunked.split(s).states, pool.split(s).states)
