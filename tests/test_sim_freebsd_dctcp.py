"""FreeBSD 14's cc_dctcp in the simulator: its integer alpha, its byte-counted cut, and the server's CC choosing
the receiver's ECE echo (``flows.server_cc``)."""

import pytest

from l4stb.config import load_scenario
from l4stb.errors import L4stbError
from l4stb.sim.tcp_stacks import FreeBsdDctcp
from l4stb.sim.packet import ECT1, NOT_ECT


class _Flow:
    snd_nxt = 100


def test_freebsd_dctcp_alpha_stops_decaying_at_15_of_1024_without_marks():
    cc = FreeBsdDctcp(ECT1, NOT_ECT)
    f = _Flow()
    for _ in range(200):
        cc.count(10, False)
        cc.update_alpha(f)
    assert cc.alpha_1024 == 15  # alpha - (alpha >> 4) no longer moves below 16 (cc_dctcp.c dctcp_update_alpha)


def test_freebsd_dctcp_counts_ece_bytes_with_the_t_maxseg_edge_correction():
    cc = FreeBsdDctcp(ECT1, NOT_ECT)
    cc.count(2, True)  # first ECE ACK after unmarked ones: one t_maxseg less
    cc.count(2, True)
    cc.count(2, False)  # first unmarked ACK after marked ones: one t_maxseg more
    assert cc.bytes_ecn == (2 * 1448 - 1460) + 2 * 1448 + 1460
    assert cc.bytes_total == 6 * 1448


def test_freebsd_dctcp_cut_is_byte_arithmetic_with_a_two_segment_floor():
    cc = FreeBsdDctcp(ECT1, NOT_ECT)

    class F:
        cwnd = 40.0

    cc.alpha_1024 = 512
    cwin = 40 * 1448
    assert cc.ecn_ssthresh(F, 0) == (cwin - ((cwin * 512) >> 11)) / 1448
    F.cwnd = 2.5
    cc.alpha_1024 = 1024
    assert cc.ecn_ssthresh(F, 0) == 2.0


def test_flows_without_iperf3_c_run_their_hosts_default_and_the_servers():
    sc = load_scenario("freebsd-siftr-l4s-8mbps-10ms")
    assert sc.default_cc("client1") == "newreno"  # the sysctl default; Cubic ran with -C cubic
    assert sc.default_cc("client2") == "dctcp"
    assert sc.default_cc("") == "cubic"


def test_two_server_defaults_are_a_user_error_naming_the_field():
    with pytest.raises(L4stbError, match="server_cc"):
        load_scenario("freebsd-siftr-l4s-10mbps-20ms",
                      ["flows=[{host: client1, cc: newreno, server_cc: cubic}, {host: client2, cc: dctcp, server_cc: newreno}]"])
