"""Hostile experience pools and backbones, and tiny inputs that used to cost gigabytes: refused early, memory bounded.

Peak memory is measured on the command's own process (``RUSAGE_CHILDREN`` of a fresh parent) and bounded by
:data:`hostile.PEAK_MEMORY_BOUND_MB`.
"""

from __future__ import annotations

import bz2
import json
import pickle
import sys
import types

import numpy as np
import pytest

from hostile import PEAK_MEMORY_BOUND_MB, assert_user_error, peak_rss_mb


class ExperiencePool:
    """Pickled as ``exp_pool.ExperiencePool``, one of the names the original code's pools carry."""


ExperiencePool.__module__ = "exp_pool"
sys.modules.setdefault("exp_pool", types.ModuleType("exp_pool")).ExperiencePool = ExperiencePool


def write_pool_pickle(path, rows: int = 100, *, states=None, rewards=None, actions=None):
    rng = np.random.default_rng(0)
    pool = ExperiencePool()
    pool.states = states if states is not None else list(rng.random((rows, 7), dtype=np.float32))
    pool.actions = actions if actions is not None else rng.integers(0, 3, rows).tolist()
    pool.rewards = rewards if rewards is not None else rng.random(rows).tolist()
    pool.dones = [False] * (rows - 1) + [True]
    path.write_bytes(pickle.dumps(pool, protocol=4))
    return path


class _CallsNdarray:
    def __reduce__(self):
        return (np.ndarray, ((2**27,),))


class _HugeArrayState:
    """numpy's own pickle form of an array, claiming 2**27 float64 elements with 8 bytes of data."""

    def __reduce__(self):
        from numpy._core import multiarray as ma

        return (ma._reconstruct, (np.ndarray, (0,), b"b"), (1, (2**27,), np.dtype("f8"), False, b"x" * 8))


@pytest.mark.parametrize("kind, fragment", [
    ("states-is-5", "not a list"),
    ("rewards-inf", "NaN or infinite"),
    ("states-nan", "NaN or infinite"),
    ("reward-10**400", "do not hold numbers"),
    ("action-inf", "do not hold numbers"),
    ("ndarray-call", "numpy.ndarray directly"),
    ("array-larger-than-file", "larger than the file"),
])
def test_hostile_pool_pickles_are_refused_before_they_cost_memory(workdir, tmp_path, kind, fragment):
    path = tmp_path / "p.pkl"
    n = 50
    if kind == "states-is-5":
        write_pool_pickle(path, n, states=5)
    elif kind == "rewards-inf":
        write_pool_pickle(path, n, rewards=[float("inf")] * n)
    elif kind == "states-nan":
        write_pool_pickle(path, n, states=[np.full(7, np.nan, np.float32)] * n)
    elif kind == "reward-10**400":
        write_pool_pickle(path, n, rewards=[10**400] * n)
    elif kind == "action-inf":
        write_pool_pickle(path, n, actions=[float("inf")] * n)
    elif kind == "ndarray-call":
        write_pool_pickle(path, 1, states=[_CallsNdarray()])
    else:
        write_pool_pickle(path, 1, states=[_HugeArrayState()])
    workdir.mkdir()
    code, peak_mb, stderr = peak_rss_mb(workdir, "pool", "import", str(path))
    assert code == 2 and fragment in stderr and "Traceback" not in stderr, stderr
    assert peak_mb < PEAK_MEMORY_BOUND_MB
    assert not (workdir / "pools" / "p").exists()


def test_a_good_pool_imports_and_loads(l4stb, tmp_path):
    path = write_pool_pickle(tmp_path / "good.pkl", 300)
    result = l4stb("pool", "import", str(path))
    assert result.exit_code == 0, result.stderr
    assert "imported" in result.stdout


@pytest.mark.slow
def test_a_pool_of_mixed_files_is_refused_by_the_loader(l4stb, workdir, tmp_path):
    assert l4stb("pool", "import", str(write_pool_pickle(tmp_path / "a.pkl", 300)), "--name", "a").exit_code == 0
    assert l4stb("pool", "import", str(write_pool_pickle(tmp_path / "b.pkl", 900)), "--name", "b").exit_code == 0
    (workdir / "pools" / "b" / "train.npz").replace(workdir / "pools" / "a" / "train.npz")
    assert_user_error(l4stb("train-and-report", "--pool", "a"), "damaged", "train.npz")


@pytest.mark.slow
def test_a_backbone_folder_with_a_pickle_payload_is_a_user_error(l4stb, tmp_path):
    import os

    from transformers import GPT2Config

    folder = tmp_path / "evil"
    GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=64).save_pretrained(folder)
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"w": Payload()}))
    assert l4stb("pool", "import", str(write_pool_pickle(tmp_path / "p.pkl", 300)), "--name", "p").exit_code == 0
    result = l4stb("train-and-report", "--pool", "p", "--backbone", str(folder), "--epochs", "1",
                   "--no-closed-loop")
    assert_user_error(result, "pickle", "nothing in it was run")
    assert not marker.exists()


# ---- 6. bounded resources on tiny router logs -----------------------------------------------------------


def _import_and_summarize(workdir, tmp_path, name: str, content: bytes) -> tuple[int, float, dict]:
    log = tmp_path / name
    log.write_bytes(content)
    workdir.mkdir(exist_ok=True)
    code, peak_mb, stderr = peak_rss_mb(workdir, "import-logs", "--router-log", str(log), "--name", "h")
    assert code == 0, stderr
    code, peak_mb, stderr = peak_rss_mb(workdir, "summary", "--run", "h", "--json")
    parse = json.loads((workdir / "runs" / "h" / "data" / "parse.json").read_text())
    return code, peak_mb, parse


def _line(i: int, **fields) -> str:
    from logfixtures import l4stb_line, syslog, values

    v = values(i)
    v.update(fields)
    return l4stb_line(v, 1000 * i, 1, prefix=syslog(tag="dualpi2: "))


@pytest.mark.slow
def test_a_repeat_count_of_two_million_is_expanded_lazily(workdir, tmp_path):
    from logfixtures import paper_line, syslog, values

    text = (paper_line(values(1), prefix=syslog(tag="dualpi2: ")) + "\n"
            + syslog("Dec 30 10:00:01", tag="") + "last message repeated 2000000 times\n")
    code, peak_mb, parse = _import_and_summarize(workdir, tmp_path, "messages", text.encode())
    assert code == 0 and parse["parsed"] == 2_000_001
    assert peak_mb < PEAK_MEMORY_BOUND_MB


@pytest.mark.slow
def test_a_repeat_count_syslogd_cannot_emit_is_skipped_not_expanded(workdir, tmp_path):
    from logfixtures import paper_line, syslog, values

    text = (paper_line(values(1), prefix=syslog(tag="dualpi2: ")) + "\n"
            + syslog(tag="") + "last message repeated 99999999999999999 times\n")
    code, peak_mb, parse = _import_and_summarize(workdir, tmp_path, "messages", text.encode())
    assert parse["parsed"] == 1 and parse["skipped"]["repeat_over_cap"] == 1
    assert peak_mb < PEAK_MEMORY_BOUND_MB


@pytest.mark.slow
def test_a_bz2_bomb_is_cut_off_and_counted(workdir, tmp_path):
    bomb = bz2.compress(b"\n".join(_line(i).encode() for i in range(3)) + b"\n" + b"A" * (66 << 20))
    assert len(bomb) < 2000
    code, peak_mb, parse = _import_and_summarize(workdir, tmp_path, "dualpi2.log.0.bz2", bomb)
    assert code == 0 and parse["skipped"].get("decompression_bomb") == 1 and parse["parsed"] == 3
    assert peak_mb < PEAK_MEMORY_BOUND_MB


@pytest.mark.slow
def test_out_of_range_fields_are_skipped_never_stored(workdir, tmp_path):
    import pandas as pd

    lines = [_line(0), _line(1, drop_probability=2**62), _line(2, current_queue_delay=2**63 - 1),
             _line(3, dequeue_count=-1), _line(4, packet_length=70_000), _line(5)]
    lines.append(lines[-1].replace(",1,end", f",{2**40},end"))  # a flow id past int32
    code, _, parse = _import_and_summarize(workdir, tmp_path, "messages", ("\n".join(lines) + "\n").encode())
    assert code == 0
    assert parse["parsed"] == 2 and parse["skipped"]["out_of_range"] == 5
    packets = pd.read_parquet(workdir / "runs" / "h" / "data" / "packets.parquet")
    assert packets["drop_probability"].max() <= 16 and packets["current_queue_delay"].max() < 86_400_000_000
    assert (packets["flow_id"] >= 0).all()
