"""The `policy` AQM as a user configures it: a distilled blob decides every N-th packet, DualPI2 the rest.

The simulator runs the blob through the Python twin of the kernel's C evaluator; every log line says who
decided; a missing or corrupted blob is refused before anything runs, with the file and what to do.
"""

from __future__ import annotations

import json

import pytest

from l4stb import policyblob as pb
from l4stb.config import load_scenario, load_topology
from l4stb.errors import L4stbError
from l4stb.logformat import FIELD_INDEX, read_l4stb_rows
from l4stb.runner import policy_record, resolve_policy
from l4stb.sim.runner import SimJob, simulate_repeat


QT, QD, ACT, BY = (FIELD_INDEX[n] for n in ("queue_type", "current_queue_delay", "dequeue_action", "decided_by"))


def drop_above_blob(tmp_path, delay_us: int, action: int = 1) -> str:
    """A depth-1 tree: drop (or mark) a packet whose sojourn exceeds ``delay_us``, else forward it."""
    raw = pb.encode([pb.feature_for("current_queue_delay", 10**6)],
                    [pb.Node(0, 0, 1, 2, delay_us), pb.Node(pb.LEAF, 0, 0, 0, 0), pb.Node(pb.LEAF, action, 0, 0, 0)],
                    1)
    folder = tmp_path / "distilled"
    folder.mkdir()
    (folder / pb.BLOB_NAME).write_bytes(raw)
    return str(folder)


def run_rows(tmp_path, *overrides: str) -> list[list[int]]:
    sc = resolve_policy(load_scenario("dctcp-8mbps", ["duration=4s", *overrides]))
    stats = simulate_repeat(SimJob(sc, load_topology(sc.topology), "t-policy", 1, 5, str(tmp_path / "hosts")))
    return [row for path in stats["log_files"] for row in read_l4stb_rows(path)]


def test_policy_deciding_every_packet_takes_every_dequeue_decision_and_says_so(tmp_path):
    blob = drop_above_blob(tmp_path, 5_000)
    rows = run_rows(tmp_path, "aqm.name=policy", f"aqm.policy={blob}", "aqm.every=1")
    assert rows and {r[BY] for r in rows} == {1}
    # the policy's rule is what happened: drops exactly where the sojourn exceeds 5 ms
    assert all((r[ACT] == 2) == (r[QD] > 5_000) for r in rows)


def test_policy_every_third_packet_leaves_the_rest_to_dualpi2(tmp_path):
    blob = drop_above_blob(tmp_path, 5_000)
    rows = run_rows(tmp_path, "aqm.name=policy", f"aqm.policy={blob}", "aqm.every=3")
    by_policy = sum(r[BY] for r in rows)
    assert 0.30 < by_policy / len(rows) < 0.37


def test_plain_dualpi2_lines_say_dualpi2_decided(tmp_path):
    rows = run_rows(tmp_path)
    assert {r[BY] for r in rows} == {0}


def test_policy_aqm_without_a_blob_is_a_user_error():
    with pytest.raises(L4stbError, match="aqm.policy"):
        load_scenario("dctcp-8mbps", ["aqm.name=policy"])


def test_a_corrupted_blob_is_refused_before_the_run_with_its_path(tmp_path):
    blob = drop_above_blob(tmp_path, 5_000)
    path = tmp_path / "distilled" / pb.BLOB_NAME
    raw = bytearray(path.read_bytes())
    raw[-2] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(L4stbError, match="checksum mismatch") as err:
        resolve_policy(load_scenario("dctcp-8mbps", ["aqm.name=policy", f"aqm.policy={blob}"]))
    assert str(path) in str(err.value)


def test_the_manifest_record_names_the_blob_and_its_sha256(tmp_path):
    blob = drop_above_blob(tmp_path, 5_000)
    sc = resolve_policy(load_scenario("dctcp-8mbps", ["aqm.name=policy", f"aqm.policy={blob}", "aqm.every=10"]))
    record = policy_record(sc)
    assert record["sha256"] == pb.load(blob).sha256 and record["every"] == 10
    assert record["blob"].endswith(pb.BLOB_NAME) and record["features"] == ["current_queue_delay"]


def test_vagrant_plan_uploads_the_blob_and_loads_it_through_the_module_sysctl(tmp_path):
    from l4stb.providers.freebsd.plans import POLICY_REMOTE
    from l4stb.providers.base import RunContext
    from l4stb.providers.freebsd.vagrant import VagrantProvider
    from l4stb.workspace import Workspace

    blob = drop_above_blob(tmp_path, 5_000)
    sc = resolve_policy(load_scenario("dctcp-8mbps", ["aqm.name=policy", f"aqm.policy={blob}", "aqm.every=10"]))
    ctx = RunContext("dctcp-8mbps-20260101T000000Z", sc, load_topology("dumbbell-4"), Workspace.at(tmp_path))
    plan = VagrantProvider(ctx.workspace).plan_run(ctx, 1).render()
    loaded = pb.load(blob)
    assert f"# upload {pb.BLOB_NAME} -> {POLICY_REMOTE} (sftp)" in plan
    assert "net.inet.ip.dummynet.dualpi2.policy=begin" in plan and "dualpi2.policy=commit" in plan
    assert "net.inet.ip.dummynet.dualpi2.policy_every=10" in plan
    assert f"checksum {loaded.checksum:08x}" in plan and loaded.sha256 in plan


def test_cli_refuses_a_corrupted_blob_in_one_paragraph_with_exit_2(l4stb, tmp_path):
    blob = drop_above_blob(tmp_path, 5_000)
    path = tmp_path / "distilled" / pb.BLOB_NAME
    path.write_bytes(path.read_bytes()[:-5])
    assert l4stb("up").exit_code == 0
    result = l4stb("run", "--scenario", "dctcp-8mbps", "--repeats", "1", "--set", "aqm.name=policy",
                   "--set", f"aqm.policy={blob}")
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert "refused, length does not match its header" in result.stderr and str(path) in result.stderr.replace("\n", "")
    assert len([line for line in result.stderr.splitlines() if line.strip()]) <= 4  # one (wrapped) paragraph


def test_cli_runs_the_policy_aqm_and_records_the_blob_in_the_manifest(l4stb, workdir, tmp_path):
    blob = drop_above_blob(tmp_path, 5_000)
    assert l4stb("up").exit_code == 0
    result = l4stb("run", "--scenario", "dctcp-8mbps", "--repeats", "1", "--set", "duration=2s",
                   "--set", "aqm.name=policy", "--set", f"aqm.policy={blob}", "--set", "aqm.every=2")
    assert result.exit_code == 0, result.stderr
    manifest = json.loads(next((workdir / "runs").glob("*/manifest.json")).read_text())
    assert manifest["steps"]["policy"]["sha256"] == pb.load(blob).sha256


def test_the_router_step_that_loads_the_blob_is_posix_sh_and_passes_shellcheck(tmp_path):
    import shutil
    import subprocess

    from l4stb.providers.freebsd import plans

    blob = drop_above_blob(tmp_path, 5_000)
    sc = resolve_policy(load_scenario("dctcp-8mbps", ["aqm.name=policy", f"aqm.policy={blob}"]))
    steps = [s for phase in plans.run_phases(sc, load_topology("dumbbell-4"), "p-20260101T000000Z", 1)
             for s in phase.steps if "policy=commit" in s.script]
    assert len(steps) == 1 and steps[0].uploads[0].remote == plans.POLICY_REMOTE
    script = steps[0].script
    assert subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True).returncode == 0
    if shutil.which("shellcheck"):
        proc = subprocess.run(["shellcheck", "-s", "sh", "-f", "gcc", "-"], input=script, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout


@pytest.mark.slow
def test_the_self_check_runs_a_scenario_under_the_policy_aqm(l4stb, tmp_path):
    import yaml

    from l4stb.resources import find_scenario

    scenario = yaml.safe_load(find_scenario("dctcp-8mbps").read_text())
    scenario.update(name="policy-check")
    scenario.setdefault("aqm", {}).update(name="policy", policy=drop_above_blob(tmp_path, 1_000, action=2), every=1)
    path = tmp_path / "policy-check.yaml"
    path.write_text(yaml.safe_dump(scenario))
    assert l4stb("up").exit_code == 0
    result = l4stb("check", "--scenario", str(path))
    assert result.exit_code == 0, result.stderr
    (tmp_path / "distilled" / pb.BLOB_NAME).write_bytes(b"L4PB")
    refused = l4stb("check", "--scenario", str(path))
    assert refused.exit_code == 2 and "shorter than its 24-byte header" in refused.stderr
