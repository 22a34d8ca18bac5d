"""Every rendered plan, for every shipped topology and scenario, is valid POSIX sh (`sh -n`) and passes
`shellcheck -s sh`; and the endpoint's route step never deletes a connected route (run under sh with
FreeBSD-shaped fake commands)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from l4stb.providers.freebsd import plans
from l4stb.config import load_topology
from rendered_plans import all_rendered

SHELLCHECK = shutil.which("shellcheck")


def _distinct() -> dict[str, str]:
    seen: dict[str, str] = {}
    for r in all_rendered():
        seen.setdefault(r.script, r.where)
    return seen


def test_every_rendered_plan_parses_as_posix_sh():
    bad = {}
    for script, where in _distinct().items():
        proc = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True)
        if proc.returncode:
            bad[where] = proc.stderr.strip()
    assert not bad, bad


@pytest.mark.skipif(SHELLCHECK is None, reason="needs shellcheck (apt-get install shellcheck; scripts/install.sh)")
def test_every_rendered_plan_passes_shellcheck():
    bad = {}
    for script, where in _distinct().items():
        proc = subprocess.run([SHELLCHECK, "-s", "sh", "-f", "gcc", "-"], input=script, capture_output=True, text=True)
        if proc.returncode:
            bad[where] = proc.stdout.strip()
    assert not bad, "\n".join(f"{w}:\n{o}" for w, o in bad.items())


ROUTE_GET = {
    "connected": "   route to: 10.1.2.0\ndestination: 10.1.2.0\n       mask: 255.255.255.0\n        fib: 0\n"
                 "  interface: em0\n      flags: <UP,DONE,PINNED>\n",
    "static-other-gw": "   route to: 10.1.2.0\ndestination: 10.1.2.0\n       mask: 255.255.255.0\n    gateway: 10.9.9.9\n"
                       "        fib: 0\n  interface: em1\n      flags: <UP,GATEWAY,DONE,STATIC>\n",
    "default": "   route to: 10.1.2.0\ndestination: default\n       mask: default\n    gateway: 10.0.2.2\n        fib: 0\n"
               "  interface: em0\n      flags: <UP,GATEWAY,DONE,STATIC>\n",
}
"""`route -n get` output in the shape of sbin/route/route_netlink.c's print_getmsg."""


def _run_endpoint_routes(tmp_path: Path, route_get: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """The client1 route step under sh, with route/sysrc/kldstat/kldload faked and every call logged."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    (tmp_path / "route-get").write_text(route_get)
    fakes = {
        "route": f'echo "route $*" >> {log}\ncase "$*" in *"get -net 10.1.2.0/24"*) cat {tmp_path}/route-get ;; '
                 f'*get*) echo "destination: default" ;; esac\n',
        "sysrc": f'echo "sysrc $*" >> {log}\n',
        "kldstat": "exit 0\n", "kldload": "exit 0\n",
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    topo = load_topology("dumbbell-4")
    step = next(s for p in plans.up_phases(topo) for s in p.steps if s.host == "client1" and "routes" in s.step)
    script = "\n".join(line for line in step.script.splitlines() if not line.startswith("export PATH="))
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"})
    return proc, log.read_text().splitlines() if log.exists() else []


def test_a_connected_route_is_never_deleted_and_the_step_says_why(tmp_path: Path):
    proc, calls = _run_endpoint_routes(tmp_path, ROUTE_GET["connected"])
    assert proc.returncode != 0
    assert "10.1.2.0/24 is a connected network on this host" in proc.stderr
    assert not any(c.startswith("route -q delete") for c in calls), calls


def test_a_static_route_with_another_gateway_is_replaced(tmp_path: Path):
    proc, calls = _run_endpoint_routes(tmp_path, ROUTE_GET["static-other-gw"])
    assert proc.returncode == 0, proc.stderr
    assert "route -q delete -net 10.1.2.0/24" in calls and "route -q add -net 10.1.2.0/24 10.1.1.1" in calls


def test_a_missing_route_is_added_without_touching_the_default_route(tmp_path: Path):
    proc, calls = _run_endpoint_routes(tmp_path, ROUTE_GET["default"])
    assert proc.returncode == 0, proc.stderr
    assert "route -q add -net 10.1.2.0/24 10.1.1.1" in calls
    assert not any("delete" in c for c in calls), calls


def test_a_repeat_run_again_starts_from_empty_folders_on_every_host(tmp_path: Path):
    """The first step of a repeat, run under sh with the remote root moved into tmp_path: what an earlier
    attempt of the same repeat left (iperf3 JSON, rotated logs, exit codes) is gone; other repeats are kept."""
    from l4stb.config import load_scenario

    topo = load_topology("dumbbell-4")
    run_id = "dctcp-8mbps-20250101T000000Z"
    clear = plans.run_phases(load_scenario("dctcp-8mbps"), topo, run_id, 2)[0]
    assert clear.name == "clear repeat folders" and {s.host for s in clear.steps} == set(topo.hosts)
    root = tmp_path / "remote"
    repeat_dir = root / "runs" / run_id / "r02"
    state_dir = root / "state" / run_id / "r02"
    kept = root / "runs" / run_id / "r01" / "client1-dctcp-g1-c1.json"
    for stale in (repeat_dir / "client1-dctcp-g1-c1.json", repeat_dir / "dualpi2.log.3.bz2",
                  state_dir / "client1-dctcp-g1-c1.json.rc", kept):
        stale.parent.mkdir(parents=True, exist_ok=True)
        stale.write_text("from an earlier attempt\n")
    script = clear.steps[0].script.replace(plans.REMOTE_ROOT, str(root))
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert repeat_dir.is_dir() and not list(repeat_dir.iterdir())
    assert state_dir.is_dir() and not list(state_dir.iterdir())
    assert kept.read_text() == "from an earlier attempt\n"
