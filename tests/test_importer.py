"""import-logs: existing raw files (a /var/log/messages dump, iperf3 JSON) become a run that parses like a fetched one.
"""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import realdata
from l4stb.analysis.importer import import_logs
from l4stb.analysis.packets import ensure_parsed, read_flows, read_packets
from l4stb.errors import L4stbError
from l4stb.manifest import load_manifest
from l4stb.workspace import Workspace, sha256_file
from logfixtures import iperf3_doc, paper_line, syslog, values, write_log


def messages_dump(path, n=30):
    """What the original testbed's llmrawdata.txt is: /var/log/messages with the scheduler's lines in it."""
    lines = ["Dec 30 09:59:59 dummynetVM1 syslogd: kernel boot file is /boot/kernel/kernel"]
    for i in range(n):
        stamp = f"Dec 30 10:00:{i // 10:02d}"
        lines.append(paper_line(values(i, action=1 + (i % 7 == 0)), syslog(stamp, "dummynetVM1")))
    lines.append("Dec 30 10:00:03 dummynetVM1 last message repeated 2 times")
    return write_log(path, lines)


def test_import_creates_an_imported_run_with_a_manifest(tmp_path):
    ws = Workspace.at(tmp_path / "w")
    log = messages_dump(tmp_path / "llmrawdata.txt")
    ip = tmp_path / "client1_cubic_1.json"
    ip.write_text(json.dumps(iperf3_doc("test2", "cubic", 3)))
    run_id = import_logs(ws, [log], [ip], name="original-8mbps")
    assert run_id == "original-8mbps"
    m = load_manifest(ws, run_id)
    assert m.kind == "imported" and m.status == "imported" and m.steps["fetch"]["status"] == "done"
    assert set(m.files) == {"raw/router/r01/llmrawdata.txt", "raw/test2/r01/client1_cubic_1.json"}
    rec = m.files["raw/router/r01/llmrawdata.txt"]
    assert rec.sha256 == sha256_file(log) and rec.remote_path == str(log.resolve())
    assert (ws.raw_dir(run_id) / "router" / "r01" / "llmrawdata.txt").read_bytes() == log.read_bytes()
    res = ensure_parsed(ws, run_id)
    assert res.packets == 32 and res.flows == 3
    df = read_packets(ws, run_id)
    assert (df["repeat"] == 1).all() and df["t_s"].iloc[-1] == 2.0
    assert read_flows(ws, run_id)["host"].unique().tolist() == ["test2"]


def test_imported_run_needs_no_fetch(tmp_path):
    from l4stb.fetch import fetch_run

    ws = Workspace.at(tmp_path / "w")
    run_id = import_logs(ws, [messages_dump(tmp_path / "m.txt")], [])
    assert run_id.startswith("imported-")
    result = fetch_run(ws, run_id)
    assert result.new == 0 and result.files == 1


def test_a_rotated_set_imports_into_one_repeat_read_oldest_first(tmp_path):
    ws = Workspace.at(tmp_path / "w")
    a = write_log(tmp_path / "messages.0", [paper_line(values(i), syslog()) for i in range(5)], ".bz2")
    b = write_log(tmp_path / "messages", [paper_line(values(i), syslog()) for i in range(5, 8)])
    run_id = import_logs(ws, [b, a], [])
    ensure_parsed(ws, run_id)
    assert read_packets(ws, run_id)["dequeue_count"].tolist() == list(range(8))


def test_import_errors_are_user_errors(tmp_path):
    ws = Workspace.at(tmp_path / "w")
    log = messages_dump(tmp_path / "x.txt")
    with pytest.raises(L4stbError, match="does not exist"):
        import_logs(ws, [tmp_path / "missing.txt"], [])
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(L4stbError, match="not JSON"):
        import_logs(ws, [log], [bad])
    import_logs(ws, [log], [], name="once")
    with pytest.raises(L4stbError, match="already exists"):
        import_logs(ws, [log], [], name="once")
    with pytest.raises(L4stbError, match="invalid run name"):
        import_logs(ws, [log], [], name="../evil")
    assert sorted(p.name for p in ws.runs_dir.iterdir()) == ["once"]  # failed imports leave nothing


def test_cli_import_logs_then_parse_the_real_iperf3_files(tmp_path, l4stb, workdir):
    folder = realdata("iperf3-freebsd-10mbps-20ms")
    log = messages_dump(tmp_path / "llmrawdata.txt")
    picked = [folder / f"client1_data_iperf3_client_{cc}_1_1.json" for cc in ("cubic", "dctcp")]
    args = ["import-logs", "--router-log", str(log), "--name", "original"]
    for p in picked:
        args += ["--iperf3", str(p)]
    result = l4stb(*args)
    assert result.exit_code == 0, result.output
    assert "original" in result.stdout
    ws = Workspace.at(workdir)
    res = ensure_parsed(ws, "original")
    flows = read_flows(ws, "original")
    assert res.packets == 32 and set(flows["cc"]) == {"cubic", "dctcp"}
    assert set(flows["host"]) == {"test2", "dummynetvm2"}  # the original VMs' names, from iperf3's system_info
    missing = l4stb("import-logs", "--router-log", str(tmp_path / "nope.txt"))
    assert missing.exit_code == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.output


def test_import_copies_are_byte_identical_for_compressed_logs(tmp_path):
    ws = Workspace.at(tmp_path / "w")
    src = write_log(tmp_path / "dualpi2.log.0", [paper_line(values(1), syslog())], ".xz")
    run_id = import_logs(ws, [src], [])
    dest = ws.raw_dir(run_id) / "router" / "r01" / "dualpi2.log.0.xz"
    assert dest.read_bytes() == src.read_bytes()
    shutil.rmtree(ws.run_dir(run_id))
