"""Traced simulated senders: what they record, and that the runner is left as it was."""

import pytest

from l4stb.config import load_scenario, load_topology
from l4stb.sim import runner
from l4stb.sim.tcp import MSS, TcpFlow
from l4stb.sim.trace import simulate_traced, traced_senders


def test_traced_senders_record_every_acked_byte_and_the_state_after_each_ack(tmp_path):
    sc = load_scenario("freebsd-siftr-l4s-1mbps-20ms")
    stats, flows = simulate_traced(runner.SimJob(sc, load_topology(sc.topology), "t", 1, sc.repeat_seed(1),
                                                 str(tmp_path)))
    assert [f.cc.name for f in flows] == ["newreno", "dctcp"]  # the scenario's order
    for flow in flows:
        assert sum(r[4] for r in flow.trace) == flow.snd_una * MSS  # every acked byte, once
        assert flow.trace[-1][1] == flow.cwnd and flow.trace[-1][2] == flow.ssthresh
        times = [r[0] for r in flow.trace]
        assert times == sorted(times)
    assert runner.TcpFlow is TcpFlow


def test_the_runner_gets_its_own_sender_back_even_when_the_block_fails():
    with pytest.raises(RuntimeError):
        with traced_senders():
            assert runner.TcpFlow is not TcpFlow
            raise RuntimeError("boom")
    assert runner.TcpFlow is TcpFlow
