"""Experience pools from parsed runs: presets, rewards, dones, return-to-go, splits by repeat, the paper's selection."""

from __future__ import annotations

import json

import numpy as np
import pytest
from l4stb.analysis.pool import ExperiencePool, load_pool
from l4stb.analysis.pool_build import PRESETS, REWARDS, build_pool, paper_changes_index
from l4stb.errors import L4stbError
from l4stb.workspace import Workspace
from logfixtures import old_line, raw_run, sim_log_lines, syslog, values


def make_runs(tmp_path, repeats=5, n=200, runs=("run-a",)) -> Workspace:
    ws = Workspace.at(tmp_path / "w")
    for k, run_id in enumerate(runs):
        logs = {r: sim_log_lines(n, start=10_000 * r + 1_000_000 * k, actions=(1, 1, 1, 1, 2, 1, 3)) for r in
                range(1, repeats + 1)}
        raw_run(ws, run_id, logs)
    return ws


def test_pool_has_one_row_per_decision_and_done_on_each_repeats_last_row(tmp_path):
    ws = make_runs(tmp_path, repeats=5, n=120)
    splits = build_pool(ws, ["run-a"])
    assert sum(len(splits.split(s)) for s in ("train", "val", "test")) == 5 * 120
    for s in ("train", "val", "test"):
        p = splits.split(s)
        ends = np.flatnonzero(p.dones)
        assert len(ends) == len(set(p.episode.tolist()))
        assert (np.diff(p.episode)[ends[:-1]] != 0).all()  # a done ends each episode
        assert ends[-1] == len(p) - 1
    assert splits.meta.feature_names == list(PRESETS["paper7"]) and splits.meta.reward == "paper"
    assert ws.pool_dir("run-a", splits.meta.name).joinpath("meta.json").is_file()


def test_splits_have_no_repeat_in_two_splits(tmp_path):
    ws = make_runs(tmp_path, repeats=10, n=50)
    splits = build_pool(ws, ["run-a"], name="p")
    sets = {s: set(splits.split(s).episode.tolist()) for s in ("train", "val", "test")}
    assert sets["train"] and sets["val"] and sets["test"]
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert [len(sets[s]) for s in ("train", "val", "test")] == [6, 2, 2]  # 70/15/15 of 10, rounded
    by_ep = {e["episode"]: e for e in splits.meta.episodes}
    for s, eps in sets.items():
        assert all(by_ep[e]["split"] == s for e in eps)
    assert splits.meta.split.startswith("by-repeat")


def test_rows_keep_log_order_within_each_repeat(tmp_path):
    ws = make_runs(tmp_path, repeats=3, n=80)
    splits = build_pool(ws, ["run-a"], preset="dualpi2", name="p")
    p = splits.train
    # current_queue_delay in the fixture is 1000 * (i % 20): consecutive rows step by 1 ms, wrapping
    d = p.states[:, 1]
    steps = np.diff(d)[~p.dones[:-1]]
    assert set(np.unique(steps)) <= {1000.0, -19000.0}


def test_fewer_than_three_repeats_are_split_by_position_and_meta_says_so(tmp_path):
    ws = make_runs(tmp_path, repeats=2, n=100)
    splits = build_pool(ws, ["run-a"], name="p")
    assert "by-position" in splits.meta.split and "only 2 repeat" in splits.meta.split
    assert [len(splits.split(s)) for s in ("train", "val", "test")] == [140, 30, 30]
    assert splits.train.dones.sum() == 2  # each repeat's block ends with done


def test_held_out_runs_form_the_test_split(tmp_path):
    ws = make_runs(tmp_path, repeats=3, n=40, runs=("run-a", "run-b"))
    splits = build_pool(ws, ["run-a"], test_run_ids=["run-b"], name="gen")
    runs_of = {e["episode"]: e["run"] for e in splits.meta.episodes}
    assert {runs_of[e] for e in splits.test.episode} == {"run-b"}
    assert {runs_of[e] for e in np.concatenate([splits.train.episode, splits.val.episode])} == {"run-a"}
    assert len(splits.test) == 3 * 40
    assert "held-out" in splits.meta.split
    with pytest.raises(L4stbError, match="both training and held-out"):
        build_pool(ws, ["run-a"], test_run_ids=["run-a"])


def test_return_to_go_is_correct_with_gamma():
    r = np.array([1.0, 2.0, 3.0, 4.0, 5.0], dtype=np.float32)
    pool = ExperiencePool(np.zeros((5, 1)), np.zeros(5), r, [False, False, True, False, True], [0, 0, 0, 1, 1], ("x",))
    assert pool.returns_to_go(1.0).tolist() == [6.0, 5.0, 3.0, 9.0, 5.0]
    g = 0.5
    assert pool.returns_to_go(g).tolist() == pytest.approx([1 + g * 2 + g * g * 3, 2 + g * 3, 3, 4 + g * 5, 5])


def test_pool_return_to_go_restarts_at_each_repeat(tmp_path):
    ws = make_runs(tmp_path, repeats=3, n=30)
    splits = build_pool(ws, ["run-a"], gamma=0.9, name="p")
    p = splits.train
    rtg = p.returns_to_go(splits.meta.gamma)
    last = np.flatnonzero(p.dones)
    assert np.allclose(rtg[last], p.rewards[last])
    i = last[0] - 1
    assert rtg[i] == pytest.approx(p.rewards[i] + 0.9 * p.rewards[i + 1], rel=1e-5)


def test_rewards_by_name(tmp_path):
    ws = make_runs(tmp_path, repeats=3, n=40)
    paper = build_pool(ws, ["run-a"], reward="paper", preset="paper8", name="a").train
    delay = build_pool(ws, ["run-a"], reward="paper-delay", preset="paper8", name="b").train
    mine = build_pool(ws, ["run-a"], reward="throughput-delay", preset="paper8", name="c").train
    names = list(PRESETS["paper8"])
    q = paper.states[:, names.index("current_queue_delay")]
    plen = paper.states[:, names.index("packet_length")]
    assert np.allclose(paper.rewards, plen / (q + 1000))
    assert np.allclose(delay.rewards, q)
    expected = np.where(mine.actions == 1, 0.0, plen / 1500) - q / 15_000
    assert np.allclose(mine.rewards, expected, atol=1e-6)


def test_probabilities_in_states_are_in_0_1(tmp_path):
    ws = make_runs(tmp_path, repeats=3, n=30)
    p = build_pool(ws, ["run-a"], preset="paper7", name="p").train
    j = PRESETS["paper7"].index("drop_probability")
    assert p.states[:, j].max() == pytest.approx(0.05, rel=1e-6)


def test_norm_stats_come_from_the_train_split_only(tmp_path):
    ws = make_runs(tmp_path, repeats=10, n=30)
    splits = build_pool(ws, ["run-a"], name="p")
    assert splits.meta.norm.mean == pytest.approx(splits.train.states.mean(axis=0).tolist(), rel=1e-5)
    loaded = load_pool(ws.pool_dir("run-a", "p"))
    assert loaded.meta.norm.mean == pytest.approx(splits.meta.norm.mean)
    assert loaded.meta.episodes == splits.meta.episodes and len(loaded.train) == len(splits.train)


def test_unknown_preset_or_reward_lists_the_allowed_names(tmp_path):
    ws = make_runs(tmp_path, repeats=3, n=10)
    with pytest.raises(L4stbError, match="paper8, paper7, paper8-early, dualpi2"):
        build_pool(ws, ["run-a"], preset="bogus")
    with pytest.raises(L4stbError, match=", ".join(REWARDS)):
        build_pool(ws, ["run-a"], reward="bogus")
    with pytest.raises(L4stbError, match="paper-changes"):
        build_pool(ws, ["run-a"], selection="bogus")


def original_selection(actions: np.ndarray, window=5, fraction=0.2) -> list[int]:
    """The original utils/train_exp_gen.py loop, row by row."""
    out, prev = [], None
    n = len(actions)
    for index in range(n):
        cur = actions[index]
        if prev is not None and cur != prev:
            out.extend(range(max(0, index - window), index))
        if index > n * fraction:
            break
        prev = cur
    return out


@pytest.mark.parametrize("seed", range(5))
def test_paper_changes_selection_matches_the_original_loop(seed):
    rng = np.random.default_rng(seed)
    actions = rng.choice([0, 0, 0, 0, 1, 2], size=int(rng.integers(2, 400)))
    assert paper_changes_index(actions).tolist() == original_selection(actions)


def test_paper_changes_selection_applies_to_train_only(tmp_path):
    ws = make_runs(tmp_path, repeats=10, n=200)
    full = build_pool(ws, ["run-a"], name="full")
    sel = build_pool(ws, ["run-a"], selection="paper-changes", name="sel")
    assert len(sel.train) < len(full.train) and len(sel.val) == len(full.val) and len(sel.test) == len(full.test)
    assert "paper-changes" in sel.meta.selection
    assert sel.train.dones.sum() == len(set(sel.train.episode.tolist()))


def test_old_23_field_run_needs_a_preset_without_packet_length(tmp_path):
    ws = Workspace.at(tmp_path / "w")
    raw_run(ws, "old", {r: [old_line(values(i, action=1 + i % 2), syslog()) for i in range(20)] for r in (1, 2, 3)})
    with pytest.raises(L4stbError, match="packet_length"):
        build_pool(ws, ["old"])
    splits = build_pool(ws, ["old"], preset="paper8-early", reward="paper-delay", with_json=True, name="early")
    doc = json.loads(ws.pool_dir("old", "early").joinpath("train.json").read_text())
    assert set(doc) == {"states", "actions", "rewards", "dones"} and len(doc["states"]) == len(splits.train)


def test_a_pool_from_a_sampled_log_records_the_sampling_in_meta_and_each_episode(tmp_path):
    """Each transition of a sampled run is one logged decision, N decisions after the previous one: a trainer
    must be able to tell such a pool from a per-packet one."""
    from l4stb.manifest import load_manifest, save_manifest

    ws = make_runs(tmp_path, repeats=3, n=40, runs=("run-a", "run-b"))
    m = load_manifest(ws, "run-b")
    m.scenario = {"logging": {"sample_every": 5}}
    save_manifest(ws, m)
    splits = build_pool(ws, ["run-a", "run-b"])
    assert splits.meta.log_sample_every == 5
    assert {(e["run"], e["log_sample_every"]) for e in splits.meta.episodes} == {("run-a", 1), ("run-b", 5)}
    saved = json.loads(ws.pool_dir("run-a", splits.meta.name).joinpath("meta.json").read_text())
    assert saved["log_sample_every"] == 5 and load_pool(ws.pool_dir("run-a", splits.meta.name)).meta.log_sample_every == 5
    assert build_pool(ws, ["run-a"], name="plain").meta.log_sample_every == 1


def _same_pool(a, b) -> None:
    for s in ("train", "val", "test"):
        pa_, pb = a.split(s), b.split(s)
        for field in ("states", "actions", "rewards", "dones", "episode"):
            x, y = getattr(pa_, field), getattr(pb, field)
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), (s, field)
    ma, mb = dict(vars(a.meta)), dict(vars(b.meta))
    assert ma.pop("name") != mb.pop("name") and ma == mb


@pytest.mark.parametrize("options", [
    {},
    {"split": "by-position"},
    {"selection": "paper-changes"},
    {"test_run_ids": ["run-b"], "reward": "throughput-delay", "preset": "dualpi2"},
])
def test_a_pool_filled_a_few_rows_at_a_time_equals_the_pool_filled_a_repeat_at_a_time(tmp_path, options):
    """Large runs are filled in chunks of rows (memory); the chunk size must never change a row, a split or meta."""
    ws = make_runs(tmp_path, repeats=5, n=90, runs=("run-a", "run-b"))
    whole = build_pool(ws, ["run-a"], name="whole", chunk_rows=10**9, **options)
    chunked = build_pool(ws, ["run-a"], name="chunked", chunk_rows=7, **options)
    _same_pool(whole, chunked)
    saved = load_pool(ws.pool_dir("run-a", "chunked"))
    for s in ("train", "val", "test"):
        assert np.array_equal(saved.split(s).states, chunked.split(s).states)


def test_pool_rows_are_the_rows_of_the_whole_packets_table_in_their_repeats_order(tmp_path):
    """What the pool holds, checked against the packets table read whole: each split is its repeats' rows in log
    order, states the preset's columns, rewards the reward of those rows."""
    import pandas as pd

    ws = make_runs(tmp_path, repeats=6, n=70)
    splits = build_pool(ws, ["run-a"], preset="paper8", reward="paper", name="p", chunk_rows=11)
    frame = pd.read_parquet(ws.packets_file("run-a"))
    for s in ("train", "val", "test"):
        reps = [e["repeat"] for e in splits.meta.episodes if e["split"] == s]
        rows = frame[frame["repeat"].isin(reps)].sort_values("repeat", kind="stable")
        expect_states = np.stack([rows[f].to_numpy().astype(np.float32) for f in PRESETS["paper8"]], axis=1)
        expect_rewards = (rows["packet_length"].to_numpy() / (rows["current_queue_delay"].to_numpy() + 1000.0))
        p = splits.split(s)
        assert np.array_equal(p.states, expect_states)
        assert np.array_equal(p.actions, rows["action"].to_numpy().astype(np.int64))
        assert np.array_equal(p.rewards, expect_rewards.astype(np.float32))
        assert int(p.dones.sum()) == len(reps)
