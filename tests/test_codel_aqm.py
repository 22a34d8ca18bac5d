"""CoDel and FQ-CoDel as a user relies on them: the RFC 8289 drop schedule, marks for ECN-capable packets, Linux's
ce_threshold, flow-queue isolation, the overlimit drop, and clear errors for settings the AQM would ignore."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest

from l4stb.aqm_catalogue import CodelParams
from l4stb.config import load_scenario, load_topology
from l4stb.logformat import ACTION_DROP, ACTION_FORWARD, ACTION_MARK, FIELD_INDEX, FIELD_RANGES, format_line
from l4stb.sim.aqm_codel import Codel
from l4stb.sim.aqm_fq_codel import FqCodel
from l4stb.sim.packet import ECT0, NOT_ECT, make_packet
from l4stb.sim.runner import SimJob, simulate_repeat

ACTION, TIME, SOJOURN = FIELD_INDEX["dequeue_action"], FIELD_INDEX["timestamp_us"], FIELD_INDEX["current_queue_delay"]
INTERVAL_US = 100_000


def _overloaded(prm: CodelParams, ecn_cp: int, n_ms: int = 1_500) -> list[tuple]:
    """Two arrivals per ms, one departure per ms: the sojourn grows and never falls below target."""
    lines: list[tuple] = []
    aqm = Codel(prm, emit=lines.append)
    seq = 0
    for t_ms in range(n_ms):
        now = t_ms * 1_000
        for _ in range(2):
            aqm.enqueue(make_packet(0, 1500, ecn_cp, 0, seq), now)
            seq += 1
        aqm.dequeue(now)
    return lines


def _params(linux: bool, ecn: bool, **kw) -> CodelParams:
    return CodelParams(target_us=5_000, interval_us=INTERVAL_US, ecn=ecn, linux=linux, tick_us=1,
                       limit_packets=10_000, **kw)


@pytest.mark.parametrize("linux", [False, True], ids=["freebsd", "linux"])
def test_codel_drops_an_interval_after_the_sojourn_exceeds_target_then_every_interval_over_sqrt_count(linux):
    lines = _overloaded(_params(linux, ecn=False), NOT_ECT)
    above = next(ln[TIME] for ln in lines if ln[SOJOURN] >= 5_000)
    drops = [ln[TIME] for ln in lines if ln[ACTION] == ACTION_DROP]
    assert len(drops) > 10 and not any(ln[ACTION] == ACTION_MARK for ln in lines)
    assert INTERVAL_US <= drops[0] - above <= INTERVAL_US + 1_000
    gaps = [b - a for a, b in zip(drops, drops[1:])]
    assert abs(gaps[0] - INTERVAL_US) <= 1_000  # count 1: a whole interval
    for count, gap in enumerate(gaps[3:], start=4):  # gaps[j] follows count j+1; Newton's error settled by 4
        want = INTERVAL_US / math.sqrt(count)
        assert abs(gap - want) <= 0.03 * want + 1_000, (count, gap, want)
    assert gaps[-1] < gaps[0] / 3  # the drop rate keeps rising while the queue stays above target


@pytest.mark.parametrize("linux", [False, True], ids=["freebsd", "linux"])
def test_ecn_capable_packets_are_marked_on_the_same_schedule_instead_of_dropped(linux):
    dropped = [ln[TIME] for ln in _overloaded(_params(linux, ecn=False), NOT_ECT) if ln[ACTION] == ACTION_DROP]
    marked_lines = _overloaded(_params(linux, ecn=True), ECT0)
    marked = [ln[TIME] for ln in marked_lines if ln[ACTION] == ACTION_MARK]
    assert not any(ln[ACTION] == ACTION_DROP for ln in marked_lines)
    assert marked[:4] == dropped[:4]  # the queue is the same until the first drop/mark
    assert len(marked) == pytest.approx(len(dropped), rel=0.1)
    # ECN off: an ECT packet is dropped, not marked
    off = _overloaded(_params(linux, ecn=False), ECT0)
    assert any(ln[ACTION] == ACTION_DROP for ln in off) and not any(ln[ACTION] == ACTION_MARK for ln in off)


def test_linux_ce_threshold_marks_every_ect_packet_above_it_and_leaves_not_ect_alone():
    prm = _params(True, ecn=False, ce_threshold_us=2_000)
    ect = Codel(prm)
    plain = Codel(prm)
    for aqm, cp in ((ect, ECT0), (plain, NOT_ECT)):
        for i in range(4):
            aqm.enqueue(make_packet(0, 1500, cp, 0, i), 0)
    sent = [ect.dequeue(t) for t in (1_000, 2_000, 3_000, 4_000)]
    assert [p[2] for p in sent] == [ECT0, ECT0, 3, 3]  # sojourn 1, 2 ms: not above; 3, 4 ms: CE
    assert ect.marks[0] == 2
    assert [plain.dequeue(t)[2] for t in (1_000, 2_000, 3_000, 4_000)] == [NOT_ECT] * 4


def test_freebsd_codel_waits_for_the_dummynet_tick():
    """AQM_UNOW is tick-quantised: at kern.hz=100 a 5 ms target is judged on 10 ms ticks."""
    prm = CodelParams(target_us=5_000, interval_us=INTERVAL_US, ecn=False, tick_us=10_000, limit_packets=100)
    aqm = Codel(prm)
    aqm.enqueue(make_packet(0, 1500, NOT_ECT), 3_000)
    aqm.enqueue(make_packet(0, 1500, NOT_ECT), 3_000)
    assert aqm.q[0][0] == 0  # stamped with the tick, not the microsecond


def _fq_line(fq: FqCodel, lines: list) -> None:
    for values in lines:
        format_line(values)  # every value inside the documented ranges
        for name, (lo, hi) in FIELD_RANGES.items():
            assert lo <= values[FIELD_INDEX[name]] <= hi, name


@pytest.mark.parametrize("linux", [False, True], ids=["freebsd", "linux"])
def test_fq_codel_over_its_limit_drops_from_the_fattest_flow_not_the_arriving_one(linux):
    lines: list[tuple] = []
    fq = FqCodel(CodelParams(linux=linux, limit_packets=20, tick_us=1), seed=3, emit=lines.append)
    for i in range(18):
        fq.enqueue(make_packet(0, 1500, NOT_ECT, 0, i), i)
    assert fq.bucket(make_packet(0, 1500, NOT_ECT, 0)) != fq.bucket(make_packet(0, 1500, NOT_ECT, 1))
    for i in range(3):
        assert fq.enqueue(make_packet(0, 1500, NOT_ECT, 1, i), 100 + i)  # the thin flow keeps its packets
    dropped = [ln for ln in lines if ln[ACTION] == ACTION_DROP]
    assert dropped and all(ln[FIELD_INDEX["flow_id"]] == 0 for ln in dropped)
    # FreeBSD drops one head packet per arrival over the limit; Linux half the fat flow's bytes at once
    assert len(dropped) == (1 if not linux else 9)
    assert fq.qlen == 21 - len(dropped)
    _fq_line(fq, lines)


def _sim(aqm: str, extra: list[str], seconds: int = 20) -> dict[str, float]:
    sc = load_scenario("dctcp-8mbps", [f"aqm.name={aqm}", f"duration={seconds}s", *extra,
                                       "flows=[{host: client1, cc: cubic}, {host: client2, cc: dctcp}]"])
    with tempfile.TemporaryDirectory() as tmp:
        stats = simulate_repeat(SimJob(sc, load_topology(sc.topology), "t", 1, 11, str(Path(tmp))))
    return {f["cc"]: f["throughput_mbps"] for f in stats["flows"]} | {
        "drops": stats["drops"]["C"], "marks": stats["marks"]["C"]}


@pytest.mark.slow
def test_flow_queues_give_cubic_and_dctcp_equal_shares_where_one_codel_queue_does_not():
    fq = _sim("fq_codel", [])
    single = _sim("codel", [])
    assert fq["dctcp"] / fq["cubic"] == pytest.approx(1.0, abs=0.15)
    assert single["dctcp"] / single["cubic"] > 1.5  # DCTCP's mild reaction to CoDel's marks wins one shared queue
    assert fq["marks"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("ecn", [True, False])
def test_standard_codel_at_8mbps_holds_the_queue_near_its_5ms_target_with_and_without_ecn(ecn, tmp_path):
    sc = load_scenario("cubic-8mbps", ["aqm.name=codel", f"aqm.ecn={str(ecn).lower()}", f"ecn={str(ecn).lower()}",
                                       "duration=20s"])
    stats = simulate_repeat(SimJob(sc, load_topology(sc.topology), "t", 1, 5, str(tmp_path)),
                            collect_sojourn=True)
    soj = sorted(stats["sojourn_us"][len(stats["sojourn_us"]) // 4:])  # after the start-up
    median_ms = soj[len(soj) // 2] / 1000
    assert median_ms < 15, median_ms  # a tail-drop FIFO of 1000 packets at 8 Mbit/s would reach 1.5 s
    assert stats["utilisation"] > 0.9
    if ecn:
        assert stats["marks"]["C"] > 0 and stats["drops"]["C"] == 0
    else:
        assert stats["drops"]["C"] > 0 and stats["marks"]["C"] == 0


# ---------------------------------------------------------------------------------------------- scenario errors


@pytest.mark.parametrize("overrides, words", [
    (["aqm.name=pie", "aqm.interval=100ms"], "aqm.interval is CoDel's"),
    (["aqm.name=dualpi2", "aqm.codel_semantics=linux"], "aqm.codel_semantics is CoDel's"),
    (["aqm.name=codel", "aqm.quantum=1514"], "fq_codel's flow-queue settings"),
    (["aqm.name=fq_codel", "aqm.tupdate=15ms"], "no PI controller"),
    (["aqm.name=codel", "aqm.ce_threshold=1ms"], "set aqm.codel_semantics to linux"),
    (["aqm.name=codel", "aqm.target=100ms"], "shorter than aqm.interval"),
    (["aqm.name=fq_codel", "aqm.interval=10s"], "1us to 5s"),
])
def test_settings_the_codel_aqms_would_ignore_or_refuse_are_errors_naming_the_field(overrides, words):
    with pytest.raises(Exception) as err:
        load_scenario("dctcp-8mbps", overrides)
    assert words in str(err.value)


def test_a_codel_setting_on_another_aqm_is_a_one_paragraph_user_error_with_exit_2(l4stb):
    res = l4stb("run", "--scenario", "dctcp-8mbps", "--set", "aqm.interval=100ms", "--dry-run")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "aqm.interval is CoDel's" in res.stderr


def test_fqcodel_scenario_is_shipped_and_runs_on_sim(l4stb):
    listed = l4stb("scenarios")
    assert listed.exit_code == 0 and "fqcodel-8mbps" in listed.stdout and "fq_codel" in listed.stdout
    dry = l4stb("run", "--scenario", "fqcodel-8mbps", "--dry-run")
    assert dry.exit_code == 0 and "FQ-CoDel (freebsd's): target 5ms, interval 100ms" in dry.stdout


# ---------------------------------------------------------------------------------------------- testbeds' words


def _router_plan(overrides: list[str]) -> str:
    from l4stb.providers.freebsd import plans

    sc = load_scenario("dctcp-8mbps", overrides)
    return plans.plan_of("x", plans.run_phases(sc, load_topology("dumbbell-4"), "p-1", 1)).render()


def test_vagrant_plan_runs_codel_as_the_queues_aqm_and_fq_codel_as_the_scheduler_with_its_words_last():
    codel = _router_plan(["aqm.name=codel", "aqm.ecn=false"])
    assert "ipfw sched 1 config pipe 1 type fifo\n" in codel
    assert "ipfw queue 1 config sched 1 queue 1000 codel target 5000us interval 100000us noecn\n" in codel
    fq = _router_plan(["aqm.name=fq_codel", "aqm.quantum=3028", "aqm.flows=64", "bottleneck.limit_packets=2000"])
    assert ("ipfw sched 1 config pipe 1 type fq_codel target 5000us interval 100000us ecn quantum 3028 limit 2000 "
            "flows 64\n") in fq


@pytest.mark.parametrize("overrides, words", [
    (["aqm.codel_semantics=linux"], "Linux's CoDel"),
    (["bottleneck.limit_packets=30000"], "bounds limit to 20480"),
])
def test_vagrant_refuses_what_dummynets_fq_codel_would_not_run_as_written(overrides, words):
    from l4stb.errors import L4stbError

    with pytest.raises(L4stbError) as err:
        _router_plan(["aqm.name=fq_codel", *overrides])
    assert words in str(err.value)


def test_qemu_runs_linux_codel_and_fq_codel_with_every_value_spelled_out():
    from l4stb.errors import L4stbError
    from l4stb.linuxvm import guest

    sc = load_scenario("dctcp-8mbps", ["aqm.name=fq_codel", "aqm.codel_semantics=linux", "aqm.ce_threshold=1ms"])
    guest.check_supported(sc)
    assert guest.qdisc_args(sc) == ["fq_codel", "limit", "1000", "flows", "1024", "quantum", "1514", "target",
                                    "5000us", "interval", "100000us", "ecn", "ce_threshold", "1000us"]
    codel = load_scenario("dctcp-8mbps", ["aqm.name=codel", "aqm.ecn=false"])
    assert guest.qdisc_args(codel) == ["codel", "limit", "1000", "target", "5000us", "interval", "100000us",
                                       "noecn"]
    with pytest.raises(L4stbError, match="set codel_semantics linux"):
        guest.check_supported(load_scenario("dctcp-8mbps", ["aqm.name=codel", "aqm.codel_semantics=freebsd"]))


def test_a_stored_scenario_with_every_field_written_out_loads_back_for_every_aqm():
    """A manifest stores the scenario with every field set (defaults included): reading it back must not refuse
    the CoDel fields' defaults on another AQM."""
    from l4stb.config import Scenario

    for name in ("dualpi2", "pie", "fifo", "codel", "fq_codel"):
        sc = load_scenario("dctcp-8mbps", [f"aqm.name={name}"])
        again = Scenario.model_validate(sc.model_dump(mode="json"))
        assert again.aqm == sc.aqm


def test_every_field_a_codel_line_documents_as_0_is_0_and_every_field_is_documented():
    from l4stb.logformat import CODEL_MEANINGS, FIELD_NAMES

    assert set(CODEL_MEANINGS) == set(FIELD_NAMES)
    zero = [FIELD_INDEX[n] for n, meaning in CODEL_MEANINGS.items() if meaning == "0" or meaning.startswith("0 (")]
    assert zero
    for linux in (False, True):
        lines = _overloaded(_params(linux, ecn=True, ce_threshold_us=20_000 if linux else -1), ECT0, n_ms=400)
        fq_lines: list[tuple] = []
        fq = FqCodel(CodelParams(linux=linux, limit_packets=30, tick_us=1), seed=1, emit=fq_lines.append)
        for i in range(60):
            fq.enqueue(make_packet(0, 1500, ECT0, i % 3, i), i * 500)
            if i % 2:
                fq.dequeue(i * 500)
        for ln in lines + fq_lines:
            assert all(ln[i] == 0 for i in zero), ln
            assert ln[FIELD_INDEX["qdelay_reference"]] == 5_000 and ln[FIELD_INDEX["tupdate"]] == INTERVAL_US
        _fq_line(fq, lines + fq_lines)
        assert {ln[ACTION] for ln in lines} >= {ACTION_FORWARD, ACTION_MARK}


@pytest.mark.parametrize("scenario, sched", [("fqcodel-8mbps", "FQ_CODEL"), ("dctcp-8mbps", "FIFO")])
def test_the_sim_self_check_passes_under_fq_codel_and_codel_naming_dummynets_scheduler(tmp_path, scenario, sched):
    from l4stb import check
    from l4stb.providers.base import RunContext
    from l4stb.providers.sim import SimProvider
    from l4stb.workspace import Workspace

    ws = Workspace.at(tmp_path)
    topo = load_topology("dumbbell-4")
    prov = SimProvider(ws)
    prov.up(topo)
    sc = check.check_scenario(load_scenario(scenario, [] if sched == "FQ_CODEL" else ["aqm.name=codel"]))
    ev = prov.self_check(RunContext("check-20250101T000000Z", sc, topo, ws))
    assert f"sched 1 type {sched} " in ev.sched_show and ev.module_loaded is None
    assert check.judge(ev, sc).failures == []
