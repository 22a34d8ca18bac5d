"""Hostile values through every command: each class of issue 14 gets exit 2 and one paragraph, or a clean result.

Classes: values that look like rich markup or carry terminal escapes; files that are not what they claim;
a workdir that is a file, has a folder or symlink as its lock; corrupted workdir files; odd iperf3 JSON;
values that used to be accepted silently; confinement (logging.file, report descriptions).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import CliResult
from hostile import TINY, assert_user_error, make_fetched_run, only_run, run_cli, snapshot

MARKUP = "[/x][link=file:///etc/passwd]x[/link]"
ESCAPE = "\x1b]0;owned\x07\x1b[31m"


@pytest.fixture
def testbed(l4stb, workdir):
    assert l4stb("up").exit_code == 0
    return workdir


@pytest.fixture(scope="module")
def _fetched_template(tmp_path_factory):
    """One tiny fetched run, made once per module and copied into each test's workdir."""
    template = tmp_path_factory.mktemp("template") / "work"
    make_fetched_run(template, *TINY)
    return template


@pytest.fixture
def fetched_run(workdir, _fetched_template):
    shutil.copytree(_fetched_template, workdir, symlinks=True)
    hosts = json.loads((workdir / "testbed.json").read_text())
    for meta in hosts["hosts"].values():  # the copied testbed's host folders are the copies
        meta["root"] = str(workdir / "hosts" / Path(meta["root"]).name)
    (workdir / "testbed.json").write_text(json.dumps(hosts))
    return only_run(workdir)


# ---- 1. values printed as rich markup, control characters -------------------------------------------


@pytest.mark.parametrize("args", [
    ("run", "--scenario", MARKUP),
    ("run", "--scenario", "dctcp-8mbps", "--set", f"bottleneck.rate={MARKUP}", "--dry-run"),
    ("run", "--scenario", "dctcp-8mbps", "--set", f"{MARKUP}=1", "--dry-run"),
    ("summary", "--run", MARKUP),
    ("fetch-logs", "--run", MARKUP),
    ("report", "--run", MARKUP),
    pytest.param(("train-and-report", "--run", MARKUP), marks=pytest.mark.slow),
    ("pool", "import", "/nonexistent/x.pkl", "--name", MARKUP),
    ("run", "--scenario", ESCAPE),
    ("summary", "--run", ESCAPE),
])
def test_markup_and_escapes_in_values_are_printed_as_text(l4stb, args):
    line = assert_user_error(l4stb(*args))
    assert MARKUP in line or "\ufffd" in line or "[/x]" in line


def test_markup_in_the_workdir_path_is_printed_as_text(l4stb, tmp_path):
    odd = tmp_path / "[bold]w[/]"
    result = l4stb("--workdir", str(odd), "summary")
    assert_user_error(result, "[bold]w[/]")


# ---- 1. files that are not what they claim ----------------------------------------------------------


@pytest.mark.parametrize("content, fragment", [
    (b"name: \xff\xfe bad\n", "not UTF-8"),
    ("name: caf\u00e9\n".encode("latin-1"), "not UTF-8"),
    (b"a: " + b"[" * 10000 + b"\n", "nested too deeply"),
    (b"name: x\nname: y\nflows: []\n", "given twice"),
    (b"name: [unclosed\n", "not valid YAML"),
    (b"- just\n- a list\n", "must hold a YAML mapping"),
    (b"name: x\nseed: true\nflows: [{host: client1, cc: cubic}]\n", "seed"),
])
def test_scenario_files_that_are_not_scenarios_are_user_errors(l4stb, tmp_path, content, fragment):
    path = tmp_path / "s.yaml"
    path.write_bytes(content)
    assert_user_error(l4stb("run", "--scenario", str(path), "--dry-run"), fragment)


@pytest.mark.parametrize("override, fragment", [
    ("seed=true", "seed"),
    ("flows.0.connections=true", "flows.0.connections"),
    ("bottleneck.rate.x=1", "bottleneck.rate is a value"),
    ("duration=[", "not valid YAML"),
    ("duration={a: [1, 2", "not valid YAML"),
    ("flows.9.cc=cubic", "not an index"),
    ("logging.file=/var/log/..", "logging.file"),
    ("logging.file=/var/log/../../etc/passwd", "logging.file"),
    ("logging.file=/var/log/.", "logging.file"),
    ("logging.file=/var/log/", "logging.file"),
    ("logging.file=/etc/passwd", "/var/log/"),
])
def test_bad_set_values_are_user_errors(l4stb, override, fragment):
    assert_user_error(l4stb("run", "--scenario", "dctcp-8mbps", "--set", override, "--dry-run"), fragment)


def test_yaml_errors_inside_sweep_values_are_user_errors(l4stb, testbed):
    assert_user_error(l4stb("run", "--scenario", "dctcp-8mbps", "--sweep", "duration=[,2s", "--dry-run"),
                      "not valid YAML")


@pytest.mark.parametrize("args", [
    ("train-and-report", "--policy-every", "0"),
    ("train-and-report", "--epochs", "0"),
    ("run", "--scenario", "dctcp-8mbps", "--jobs", "0"),
    ("run", "--scenario", "dctcp-8mbps", "--repeats", "-1"),
])
def test_counts_below_one_are_refused(l4stb, args):
    result = l4stb(*args)
    assert result.exit_code == 2 and "Traceback" not in result.stderr and "not in the range" in result.stderr


# ---- 1. the workdir -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [("status",), ("summary",), ("up",), ("run", *TINY), ("pool", "import", "x.pkl")])
def test_a_workdir_that_is_a_file_is_a_user_error(l4stb, workdir, command):
    workdir.write_text("not a folder")
    assert_user_error(l4stb(*command), "is a file, not a folder")
    assert workdir.read_text() == "not a folder"


def test_a_lock_that_is_a_folder_is_a_user_error(l4stb, workdir):
    (workdir / ".lock").mkdir(parents=True)
    assert_user_error(l4stb("up"), ".lock is a folder")


def test_a_lock_that_is_a_symlink_is_refused_and_its_target_untouched(l4stb, workdir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "precious.txt"
    target.write_text("keep me\n")
    before = snapshot(outside)
    workdir.mkdir()
    (workdir / ".lock").symlink_to(target)
    for command in (("up",), ("summary",), ("run", *TINY)):
        assert_user_error(l4stb(*command), "symbolic link")
    assert snapshot(outside) == before and target.read_text() == "keep me\n"


def test_a_read_only_workdir_is_a_user_error(l4stb, workdir, tmp_path):
    """A workdir the user cannot write: a mode-555 folder where that binds (not for root), else a read-only
    mount (root can make one; CI runs as root). Writing commands refuse in one paragraph; status still reads."""
    workdir.mkdir()
    workdir.chmod(0o555)
    probe = workdir / ".probe"
    try:
        probe.write_text("x")  # root ignores the mode bits
        probe.unlink()
    except PermissionError:
        try:
            assert_user_error(l4stb("up"), "permission denied")
            return
        finally:
            workdir.chmod(0o755)
    workdir.chmod(0o755)
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("neither mode bits nor a read-only mount can make a read-only workdir here")
    try:
        assert run_cli(mnt / "work", "up").returncode == 0
        assert subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True).returncode == 0
        for command in (("run", *TINY), ("summary",), ("up",)):
            done = run_cli(mnt / "work", *command)
            assert_user_error(CliResult(done.returncode, done.stdout, done.stderr), "read-only", "--workdir")
        status = run_cli(mnt / "work", "status")
        assert status.returncode == 0 and "dumbbell-4" in status.stdout
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# ---- 1. corrupted workdir files ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("damage", [
    [], "x", 5, None, {"run_id": 5}, {"run_id": "r", "repeats": "x"}, {"run_id": "r", "steps": []},
    {"run_id": "r", "status": "bogus"}, {"run_id": "r", "repeats": {"1": {"repeat": "a", "seed": 1}}},
    {"run_id": "r", "files": {"a": 1}}, {"run_id": "r", "kind": ["run"]},
])
def test_a_manifest_of_the_wrong_shape_names_its_file(l4stb, fetched_run, workdir, damage):
    path = workdir / "runs" / fetched_run / "manifest.json"
    path.write_text(json.dumps(damage))
    for command in (("summary", "--run", fetched_run), ("run", "--resume", fetched_run)):
        assert_user_error(l4stb(*command), "manifest.json")
    status = l4stb("status")
    assert status.exit_code == 0 and "damaged" in status.stdout and "Traceback" not in status.stderr


@pytest.mark.slow
@pytest.mark.parametrize("edit, fragment", [
    (lambda m: m["scenario"]["bottleneck"].__setitem__("rate", "fast"), "field scenario: bottleneck.rate = 'fast'"),
    (lambda m: m.__setitem__("repeats", {"x": m["repeats"]["1"]}), "repeats.x"),
    (lambda m: m.__setitem__("run_id", "someone-else-20250101T000000Z"), "run_id"),
])
def test_a_manifest_edited_by_hand_names_its_file_and_field(l4stb, fetched_run, workdir, edit, fragment):
    path = workdir / "runs" / fetched_run / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    assert_user_error(l4stb("summary", "--run", fetched_run), "manifest.json", fragment)


@pytest.mark.parametrize("command", [("up",), ("run", *TINY)])
def test_a_workdir_where_no_folder_can_be_made_is_a_user_error(l4stb, command):
    import os
    import subprocess
    import sys

    env = dict(os.environ, L4STB_WORKDIR="/proc/l4stb-work", COLUMNS="200", NO_COLOR="1")
    out = subprocess.run([sys.executable, "-m", "l4stb.cli", *command], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 2 and "/proc/l4stb-work" in out.stderr and "internal error" not in out.stderr


@pytest.mark.slow
def test_one_damaged_run_does_not_break_the_summary_of_another(l4stb, fetched_run, workdir):
    assert l4stb("run", *TINY).exit_code == 0
    assert l4stb("fetch-logs").exit_code == 0
    other = sorted(p.name for p in (workdir / "runs").iterdir() if p.name != fetched_run)[0]
    (workdir / "runs" / fetched_run / "manifest.json").write_text("[]")
    assert l4stb("summary", "--run", other).exit_code == 0


@pytest.mark.slow
def test_a_testbed_json_of_the_wrong_shape_is_a_user_error(l4stb, testbed):
    (testbed / "testbed.json").write_text(json.dumps({"provider": "sim", "topology": "dumbbell-4", "hosts": "x"}))
    for command in (("status",), ("run", *TINY), ("down",)):
        assert_user_error(l4stb(*command), "testbed.json")


@pytest.mark.slow
@pytest.mark.parametrize("victim, content", [
    ("packets.parquet", b"PAR1 truncated"),
    ("flows.parquet", b""),
    ("parse.json", b"{not json"),
    ("parse.json", b"[1, 2]"),
])
def test_damaged_parsed_data_is_parsed_again(l4stb, fetched_run, workdir, victim, content):
    first = l4stb("summary", "--json")
    assert first.exit_code == 0
    (workdir / "runs" / fetched_run / "data" / victim).write_bytes(content)
    again = l4stb("summary", "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["parse"] == json.loads(first.stdout)["parse"]


def _flip_a_byte_in_place(path: Path) -> None:
    """Damage a file without changing its size (what a size check cannot see)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_parsed_data_damaged_in_place_is_caught_by_its_sha256(l4stb, fetched_run, workdir):
    data = workdir / "runs" / fetched_run / "data"
    first = l4stb("summary", "--json")
    assert first.exit_code == 0
    _flip_a_byte_in_place(data / "packets.parquet")
    again = l4stb("summary", "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["parse"] == json.loads(first.stdout)["parse"]  # parsed again from raw/

    shutil.rmtree(workdir / "runs" / fetched_run / "raw")  # now nothing to parse again from
    _flip_a_byte_in_place(data / "flows.parquet")
    assert_user_error(l4stb("summary", "--run", fetched_run), "flows.parquet", "sha256", "fetch-logs")


@pytest.mark.slow
def test_a_sweep_record_of_the_wrong_shape_is_a_user_error(l4stb, testbed):
    args = ("run", "--scenario", "dctcp-8mbps", "--set", "duration=2s", "--repeats", "1",
            "--sweep", "bottleneck.rate=8Mbit", "--jobs", "1")
    assert l4stb(*args).exit_code == 0
    record = next((testbed / "sweeps").glob("*.json"))
    record.write_text(json.dumps({"combinations": "x"}))
    assert_user_error(l4stb(*args, "--resume"), "sweep record")


# ---- 1. iperf3 JSON of odd shapes -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("doc", [
    [1, 2, 3],
    {"start": []},
    {"start": {"connecting_to": {}}, "intervals": {"a": 1}, "end": []},
    {"start": {"connecting_to": {}}, "intervals": [{"streams": [{"bytes": 10**400, "bits_per_second": 10**400,
                                                                  "rtt": 10**30, "socket": [1]}]}]},
    {"start": {"connecting_to": {}}, "end": {"sender_tcp_congestion": "$\\frac{a}{b}$\x1b[31m[bold]"},
     "intervals": [{"streams": [{"socket": 5, "bytes": 100, "bits_per_second": 8e5}]}]},
    "deep",
])
def test_odd_iperf3_json_never_breaks_import_or_summary(l4stb, workdir, tmp_path, doc):
    from logfixtures import sim_log_lines

    log = tmp_path / "messages"
    log.write_text("\n".join(sim_log_lines(50)) + "\n")
    iperf = tmp_path / "client1-cubic-g0-c1.json"
    iperf.write_text("[" * 100_000 + "]" * 100_000 if doc == "deep" else json.dumps(doc))
    result = l4stb("import-logs", "--router-log", str(log), "--iperf3", str(iperf), "--name", "odd")
    if result.exit_code == 2:
        assert_user_error(result)
        return
    assert result.exit_code == 0, result.stderr
    summary = l4stb("summary", "--run", "odd")
    assert summary.exit_code == 0, summary.stderr
    assert "\x1b" not in summary.stdout and "Traceback" not in summary.stderr


@pytest.mark.slow
@pytest.mark.parametrize("text, fragment", [
    ('{"start": {"connecting_to": {}}, "intervals": [{"streams": [{"socket": 99999999999999999999999, "start": 0, '
     '"end": 1, "bytes": 100, "bits_per_second": 800}]}]}', "intervals.streams.socket"),
    ('{"start": {"connecting_to": {}}, "intervals": [{"streams": [{"socket": 5, "start": 0, "end": 1, "bytes": 100, '
     '"bits_per_second": -800}]}]}', "intervals.streams.bits_per_second"),
    ('{"start": {"connecting_to": {}}, "end": {"sender_tcp_congestion": {"name": "cubic"}}, "intervals": [{"streams": '
     '[{"socket": 5, "start": 0, "end": 1, "bytes": 100, "bits_per_second": 800}]}]}', "end.sender_tcp_congestion"),
    ('{"start": {"connecting_to": {}}, "intervals": [{"streams": [{"socket": 5, "start": 0, "end": 1, "bytes": 100, '
     '"bytes": 200, "bits_per_second": 800}]}]}', "keys given twice"),
])
def test_odd_iperf3_fields_are_named_with_their_file_not_taken_silently(l4stb, workdir, tmp_path, text, fragment):
    from logfixtures import sim_log_lines

    log = tmp_path / "messages"
    log.write_text("\n".join(sim_log_lines(50)) + "\n")
    iperf = tmp_path / "client1-cubic-g0-c1.json"
    iperf.write_text(text)
    imported = l4stb("import-logs", "--router-log", str(log), "--iperf3", str(iperf), "--name", "odd")
    assert imported.exit_code == 0, imported.stderr
    summary = l4stb("summary", "--run", "odd")
    assert summary.exit_code == 0 and "Traceback" not in summary.stderr
    said = imported.stderr + summary.stderr
    assert fragment in said and "client1-cubic-g0-c1.json" in said


# ---- 2. accepted silently before ---------------------------------------------------------------------


def test_a_workdir_env_pointing_at_a_file_is_not_an_empty_workdir(l4stb, workdir):
    workdir.write_text("")
    assert_user_error(l4stb("status"), "is a file")


@pytest.mark.slow
@pytest.mark.parametrize("option", [("--preset", "bogus"), ("--reward", "bogus"), ("--preset", "paper8")])
def test_preset_and_reward_that_a_pool_cannot_honour_are_refused(l4stb, workdir, tmp_path, option):
    from test_hostile_pickles import write_pool_pickle

    pkl = write_pool_pickle(tmp_path / "p.pkl", rows=200)
    assert l4stb("pool", "import", str(pkl), "--name", "p").exit_code == 0
    assert_user_error(l4stb("train-and-report", "--pool", "p", *option), option[0])


# ---- 5. confinement ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_symlink_in_a_host_folder_is_never_fetched(l4stb, testbed, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the workdir\n")
    assert l4stb("run", *TINY).exit_code == 0
    run_id = only_run(testbed)
    repeat_dir = next((testbed / "hosts" / "router").rglob("r01"))
    (repeat_dir / "stolen.log").symlink_to(secret)
    result = l4stb("fetch-logs")
    assert result.exit_code == 0, result.stderr
    raw = testbed / "runs" / run_id / "raw"
    assert not any(p.name == "stolen.log" for p in raw.rglob("*"))
    assert all(b"outside the workdir" not in p.read_bytes() for p in raw.rglob("*") if p.is_file())


@pytest.mark.slow
def test_a_scenario_description_is_plain_text_in_the_report(l4stb, testbed, tmp_path):
    import yaml

    from l4stb.resources import find_scenario

    data = yaml.safe_load(find_scenario("dctcp-8mbps").read_text())
    data.update(name="evil", description="![x](http://example.com/x.png) <img src=http://example.com/y.png> "
                                         "[l](http://e)")
    scenario = tmp_path / "evil.yaml"
    scenario.write_text(yaml.safe_dump(data))
    assert l4stb("run", "--scenario", str(scenario), "--set", "duration=2s", "--repeats", "1").exit_code == 0
    assert l4stb("fetch-logs").exit_code == 0
    assert l4stb("report").exit_code == 0
    html = next((testbed / "runs").glob("evil-*/report/index.html")).read_text()
    assert "<img src=\"http" not in html and "<img src=http" not in html and 'href="http://e"' not in html
    assert "example.com/x.png" in html  # shown as text


# ---- the catch-all is a last resort: every command against every broken workdir ---------------------------


def _commands() -> list[tuple[str, ...]]:
    """Every command of the CLI (sub-commands of groups included), with the arguments it cannot run without."""
    import click

    from l4stb.cli import cli

    needs = {"run": TINY, "import-logs": ("--router-log", "/nonexistent/log"), "pool import": ("/nonexistent/p.pkl",),
             "calibrate": ("--matrix", "ci", "--cell", "no-such-cell")}  # a whole matrix takes hours of VM time
    out = []
    for name, command in sorted(cli.commands.items()):
        subs = sorted(command.commands.items()) if isinstance(command, click.Group) else [(None, command)]
        for sub, _ in subs:
            path = (name,) + ((sub,) if sub else ())
            out.append(path + tuple(needs.get(" ".join(path), ())))
    return out


def _break_workdir(workdir, how: str) -> None:
    if how == "workdir-is-a-file":
        workdir.write_text("")
        return
    workdir.mkdir()
    if how == "lock-is-a-folder":
        (workdir / ".lock").mkdir()
    elif how == "lock-is-a-symlink":
        (workdir / ".lock").symlink_to(workdir.parent / "elsewhere")
    elif how == "manifest-is-a-list":
        (workdir / "runs" / "r1").mkdir(parents=True)
        (workdir / "runs" / "r1" / "manifest.json").write_text("[]")
    elif how == "testbed-hosts-is-a-string":
        (workdir / "testbed.json").write_text(json.dumps({"provider": "sim", "topology": "dumbbell-4", "hosts": "x"}))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["workdir-is-a-file", "lock-is-a-folder", "lock-is-a-symlink", "manifest-is-a-list",
                                 "testbed-hosts-is-a-string"])
def test_every_command_meets_a_broken_workdir_with_a_user_error_or_success(l4stb, workdir, how):
    _break_workdir(workdir, how)
    for argv in _commands():
        result = l4stb(*argv)
        out = result.stdout + result.stderr
        assert result.exit_code in (0, 2), f"{argv}: exit {result.exit_code}\n{out}"
        assert "Traceback" not in out and "internal error" not in out and "\x1b" not in out, f"{argv}:\n{out}"
    assert not (workdir.parent / "elsewhere").exists(), "a symlinked lock was followed"


def test_a_command_that_fails_in_an_empty_place_creates_no_workdir(l4stb, workdir):
    for argv in (("summary",), ("report",), ("fetch-logs",), ("down",)):
        assert l4stb(*argv).exit_code == 2
    assert not workdir.exists()
