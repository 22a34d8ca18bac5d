"""The real-Linux testbed's pieces that need no VM: the guest script, what it refuses, module order, image checks."""

from __future__ import annotations

import lzma
import shutil
import subprocess

import pytest

from l4stb import check, layout
from l4stb.config import load_scenario, load_topology
from l4stb.errors import L4stbError
from l4stb.linuxvm import debian, dualpi2_build, guest, kmods
from l4stb.linuxvm.check import qdisc_counts
from l4stb.providers.base import CheckEvidence, FlowProbe


def _render(name: str, *overrides: str) -> str:
    sc = load_scenario(name, list(overrides))
    return guest.render(sc, load_topology(sc.topology), "run-1", 1)


def test_guest_script_builds_the_dumbbell_with_the_real_qdisc_under_htb():
    script = _render("dctcp-8mbps-single", "aqm.l4s_classifier=any_ect")
    assert "/usr/bin/ip link add name wan netns router type veth peer name wan netns server" in script
    assert "htb rate 8000000bit ceil 8000000bit" in script
    line = next(ln for ln in script.splitlines() if " dualpi2 " in ln)
    assert "limit 1000" in line and "any_ect" in line and "step_thresh 1000us" in line
    assert "target" not in line  # unset PI parameters are the real qdisc's own defaults
    # the base delay is netem on the ACK path, never in the bottleneck's queue
    assert "/usr/sbin/tc -n server qdisc add dev wan root netem delay 10000us" in script
    assert "-Q out" in script and script.count("-Q in") == 2
    assert "-C dctcp" in script


def test_guest_script_is_valid_shell():
    if shutil.which("sh") is None:
        pytest.skip("no sh")
    script = _render("dctcp-8mbps")
    proc = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_linux_names_map_newreno_to_reno_and_extra_delay_to_netem_towards_the_client():
    script = _render("dctcp-8mbps", "hosts={client1: {extra_delay: 30ms}}")
    assert "-C reno" in script and "-C cubic" in script
    assert "/usr/sbin/tc -n router qdisc add dev lan1 root netem delay 30000us" in script


@pytest.mark.parametrize("overrides, words", [
    (["aqm.name=l4s-pie"], "FreeBSD dummynet scheduler"),
    (["flows=[{host: client2, cc: prague}]"], "cc prague"),
    (["hosts={client2: {stack: freebsd}}"], "use vagrant for FreeBSD"),
    (["bottleneck.rate_schedule=[{at: 1s, rate: 4Mbit}]"], "rate_schedule"),
    (["aqm.step_semantics=rfc9332-thlen"], "only the linux step"),
])
def test_settings_real_linux_cannot_run_are_refused_with_advice(overrides, words):
    sc = load_scenario("dctcp-8mbps", overrides)
    with pytest.raises(L4stbError) as err:
        guest.check_supported(sc)
    assert words in str(err.value) and "qemu provider" in str(err.value)


def test_dry_run_on_qemu_refuses_an_unsupported_scenario_with_exit_2(l4stb):
    res = l4stb("run", "--scenario", "prague-8mbps", "--dry-run", "--provider", "qemu")
    assert res.exit_code == 2, res.output
    assert "cannot run on the qemu provider" in res.output and "Traceback" not in res.output


def test_dry_run_on_qemu_prints_the_boot_and_the_guest_script(l4stb):
    res = l4stb("run", "--scenario", "dctcp-8mbps-single", "--dry-run", "--provider", "qemu")
    assert res.exit_code == 0, res.output
    assert "qemu-system-x86_64" in res.output and "dualpi2" in res.output and "tcpdump" in res.output


def _ko(depends: str) -> bytes:
    return b"\x7fELF....\x00license=GPL\x00depends=" + depends.encode() + b"\x00vermagic=7.2.13+deb14-amd64 SMP\x00"


def test_modules_load_after_what_they_depend_on_and_builtins_are_skipped(tmp_path):
    mods = tmp_path / "kernel"
    mods.mkdir()
    (mods / "9p.ko.xz").write_bytes(lzma.compress(_ko("9pnet,netfs")))
    (mods / "9pnet.ko.xz").write_bytes(lzma.compress(_ko("netfs")))
    (mods / "netfs.ko.xz").write_bytes(lzma.compress(_ko("")))
    (mods / "sch-htb.ko").write_bytes(_ko(""))
    order = kmods.load_order(["9p", "sch_htb", "sch_fq_codel"], kmods.index_modules(tmp_path))
    assert [m.name for m in order] == ["netfs", "9pnet", "9p", "sch_htb"]
    names = kmods.install_modules(order, tmp_path / "out")
    assert (tmp_path / "out" / names[0]).read_bytes().startswith(b"\x7fELF")  # decompressed for busybox insmod


def test_a_module_dependency_cycle_is_an_error(tmp_path):
    (tmp_path / "a.ko").write_bytes(_ko("b"))
    (tmp_path / "b.ko").write_bytes(_ko("a"))
    with pytest.raises(L4stbError, match="cycle"):
        kmods.load_order(["a"], kmods.index_modules(tmp_path))


def test_vermagic_is_read_from_the_module():
    assert dualpi2_build.vermagic(_ko("")) == "7.2.13+deb14-amd64 SMP"


def test_the_machines_own_mirror_is_used_for_sid(tmp_path):
    (tmp_path / "debian.sources").write_text("Types: deb\nURIs: http://mirror.example.org/debian\nSuites: bookworm\n"
                                             "\nTypes: deb\nURIs: http://deb.debian.org/debian-security\n")
    assert debian.system_mirror((str(tmp_path),)) == "http://mirror.example.org/debian"
    (tmp_path / "debian.sources").unlink()
    assert debian.system_mirror((str(tmp_path),)) == debian.DEFAULT_MIRROR


def test_a_mirror_that_is_not_an_http_url_is_refused(tmp_path):
    with pytest.raises(L4stbError, match="L4STB_DEBIAN_MIRROR"):
        debian.AptCache(tmp_path, "http://x; rm -rf /")


def test_a_cached_package_that_changed_is_refused(tmp_path):
    deb = tmp_path / "apt" / "archives" / "x_1_amd64.deb"
    deb.parent.mkdir(parents=True)
    deb.write_bytes(b"original")
    import hashlib
    import json

    rec = {"7.2.13+deb14": {"kernel": "7.2.13+deb14", "mirror": "http://m/debian", "packages": [
        {"package": "x", "version": "1", "file": "apt/archives/x_1_amd64.deb",
         "sha256": hashlib.sha256(b"original").hexdigest(), "size": 8}]}}
    (tmp_path / "packages.json").write_text(json.dumps(rec))
    assert debian.load(tmp_path, "7.2.13+deb14").packages[0].version == "1"
    deb.write_bytes(b"tampered")
    with pytest.raises(L4stbError, match="sha256"):
        debian.load(tmp_path, "7.2.13+deb14")


TC_FINAL = """qdisc htb 1: root refcnt 3 r2q 10 default 0x1 direct_packets_stat 0 direct_qlen 1000
 Sent 8117780 bytes 5388 pkt (dropped 7, overlimits 4693 requeues 0)
 backlog 0b 0p requeues 0
qdisc dualpi2 10: parent 1:1 limit 1000p memlimit 3028000B target 15ms tupdate 16ms alpha 0.156250 beta 3.195312 step_thresh 1ms min_qlen_step 0p coupling_factor 2 drop_on_overload drop_dequeue classic_protection 10% l4s_ect split_gso
 Sent 8117620 bytes 5386 pkt (dropped 7, overlimits 0 requeues 0)
 backlog 0b 0p requeues 0
"""


def test_the_qdisc_under_htb_is_read_from_tc_show():
    assert qdisc_counts(TC_FINAL) == ("dualpi2", 5386, 7)


def _evidence(captured: int, counted: int, codepoints: dict[int, int]) -> CheckEvidence:
    return CheckEvidence(provider="qemu", router="router", receiver="server", module_loaded=True,
                         sched_show=TC_FINAL, kern_hz={}, log_lines_in_file=captured, log_lines_counter=counted,
                         flows=[FlowProbe("client2", "dctcp", 5101, codepoints)])


def test_check_on_real_linux_passes_when_the_capture_holds_every_packet_and_dctcp_sends_ect0():
    sc = check.check_scenario(load_scenario("dctcp-8mbps-single"))
    res = check.judge(_evidence(5393, 5393, {check.ECT0: 5000, check.CE: 300}), sc)
    assert not res.failures, res.failures


def test_check_on_real_linux_fails_when_the_capture_lost_packets_or_dctcp_sends_ect1():
    sc = check.check_scenario(load_scenario("dctcp-8mbps-single"))
    res = check.judge(_evidence(5000, 5393, {check.ECT1: 5000, check.CE: 300}), sc)
    text = "\n".join(res.failures)
    assert "tcpdump lost packets" in text and "should carry ECT(0)" in text


def test_router_evidence_is_never_read_as_a_log_file():
    assert layout.is_router_evidence("capture-in-lan1.pcap")
    assert layout.is_router_evidence("tc-samples.txt")
    assert not layout.is_router_evidence("dualpi2.log.0.bz2")


def test_without_capture_the_guest_runs_no_tcpdump():
    sc = load_scenario("dctcp-8mbps-single")
    script = guest.render(sc, load_topology(sc.topology), "run-1", 1, capture=False)
    assert "/usr/bin/tcpdump" not in script and "tc-samples.txt" in script and "-C dctcp" in script


def test_up_options_of_the_qemu_provider_are_refused_on_sim_with_exit_2(l4stb):
    res = l4stb("up", "--provider", "sim", "--kernel", "7.2.13+deb14")
    assert res.exit_code == 2 and "qemu provider" in res.output and "Traceback" not in res.output


def test_a_host_running_dctcp_requests_ecn_even_when_the_scenario_has_ecn_off():
    script = _render("dctcp-8mbps-single", "ecn=false")
    assert "netns exec client2 /usr/bin/busybox sysctl -qw net.ipv4.tcp_ecn=1" in script  # DCTCP's host
    assert "netns exec client1 /usr/bin/busybox sysctl -qw net.ipv4.tcp_ecn=0" in script
    assert "netns exec server /usr/bin/busybox sysctl -qw net.ipv4.tcp_ecn=2" in script  # accepts when asked


def test_classic_flows_without_ecn_beside_dctcp_on_one_host_are_refused():
    sc = load_scenario("dctcp-8mbps", ["ecn=false", "flows=[{host: client2, cc: cubic}, {host: client2, cc: dctcp}]"])
    with pytest.raises(L4stbError, match="put them on another client"):
        guest.check_supported(sc)
