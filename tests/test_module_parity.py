"""The kernel module's C core against the simulator's Python cores: same events in, same decisions and log lines out.

The core (freebsd_module/dualpi2_core.c) and its harness are compiled with ``gcc -Wall -Wextra -Werror``
into a temp folder; thousands of seeded random packet sequences (plus a hypothesis search) go through
``l4stb.sim.aqm_dualpi2.replay`` and the harness, and every record must be identical.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l4stb import resources
from l4stb.config import Aqm, Bottleneck

aqm_dualpi2 = pytest.importorskip("l4stb.sim.aqm_dualpi2", reason="the simulator's DualPI2 core is not there yet")
from l4stb.sim.aqm_dualpi2 import DualPI2, DualPI2Params, replay  # noqa: E402
from l4stb.sim.aqm_l4spie import L4sPie  # noqa: E402
from l4stb.sim.aqm_pie import PIE_CAPDROP_ENABLED, PIE_DERAND_ENABLED, PIE_ECN_ENABLED, PieParams  # noqa: E402
from l4stb.sim.packet import ECN, LEN  # noqa: E402

GCC = shutil.which("gcc")
pytestmark = pytest.mark.skipif(GCC is None, reason="needs gcc to build the C core (apt-get install gcc)")

DP_FIELDS = [f.name for f in dataclasses.fields(DualPI2Params)]
PIE_FIELDS = ["qdelay_ref", "tupdate", "max_burst", "max_ecnth", "alpha", "beta", "flags", "tick_us",
              "limit_packets", "limit_bytes"]


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    """Build the harness from the shipped module sources, with warnings as errors, outside the repo."""
    src = resources.module_dir()
    out = tmp_path_factory.mktemp("harness") / "dualpi2_harness"
    cmd = [GCC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", f"-I{src}", str(src / "harness" / "harness.c"),
           str(src / "dualpi2_core.c"), str(src / "dp2_policy.c"), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"gcc failed:\n{proc.stderr}"
    return out


def test_the_core_compiles_cleanly_with_all_warnings(harness: Path):
    assert harness.is_file()


# -- traces ---------------------------------------------------------------------------------------------


def random_dualpi2_params(rng: random.Random) -> DualPI2Params:
    semantics = rng.choice(["linux", "rfc9332-thlen"])
    step_packets = rng.choice([0, 1, 3, 20]) if rng.random() < 0.25 else None
    ramp = 0 if step_packets is not None else rng.choice([0, 0, 400, 1000, 5000])
    aqm = Aqm(
        name="dualpi2", ecn=rng.random() < 0.85,
        target=f"{rng.choice([1000, 5000, 15000, 20000, 50000])}us",
        tupdate=f"{rng.choice([1000, 4000, 16000, 32000])}us",
        alpha=rng.choice([0.01, 0.16, 0.5, 2.0, 10.0, 60.0]), beta=rng.choice([0.1, 3.2, 10.0, 30.0, 90.0]),
        coupling_factor=rng.choice([1.0, 1.5, 2.0, 3.0, 4.0]), step_threshold=f"{rng.choice([0, 500, 1000, 3000])}us",
        step_semantics=semantics, ramp_range=f"{ramp}us", step_packets=step_packets,
        **({"min_qlen_step": rng.choice([0, 0, 1, 2, 5])} if semantics == "linux" else {"th_len": rng.choice([0, 1, 2, 5])}),
        classic_protection=rng.choice([0.0, 0.05, 0.1, 0.5, 1.0]), scheduler=rng.choice(["wrr", "tsfifo"]),
        tshift=f"{rng.choice([0, 10_000, 50_000])}us", drop_on_overload=rng.random() < 0.7,
        kern_hz=rng.choice([100, 250, 1000, 10000]),
    )
    b = Bottleneck(limit_packets=rng.choice([3, 10, 50, 1000]), limit_bytes=rng.choice([4500, 30_000, 1_500_000]),
                   mtu=rng.choice([576, 1500, 9000]))
    prm = DualPI2Params.from_aqm(aqm, b)
    if rng.random() < 0.2:
        prm = dataclasses.replace(prm, min_backlog_bytes=0)
    return prm


def random_pie_params(rng: random.Random) -> tuple[PieParams, int, bool]:
    aqm = Aqm(name="l4s-pie", ecn=rng.random() < 0.85, target=f"{rng.choice([5000, 15000, 30000])}us",
              tupdate=f"{rng.choice([5000, 15000, 30000])}us", alpha=rng.choice([0.125, 0.5, 2.0]),
              beta=rng.choice([1.25, 5.0, 20.0]), max_burst=f"{rng.choice([0, 20_000, 150_000])}us",
              max_ecnth=rng.choice([0.0, 0.1, 0.5, 1.0]), kern_hz=rng.choice([100, 1000]))
    b = Bottleneck(limit_packets=rng.choice([3, 20, 1000]), limit_bytes=rng.choice([4500, 60_000, 1_500_000]))
    prm = PieParams.from_aqm(aqm, b)
    flags = (PIE_ECN_ENABLED if rng.random() < 0.8 else 0) | (PIE_CAPDROP_ENABLED if rng.random() < 0.7 else 0) | \
        (PIE_DERAND_ENABLED if rng.random() < 0.7 else 0)
    return dataclasses.replace(prm, flags=flags), rng.choice([1, 2, 3]), rng.random() < 0.3


def random_events(rng: random.Random, tupdate_us: int, n: int, updates: bool = True) -> list[tuple]:
    """Bursts that fill the queues (so p' climbs into overload) and stretches that drain them."""
    events: list[tuple] = []
    now = rng.choice([0, 0, 7, 123_456])
    next_update = tupdate_us
    enq_bias = rng.choice([0.5, 0.65, 0.8, 0.9])
    ecn_weights = rng.choice([(1, 1, 1, 1), (0, 3, 1, 0), (3, 0, 1, 0), (1, 4, 1, 1)])
    for _ in range(n):
        now += rng.choice([0, 0, 1, 5, 50, 120, 800, 1200, 3000]) if rng.random() < 0.97 else rng.randint(5_000, 80_000)
        while updates and next_update <= now:
            events.append(("U", next_update))
            next_update += tupdate_us
        if updates and rng.random() < 0.02:
            events.append(("U", now))
        if rng.random() < enq_bias:
            length = rng.choice([40, 64, 576, 1000, 1500, 1500, 1500, rng.randint(40, 9000)])
            ecn = rng.choices([0, 1, 2, 3], weights=ecn_weights)[0]
            events.append(("E", now, length, ecn))
        else:
            events.append(("D", now))
    return events


def fmt(rec: tuple) -> str:
    return ",".join(str(x) for x in rec)


def header_dualpi2(prm: DualPI2Params, seed: int, log: int, auto: int) -> str:
    return fmt(("P", 0, seed, log, auto) + tuple(getattr(prm, f) for f in DP_FIELDS))


def header_pie(prm: PieParams, coupling: int, same: bool, seed: int, log: int, auto: int) -> str:
    return fmt(("P", 1, seed, log, auto) + tuple(getattr(prm, f) for f in PIE_FIELDS) + (coupling, int(same)))


def run_harness(harness: Path, blocks: list[tuple[str, list[tuple]]]) -> list[list[str]]:
    """Feed several traces to one harness process; return each trace's output lines."""
    text = "".join(head + "\n" + "".join(fmt(e) + "\n" for e in events) for head, events in blocks)
    proc = subprocess.run([str(harness)], input=text, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    outs: list[list[str]] = []
    for line in proc.stdout.splitlines():
        if line == "P":
            outs.append([])
        else:
            outs[-1].append(line)
    assert len(outs) == len(blocks)
    return outs


def python_dualpi2_with_logs(prm: DualPI2Params, seed: int, events: list[tuple], auto: bool = False,
                             policy=None) -> list[str]:
    """DualPI2 over the events with its log lines interleaved (flow id = sequence number, as the harness)."""
    out: list[tuple] = []
    aqm = DualPI2(prm, seed, emit=lambda f: out.append(("L",) + tuple(f)), trace=out, policy=policy)
    n = 0
    for ev in events:
        if auto and ev[0] in "ED":
            while aqm.next_update_us <= ev[1]:
                aqm.update(aqm.next_update_us)
        if ev[0] == "E":
            aqm.enqueue([0, ev[2], ev[3], n, n, 0], ev[1])
            n += 1
        elif ev[0] == "D":
            aqm.dequeue(ev[1])
        else:
            aqm.update(ev[1])
    return [fmt(r) for r in out if not (auto and r[0] == "U")]


def python_l4spie(prm: PieParams, coupling: int, same: bool, seed: int, events: list[tuple],
                  auto: bool = False) -> list[str]:
    out: list[tuple] = []
    aqm = L4sPie(prm, seed, emit=lambda f: out.append(("L",) + tuple(f)), coupling=coupling, couple_same_flow=same)
    n = 0
    for ev in events:
        kind, now = ev[0], ev[1]
        if auto and kind in "ED":
            while aqm.next_update_us <= now:
                aqm.update(aqm.next_update_us)
        if kind == "E":
            pkt = [0, ev[2], ev[3], n, n, 0]
            n += 1
            aqm.enqueue(pkt, now)
            qt = 1 if ev[3] == 1 else 0
            out.append(("E", now, qt, out[-1][24], pkt[LEN], pkt[ECN], aqm.qs[qt].drop_prob, 0, 0))
        elif kind == "D":
            pkt = aqm.dequeue(now)
            if pkt is None:
                out.append(("D", now, -1, 0, 0, 0, 0, 0, 0))
            else:
                q = aqm.qs[aqm.cur]
                out.append(("D", now, aqm.cur, 1, pkt[LEN], pkt[ECN], q.drop_prob, 0, q.current_qdelay))
        elif not auto:
            aqm.update(now)
            out.append(("U", now, -1, 0, 0, 0, aqm.qs[0].drop_prob, aqm.qs[1].drop_prob, 0))
    return [fmt(r) for r in out]


def _first_difference(a: list[str], b: list[str]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"record {i}: python {x!r} != C {y!r}"
    return f"lengths differ: python {len(a)} records, C {len(b)}"


# -- the comparisons ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_c_core_matches_replay_on_thousands_of_random_traces(harness: Path):
    rng = random.Random(20250101)
    total_records = 0
    for _chunk in range(6):
        cases = []
        for _ in range(400):
            prm = random_dualpi2_params(rng)
            seed = rng.randrange(0, 2**31 - 1)
            events = random_events(rng, prm.tupdate_us, rng.choice([20, 100, 400, 1200]))
            cases.append((prm, seed, events))
        outs = run_harness(harness, [(header_dualpi2(p, s, 0, 0), ev) for p, s, ev in cases])
        for (prm, seed, events), got in zip(cases, outs, strict=True):
            want = [fmt(r) for r in replay(prm, seed, events)]
            assert got == want, f"{prm} seed {seed}: {_first_difference(want, got)}"
            total_records += len(want)
    assert total_records > 100_000


def test_traces_reach_every_decision_kind(harness: Path):
    """The generator is good for something: forwards, drops, marks, overload and both queues all occur."""
    rng = random.Random(7)
    seen = set()
    for _ in range(300):
        prm = random_dualpi2_params(rng)
        for r in replay(prm, rng.randrange(1000), random_events(rng, prm.tupdate_us, 400)):
            if r[0] in "ED" and r[2] >= 0:
                seen.add((r[0], r[2], r[3]))
            if r[0] == "D" and r[6] >= 1 << 32:
                seen.add("overload")
    for needed in [("D", 0, 1), ("D", 0, 2), ("D", 0, 3), ("D", 1, 1), ("D", 1, 2), ("D", 1, 3), ("E", 0, 2),
                   ("E", 1, 2), "overload"]:
        assert needed in seen


@pytest.mark.slow
def test_c_log_lines_match_the_python_core(harness: Path):
    rng = random.Random(99)
    cases = []
    for _ in range(500):
        prm = random_dualpi2_params(rng)
        seed = rng.randrange(0, 2**31 - 1)
        cases.append((prm, seed, random_events(rng, prm.tupdate_us, rng.choice([50, 300]))))
    outs = run_harness(harness, [(header_dualpi2(p, s, 1, 0), ev) for p, s, ev in cases])
    lines = 0
    for (prm, seed, events), got in zip(cases, outs, strict=True):
        want = python_dualpi2_with_logs(prm, seed, events)
        assert got == want, f"{prm} seed {seed}: {_first_difference(want, got)}"
        lines += sum(1 for w in want if w.startswith("L,"))
    assert lines > 10_000


@pytest.mark.slow
def test_timerless_updates_match_a_periodic_timer(harness: Path):
    """The kernel runs due PI updates lazily at each packet (dp2_advance); that equals a periodic timer."""
    rng = random.Random(5)
    cases = []
    for _ in range(300):
        prm = random_dualpi2_params(rng)
        cases.append((prm, rng.randrange(10**6), random_events(rng, prm.tupdate_us, 300, updates=False)))
    outs = run_harness(harness, [(header_dualpi2(p, s, 1, 1), ev) for p, s, ev in cases])
    for (prm, seed, events), got in zip(cases, outs, strict=True):
        want = python_dualpi2_with_logs(prm, seed, events, auto=True)
        assert got == want, f"{prm} seed {seed}: {_first_difference(want, got)}"


@pytest.mark.slow
def test_l4s_pie_mode_matches_the_python_l4s_pie(harness: Path):
    rng = random.Random(314)
    for auto in (0, 1):
        cases = []
        for _ in range(400):
            prm, coupling, same = random_pie_params(rng)
            seed = rng.randrange(0, 2**31 - 1)
            cases.append((prm, coupling, same, seed, random_events(rng, prm.tupdate, rng.choice([50, 400]),
                                                                  updates=not auto)))
        outs = run_harness(harness, [(header_pie(p, c, s, sd, 1, auto), ev) for p, c, s, sd, ev in cases])
        for (prm, coupling, same, seed, events), got in zip(cases, outs, strict=True):
            want = python_l4spie(prm, coupling, same, seed, events, auto=bool(auto))
            where = f"{prm} k={coupling} same={same} seed {seed} auto={auto}"
            assert got == want, f"{where}: {_first_difference(want, got)}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 2), params_seed=st.integers(0, 10**9),
       events=st.lists(st.one_of(
           st.tuples(st.just("E"), st.integers(0, 5000), st.integers(40, 9000), st.integers(0, 3)),
           st.tuples(st.just("D"), st.integers(0, 5000)),
           st.tuples(st.just("U"), st.integers(0, 5000))), max_size=200))
def test_c_core_matches_replay_on_hypothesis_traces(harness: Path, seed: int, params_seed: int, events: list):
    prm = random_dualpi2_params(random.Random(params_seed))
    now, timed = 0, []
    for ev in events:  # the integers are time steps: make the times non-decreasing
        now += ev[1]
        timed.append((ev[0], now) + tuple(ev[2:]))
    got = run_harness(harness, [(header_dualpi2(prm, seed, 0, 0), timed)])[0]
    want = [fmt(r) for r in replay(prm, seed, timed)]
    assert got == want, _first_difference(want, got)


def test_c_core_with_a_policy_blob_matches_the_python_core_decision_for_decision(harness: Path):
    """The policy AQM: the blob decides every N-th dequeue decision in C exactly as in the simulator, and
    the decided_by field of every log line says which of DualPI2 or the policy took it."""
    from l4stb.policyblob import Feature, Node, encode, parse
    from l4stb.sim.policy import BlobPolicy

    # a small fixed tree over the fields DualPI2 logs: sojourn, queue bytes, queue type
    nodes = [Node(0, 0, 1, 4, 4000), Node(1, 0, 2, 3, 3000), Node(0xFF, 0, 0, 0, 0), Node(0xFF, 2, 0, 0, 0),
             Node(2, 0, 5, 6, 0), Node(0xFF, 1, 0, 0, 0), Node(0xFF, 2, 0, 0, 0)]
    raw = encode([Feature(10, 0, 1), Feature(20, 0, 1), Feature(0, 0, 1)], nodes, 2)
    rng = random.Random(4242)
    cases = []
    for _ in range(250):
        prm = random_dualpi2_params(rng)
        every = rng.choice([1, 1, 2, 3, 10])
        cases.append((prm, rng.randrange(10**6), every, random_events(rng, prm.tupdate_us, rng.choice([50, 300]))))
    blocks = [(header_dualpi2(p, s, 1, 0) + f"\nQ,{every},{raw.hex()}", ev) for p, s, every, ev in cases]
    outs = run_harness(harness, blocks)
    by_policy = 0
    for (prm, seed, every, events), got in zip(cases, outs, strict=True):
        want = python_dualpi2_with_logs(prm, seed, events, policy=BlobPolicy(parse(raw), every))
        assert got == want, f"{prm} seed {seed} every {every}: {_first_difference(want, got)}"
        by_policy += sum(1 for w in want if w.startswith("L,") and w.endswith(",1"))
    assert by_policy > 1000
