"""What a simulated repeat leaves on the hosts: syslog lines, newsyslog rotation, iperf3 JSON, determinism, the CLI."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
from pathlib import Path

import pytest

from l4stb import layout
from l4stb.config import load_scenario, load_topology
from l4stb.logformat import L4STB_FIELD_NAMES, L4STB_PREFIX, SYSLOG_TAG, format_line
from l4stb.sim.runner import SimJob, describe_repeat, simulate_repeat
from l4stb.sim.syslog import SyslogFile

from conftest import realdata

OPENERS = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}


def job(tmp_path: Path, *overrides: str, seed: int = 9, name: str = "dctcp-8mbps", root: str = "hosts") -> SimJob:
    sc = load_scenario(name, list(overrides))
    return SimJob(sc, load_topology(sc.topology), "t-run", 1, seed, str(tmp_path / root))


def digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def read_lines(path: Path) -> list[str]:
    opener = OPENERS.get(path.suffix, open)
    with opener(path, "rt") as fh:
        return fh.read().splitlines()


def test_log_lines_are_syslog_lines_carrying_format_line_exactly(tmp_path):
    stats = simulate_repeat(job(tmp_path, "duration=3s"))
    lines = read_lines(Path(stats["log_files"][0]))
    assert len(lines) == stats["log_lines"] > 1000
    for line in lines[:2000]:
        head, _, payload = line.partition(f" router kernel: {SYSLOG_TAG}: ")
        assert len(head) == 15 and head[3] == " " and head[6] == " "  # "Mmm dd HH:MM:SS"
        values = [int(v) for v in payload.removeprefix(L4STB_PREFIX + ",").removesuffix(",end").split(",")]
        assert len(values) == len(L4STB_FIELD_NAMES) == 27
        assert payload == format_line(values)


def test_artifacts_land_where_layout_says(tmp_path):
    j = job(tmp_path, "duration=3s")
    stats = simulate_repeat(j)
    rdir = tmp_path / "hosts" / "router" / layout.remote_repeat_dir("t-run", 1).lstrip("/")
    assert Path(stats["log_files"][0]) == rdir / "dualpi2.log"
    cdir = tmp_path / "hosts" / "client1" / layout.remote_repeat_dir("t-run", 1).lstrip("/")
    names = sorted(p.name for p in cdir.iterdir())
    assert names == sorted([layout.iperf3_client_name("client1", "cubic", 0, 1),
                            layout.iperf3_client_name("client1", "cubic", 0, 2),
                            layout.iperf3_client_name("client1", "newreno", 1, 1),
                            layout.iperf3_client_name("client1", "newreno", 1, 2)])
    sdir = tmp_path / "hosts" / "server" / layout.remote_repeat_dir("t-run", 1).lstrip("/")
    assert sorted(p.name for p in sdir.iterdir()) == [layout.iperf3_server_name(p) for p in range(5101, 5106)]


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path):
    simulate_repeat(job(tmp_path, "duration=3s", root="a"))
    simulate_repeat(job(tmp_path, "duration=3s", root="b"))
    simulate_repeat(job(tmp_path, "duration=3s", root="c", seed=10))
    a, b, c = (digest_tree(tmp_path / r) for r in "abc")
    assert a == b
    assert a.keys() == c.keys() and a != c


@pytest.mark.parametrize("compress, ext", [("bzip2", ".bz2"), ("gzip", ".gz"), ("xz", ".xz")])
def test_rotation_produces_readable_numbered_files_in_order(tmp_path, compress, ext):
    stats = simulate_repeat(job(tmp_path, "duration=5s", "logging.rotate_size=100KB", "logging.rotate_count=4",
                                f"logging.compress={compress}"))
    files = [Path(p) for p in stats["log_files"]]
    assert stats["log_rotations"] >= 4
    assert [p.name for p in files] == ["dualpi2.log"] + [f"dualpi2.log.{i}{ext}" for i in range(4)]
    stamps = []
    for p in reversed(files):  # oldest (.3) first
        lines = read_lines(p)
        assert all(len(line) < 400 for line in lines)
        assert "newsyslog[" in lines[0] and "logfile turned over" in lines[0]
        ts = [int(line.rsplit(",end", 1)[0].split(",")[-3]) for line in lines if L4STB_PREFIX in line]  # timestamp_us
        assert ts == sorted(ts)
        stamps.append((ts[0], ts[-1]))
    assert all(stamps[i][1] <= stamps[i + 1][0] for i in range(len(stamps) - 1))
    assert all(p.stat().st_size < 100_000 for p in files)


def test_syslog_collapses_repeated_messages_like_syslogd(tmp_path):
    log = SyslogFile(tmp_path / "x.log", hostname="router", epoch_s=0, rotate_size=10**6, rotate_count=2)
    for _ in range(4):
        log.emit_message(1_000_000, "same")
    log.emit_message(2_000_000, "other")
    log.emit_message(2_000_000, "other")
    log.emit_message(3_000_000, "last")
    log.close()
    assert (tmp_path / "x.log").read_text().splitlines() == [
        "Jan  1 00:00:01 router kernel: dualpi2: same",
        "Jan  1 00:00:01 router last message repeated 3 times",
        "Jan  1 00:00:02 router kernel: dualpi2: other",
        "Jan  1 00:00:02 router kernel: dualpi2: other",
        "Jan  1 00:00:03 router kernel: dualpi2: last",
    ]


def test_sampled_log_is_every_nth_line_of_the_full_log_as_the_module_picks_them(tmp_path):
    """logging.sample_every N keeps the repeat's 1st, N+1-th, ... decision (dn_sched_dualpi2.c dualpi2_log with
    log_every N; tests/test_module_glue.py checks the module picks the same), and leaves the network alone."""
    full = simulate_repeat(job(tmp_path, "duration=3s", root="full"))
    sampled = simulate_repeat(job(tmp_path, "duration=3s", "logging.sample_every=7", root="sampled"))
    full_lines = [ln.partition(" kernel: ")[2] for ln in read_lines(Path(full["log_files"][0]))]
    sampled_lines = [ln.partition(" kernel: ")[2] for ln in read_lines(Path(sampled["log_files"][0]))]
    assert len(full_lines) > 1000 and sampled_lines == full_lines[::7]
    assert sampled["module_decisions"] == full["module_log_lines"] and "module_decisions" not in full
    assert sampled["module_log_lines"] == -(-full["module_log_lines"] // 7) == len(sampled_lines)
    assert sampled["flows"] == full["flows"] and sampled["drops"] == full["drops"]


def _keys(obj, prefix=""):
    out = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.add(prefix + k)
            out |= _keys(v, prefix + k + ".")
    elif isinstance(obj, list) and obj:
        out |= _keys(obj[0], prefix + "[].")
    return out


def test_iperf3_json_has_the_fields_real_freebsd_iperf3_writes(tmp_path):
    real = json.loads(realdata("iperf3-freebsd-10mbps-20ms/client1_data_iperf3_client_cubic_1_1.json").read_text())
    stats = simulate_repeat(job(tmp_path, "duration=5s", "flows=[{host: client1, cc: cubic}]"))
    ours = json.loads(Path(stats["iperf3_files"][0]).read_text())
    assert _keys(ours) == _keys(real)
    assert len(ours["intervals"]) == 5 and ours["end"]["sender_tcp_congestion"] == "cubic"
    iv = ours["intervals"][2]["streams"][0]
    assert iv["bytes"] % 131072 == 0 and iv["rtt"] > 10_000 and iv["snd_cwnd"] > 0 and iv["pmtu"] == -1
    assert abs(iv["bits_per_second"] - iv["bytes"] * 8 / iv["seconds"]) < 1e-6


def test_describe_repeat_names_every_host():
    sc = load_scenario("dctcp-8mbps")
    text = describe_repeat(sc, load_topology(sc.topology), "r-id", 1)
    assert set(text) == {"client1", "client2", "router", "server"}
    assert "DualPI2" in text["router"] and "-C dctcp" in text["client2"] and "-p 5101" in text["server"]


@pytest.mark.slow
def test_sim_provider_runs_a_scenario_end_to_end(l4stb, workdir):
    assert l4stb("up").exit_code == 0
    result = l4stb("run", "--scenario", "dctcp-8mbps", "--repeats", "2", "--set", "duration=5s")
    assert result.exit_code == 0, result.output
    (run_dir,) = (workdir / "runs").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {r["status"] for r in manifest["repeats"].values()} == {"ok"}
    assert len(manifest["repeats"]) == 2
    for r in (1, 2):
        rel = layout.remote_repeat_dir(run_dir.name, r).lstrip("/")
        assert (workdir / "hosts" / "router" / rel / "dualpi2.log").stat().st_size > 10_000
        assert len(list((workdir / "hosts" / "client1" / rel).glob("*.json"))) == 4
        assert len(list((workdir / "hosts" / "client2" / rel).glob("*.json"))) == 1
