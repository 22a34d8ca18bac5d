"""Experience pools: the typed record the model trains on, return-to-go, normalisation and on-disk formats.

A pool is one transition per logged packet decision. On disk a pool is a folder:

    <pool>/meta.json                 PoolMeta: features, reward, gamma, source, split sizes, norm stats
    <pool>/{train,val,test}.npz      fast binary form (numpy, no pickle)
    <pool>/{train,val,test}.json     optional paper form {states, actions, rewards, dones}

Building pools from parsed logs lives in ``pool_build``; importing the original pickles in ``pool_import``.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from l4stb.errors import L4stbError
from l4stb.workspace import atomic_path, atomic_write_text, read_json, staged_folder

ACTION_NAMES = ("forward", "drop", "mark")
SPLITS = ("train", "val", "test")


@dataclass
class ExperiencePool:
    """Transitions in log order. ``episode`` is the repeat each row came from (one repeat = one episode)."""

    states: np.ndarray  # float32 [N, F]
    actions: np.ndarray  # int64 [N]: 0 forward, 1 drop, 2 mark
    rewards: np.ndarray  # float32 [N]
    dones: np.ndarray  # bool [N]: True on the last row of each episode
    episode: np.ndarray  # int32 [N]
    feature_names: tuple[str, ...]

    def __post_init__(self) -> None:
        self.states = np.asarray(self.states, dtype=np.float32)
        self.actions = np.asarray(self.actions, dtype=np.int64)
        self.rewards = np.asarray(self.rewards, dtype=np.float32)
        self.dones = np.asarray(self.dones, dtype=bool)
        self.episode = np.asarray(self.episode, dtype=np.int32)
        n = len(self.actions)
        if self.states.ndim != 2 or self.states.shape[0] != n:
            raise ValueError(f"states must be [N, F] with N={n}, got {self.states.shape}")
        if self.states.shape[1] != len(self.feature_names):
            raise ValueError(f"{self.states.shape[1]} state columns but {len(self.feature_names)} feature names")
        for name in ("rewards", "dones", "episode"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.actions)

    def action_counts(self) -> dict[str, int]:
        counts = np.bincount(self.actions, minlength=3)
        return {name: int(counts[i]) for i, name in enumerate(ACTION_NAMES)}

    def returns_to_go(self, gamma: float) -> np.ndarray:
        """Discounted return-to-go per row, restarting after every ``done`` (vectorised per episode)."""
        out = np.empty(len(self), dtype=np.float64)
        ends = np.flatnonzero(self.dones)
        starts = np.concatenate(([0], ends + 1))
        stops = np.concatenate((ends + 1, [len(self)]))
        for a, b in zip(starts, stops):
            if a >= b:
                continue
            out[a:b] = _discounted_cumsum_reversed(self.rewards[a:b].astype(np.float64), gamma)
        return out

    def subset(self, mask_or_index: np.ndarray) -> "ExperiencePool":
        return ExperiencePool(
            self.states[mask_or_index], self.actions[mask_or_index], self.rewards[mask_or_index],
            self.dones[mask_or_index], self.episode[mask_or_index], self.feature_names,
        )

    def to_paper_json(self) -> dict:
        """The paper's JSON form ``{states, actions, rewards, dones}``."""
        return {
            "states": self.states.tolist(),
            "actions": self.actions.tolist(),
            "rewards": self.rewards.tolist(),
            "dones": self.dones.astype(int).tolist(),
        }


def _discounted_cumsum_reversed(r: np.ndarray, gamma: float) -> np.ndarray:
    if gamma == 1.0:
        return np.cumsum(r[::-1])[::-1]
    out = np.empty_like(r)
    acc = 0.0
    for i in range(len(r) - 1, -1, -1):
        acc = r[i] + gamma * acc
        out[i] = acc
    return out


@dataclass
class NormStats:
    """Per-feature mean/std computed on the train split only, saved with the pool."""

    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, states: np.ndarray) -> "NormStats":
        mean = states.mean(axis=0) if len(states) else np.zeros(states.shape[1])
        std = states.std(axis=0) if len(states) else np.ones(states.shape[1])
        std = np.where(std < 1e-8, 1.0, std)
        return cls([float(x) for x in mean], [float(x) for x in std])

    def apply(self, states: np.ndarray) -> np.ndarray:
        return ((states - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)).astype(np.float32)


@dataclass
class PoolMeta:
    """What a pool is: where it came from and how it was made (saved as meta.json)."""

    name: str
    feature_names: list[str]
    preset: str
    reward: str
    gamma: float
    source: str  # e.g. "run:dctcp-8mbps-20261121T...Z" or "import:exp_pool_l4s_full.pkl"
    split: str  # how rows were split, e.g. "by-repeat 0.7/0.15/0.15" or "by-position"
    sizes: dict[str, int] = field(default_factory=dict)
    action_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    norm: NormStats | None = None
    reward_min: float = 0.0
    reward_max: float = 1.0
    episodes: list[dict] = field(default_factory=list)  # [{episode, run, repeat, rows, split}]
    selection: str | None = None  # e.g. the paper's "rows before each action change" selection, described
    log_sample_every: int = 1
    """The router logged every N-th decision (logging.sample_every; the largest over the pool's runs; each
    episode records its own): a transition is one logged decision, N decisions after the previous one."""


@dataclass
class PoolSplits:
    """A pool ready for training: three disjoint splits plus its metadata."""

    meta: PoolMeta
    train: ExperiencePool
    val: ExperiencePool
    test: ExperiencePool

    def split(self, name: str) -> ExperiencePool:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def save_pool(splits: PoolSplits, folder: Path, *, with_json: bool = False) -> Path:
    """Write the pool as one set: every file into a staging folder, meta.json last, then one swap over the
    old pool (a failure, a full disk or Ctrl-C leaves the old pool whole)."""
    meta = splits.meta
    meta.sizes = {s: len(splits.split(s)) for s in SPLITS}
    meta.action_counts = {s: splits.split(s).action_counts() for s in SPLITS}
    if meta.norm is None:
        meta.norm = NormStats.fit(splits.train.states)
    with staged_folder(folder) as stage:
        for s in SPLITS:
            pool = splits.split(s)
            save_split(pool, stage / f"{s}.npz")
            if with_json:
                atomic_write_text(stage / f"{s}.json", json.dumps(pool.to_paper_json()))
        atomic_write_text(stage / "meta.json", json.dumps(asdict(meta), indent=2))
    return folder


def save_split(pool: ExperiencePool, path: Path) -> None:
    """One split as ``.npz``, written to a temp file beside ``path``, then ``os.replace``d. Straight into the
    file: numpy writes each array in blocks (``write_array`` in numpy/lib/format.py), where an in-memory zip
    would hold the split twice more (1 GB at 15 M rows)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, states=pool.states, actions=pool.actions, rewards=pool.rewards, dones=pool.dones,
                 episode=pool.episode)
        fh.flush()
        os.fsync(fh.fileno())


def load_pool(folder: Path) -> PoolSplits:
    """Load a pool folder written by :func:`save_pool`; a clear error names what is missing or damaged."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise L4stbError(
            f"{folder} is not an experience pool: {meta_path.name} is missing. Build one with "
            "`l4stb train-and-report --run ID` or import one with `l4stb pool import FILE.pkl`."
        )
    damaged = f"experience pool {folder} is damaged"
    raw = read_json(meta_path, "experience pool metadata")
    try:
        norm = raw.pop("norm", None)
        meta = PoolMeta(**raw, norm=NormStats(**norm) if norm else None)
        names = tuple(str(n) for n in meta.feature_names)
    except (TypeError, AttributeError) as exc:
        raise L4stbError(f"{damaged}: {meta_path.name} does not describe a pool ({exc}); rebuild or re-import it.") from None
    parts = {}
    for s in SPLITS:
        path = folder / f"{s}.npz"
        if not path.is_file():
            raise L4stbError(f"experience pool {folder} is incomplete: {path.name} is missing; rebuild it.")
        try:
            with np.load(path, allow_pickle=False) as z:
                parts[s] = ExperiencePool(z["states"], z["actions"], z["rewards"], z["dones"], z["episode"], names)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise L4stbError(f"{damaged}: {path.name} cannot be read ({exc}); rebuild or re-import it.") from None
        pool = parts[s]
        rows = len(pool.actions)
        shapes_ok = (pool.states.ndim == 2 and pool.states.shape == (rows, len(names))
                     and all(len(a) == rows for a in (pool.rewards, pool.dones, pool.episode)))
        if not shapes_ok or (isinstance(meta.sizes, dict) and meta.sizes.get(s, rows) != rows):
            raise L4stbError(f"{damaged}: {path.name} holds {rows} rows of shape {pool.states.shape} but meta.json "
                             f"says {meta.sizes.get(s) if isinstance(meta.sizes, dict) else '?'} rows of "
                             f"{len(names)} features (files from two different pools); rebuild or re-import it.")
    return PoolSplits(meta, parts["train"], parts["val"], parts["test"])
