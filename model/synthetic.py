"""Synthetic experience pools with a learnable marking/dropping rule, for model tests and benchmarks.

Features follow the ``paper8`` preset. The queue delay is a slowly varying AR(1) process; the rule is

* mark (2) when the packet is in the L4S queue (``queue_type == 1``) and ``current_queue_delay`` is above
  a threshold,
* drop (1) when it is in the Classic queue and the delay is above the same threshold,
* forward (0) otherwise,

with the threshold chosen so about ``minority`` of the rows are marked or dropped. One episode per
"repeat"; splits are by episode, like real pools.
"""

from __future__ import annotations

import numpy as np

from l4stb.analysis.pool import ExperiencePool, NormStats, PoolMeta, PoolSplits

PAPER8 = ("queue_type", "burst_allowance", "drop_probability", "current_queue_delay",
          "accumulated_probability", "length_in_bytes", "total_drops", "packet_length")


def synthetic_episode(n: int, rng: np.random.Generator, threshold_us: float) -> tuple[np.ndarray, np.ndarray]:
    q = np.empty(n)
    level = rng.uniform(2000, 20000)
    for i in range(n):
        level = 0.97 * level + 0.03 * 12000 + rng.normal(0, 1500)
        q[i] = max(0.0, level)
    qt = rng.integers(0, 2, n)
    prob = np.clip((q - 8000) / 30000, 0, 1) + rng.normal(0, 0.02, n)
    burst = np.maximum(0, 150000 - np.arange(n) * 500.0)
    accu = np.cumsum(np.clip(prob, 0, 1)) % 1.0
    pkt = rng.choice([66.0, 1514.0], n, p=[0.2, 0.8])
    qbytes = q * 1.0 + rng.normal(0, 200, n)
    above = q > threshold_us
    actions = np.where(above, np.where(qt == 1, 2, 1), 0).astype(np.int64)
    drops = np.cumsum(actions == 1).astype(float)
    states = np.stack([qt, burst, prob, q, accu, qbytes, drops, pkt], axis=1).astype(np.float32)
    return states, actions


def synthetic_pool(n_rows: int, n_episodes: int, seed: int = 0, minority: float = 0.1) -> ExperiencePool:
    rng = np.random.default_rng(seed)
    # threshold: the (1 - minority) quantile of the AR(1) process's stationary distribution, found empirically
    probe, _ = synthetic_episode(20000, np.random.default_rng(seed + 999), 1e18)
    threshold = float(np.quantile(probe[:, 3], 1 - minority))
    per = max(1, n_rows // n_episodes)
    parts_s, parts_a, eps = [], [], []
    for e in range(n_episodes):
        s, a = synthetic_episode(per, rng, threshold)
        parts_s.append(s)
        parts_a.append(a)
        eps.append(np.full(per, e, np.int32))
    states = np.concatenate(parts_s)
    actions = np.concatenate(parts_a)
    episode = np.concatenate(eps)
    dones = np.zeros(len(actions), bool)
    dones[np.cumsum([per] * n_episodes) - 1] = True
    rewards = (states[:, 7] / (states[:, 3] + 1000.0)).astype(np.float32)
    return ExperiencePool(states, actions, rewards, dones, episode, PAPER8)


def synthetic_splits(n_rows: int = 20000, n_episodes: int = 10, seed: int = 0, minority: float = 0.1,
                     fractions: tuple[float, float] = (0.6, 0.2)) -> PoolSplits:
    """A pool split by episode into train/val/test (at least one episode each), with train-split NormStats."""
    pool = synthetic_pool(n_rows, n_episodes, seed, minority)
    n_train = max(1, int(round(n_episodes * fractions[0])))
    n_val = max(1, int(round(n_episodes * fractions[1])))
    n_train = min(n_train, n_episodes - 2)
    tr = pool.subset(pool.episode < n_train)
    va = pool.subset((pool.episode >= n_train) & (pool.episode < n_train + n_val))
    te = pool.subset(pool.episode >= n_train + n_val)
    meta = PoolMeta(name="synthetic", feature_names=list(PAPER8), preset="paper8", reward="paper",
                    gamma=1.0, source=f"synthetic:seed={seed}", split="by-repeat",
                    norm=NormStats.fit(tr.states))
    return PoolSplits(meta, tr, va, te)
