"""The kernel glue itself (dn_sched_dualpi2.c), compiled on Linux under ASan/UBSan against stand-ins for
the kernel and dummynet.ko, with real IPv4 packets going through it as dummynet would send them.

The stand-ins (freebsd_module/harness/kernel_stubs/kstub.c) behave as FreeBSD's functions do and fail
loudly where FreeBSD would read the wrong memory: dn_tag_get() aborts unless the first mbuf tag is
dummynet's, m_rcvif_restore() aborts on an mbuf that was never serialized. What leaves the scheduler is
checked on its bytes: the ECN field, the IPv4 header checksum, the tags and rcvif that dummynet reads next.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from l4stb.logformat import FIELD_INDEX, L4STB_FIELD_NAMES
from module_builds import MODULE, Build, build_glue_harness

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None,
                                reason="needs gcc with ASan/UBSan to build the glue harness (apt-get install gcc)")

EBUSY = 16


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    build = build_glue_harness(MODULE, tmp_path_factory.mktemp("glue"))
    assert build.ok, f"the glue does not build on Linux against the stand-ins:\n{build.output}"
    return build.product


@dataclass
class Run:
    returncode: int
    lines: list[str]
    stderr: str

    def answers(self, kind: str) -> list[dict[str, str]]:
        """The answer lines of one command kind, as key=value dicts ('deq none' gives {'none': ''})."""
        out = []
        for line in self.lines:
            words = line.split()
            if words and words[0] == kind:
                out.append(dict(w.split("=", 1) if "=" in w else (w, "") for w in words[1:]))
        return out

    def get(self, name: str) -> int:
        values = [line.split()[2] for line in self.lines if line.startswith(f"get {name} ")]
        assert values, f"no 'get {name}' answer in {self.lines}"
        return int(values[-1])

    @property
    def log_lines(self) -> list[str]:
        return [line[2:] for line in self.lines if line.startswith("L ")]


def drive(binary: Path, commands: list[str]) -> Run:
    proc = subprocess.run([str(binary)], input="\n".join(commands) + "\n", capture_output=True, text=True,
                          timeout=120)
    return Run(proc.returncode, proc.stdout.splitlines(), proc.stderr)


def drive_ok(binary: Path, commands: list[str]) -> Run:
    run = drive(binary, commands)
    assert run.returncode == 0, f"harness failed ({run.returncode}):\n{run.stderr}"
    return run


def l4s_burst(n: int = 10, proto: str = "tcp", l2: int = 0) -> list[str]:
    """n ECT(1) packets arriving at once and leaving 10 us apart: the L queue's step marks them."""
    return ([f"enq {1000 + i} {proto} 1 1500 1 {l2}" for i in range(n)]
            + [f"deq {5000 + 10 * i}" for i in range(n + 1)])


def classic_overload() -> list[str]:
    """60 UDP packets, Not-ECT and ECT(0) in turn (odd and even IP ids), 1/ms into a link of 1 per 6 ms."""
    return ([f"enq {i * 1000} udp {2 * (i % 2)} 1500 1" for i in range(60)]
            + [f"deq {i * 6000}" for i in range(1, 62)])


def test_l4s_ce_marks_reach_the_wire_with_a_valid_header_checksum(harness: Path):
    run = drive_ok(harness, ["load", "new", *l4s_burst(), "counters"])
    sent = [a for a in run.answers("deq") if "id" in a]
    assert len(sent) == 10
    assert all(a["csum"] == "ok" for a in sent)
    marked = [a for a in sent if a["ecn"] == "3"]
    assert marked, "the L queue's step should CE-mark a burst of ECT(1) packets"
    assert all(a["ecn"] in ("1", "3") for a in sent)
    assert int(run.answers("counters")[0]["ecn_mark_calls"]) == len(marked)


def test_ipv6_ect1_is_classified_l4s_and_marked_in_the_traffic_class(harness: Path):
    run = drive_ok(harness, ["load", "new", *l4s_burst(proto="udp6")])
    sent = [a for a in run.answers("deq") if "id" in a]
    assert len(sent) == 10 and any(a["ecn"] == "3" for a in sent)
    assert all(line.split(",")[1] == "1" for line in run.log_lines), "ECT(1) over IPv6 goes to the L queue"


def test_layer2_packets_are_read_and_marked_at_dummynets_iphdr_off(harness: Path):
    run = drive_ok(harness, ["load", "new", *l4s_burst(l2=1)])
    sent = [a for a in run.answers("deq") if "id" in a]
    assert len(sent) == 10 and any(a["ecn"] == "3" for a in sent) and all(a["csum"] == "ok" for a in sent)
    assert {int(line.split(",")[1 + FIELD_INDEX["flow_id"]]) for line in run.log_lines} == {(40000 << 16) | 5201}


def test_classic_ect0_is_marked_and_not_ect_is_dropped_never_marked(harness: Path):
    run = drive_ok(harness, ["load", "new", *classic_overload(), "counters"])
    sent = [a for a in run.answers("deq") if "id" in a]
    assert all(a["csum"] == "ok" for a in sent)
    not_ect = [a for a in sent if int(a["id"]) % 2 == 1]
    ect0 = [a for a in sent if int(a["id"]) % 2 == 0]
    assert all(a["ecn"] == "0" for a in not_ect), "a Not-ECT packet must never carry CE"
    assert any(a["ecn"] == "3" for a in ect0), "the Classic PI should have CE-marked an ECT(0) packet"
    dropped = 60 - len(sent)
    assert dropped > 0
    counters = run.answers("counters")[0]
    assert int(counters["io_pkt_drop"]) == dropped
    assert counters["freed_mbufs"] == "60" and counters["live_mbufs"] == "0", "drops are freed (sent ones by us)"


def test_tail_drops_are_freed_and_counted_in_io_pkt_drop(harness: Path):
    run = drive_ok(harness, ["set limit_packets 3", "load", "new"]
                   + [f"enq {1000 + i} tcp 2 1500 1" for i in range(6)] + ["counters"])
    assert [a["rc"] for a in run.answers("enq")] == ["0", "0", "0", "1", "1", "1"]
    counters = run.answers("counters")[0]
    assert counters["io_pkt_drop"] == "3" and counters["freed_mbufs"] == "3" and counters["live_mbufs"] == "3"
    assert len(run.log_lines) == 3, "each tail drop is logged"


def test_every_log_line_is_emitted_and_counted_in_log_lines(harness: Path):
    run = drive_ok(harness, ["load", "new", *l4s_burst(), *classic_overload(), "get log_lines"])
    assert run.log_lines
    assert run.get("log_lines") == len(run.log_lines)
    for line in run.log_lines:
        assert re.fullmatch(r"dualpi2: l4stb_aqm-start(,-?\d+){%d},end" % len(L4STB_FIELD_NAMES), line), line
    flow_ids = {int(line.split(",")[1 + FIELD_INDEX["flow_id"]]) for line in run.log_lines}
    assert flow_ids == {(40000 << 16) | 5201}, "the flow id is read from the ports behind the IP header"


def test_log_every_n_logs_the_instances_1st_n_plus_1th_decisions_and_counts_them_all(harness: Path):
    """Sampled logging: the lines are exactly every N-th line of the unsampled log (the simulator's SyslogFile
    samples at the same positions), log_lines counts the lines and decisions every decision."""
    traffic = [*l4s_burst(), *classic_overload()]
    full = drive_ok(harness, ["load", "new", *traffic, "get log_lines", "get decisions"])
    sampled = drive_ok(harness, ["set log_every 3", "load", "new", *traffic, "get log_lines", "get decisions"])
    assert len(full.log_lines) > 20
    assert sampled.log_lines == full.log_lines[::3]
    assert sampled.get("log_lines") == len(sampled.log_lines) == -(-len(full.log_lines) // 3)
    assert sampled.get("decisions") == full.get("decisions") == len(full.log_lines)
    again = drive_ok(harness, ["set log_every 3", "load", "new", *traffic, "free", "new", *traffic])
    assert again.log_lines[len(sampled.log_lines):] == sampled.log_lines, "each new instance starts its count at 0"


def test_l4s_pie_marks_at_enqueue_with_dummynets_tag_first(harness: Path):
    commands = ["set mode 1", "load", "new"]
    for i in range(600):
        commands.append(f"enq {i * 1000} tcp 1 1500 1")
        if i % 2:
            commands.append(f"deq {i * 1000 + 1}")
    commands += [f"deq {600000 + 2000 * i}" for i in range(1, 401)] + ["counters"]
    run = drive_ok(harness, commands)
    sent = [a for a in run.answers("deq") if "id" in a]
    assert any(a["ecn"] == "3" for a in sent) and all(a["csum"] == "ok" for a in sent)
    assert int(run.answers("counters")[0]["ecn_mark_calls"]) == sum(a["ecn"] == "3" for a in sent)


def test_instance_creations_and_frees_are_counted(harness: Path):
    run = drive_ok(harness, ["load", "new", "free", "new", "get instances_created", "get instances_freed", "free",
                             "get instances_freed"])
    assert run.get("instances_created") == 2
    assert [int(line.split()[2]) for line in run.lines if line.startswith("get instances_freed")] == [1, 2]


def test_instance_counters_are_read_only(harness: Path):
    run = drive(harness, ["load", "set instances_created 0"])
    assert run.returncode == 2 and "no writable sysctl instances_created" in run.stderr


def test_unload_is_refused_only_while_an_instance_exists(harness: Path):
    run = drive_ok(harness, ["load", "new", "unload", "free", "unload"])
    assert [int(a) for line in run.lines if line.startswith("unload") for a in line.split()[1:]] == [EBUSY, 0]


def test_packets_whose_interface_went_away_are_dropped_at_dequeue(harness: Path):
    run = drive_ok(harness, ["load", "new", "enq 1000 tcp 2 1500 3", "enq 1001 tcp 2 1500 1", "ifgone 3",
                             "deq 2000", "deq 2001", "get rcvif_drops", "counters"])
    sent = [a for a in run.answers("deq") if "id" in a]
    assert [(a["id"], a["rcvif"]) for a in sent] == [("2", "1")], "rcvif is restored on the packet that is sent"
    assert run.get("rcvif_drops") == 1
    assert run.answers("counters")[0]["io_pkt_drop"] == "1"


def test_a_packet_without_a_receive_interface_passes(harness: Path):
    run = drive_ok(harness, ["load", "new", "enq 1000 udp 0 200 0", "deq 1500"])
    assert [a["rcvif"] for a in run.answers("deq") if "id" in a] == ["0"]


def test_no_tag_memory_drops_the_packet_and_counts_it(harness: Path):
    run = drive_ok(harness, ["load", "new", "failtags 1", "enq 1000 tcp 1 1500 1", "get nomem_drops", "counters"])
    assert run.answers("enq")[0]["rc"] == "1"
    assert run.get("nomem_drops") == 1
    assert run.answers("counters")[0]["io_pkt_drop"] == "1"


def _mutated_module(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of freebsd_module/ with one line of the glue changed back to a known bug."""
    folder = tmp_path / "module"
    shutil.copytree(MODULE, folder, ignore=shutil.ignore_patterns("harness", "__pycache__"))
    glue = folder / "dn_sched_dualpi2.c"
    text = glue.read_text()
    assert text.count(old) == 1, f"the glue no longer contains {old!r}: update this test"
    glue.write_text(text.replace(old, new))
    return folder


def test_harness_catches_our_tag_in_front_of_dummynets_finding_5(tmp_path: Path):
    """Finding 5 (issue 11): with the tag m_tag_prepend()ed, ecn_mark() reads our tag as dummynet's."""
    module = _mutated_module(tmp_path, "SLIST_INSERT_AFTER(dn, mtag, m_tag_link);", "m_tag_prepend(m, mtag);")
    build: Build = build_glue_harness(module, tmp_path / "build")
    assert build.ok, build.output
    run = drive(build.product, ["load", "new", *l4s_burst()])
    assert run.returncode != 0
    assert "dn_tag_get: the first mbuf tag is not dummynet's" in run.stderr
