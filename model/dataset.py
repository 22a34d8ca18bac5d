"""Windows of consecutive transitions from one pool split, never crossing an episode boundary, as training tensors.

Each item is a window of ``window`` steps from a single episode (episodes end at ``dones`` or where
``episode`` changes):

* ``states``  [w, F] float32, normalised with the pool's NormStats (train-split statistics)
* ``returns`` [w] float32, the return token's input, divided by ``return_scale``:
  ``returns="realized"`` (training) — the realised return-to-go ``ExperiencePool.returns_to_go(gamma)``,
  which sums *future* rewards (Decision-Transformer teacher forcing, as the original trained);
  ``returns="target"`` (evaluation) — what a deployed policy has: ``target_return`` at the window start
  minus the rewards already observed in the window, so no future reward reaches a prediction.
* ``actions`` [w] int64, the logged actions (network input; action t is only visible to steps > t)
* ``labels``  [w] int64, the same actions as targets, ``-100`` on padding

Timesteps are relative to the window (0..w-1), so nothing here depends on the pool's length.

Two layouts:

* ``train``: full windows every ``stride`` rows (overlapping when stride < window) plus one window
  ending at each episode's last row; optionally a random subset of at most ``max_windows``.
* ``eval``: non-overlapping windows from each episode's start; the last one is right-padded, so every
  row is predicted exactly once, in order (``rows`` maps predictions back to row numbers).

Episodes shorter than the window become one right-padded window. Right padding needs no attention
mask: the backbone is causal, so real tokens never attend to the padding after them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from l4stb.analysis.pool import ExperiencePool, NormStats

IGNORE = -100


def episode_bounds(pool: ExperiencePool) -> list[tuple[int, int]]:
    """[start, stop) of every episode, from ``dones`` and changes of ``episode``."""
    n = len(pool)
    if n == 0:
        return []
    cut = np.zeros(n, dtype=bool)
    cut[:-1] = pool.dones[:-1] | (pool.episode[1:] != pool.episode[:-1])
    stops = np.concatenate((np.flatnonzero(cut) + 1, [n]))
    starts = np.concatenate(([0], stops[:-1]))
    return [(int(a), int(b)) for a, b in zip(starts, stops) if b > a]


def window_starts(bounds: list[tuple[int, int]], window: int, stride: int, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """(starts, lengths) of the windows for a layout ("train" or "eval")."""
    starts, lengths = [], []
    for a, b in bounds:
        n = b - a
        if layout == "eval":
            s = np.arange(a, b, window)
            starts.append(s)
            lengths.append(np.minimum(window, b - s))
        elif n <= window:
            starts.append(np.array([a]))
            lengths.append(np.array([n]))
        else:
            s = np.arange(a, b - window + 1, max(1, stride))
            if s[-1] != b - window:
                s = np.append(s, b - window)
            starts.append(s)
            lengths.append(np.full(len(s), window))
    if not starts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(starts).astype(np.int64), np.concatenate(lengths).astype(np.int64)


def scaled_returns(pool: ExperiencePool, gamma: float, return_scale: float) -> np.ndarray:
    return (pool.returns_to_go(gamma) / return_scale).astype(np.float32)


def auto_return_scale(train: ExperiencePool, gamma: float) -> float:
    """Largest |return-to-go| on the train split (so scaled returns lie in [-1, 1]); 1 when that is 0."""
    if len(train) == 0:
        return 1.0
    m = float(np.abs(train.returns_to_go(gamma)).max())
    return m if m > 0 and np.isfinite(m) else 1.0


class WindowDataset(Dataset):
    """Windows of one split; see the module docstring for the layouts."""

    def __init__(self, pool: ExperiencePool, norm: NormStats, *, window: int, gamma: float, return_scale: float,
                 layout: str = "train", stride: int | None = None, max_windows: int | None = None, seed: int = 0,
                 returns: str = "realized", target_return: float = 0.0):
        if layout not in ("train", "eval"):
            raise ValueError(f"layout must be 'train' or 'eval', got {layout!r}")
        if returns not in ("realized", "target"):
            raise ValueError(f"returns must be 'realized' or 'target', got {returns!r}")
        self.window = window
        self.returns_mode, self.target_return = returns, float(target_return)
        self.states = torch.from_numpy(norm.apply(pool.states))
        self.returns = torch.from_numpy(scaled_returns(pool, gamma, return_scale))
        self.rewards = torch.from_numpy((pool.rewards.astype(np.float64) / return_scale).astype(np.float32))
        self.actions = torch.from_numpy(pool.actions.astype(np.int64))
        starts, lengths = window_starts(episode_bounds(pool), window, stride or window, layout)
        if max_windows is not None and layout == "train" and len(starts) > max_windows:
            pick = np.sort(np.random.default_rng(seed).choice(len(starts), size=max_windows, replace=False))
            starts, lengths = starts[pick], lengths[pick]
        self.starts, self.lengths = starts, lengths

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        a, n, w = int(self.starts[i]), int(self.lengths[i]), self.window
        states, actions = self.states[a:a + n], self.actions[a:a + n]
        if self.returns_mode == "target":
            seen = torch.cumsum(self.rewards[a:a + n], 0) - self.rewards[a:a + n]  # rewards before each step
            returns = self.target_return - seen
        else:
            returns = self.returns[a:a + n]
        labels = actions.clone()
        if n < w:
            pad = w - n
            states = torch.cat([states, states.new_zeros(pad, states.shape[1])])
            returns = torch.cat([returns, returns.new_zeros(pad)])
            actions = torch.cat([actions, actions.new_zeros(pad)])
            labels = torch.cat([labels, labels.new_full((pad,), IGNORE)])
        return {"states": states, "returns": returns, "actions": actions, "labels": labels}

    def window_labels(self) -> list[np.ndarray]:
        """The labels of every window (for balanced sampling)."""
        acts = self.actions.numpy()
        return [acts[a:a + n] for a, n in zip(self.starts, self.lengths)]

    def rows(self) -> np.ndarray:
        """Row number of every real (non-padding) position, window by window."""
        return np.concatenate([np.arange(a, a + n) for a, n in zip(self.starts, self.lengths)]) if len(self) else np.zeros(0, np.int64)
