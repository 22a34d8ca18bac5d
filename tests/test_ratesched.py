"""The router's rate-schedule helper (freebsd_module/ratesched/l4stb_ratesched.c): it cross-compiles for FreeBSD
with -Werror, and, built here, applies every step at its absolute time however long each ipfw(8) takes, logging
when each step was applied."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from l4stb.providers.freebsd import plans
from l4stb.config import load_scenario
from module_builds import ZIG_TARGET, zig_cc

SOURCE = plans.ratesched_source()
CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror"]
"""What provision_router.sh.j2 builds it with on the router (the base system's cc)."""


@pytest.mark.skipif(zig_cc() is None, reason="needs the ziglang package (pip install ziglang; in the test extra)")
def test_helper_cross_compiles_and_links_for_freebsd_with_werror(tmp_path: Path):
    out = tmp_path / "l4stb_ratesched"
    proc = subprocess.run([*zig_cc(), "-target", ZIG_TARGET, *CFLAGS, "-o", str(out), str(SOURCE)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    binary = out.read_bytes()
    assert binary[:4] == b"\x7fELF" and b"/libexec/ld-elf.so.1" in binary, "a FreeBSD executable (its rtld)"


@pytest.fixture(scope="module")
def helper(tmp_path_factory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler (apt-get install gcc)")
    out = tmp_path_factory.mktemp("ratesched") / "l4stb_ratesched"
    proc = subprocess.run([cc, *CFLAGS, "-o", str(out), str(SOURCE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


def _fake_ipfw(tmp_path: Path, seconds: float) -> Path:
    """An ipfw stand-in that takes ``seconds`` per call (a slow fork/exec on a loaded VM) and logs its argv."""
    path = tmp_path / "ipfw"
    path.write_text(f'#!/bin/sh\necho "$*" >> "{tmp_path}/ipfw.log"\nsleep {seconds}\n')
    path.chmod(0o755)
    return path


def _applied(stdout: str) -> list[tuple[int, int, int, str, int]]:
    return [(int(a), int(b), int(c), bw, int(rc)) for line in stdout.splitlines() if line.startswith("l4stb-rate ")
            for a, b, c, bw, rc in [line.split()[1:]]]


def test_steps_keep_to_absolute_times_so_lateness_does_not_accumulate(helper: Path, tmp_path: Path):
    """100 steps 20 ms apart, each ipfw taking 8 ms: sleeping 20 ms between steps would end 0.8 s late or more;
    against absolute deadlines the last step is as late as one step, and lateness does not grow with the step."""
    steps = tmp_path / "steps.txt"
    steps.write_text("# test\n" + "".join(f"{k * 20_000} 1 {1 + k % 2}Mbit/s 10\n" for k in range(100)))
    proc = subprocess.run([str(helper), str(steps), str(_fake_ipfw(tmp_path, 0.008))], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    applied = _applied(proc.stdout)
    assert len(applied) == 100 and all(rc == 0 for *_, rc in applied)
    late = [started - at for at, started, *_ in applied]
    assert min(late) >= 0, "never early"
    assert late[-1] < 250_000, f"the last step is {late[-1] / 1000:.0f} ms late: lateness accumulated"
    first, last = sum(late[:20]) / 20, sum(late[-20:]) / 20
    assert last - first < 100_000, f"mean lateness grew from {first / 1000:.1f} to {last / 1000:.1f} ms"
    assert (tmp_path / "ipfw.log").read_text().splitlines()[:2] == ["-q pipe 1 config bw 1Mbit/s delay 10",
                                                                   "-q pipe 1 config bw 2Mbit/s delay 10"]


def test_the_plans_schedule_file_is_what_the_helper_reads(helper: Path, tmp_path: Path):
    sc = load_scenario("dctcp-8mbps", ["bottleneck.rate_schedule=[{at: 100ms, rate: 4Mbit}, {at: 250ms, rate: 6Mbit}]"])
    steps = tmp_path / "rate-schedule.txt"
    steps.write_text(plans.rate_schedule_file(sc, 1_000_000))
    proc = subprocess.run([str(helper), str(steps), str(_fake_ipfw(tmp_path, 0))], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert [(at, bw) for at, _, _, bw, _ in _applied(proc.stdout)] == [(100_000, "4Mbit/s"), (250_000, "6Mbit/s")]
    assert proc.stdout.startswith("# l4stb_ratesched: start ")
    summary = plans.parse_rate_applied(proc.stdout)
    assert summary is not None and summary["steps_applied"] == 2 and summary["steps_failed"] == 0
    assert 0 <= summary["late_us_mean"] <= summary["late_us_max"] < 200_000


@pytest.mark.parametrize("line", ["10 1 8Mbit/s;reboot 10", "5 1 8Mbit/s 10\n4 1 8Mbit/s 10", "x 1 8Mbit/s 10",
                                  "10 0 8Mbit/s 10"])
def test_a_bad_step_file_is_refused_before_any_step_runs(helper: Path, tmp_path: Path, line: str):
    steps = tmp_path / "steps.txt"
    steps.write_text(line + "\n")
    proc = subprocess.run([str(helper), str(steps), str(_fake_ipfw(tmp_path, 0))], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2 and "not a step" in proc.stderr
    assert not (tmp_path / "ipfw.log").exists() or "reboot" not in (tmp_path / "ipfw.log").read_text()


def test_a_failing_ipfw_stops_the_schedule_with_its_status(helper: Path, tmp_path: Path):
    ipfw = tmp_path / "ipfw"
    ipfw.write_text("#!/bin/sh\nexit 65\n")
    ipfw.chmod(0o755)
    steps = tmp_path / "steps.txt"
    steps.write_text("0 1 8Mbit/s 10\n1000 1 4Mbit/s 10\n")
    proc = subprocess.run([str(helper), str(steps), str(ipfw)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 65 and len(_applied(proc.stdout)) == 1 and "exited 65" in proc.stderr


def test_steps_closer_than_five_ticks_are_refused_with_a_coarser_bin_to_use():
    sc = load_scenario("dctcp-8mbps", ["bottleneck.rate_schedule=[{at: 10s, rate: 4Mbit}, {at: 10002ms, rate: 6Mbit}]"])
    from l4stb.config import load_topology
    from l4stb.errors import L4stbError

    with pytest.raises(L4stbError, match=r"at least 5 ticks \(5 ms at aqm.kern_hz 1000\)"):
        plans.processes(sc, load_topology("dumbbell-4"), "r-1", 1)


def test_the_applied_record_reads_back_into_a_capacity_that_stops_at_the_first_failed_step():
    """Each step counts from when its ipfw returned; a failed step (the helper stops there) and any later never
    applied; a bw word ipfw_bandwidth writes reads back to its rate."""
    from l4stb.analysis.capacity import applied_capacity
    from l4stb.rate_applied import read_rate_applied

    text = ("# l4stb_ratesched: start 1.0 (UTC epoch)\n"
            f"l4stb-rate 0 150 900 {plans.ipfw_bandwidth(6_000_000)} 0\n"
            f"l4stb-rate 2000000 2000100 2003000 {plans.ipfw_bandwidth(500_000)} 0\n"
            f"l4stb-rate 4000000 4000100 4001000 {plans.ipfw_bandwidth(123_456)} 0\n"
            "l4stb-rate 6000000 6000100 6009000 9Mbit/s 1\n"
            "l4stb-rate 8000000 8000100 8001000 7Mbit/s 0\n")
    steps = read_rate_applied(text)
    assert [s.rate_bps for s in steps] == [6_000_000, 500_000, 123_456, 9_000_000, 7_000_000]
    cap = applied_capacity(8e6, steps)
    assert cap.source == "applied"
    assert cap.times_s == (0.0, 0.0009, 2.003, 4.001) and cap.rates_bps == (8e6, 6e6, 5e5, 123_456.0)
    assert plans.parse_rate_applied(text)["steps_failed"] == 1
    from l4stb import layout

    assert plans.RATE_SCHEDULE_NAME == layout.RATE_APPLIED_NAME and layout.is_router_evidence(layout.RATE_APPLIED_NAME), \
        "the helper's record is fetched beside the log set and never parsed as a log file"
