"""The learned-policy sysctl of the kernel glue, compiled on Linux under ASan/UBSan against the kernel stand-ins:
a blob loaded in hex pieces decides packets in the module; a bad blob gets EINVAL and a log line, and the
policy in force stays; an instance keeps the policy it started with after a new one is loaded."""

from __future__ import annotations

from pathlib import Path

from l4stb import policyblob as pb
from l4stb.logformat import FIELD_INDEX
from test_module_glue import classic_overload, drive_ok, harness  # noqa: F401 - harness is a fixture

BY, ACT = 1 + FIELD_INDEX["decided_by"], 1 + FIELD_INDEX["dequeue_action"]


def blob(action_above: int, delay_us: int) -> bytes:
    """A depth-1 tree: ``action_above`` (1 drop, 2 mark) for a sojourn over ``delay_us``, else forward."""
    return pb.encode([pb.feature_for("current_queue_delay", 10**6)],
                     [pb.Node(0, 0, 1, 2, delay_us), pb.Node(pb.LEAF, 0, 0, 0, 0),
                      pb.Node(pb.LEAF, action_above, 0, 0, 0)], 1)


def load_commands(raw: bytes, piece: int = 1000) -> list[str]:
    """What the vagrant plan sends through sysctl(8): begin, the hex in pieces, commit."""
    hexed = raw.hex()
    return (["sysctl policy begin"] + [f"sysctl policy +{hexed[i:i + piece]}" for i in range(0, len(hexed), piece)]
            + ["sysctl policy commit", "sysctl policy"])


def sysctl_answers(run) -> list[tuple[int, str]]:
    """(errno, value read) of every "sysctl" command, in order."""
    out = []
    for line in run.lines:
        if line.startswith("sysctl "):
            head, value = line.split(" value=", 1)
            out.append((int(head.rsplit("rc=", 1)[1]), value))
    return out


def test_a_loaded_blob_decides_every_dequeue_in_the_module_and_the_log_says_so(harness: Path):
    raw = blob(1, 20_000)
    run = drive_ok(harness, ["load", *load_commands(raw, piece=8), "set policy_every 1", "new", *classic_overload()])
    answers = sysctl_answers(run)
    assert all(rc == 0 for rc, _ in answers)
    loaded = pb.parse(raw)
    assert answers[-1][1] == f"v1, {loaded.size_bytes} bytes, 3 nodes, depth 1, checksum {loaded.checksum:08x}"
    assert any("policy loaded" in line for line in run.lines)
    decisions = [line.split(",") for line in run.log_lines if "l4stb_aqm-start" in line]
    dequeues = [d for d in decisions if d[BY] == "1"]
    assert dequeues and all(d[BY] in ("0", "1") for d in decisions)
    assert {d[ACT] for d in dequeues} == {"1", "2"}, "the policy forwards short sojourns and drops long ones"


def test_a_corrupted_blob_is_refused_with_einval_and_a_log_line_and_the_policy_stays(harness: Path):
    good, bad = blob(2, 5_000), bytearray(blob(1, 9_000))
    bad[-1] ^= 0x01
    run = drive_ok(harness, ["load", *load_commands(good), *load_commands(bytes(bad)), "sysctl policy +00",
                             "sysctl policy hello"])
    answers = sysctl_answers(run)
    # good: begin, one piece, commit, read; bad: the same, its commit refused; then a piece without begin
    # and a word the sysctl does not know
    assert [rc for rc, _ in answers] == [0, 0, 0, 0, 0, 0, 22, 0, 22, 22]
    refused = [line for line in run.log_lines if "policy refused" in line]
    assert len(refused) == 3 and "checksum mismatch (corrupted); the policy in force stays" in refused[0]
    assert answers[7][1] == answers[3][1] and f"checksum {pb.parse(good).checksum:08x}" in answers[7][1]


def test_an_instance_keeps_its_policy_when_another_is_loaded_and_none_removes_it(harness: Path):
    first, second = blob(1, 2_000), blob(2, 2_000)
    run = drive_ok(harness, ["load", *load_commands(first), "new", *load_commands(second),
                             *classic_overload(), "free", "sysctl policy none", "sysctl policy", "new",
                             "enq 1000 udp 0 1500 1", "deq 2000", "free", "unload"])
    decisions = [line.split(",") for line in run.log_lines if "l4stb_aqm-start" in line]
    by_policy = [d for d in decisions if d[BY] == "1"]
    assert by_policy and {d[ACT] for d in by_policy if d[ACT] != "1"} == {"2"}, \
        "the instance created under the first blob drops (never marks) with it"
    assert sysctl_answers(run)[-1][1] == "none"
    assert decisions[-1][BY] == "0", "with no policy loaded DualPI2 decides"
