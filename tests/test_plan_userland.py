"""The rendered plans run under a model of FreeBSD's userland limits (tests/freebsd_userland.py): sysctl's BUFSIZ
argument, known OIDs, ipfw's rule numbers and syntax clear of rc.firewall, kern.argmax on every exec, and the SSH
packet for what l4stb sends. Every shipped scenario and the feature variants (policy, rate schedule and trace,
extra delay, UDP, short flows) go through it."""

from __future__ import annotations

from pathlib import Path

import pytest

from freebsd_userland import ARG_MAX, Userland, ssh_command
from l4stb import policyblob
from l4stb.providers.freebsd import facts, plans
from l4stb.config import load_scenario, load_topology
from l4stb.providers.freebsd.remote import MAX_COMMAND_BYTES
from rendered_plans import RUN_ID, SCHEDULE_STEPS, all_rendered, feature_variants, fixtures_dir

TOPO = load_topology("dumbbell-4")


def _steps(overrides: tuple[str, ...], scenario: str = "dctcp-8mbps"):
    sc = load_scenario(scenario, list(overrides))
    return sc, [s for p in plans.run_phases(sc, TOPO, RUN_ID, 1) for s in p.steps]


def _configure_router(overrides: tuple[str, ...], scenario: str = "dctcp-8mbps"):
    sc, steps = _steps(overrides, scenario)
    return sc, next(s for s in steps if s.host == TOPO.router and s.step.startswith("configure"))


def _run_with_uploads(model: Userland, step) -> object:
    for up in step.uploads:
        model.put(up.remote, up.text.encode() if up.text is not None else up.local.read_bytes())
    return model.run(step.script)


def _policy_overrides() -> tuple[str, ...]:
    return next(o for _, o in feature_variants() if any(x.startswith("aqm=") for x in o))


def _trace_overrides() -> tuple[str, ...]:
    return next(o for _, o in feature_variants() if any("rate_trace" in x for x in o))


VARIANTS = [("dctcp-8mbps", ())] + [(n, ()) for n in ("cubic-8mbps", "prague-8mbps", "paper-l4s-pie-10mbps-20ms",
                                                      "dctcp-8mbps-single")] + list(feature_variants())


@pytest.mark.slow
@pytest.mark.parametrize("scenario, overrides", VARIANTS, ids=lambda v: str(v)[:40])
def test_router_and_endpoint_configuration_and_the_start_step_run_under_the_userland_model(
        scenario, overrides, tmp_path: Path):
    """Twice on the same host, as two repeats do: the second run deletes exactly what the first added."""
    sc, steps = _steps(overrides, scenario)
    model = Userland(tmp_path / "router")
    chosen = [s for s in steps if s.step.startswith(("configure", "congestion", "start clients"))]
    assert chosen
    for _ in range(2):
        for step in chosen:
            proc = _run_with_uploads(model, step)
            assert proc.returncode == 0, f"{step.host} / {step.step}:\n{proc.stderr[-3000:]}"
    rules = model.state("ipfw")["rules"]
    assert sorted(n for n, s, _ in rules if s == 0) == sorted(facts.RC_FIREWALL_OPEN_RULES), "stock rules intact"
    ours = [n for n, s, _ in rules if s == plans.RULE_SET]
    assert ours.count(plans.RULE) == 1 and len(ours) == len(set(ours)), "one copy of each l4stb rule"


def test_the_policy_goes_in_as_pieces_sysctl_takes_and_the_module_summary_matches(tmp_path: Path):
    sc, step = _configure_router(_policy_overrides())
    model = Userland(tmp_path)
    proc = _run_with_uploads(model, step)
    assert proc.returncode == 0, proc.stderr[-2000:]
    blob = policyblob.load(sc.aqm.policy)
    state = model.state("sysctl")
    pieces = [c for c in state["calls"] if c.startswith(plans.SYSCTL_ROOT + ".policy=+")]
    assert len(pieces) == -(-blob.size_bytes * 2 // plans.policy_piece_hex(plans.SYSCTL_ROOT + ".policy")) >= 2
    assert max(len(p) for p in pieces) <= facts.LIMITS["sysctl_arg"].value - plans.SYSCTL_ARG_MARGIN
    assert "".join(p.split("=+", 1)[1] for p in pieces) == blob.raw.hex()
    assert state["values"][plans.SYSCTL_ROOT + ".policy"].endswith(f"checksum {blob.checksum:08x}")


def test_the_old_1000_digit_pieces_fail_in_the_model_as_sysctl_would_fail_them(tmp_path: Path):
    """What issue 22 found: `NAME=+` and 1000 hex digits is 1037 characters, past sysctl(8)'s BUFSIZ."""
    _, step = _configure_router(_policy_overrides())
    width = plans.policy_piece_hex(plans.SYSCTL_ROOT + ".policy")
    assert f"fold -w {width} " in step.script
    model = Userland(tmp_path)
    for up in step.uploads:
        model.put(up.remote, up.local.read_bytes())
    proc = model.run(step.script.replace(f"fold -w {width} ", "fold -w 1000 "))
    assert proc.returncode != 0 and "oid too long" in proc.stderr


def test_a_3000_step_schedule_travels_as_an_uploaded_file_not_an_argument(tmp_path: Path):
    sc, steps = _steps(_trace_overrides())
    configure = next(s for s in steps if s.host == TOPO.router and s.step.startswith("configure"))
    (upload,) = [u for u in configure.uploads if u.text is not None]
    assert len([ln for ln in upload.text.splitlines() if not ln.startswith("#")]) == SCHEDULE_STEPS
    start = next(s for s in steps if s.host == TOPO.router and s.step == "start clients together")
    assert len(start.script) < 4096, "the schedule is not pasted into the start step"
    model = Userland(tmp_path)
    model.put(upload.remote, upload.text.encode())
    proc = model.run(start.script)
    assert proc.returncode == 0, proc.stderr[-2000:]
    spawned = [c for c in model.calls() if c.startswith("daemon ")]
    helper, steps_file = (model.localise(p).strip() for p in (plans.RATESCHED_BIN, plans.rate_schedule_remote(RUN_ID, 1)))
    assert any(f" {helper} {steps_file}" in c for c in spawned), spawned


def test_an_inline_schedule_of_that_size_would_have_failed_exec(tmp_path: Path):
    """The model's kern.argmax check is live: the 3000 steps as the sh script l4stb used to pass inline (a sleep,
    the ipfw command and an echo per step) are more than an exec takes."""
    sc, steps = _steps(_trace_overrides())
    (upload,) = [u for s in steps for u in s.uploads if u.text is not None]
    old_style = "".join(f'sleep 0.010\nipfw pipe 1 config bw {bw} delay 10\necho "$(( $(date +%s) - t0 )) s: {bw}"\n'
                        for _, _, bw, _ in (ln.split() for ln in upload.text.splitlines() if not ln.startswith("#")))
    inline = "set -e\nt0=$(date +%s)\n" + old_style
    assert len(inline) > ARG_MAX
    pieces = [inline[i:i + 60_000] for i in range(0, len(inline), 60_000)]  # Linux takes 128 KiB per argument
    proc = Userland(tmp_path).run("daemon -f sh -c : " + " ".join(plans._q(p) for p in pieces))
    assert proc.returncode == 126 and "argument list too long" in proc.stderr


def test_the_model_refuses_rules_on_rc_firewall_numbers(tmp_path: Path):
    """rc.firewall's setup_ipv6_mandatory rule 1000 was l4stb's queue rule before issue 22."""
    model = Userland(tmp_path)
    proc = model.run("ipfw -q delete 1000")
    assert proc.returncode != 0 and "rc.firewall" in proc.stderr
    proc = model.run("ipfw pipe 1 config bw 8Mbit/s delay 10 && ipfw sched 1 config pipe 1 type dualpi2 && "
                     "ipfw queue 1 config sched 1 queue 100 && ipfw add 500 set 7 queue 1 ip from any to any")
    assert proc.returncode != 0 and "rule 500 is one of rc.firewall's own numbers" in proc.stderr


def test_l4stb_rules_are_clear_of_rc_firewall_and_in_their_own_set():
    numbers = {plans.RULE, *range(plans.DELAY_RULE0, plans.DELAY_RULE0 + plans.MAX_DELAY_PIPES)}
    assert not numbers & set(facts.RC_FIREWALL_OPEN_RULES)
    assert max(numbers) < 65000 and max(numbers) <= facts.LIMITS["ipfw_rule_max"].value
    assert plans.DELAY_RULE0 + plans.MAX_DELAY_PIPES <= plans.RULE
    assert 0 < plans.RULE_SET <= facts.LIMITS["ipfw_set_max"].value


def test_every_command_l4stb_sends_fits_one_ssh_packet():
    sizes = {r.where: len(ssh_command(r.script).encode()) for r in all_rendered()}
    where, biggest = max(sizes.items(), key=lambda kv: kv[1])
    assert biggest < MAX_COMMAND_BYTES < facts.LIMITS["ssh_packet"].value, (where, biggest)
    assert biggest < ARG_MAX, f"{where}: `sh -c SCRIPT` on the host is an exec under kern.argmax too"


def test_the_fixture_policy_is_bigger_than_one_sysctl_argument():
    size = len((fixtures_dir() / "policy.l4pb").read_bytes())
    assert 2 * size + len(plans.SYSCTL_ROOT + ".policy=+") > facts.LIMITS["sysctl_arg"].value


def test_a_schedule_on_a_router_provisioned_before_the_helper_stops_at_configure_with_what_to_run(tmp_path: Path):
    _, step = _configure_router(("bottleneck.rate_schedule=[{at: 10s, rate: 4Mbit}]",))
    proc = _run_with_uploads(Userland(tmp_path, provisioned=False), step)
    assert proc.returncode == 1 and "run `l4stb up --provider vagrant` again" in proc.stderr
