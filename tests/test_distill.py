"""Distillation: the tree imitates its teacher, obeys its limits, and what it writes is what the router runs.

The teacher here is a rule over the logged queue delay (what a trained LLM is to the real job), so the
tests are fast and know the right answer; the main job's end-to-end test distils a real L4S-LLM.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from l4stb import policyblob as pb
from l4stb.analysis.pool import ExperiencePool, PoolMeta, PoolSplits
from l4stb.config import load_scenario, load_topology
from l4stb.errors import L4stbError
from l4stb.logformat import PROB_SCALE
from l4stb.model.distill import (DistillConfig, build_blob, decide_all, distill, fit_tree, fixed_point,
                                 log_integers, records)

FEATURES = ("queue_type", "drop_probability", "current_queue_delay", "length_in_bytes", "packet_length")


class RuleTeacher:
    """Drops Classic packets that waited over 12 ms, marks L packets over 2 ms, forwards the rest."""

    checkpoint = Path("rule-teacher")

    def label(self, pool: ExperiencePool) -> np.ndarray:
        qt, qd = pool.states[:, 0], pool.states[:, 2]
        return np.where((qt == 0) & (qd > 12_000), 1, np.where((qt == 1) & (qd > 2_000), 2, 0)).astype(np.int64)


def synthetic_pool(n: int, seed: int, episode: int = 0) -> ExperiencePool:
    rng = np.random.default_rng(seed)
    states = np.stack([rng.integers(0, 2, n), rng.random(n), rng.integers(0, 40_000, n),
                       rng.integers(0, 200_000, n), rng.choice([66, 1500], n)], axis=1).astype(np.float32)
    actions = RuleTeacher().label(ExperiencePool(states, np.zeros(n), np.zeros(n), np.zeros(n, bool),
                                                 np.zeros(n, np.int32), FEATURES))
    flip = rng.random(n) < 0.05  # the logged labels are noisier than the teacher
    actions[flip] = rng.integers(0, 3, flip.sum())
    dones = np.zeros(n, bool)
    dones[-1] = True
    return ExperiencePool(states, actions, np.ones(n, np.float32), dones, np.full(n, episode, np.int32), FEATURES)


def splits(episodes: list[dict] | None = None) -> PoolSplits:
    meta = PoolMeta("synthetic", list(FEATURES), "custom", "paper", 1.0, "test", "by-repeat",
                    episodes=episodes or [])
    return PoolSplits(meta, synthetic_pool(8000, 1), synthetic_pool(500, 2, 1), synthetic_pool(3000, 3, 2))


def test_the_blob_decides_exactly_like_the_fitted_tree_on_integer_features():
    pool = synthetic_pool(5000, 7)
    ints = log_integers(pool.states, FEATURES)
    features = [pb.feature_for(n, int(ints[:, j].max())) for j, n in enumerate(FEATURES)]
    xq = fixed_point(ints, features)
    clf = fit_tree(xq, pool.actions, DistillConfig(max_depth=6, max_leaves=40), len(features))
    blob = build_blob(clf, features)
    assert (decide_all(blob, records(ints, FEATURES)) == clf.predict(xq.astype(np.float64))).all()
    assert blob.max_depth <= 6 and blob.leaves <= 40


def test_probabilities_come_back_as_the_integers_the_router_logged():
    logged = np.array([0, 1, 12345, PROB_SCALE // 3, PROB_SCALE], dtype=np.int64)
    states = np.zeros((5, len(FEATURES)), np.float64)
    states[:, 1] = logged / PROB_SCALE
    assert (log_integers(states, FEATURES)[:, 1] == logged).all()


def test_limits_beyond_what_the_kernel_accepts_are_user_errors():
    with pytest.raises(L4stbError, match="max-depth"):
        DistillConfig(max_depth=pb.MAX_DEPTH + 1).validated()
    with pytest.raises(L4stbError, match="max-bytes"):
        DistillConfig(max_bytes=pb.MAX_BYTES + 1).validated()


def test_distilled_tree_imitates_its_teacher_within_its_byte_budget(tmp_path):
    cfg = DistillConfig(max_depth=5, max_leaves=16, max_bytes=512, dagger_rounds=0)
    result = distill(splits(), RuleTeacher(), tmp_path / "m-distilled", cfg,
                     teacher_metrics={"baselines": {"always_forward": {"macro_f1": 0.2}}})
    s = result.summary
    assert s["agreement_with_teacher"] > 0.99
    assert s["blob"]["bytes"] <= 512 and s["blob"]["depth"] <= 5 and s["blob"]["leaves"] <= 16
    assert s["test"]["macro_f1"] > 0.8 and s["baselines"]["always_forward"]["macro_f1"] == 0.2
    written = pb.load(tmp_path / "m-distilled")
    assert written.sha256 == s["blob"]["sha256"]
    assert json.loads((tmp_path / "m-distilled" / "distill.json").read_text())["blob"]["nodes"] == len(written.nodes)
    assert s["latency_ns"]["python"] > 0


def test_dagger_rolls_the_student_out_on_training_seeds_and_learns_from_what_it_visits(tmp_path):
    scenario = load_scenario("dctcp-8mbps", ["duration=3s"])
    eps = [{"run": "r1", "repeat": 1, "split": "train"}, {"run": "r1", "repeat": 2, "split": "test"}]
    cfg = DistillConfig(max_depth=4, max_leaves=8, dagger_rounds=1)
    result = distill(splits(eps), RuleTeacher(), tmp_path / "d", cfg, scenario=scenario,
                     topology=load_topology(scenario.topology), run_id="r1")
    dagger = result.summary["data"]["dagger"]
    assert len(dagger) == 1 and dagger[0]["repeat"] == 1 and dagger[0]["states"] > 500
    assert result.summary["data"]["total_rows"] == result.summary["data"]["teacher_rows"] + dagger[0]["states"]
