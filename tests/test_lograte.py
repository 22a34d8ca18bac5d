"""Per-packet logging on the vagrant router: how long the kernel message buffer rides out a syslogd stall at a
scenario's rate, and the warning before a run whose rate leaves less than a second."""

from __future__ import annotations

import logging

import pytest

from l4stb import lograte
from l4stb.config import load_scenario
from l4stb.providers.freebsd import plans


def test_the_paper_rate_leaves_tens_of_seconds_and_no_warning():
    sc = load_scenario("dctcp-8mbps")
    assert lograte.decisions_per_s(sc) == pytest.approx(8e6 / 12_000)
    assert lograte.stall_budget_s(sc) > 30 and lograte.warning(sc) is None


def test_a_gigabit_bottleneck_warns_with_the_numbers_and_what_to_run():
    sc = load_scenario("dctcp-8mbps", ["bottleneck.rate=1Gbit"])
    note = lograte.warning(sc)
    assert note and "83,333 lines a second" in note and "holds only 0.3" in note
    assert "l4stb check --scenario dctcp-8mbps" in note


def test_the_warning_names_the_sampling_that_fits_and_that_sampling_silences_it():
    sc = load_scenario("dctcp-8mbps", ["bottleneck.rate=1Gbit"])
    n = lograte.sample_every_needed(sc)
    assert f"--set logging.sample_every={n} " in lograte.warning(sc) and 2 <= n <= 10
    sampled = load_scenario("dctcp-8mbps", ["bottleneck.rate=1Gbit", f"logging.sample_every={n}"])
    assert lograte.lines_per_s(sampled) == pytest.approx(lograte.decisions_per_s(sc) / n)
    assert lograte.stall_budget_s(sampled) >= lograte.MIN_STALL_S and lograte.warning(sampled) is None
    less = load_scenario("dctcp-8mbps", ["bottleneck.rate=1Gbit", f"logging.sample_every={n - 1}"])
    assert lograte.warning(less) and "every " in lograte.warning(less)


def test_the_peak_of_a_rate_schedule_counts_and_match_any_counts_twice():
    base = load_scenario("dctcp-8mbps", ["bottleneck.rate_schedule=[{at: 10s, rate: 400Mbit}]"])
    assert lograte.peak_rate_bps(base) == 400_000_000 and lograte.warning(base)
    twice = load_scenario("dctcp-8mbps", ["bottleneck.rate=200Mbit", "bottleneck.match=any"])
    once = load_scenario("dctcp-8mbps", ["bottleneck.rate=200Mbit"])
    assert lograte.decisions_per_s(twice) == 2 * lograte.decisions_per_s(once)
    assert lograte.warning(once) is None and lograte.warning(twice)


def test_the_router_is_provisioned_with_the_buffer_the_estimate_assumes():
    assert plans.MSGBUF_BYTES == lograte.MSGBUF_BYTES
    assert lograte.LINE_BYTES > 250, "an upper estimate of one stored line"


def test_prepare_run_logs_the_warning_on_the_vms(monkeypatch, tmp_path, caplog):
    from l4stb.config import load_topology
    from l4stb.providers.freebsd.vagrant import VagrantProvider
    from l4stb.workspace import Workspace

    facts = {h: {"sysctls": {"kern.hz": "1000"}} for h in load_topology("dumbbell-4").hosts}
    monkeypatch.setattr(VagrantProvider, "host_facts", lambda self, topo: facts)
    prov = VagrantProvider(Workspace.at(tmp_path))
    with caplog.at_level(logging.WARNING):
        prov.prepare_run(load_scenario("dctcp-8mbps", ["bottleneck.rate=1Gbit"]), load_topology("dumbbell-4"))
    assert any("kernel message buffer holds only" in r.getMessage() for r in caplog.records)
