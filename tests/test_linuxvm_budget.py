"""The qemu provider's per-repeat budget: guest time, which under TCG with icount is QEMU's CPU time.

A loaded host must slow a repeat down, never fail it; a guest that spins must still be stopped. QEMU itself is
replaced by small Python processes that sleep (no CPU, like a starved VM) or spin (CPU, like a runaway guest)."""

from __future__ import annotations

import sys

import pytest

from l4stb.linuxvm import vm


@pytest.fixture
def fake_qemu(monkeypatch):
    def use(code: str):
        monkeypatch.setattr(vm, "command", lambda image, share, **kw: [sys.executable, "-c", code])
    return use


def test_icount_budget_counts_cpu_not_wall(fake_qemu, tmp_path):
    """A guest that gets no CPU for longer than its budget (a busy host) is not timed out under icount."""
    fake_qemu("import time; time.sleep(2.0)")
    result = vm.boot(tmp_path, tmp_path, accel="tcg-icount", timeout_s=0.8)
    assert not result.timed_out
    assert result.exit_code == 0
    assert result.wall_s >= 2.0
    assert result.cpu_s < 0.8


def test_icount_budget_stops_a_spinning_guest(fake_qemu, tmp_path):
    fake_qemu("while True: pass")
    result = vm.boot(tmp_path, tmp_path, accel="tcg-icount", timeout_s=0.8)
    assert result.timed_out
    assert result.cpu_s >= 0.8


def test_plain_tcg_budget_is_wall_time(fake_qemu, tmp_path):
    """Without icount the guest's clock is the host's: the budget is wall time."""
    fake_qemu("import time; time.sleep(30)")
    result = vm.boot(tmp_path, tmp_path, accel="tcg", timeout_s=0.8)
    assert result.timed_out
    assert result.wall_s < 10


def test_cpu_of_a_finished_process_reads_zero():
    assert vm.process_cpu_s(2 ** 22 + 12345) == 0.0
