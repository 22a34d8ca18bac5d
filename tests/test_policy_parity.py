"""The policy blob's C validator and evaluator against its Python twin: same codes, same decisions, no memory errors.

freebsd_module/dp2_policy.c is compiled with AddressSanitizer and UBSan into the policy harness; random valid
blobs and random log records go through both evaluators, and corrupted blobs (Hypothesis) through both
validators. The C validator must also survive every corruption without an out-of-bounds read.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l4stb import policyblob as pb
from l4stb import resources

GCC = shutil.which("gcc")
pytestmark = pytest.mark.skipif(GCC is None, reason="needs gcc to build the C evaluator (apt-get install gcc)")
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


@pytest.fixture(scope="module")
def policy_harness(tmp_path_factory) -> Path:
    src = resources.module_dir()
    out = tmp_path_factory.mktemp("policy") / "policy_harness"
    cmd = [GCC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", *SANITIZE, f"-I{src}",
           str(src / "harness" / "policy_harness.c"), str(src / "dp2_policy.c"), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"gcc failed:\n{proc.stderr}"
    return out


def run(harness: Path, lines: list[str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(harness), *args], input="".join(x + "\n" for x in lines), capture_output=True,
                          text=True, timeout=300)


# -- random blobs and records -------------------------------------------------------------------------------


def random_tree(rng: random.Random, n_features: int, max_depth: int, max_nodes: int = 400) -> list[pb.Node]:
    """A random tree in pre-order (a split's left child follows it), depth <= max_depth."""
    nodes: list[pb.Node] = []

    def grow(depth: int) -> int:
        idx = len(nodes)
        room = len(nodes) + 3 <= max_nodes
        if depth == max_depth or not room or (depth > 0 and rng.random() < 0.3):
            nodes.append(pb.Node(pb.LEAF, rng.randrange(3), 0, 0, 0))
            return idx
        thr = rng.choice([0, 1, rng.randrange(1 << 10), rng.randrange(1 << 20), rng.randrange(1 << 31),
                          -rng.randrange(1 << 31), pb.INT32_MAX])
        nodes.append(pb.Node(rng.randrange(n_features), 0, 0, 0, thr))
        left = grow(depth + 1)
        right = grow(depth + 1)
        nodes[idx] = pb.Node(nodes[idx].feature, 0, left, right, thr)
        return idx

    grow(0)
    return nodes


def random_blob(rng: random.Random) -> bytes:
    nf = rng.randint(1, pb.MAX_FEATURES)
    features = [pb.Feature(rng.randrange(pb.MAX_FEATURES), rng.choice([0, 0, 1, 5, 20, 40, 62]),
                           rng.choice([1, pb.PROB_SCALE, 1000]))
                for _ in range(nf)]
    depth = rng.randint(1, rng.choice([4, 8, pb.MAX_DEPTH]))
    return pb.encode(features, random_tree(rng, nf, depth), depth)


def random_record(rng: random.Random) -> list[int]:
    return [rng.choice([0, 1, rng.randrange(2000), rng.randrange(1 << 31), rng.randrange(1 << 62),
                        -rng.randrange(1 << 40), (1 << 63) - 1]) for _ in range(pb.MAX_FEATURES)]


# -- parity ---------------------------------------------------------------------------------------------------


def test_c_and_python_decide_identically_on_random_blobs_and_records(policy_harness: Path):
    rng = random.Random(2026)
    lines, want = [], []
    for _ in range(150):
        raw = random_blob(rng)
        blob = pb.parse(raw)
        lines.append("B," + raw.hex())
        want.append("V,0")
        for _ in range(60):
            rec = random_record(rng)
            lines.append("X," + ",".join(map(str, rec)))
            want.append(f"A,{blob.decide(rec)}")
    proc = run(policy_harness, lines)
    assert proc.returncode == 0, proc.stderr
    got = proc.stdout.splitlines()
    assert got == want
    assert {w for w in want if w.startswith("A,")} == {"A,0", "A,1", "A,2"}


def _corrupt(raw: bytes, data) -> bytes:
    kind = data.draw(st.sampled_from(["flip", "truncate", "extend", "flip-fixed", "flip-fixed", "splice"]))
    b = bytearray(raw)
    if kind == "truncate":
        return bytes(b[:data.draw(st.integers(0, len(b) - 1))])
    if kind == "extend":
        return bytes(b + data.draw(st.binary(min_size=1, max_size=40)))
    if kind == "splice":
        return data.draw(st.binary(max_size=64)) + bytes(b[data.draw(st.integers(0, len(b))):])
    for _ in range(data.draw(st.integers(1, 4))):
        b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.integers(0, 255))
    if kind == "flip-fixed":  # keep the checksum right, so the structural checks are what must catch it
        struct.pack_into("<I", b, 16, pb.fnv1a32(bytes(b[pb.HEADER_BYTES:])))
    return bytes(b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**9), data=st.data())
def test_c_and_python_validators_agree_on_corrupted_blobs(policy_harness: Path, seed: int, data):
    raw = random_blob(random.Random(seed))
    bad = _corrupt(raw, data)
    code = pb.validate(bad)
    lines = ["B," + bad.hex()]
    recs = [random_record(random.Random(seed + k)) for k in range(5)]
    if code == pb.OK:  # a corruption that still makes a valid tree must still decide identically
        blob = pb.parse(bad)
        lines += ["X," + ",".join(map(str, r)) for r in recs]
    proc = run(policy_harness, lines)
    assert proc.returncode == 0, proc.stderr  # ASan/UBSan abort with a non-zero status
    got = proc.stdout.splitlines()
    assert got[0] == f"V,{code}"
    if code == pb.OK:
        assert got[1:] == [f"A,{blob.decide(r)}" for r in recs]
    else:
        with pytest.raises(pb.PolicyBlobError):
            pb.parse(bad)


def test_structural_corruptions_are_each_refused_for_their_own_reason():
    rng = random.Random(3)
    raw = pb.encode([pb.Feature(10, 0, 1), pb.Feature(9, 0, pb.PROB_SCALE)],
                    random_tree(rng, 2, 3), 3)

    def patched(offset: int, fmt: str, value: int) -> bytes:
        b = bytearray(raw)
        struct.pack_into(fmt, b, offset, value)
        struct.pack_into("<I", b, 16, pb.fnv1a32(bytes(b[pb.HEADER_BYTES:])))
        return bytes(b)

    nodes_at = pb.HEADER_BYTES + 2 * pb.FEATURE_BYTES
    assert pb.validate(raw) == pb.OK
    assert pb.validate(raw[:10]) == pb.E_SHORT
    assert pb.validate(b"XXXX" + raw[4:]) == pb.E_MAGIC
    assert pb.validate(patched(4, "<H", 2)) == pb.E_VERSION
    assert pb.validate(raw + b"\0") == pb.E_LENGTH
    assert pb.validate(patched(7, "<B", pb.MAX_DEPTH + 1)) == pb.E_HEADER
    assert pb.validate(raw[:-1] + bytes([raw[-1] ^ 1])) == pb.E_CHECKSUM
    assert pb.validate(patched(pb.HEADER_BYTES, "<B", 23)) == pb.E_FEATURE  # dequeue_action is not readable
    assert pb.validate(patched(nodes_at, "<B", 7)) == pb.E_NODE  # feature index beyond the table
    assert pb.validate(patched(nodes_at + 4, "<H", 0)) == pb.E_LAYOUT  # right child pointing back: a cycle
    assert pb.validate(patched(7, "<B", 1)) == pb.E_DEPTH


def test_the_c_harness_refuses_a_corrupted_blob_file_with_its_reason(policy_harness: Path, tmp_path: Path):
    raw = random_blob(random.Random(11))
    path = tmp_path / "policy.l4pb"
    path.write_bytes(raw[:-3] + b"\xff\xff\xff")
    proc = run(policy_harness, [], str(path))
    assert proc.returncode == 2
    assert "policy refused: checksum mismatch (corrupted)" in proc.stderr
    path.write_bytes(raw)
    assert run(policy_harness, [], str(path)).returncode == 0


def test_a_corrupted_blob_is_refused_in_python_with_the_file_and_what_to_do(tmp_path: Path):
    path = tmp_path / "policy.l4pb"
    path.write_bytes(b"L4PB" + b"\0" * 30)
    with pytest.raises(pb.PolicyBlobError) as err:
        pb.load(tmp_path)
    assert str(path) in str(err.value) and "l4stb distill" in str(err.value)
