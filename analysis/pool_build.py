"""Experience pools from parsed runs: feature presets, named rewards, splits by repeat, the paper's row selection.

One transition per logged decision (:mod:`l4stb.analysis.pool`); one repeat is one episode (``done`` is True on its
last row). States are the raw feature values (probabilities already in [0, 1]); normalisation statistics
are fitted on the train split only and saved with the pool (``meta.norm``), not applied to the states.

Presets (state features, in order):

* ``paper8``  -- the paper's list: queue_type, burst_allowance, drop_probability, current_queue_delay,
  accumulated_probability, length_in_bytes, total_drops, packet_length.
* ``paper7``  -- the original code's final 7 (the default): paper8 without total_drops.
* ``paper8-early`` -- the original code's earlier 8 (the exp_pool_l4s_full.pkl features): queue_type,
  burst_allowance, drop_probability, current_queue_delay, accumulated_probability, average_dequeue_time,
  length_in_bytes, total_drops.
* ``dualpi2`` -- DualPI2-native: queue_type, current_queue_delay, previous_queue_delay,
  accumulated_probability, drop_probability, queue_length, length_in_bytes, packet_length. DualPI2 has no
  burst allowance (always 0 in its lines) and its PI controller acts on the current and previous queue
  delay (the proportional term), so both are in; accumulated_probability is the base probability p' and
  drop_probability the queue's applied one (p_C or p_L); queue_length and length_in_bytes feed the L
  queue's step/ramp marking; total_drops is left out because a counter that only grows says more about
  the time within a run than about the queue.
* ``capture`` -- what a packet capture observes, for real-Linux runs (the qemu provider, whose log set is
  derived from captures; docs/data.md): queue_type, current_queue_delay, queue_length, length_in_bytes,
  packet_length. The qdisc's probabilities and PI state are not in such runs (missing values), so the
  paper's presets are refused on them with this advice. A dropped packet's sojourn is not observable either:
  its state carries the last sojourn observed in its queue before it (0 before any), its queue's delay as
  the packet arrived.

Rewards (by name):

* ``paper`` (default) -- packet_length / (current_queue_delay_us + 1000), the original code's final one.
* ``paper-delay`` -- current_queue_delay in us, the original's earlier reward, kept as it was (it grows
  with delay: reproduce with it, do not optimise it).
* ``throughput-delay`` -- (packet_length / 1500 if the packet was not dropped else 0)
  - current_queue_delay / qdelay_reference (15 ms when not logged): a full-size packet delivered at the
  target delay scores 0; more delay costs linearly, a drop forfeits the delivery.

Splits never cut rows at random: with at least three repeats (two when a held-out test run is given),
whole repeats go to train/val/test (70/15/15, at least one each, assigned by a seeded shuffle of the
repeats); with fewer, each repeat is cut by position into contiguous blocks and ``meta.split`` says so.
``selection="paper-changes"`` keeps, in the train split only, the original's rows: the 5 rows before
each action change within the first 20 % of each repeat (duplicates kept, as in the original).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from l4stb.analysis.packet_repeats import PacketRepeats, release_arrow_memory
from l4stb.analysis.packets import ensure_parsed
from l4stb.analysis.pool import ExperiencePool, NormStats, PoolMeta, PoolSplits, save_pool
from l4stb.aqm_catalogue import CLASSIC_TARGET_US
from l4stb.errors import L4stbError
from l4stb.manifest import load_manifest
from l4stb.workspace import Workspace, validate_name

PRESETS: dict[str, tuple[str, ...]] = {
    "paper8": ("queue_type", "burst_allowance", "drop_probability", "current_queue_delay", "accumulated_probability",
               "length_in_bytes", "total_drops", "packet_length"),
    "paper7": ("queue_type", "burst_allowance", "drop_probability", "current_queue_delay", "accumulated_probability",
               "length_in_bytes", "packet_length"),
    "paper8-early": ("queue_type", "burst_allowance", "drop_probability", "current_queue_delay",
                     "accumulated_probability", "average_dequeue_time", "length_in_bytes", "total_drops"),
    "dualpi2": ("queue_type", "current_queue_delay", "previous_queue_delay", "accumulated_probability",
                "drop_probability", "queue_length", "length_in_bytes", "packet_length"),
    "capture": ("queue_type", "current_queue_delay", "queue_length", "length_in_bytes", "packet_length"),
}

SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
SELECTIONS = ("paper-changes",)
SPLIT_MODES = ("by-repeat", "by-position")
DEFAULT_TARGET_US = CLASSIC_TARGET_US
"""The target a reward assumes when a log line carries none (qdelay_reference 0)."""
MTU_BYTES = 1500


@dataclass(frozen=True)
class Reward:
    name: str
    columns: tuple[str, ...]
    fn: Callable[[dict[str, np.ndarray]], np.ndarray]
    description: str


def _paper(c: dict[str, np.ndarray]) -> np.ndarray:
    return c["packet_length"] / (c["current_queue_delay"] + 1000.0)


def _paper_delay(c: dict[str, np.ndarray]) -> np.ndarray:
    return c["current_queue_delay"].astype(np.float64)


def _throughput_delay(c: dict[str, np.ndarray]) -> np.ndarray:
    target = np.where(c["qdelay_reference"] > 0, c["qdelay_reference"], DEFAULT_TARGET_US).astype(np.float64)
    delivered = np.where(c["action"] == 1, 0.0, c["packet_length"] / MTU_BYTES)
    return delivered - c["current_queue_delay"] / target


REWARDS: dict[str, Reward] = {
    "paper": Reward("paper", ("packet_length", "current_queue_delay"), _paper,
                    "packet_length / (current_queue_delay_us + 1000)"),
    "paper-delay": Reward("paper-delay", ("current_queue_delay",), _paper_delay, "current_queue_delay_us"),
    "throughput-delay": Reward("throughput-delay",
                               ("packet_length", "current_queue_delay", "qdelay_reference", "action"),
                               _throughput_delay,
                               "(packet_length/1500 unless dropped) - current_queue_delay/qdelay_reference"),
}


def preset_features(preset: str) -> tuple[str, ...]:
    if preset not in PRESETS:
        raise L4stbError(f"unknown feature preset '{preset}'; use one of: {', '.join(PRESETS)}.")
    return PRESETS[preset]


def get_reward(name: str) -> Reward:
    if name not in REWARDS:
        raise L4stbError(f"unknown reward '{name}'; use one of: {', '.join(REWARDS)}.")
    return REWARDS[name]


def paper_changes_index(actions: np.ndarray, window: int = 5, fraction: float = 0.2) -> np.ndarray:
    """Row indices the original kept: the ``window`` rows before each action change, scanning up to the first
    row past ``fraction`` of the log (that row's change still counts); overlapping windows repeat rows."""
    n = len(actions)
    if n < 2:
        return np.empty(0, dtype=np.int64)
    changes = np.flatnonzero(actions[1:] != actions[:-1]) + 1
    stop = int(np.floor(n * fraction)) + 1  # the original breaks after the first index > n * fraction
    changes = changes[changes <= stop]
    if not len(changes):
        return np.empty(0, dtype=np.int64)
    parts = [np.arange(max(0, c - window), c, dtype=np.int64) for c in changes]
    return np.concatenate(parts)


@dataclass(frozen=True)
class _Episode:
    """One repeat of one run: rows ``[start, stop)`` of its packets.parquet (the rows of one table of
    :meth:`PacketRepeats.tables`, which holds it whole)."""

    run_id: str
    repeat: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass
class _RunSource:
    """A parsed run's packets, checked for the columns a pool needs, and its episodes in file order."""

    run_id: str
    packets: PacketRepeats
    needed: list[str]
    episodes: list[_Episode]


def _open_run(ws: Workspace, run_id: str, features: tuple[str, ...], reward: Reward) -> _RunSource:
    ensure_parsed(ws, run_id)
    needed = sorted(set(features) | {c for c in reward.columns if c != "action"} | {"repeat", "action"})
    needed_cols = needed + (["queue_type"] if "queue_type" not in needed else [])
    # the rows are read one repeat at a time while the pool is filled; the checks are over the whole run
    packets = PacketRepeats(ws.packets_file(run_id), needed_cols)
    if packets.num_rows == 0:
        raise L4stbError(f"run {run_id} has no parsed packet decisions (see runs/{run_id}/data/parse.json).")
    nulls = packets.null_counts()
    unknown = [n for n in needed if nulls[n] == packets.num_rows]
    if unknown:
        raise L4stbError(
            f"run {run_id} does not hold {', '.join(unknown)}: its router log was derived from packet captures (a "
            "real-Linux run), which cannot see the qdisc's internal state. Use --preset capture (the features a "
            "capture observes), with the default reward.")
    episodes = [_Episode(run_id, r.repeat, r.start, r.stop) for r in packets.rows]
    return _RunSource(run_id, packets, needed, episodes)


def _log_sample_every(ws: Workspace, run_id: str) -> int:
    """The run's logging.sample_every from its manifest's scenario (1 for an imported run without one)."""
    logging_ = load_manifest(ws, run_id).scenario.get("logging") or {}
    value = logging_.get("sample_every", 1) if isinstance(logging_, dict) else 1
    return int(value) if isinstance(value, int) and value >= 1 else 1


def _filled(table, name: str) -> np.ndarray:
    """A column as numbers; a sojourn missing for some rows (drops in a capture-derived log) takes the last one
    observed in the same queue and repeat (0 before any), the queue's delay as that packet arrived."""
    col = table.column(name)
    if col.null_count == 0:
        return col.to_numpy()
    values = col.to_numpy(zero_copy_only=False).astype(np.float64)
    if name != "current_queue_delay":
        raise L4stbError(f"{name} is missing for {col.null_count} of {table.num_rows} rows; only a dropped "
                         "packet's sojourn may be missing. Re-parse the run with `l4stb summary`.")
    keys = [table.column(k).to_numpy(zero_copy_only=False) for k in ("repeat", "queue_type")]
    frame = pd.DataFrame({"v": values, "r": keys[0], "q": keys[1]})
    return frame.groupby(["r", "q"], sort=False, observed=True)["v"].ffill().fillna(0.0).to_numpy()


@dataclass(frozen=True)
class _Part:
    """The rows ``idx`` (positions within the episode, in pool order) of episode number ``eid`` in one split: a
    ``range`` for a block of rows (no index array for millions of rows), an array for a selection."""

    eid: int
    episode: _Episode
    idx: range | np.ndarray


class _SplitArrays:
    """One split's arrays, allocated at their final size and filled one chunk of rows at a time, so a pool never
    holds its rows twice (the episodes and the splits made of them). Rows follow the parts' order; ``done`` is
    True on the last row of each part."""

    def __init__(self, parts: list[_Part], n_features: int):
        self.parts = [p for p in parts if len(p.idx)]
        sizes = [len(p.idx) for p in self.parts]
        n = int(sum(sizes))
        self.offsets = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))[:-1].astype(np.int64)
        self.states = np.empty((n, n_features), dtype=np.float32)
        self.actions = np.empty(n, dtype=np.int64)
        self.rewards = np.empty(n, dtype=np.float32)
        self.dones = np.zeros(n, dtype=bool)
        self.episode = np.empty(n, dtype=np.int32)
        for p, off, size in zip(self.parts, self.offsets, sizes):
            self.episode[off:off + size] = p.eid
            self.dones[off + size - 1] = True

    def fill(self, eid: int, lo: int, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Copy episode ``eid``'s rows ``[lo, lo + len(actions))`` (positions within the episode) where its parts
        take them."""
        hi = lo + len(actions)
        for p, off in zip(self.parts, self.offsets):
            if p.eid != eid:
                continue
            if isinstance(p.idx, range):  # a block: the overlap is a slice on both sides
                a, b = max(lo, p.idx.start), min(hi, p.idx.stop)
                if a < b:
                    dst = slice(off + a - p.idx.start, off + b - p.idx.start)
                    self.states[dst], self.actions[dst], self.rewards[dst] = (
                        states[a - lo:b - lo], actions[a - lo:b - lo], rewards[a - lo:b - lo])
                continue
            take = (p.idx >= lo) & (p.idx < hi)
            if not take.any():
                continue
            dst = off + np.flatnonzero(take)
            src = p.idx[take] - lo
            self.states[dst] = states[src]
            self.actions[dst] = actions[src]
            self.rewards[dst] = rewards[src]

    def pool(self, features: tuple[str, ...]) -> ExperiencePool:
        return ExperiencePool(self.states, self.actions, self.rewards, self.dones, self.episode, features)


CHUNK_ROWS = 1 << 20
"""Rows turned into states and rewards at a time while a pool is filled: the build's memory follows the pool and
this, not the size of a repeat. The pool does not depend on it (tests fill with a few rows at a time)."""


def _fill_run(src: _RunSource, first_eid: int, splits: list[_SplitArrays], features: tuple[str, ...], reward: Reward,
              chunk_rows: int) -> None:
    """Read a run one table of :meth:`PacketRepeats.tables` (one repeat) at a time and fill its episodes' rows
    into the splits, ``chunk_rows`` rows at a time."""
    uses_len = "packet_length" in features or "packet_length" in reward.columns
    t0 = 0
    episodes = iter(enumerate(src.episodes, start=first_eid))
    pending = next(episodes, None)
    for table in src.packets.tables():
        t1 = t0 + table.num_rows
        # a column with missing values is completed over the whole table, as one array (see _filled)
        filled = {name: _filled(table, name) for name in src.needed if table.column(name).null_count}
        while pending is not None and pending[1].stop <= t1:
            eid, ep = pending
            for lo in range(0, ep.rows, chunk_rows):
                a, m = ep.start - t0 + lo, min(chunk_rows, ep.rows - lo)
                cols = {name: filled[name][a:a + m] if name in filled else table.column(name).slice(a, m).to_numpy()
                        for name in src.needed}
                if uses_len and (cols["packet_length"] < 0).any():
                    raise L4stbError(
                        f"run {src.run_id} has old 23-field dualpi2_ecn_marking lines without packet_length, which "
                        f"the chosen preset or reward needs; use --preset paper8-early with --reward paper-delay for "
                        f"such data.")
                states = np.stack([cols[f].astype(np.float32) for f in features], axis=1)
                rewards = reward.fn(cols).astype(np.float32)
                actions = cols["action"].astype(np.int64)
                del cols
                for split in splits:
                    split.fill(eid, lo, states, actions, rewards)
            pending = next(episodes, None)
        del table, filled
        release_arrow_memory()
        t0 = t1


def _position_blocks(n: int, fractions: tuple[float, ...]) -> list[range]:
    cuts = np.round(np.cumsum(fractions)[:-1] * n).astype(int)
    edges = np.concatenate(([0], cuts, [n]))
    return [range(int(edges[i]), int(edges[i + 1])) for i in range(len(fractions))]


def _repeat_counts(k: int, with_test: bool) -> tuple[int, int, int]:
    if with_test:
        n_val = max(1, int(round(k * SPLIT_FRACTIONS[1] / (SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]))))
        return k - n_val, n_val, 0
    n_val = max(1, int(round(k * SPLIT_FRACTIONS[1])))
    n_test = max(1, int(round(k * SPLIT_FRACTIONS[2])))
    return k - n_val - n_test, n_val, n_test


def _check_build_options(run_ids: list[str], test_run_ids: list[str], split: str, selection: str | None,
                         gamma: float) -> None:
    """Refuse a pool that cannot be built as asked, before any run is read."""
    if not run_ids:
        raise L4stbError("build_pool needs at least one run.")
    if split not in SPLIT_MODES:
        raise L4stbError(f"unknown split '{split}'; use one of: {', '.join(SPLIT_MODES)}.")
    if selection is not None and selection not in SELECTIONS:
        raise L4stbError(f"unknown selection '{selection}'; use one of: {', '.join(SELECTIONS)} (or none).")
    if not 0.0 < gamma <= 1.0:
        raise L4stbError(f"gamma must be in (0, 1], got {gamma}.")
    overlap = set(run_ids) & set(test_run_ids)
    if overlap:
        raise L4stbError(f"run(s) {', '.join(sorted(overlap))} are both training and held-out test runs.")


def build_pool(ws: Workspace, run_ids: list[str], *, preset: str = "paper7", reward: str = "paper", gamma: float = 1.0,
               split: str = "by-repeat", selection: str | None = None, test_run_ids: tuple[str, ...] | list[str] = (),
               name: str | None = None, seed: int = 0, with_json: bool = False,
               chunk_rows: int = CHUNK_ROWS) -> PoolSplits:
    """Build train/val/test pools from parsed runs and save them under the first run's pool/<name>/.

    The splits are laid out from the runs' repeat boundaries first (the paper-changes selection reads each run's
    ``action`` column for it), then filled while the runs are read one repeat at a time, ``chunk_rows`` rows at a
    time: the memory is the pool's arrays and one repeat's table, never the run's rows twice."""
    features = preset_features(preset)
    rw = get_reward(reward)
    test_run_ids = list(test_run_ids)
    _check_build_options(run_ids, test_run_ids, split, selection, gamma)
    name = validate_name(name or "-".join([preset, reward] + ([selection] if selection else [])), "pool name")

    train_src = [_open_run(ws, r, features, rw) for r in run_ids]
    test_src = [_open_run(ws, r, features, rw) for r in test_run_ids]
    train_eps = [ep for src in train_src for ep in src.episodes]
    test_eps = [ep for src in test_src for ep in src.episodes]
    all_eps = train_eps + test_eps  # an episode's number is its place here

    parts: dict[str, list[_Part]] = {"train": [], "val": [], "test": []}
    assignment: dict[int, str] = {}
    with_test = bool(test_eps)
    k = len(train_eps)
    if split == "by-repeat" and k >= (2 if with_test else 3):
        n_train, n_val, n_test = _repeat_counts(k, with_test)
        order = np.random.default_rng(seed).permutation(k)
        for rank, i in enumerate(order):
            which = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
            parts[which].append(_Part(int(i), train_eps[i], range(train_eps[i].rows)))
            assignment[int(i)] = which
        for which in parts:
            parts[which].sort(key=lambda p: p.eid)
        split_desc = (f"by-repeat: {n_train}/{n_val}/{n_test} of {k} repeats (seeded shuffle, seed {seed})"
                      if not with_test else f"by-repeat: {n_train}/{n_val} of {k} repeats for train/val; test = "
                      f"held-out runs {', '.join(test_run_ids)}")
    else:
        fr = SPLIT_FRACTIONS if not with_test else (SPLIT_FRACTIONS[0], SPLIT_FRACTIONS[1])
        fr = tuple(f / sum(fr) for f in fr)
        for i, ep in enumerate(train_eps):
            for which, idx in zip(("train", "val", "test"), _position_blocks(ep.rows, fr)):
                parts[which].append(_Part(i, ep, idx))
            assignment[i] = "by-position"
        why = "requested" if split == "by-position" else f"only {k} repeat(s)"
        split_desc = (f"by-position ({why}): each repeat cut into contiguous blocks "
                      f"{'/'.join(f'{f:.2f}' for f in fr)} for {'train/val' if with_test else 'train/val/test'}"
                      + (f"; test = held-out runs {', '.join(test_run_ids)}" if with_test else ""))
    for i, ep in enumerate(test_eps, start=k):
        parts["test"].append(_Part(i, ep, range(ep.rows)))
        assignment[i] = "test"

    selection_desc = None
    if selection == "paper-changes":
        actions = {src.run_id: src.packets.column("action") for src in train_src}  # one small column per run
        parts["train"] = [_Part(p.eid, p.episode, p.idx.start + paper_changes_index(
            actions[p.episode.run_id][p.episode.start + p.idx.start:p.episode.start + p.idx.stop]))
            for p in parts["train"]]  # idx: a range (the whole repeat, or its train block)
        del actions
        selection_desc = ("paper-changes: train keeps the 5 rows before each action change in the first 20% of each "
                          "repeat (duplicates kept); val/test keep every row, like the original's eval pool")

    arrays = {which: _SplitArrays(p, len(features)) for which, p in parts.items()}
    if len(arrays["train"].actions) == 0:
        raise L4stbError(f"the train split of pool {name} is empty; use more repeats or no selection.")
    first = 0
    for src in train_src + test_src:
        _fill_run(src, first, list(arrays.values()), features, rw, chunk_rows)
        first += len(src.episodes)
    pools = {which: a.pool(features) for which, a in arrays.items()}
    del arrays
    train_r = pools["train"].rewards
    sources = ",".join(run_ids) + (f";test:{','.join(test_run_ids)}" if test_run_ids else "")
    every = {r: _log_sample_every(ws, r) for r in dict.fromkeys(ep.run_id for ep in all_eps)}
    meta = PoolMeta(
        name=name, feature_names=list(features), preset=preset, reward=reward, gamma=float(gamma),
        source=f"run:{sources}", split=split_desc,
        norm=NormStats.fit(pools["train"].states),
        reward_min=float(train_r.min()), reward_max=float(train_r.max()),
        episodes=[{"episode": i, "run": ep.run_id, "repeat": ep.repeat, "rows": int(ep.rows),
                   "split": assignment.get(i, ""), "log_sample_every": every[ep.run_id]}
                  for i, ep in enumerate(all_eps)],
        selection=selection_desc, log_sample_every=max(every.values()),
    )
    splits = PoolSplits(meta, pools["train"], pools["val"], pools["test"])
    save_pool(splits, ws.pool_dir(run_ids[0], name), with_json=with_json)
    return splits
