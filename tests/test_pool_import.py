"""Importing the original L4S-LLM pickles: the real files, and a crafted pickle that must never run."""

from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest
from conftest import realdata
from l4stb.analysis.pool import load_pool
from l4stb.analysis.pool_build import PRESETS
from l4stb.analysis.pool_import import import_pickle
from l4stb.errors import L4stbError
from l4stb.workspace import Workspace


def counts(splits) -> list[int]:
    return sum(np.bincount(splits.split(s).actions, minlength=3) for s in ("train", "val", "test")).tolist()


def test_real_full_pool_imports_with_its_action_counts():
    splits = import_pickle(realdata("exp_pool_l4s_full.pkl"))
    assert counts(splits) == [24857, 3263, 765]
    assert sum(len(splits.split(s)) for s in ("train", "val", "test")) == 28885
    assert splits.meta.feature_names == list(PRESETS["paper8-early"]) and splits.meta.preset == "paper8-early"
    assert splits.meta.reward == "paper-delay" and splits.meta.source == "import:exp_pool_l4s_full.pkl"
    j = splits.meta.feature_names.index("drop_probability")
    assert 0 <= splits.train.states[:, j].min() and splits.train.states[:, j].max() <= 1


def test_real_train_pool_imports_with_its_action_counts():
    splits = import_pickle(realdata("exp_pool_l4s_train.pkl"))
    assert counts(splits) == [2061, 369, 60] and sum(len(splits.split(s)) for s in ("train", "val", "test")) == 2490
    assert splits.meta.feature_names == list(PRESETS["paper7"]) and splits.meta.reward == "paper"


def test_imported_pool_is_split_by_position_into_contiguous_blocks():
    splits = import_pickle(realdata("exp_pool_l4s_train.pkl"))
    sizes = [len(splits.split(s)) for s in ("train", "val", "test")]
    assert sizes == [1743, 373, 374]
    assert "by-position" in splits.meta.split
    for s in ("train", "val", "test"):  # one episode, each block ends with done
        p = splits.split(s)
        assert set(p.episode.tolist()) == {0} and p.dones.sum() == 1 and p.dones[-1]
    # the first train row is the file's first row (position kept, nothing shuffled)
    assert splits.train.states[0, 3] == 370000.0 and splits.train.rewards[0] == pytest.approx(1500 / 371000)


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {Evil.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    Evil.marker = tmp_path / "pwned"
    path = tmp_path / "exp_pool_evil.pkl"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(L4stbError) as err:
        import_pickle(path)
    msg = str(err.value)
    assert "exp_pool_evil.pkl" in msg and "system" in msg and "refused" in msg
    assert not Evil.marker.exists()


def test_a_pool_whose_arrays_hide_a_call_is_refused(tmp_path, monkeypatch):
    """The right class, but one state element reduces to builtins.eval: refused at that global."""
    module = types.ModuleType("utils.exp_pool")

    class ExperiencePool:
        pass

    ExperiencePool.__module__, ExperiencePool.__qualname__ = "utils.exp_pool", "ExperiencePool"
    module.ExperiencePool = ExperiencePool
    monkeypatch.setitem(sys.modules, "utils", types.ModuleType("utils"))
    monkeypatch.setitem(sys.modules, "utils.exp_pool", module)

    class Sneaky:
        def __reduce__(self):
            return (eval, ("__import__('os').system('touch " + str(tmp_path / "pwned") + "')",))

    pool = ExperiencePool()
    pool.states = [np.zeros(7, np.float32), Sneaky()]
    pool.actions, pool.rewards, pool.dones = [0, 0], [0.0, 0.0], [0, 0]
    path = tmp_path / "sneaky.pkl"
    path.write_bytes(pickle.dumps(pool, protocol=4))
    assert b"utils.exp_pool" in path.read_bytes()
    with pytest.raises(L4stbError, match="builtins.eval"):
        import_pickle(path)
    assert not (tmp_path / "pwned").exists()


def test_truncated_pickle_is_a_clear_error(tmp_path):
    src = realdata("exp_pool_l4s_train.pkl")
    bad = tmp_path / "cut.pkl"
    bad.write_bytes(src.read_bytes()[:5000])
    with pytest.raises(L4stbError, match="not a readable ExperiencePool pickle"):
        import_pickle(bad)


def test_cli_pool_import_saves_the_pool(l4stb, workdir):
    src = realdata("exp_pool_l4s_train.pkl")
    result = l4stb("pool", "import", str(src))
    assert result.exit_code == 0, result.output
    assert "exp_pool_l4s_train" in result.stdout
    splits = load_pool(Workspace.at(workdir).pool_dir(None, "exp_pool_l4s_train"))
    assert counts(splits) == [2061, 369, 60]


def test_cli_refuses_a_malicious_pickle_with_exit_2(l4stb, workdir, tmp_path):
    Evil.marker = tmp_path / "pwned-cli"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Evil()))
    result = l4stb("pool", "import", str(path))
    assert result.exit_code == 2
    assert "refused" in result.stderr and "evil.pkl" in result.stderr and "Traceback" not in result.output
    assert not Evil.marker.exists()
