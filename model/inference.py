"""Closed-loop policy: one decision per raw state row at batch 1, keeping the sliding window and the KV cache.

How the window slides: the cache holds the steps since the current window start. When the window is
full (``window`` steps), the last ``keep`` steps (default ``window // 2``) are re-encoded in one prefill
and decoding continues incrementally. So every decision sees between ``keep + 1`` and ``window`` steps,
with timesteps 0..window-1 relative to the window start — exactly what the network saw in training —
and equals the full-window forward over the same steps (tested). Re-encoding costs one prefill of
``keep`` steps every ``window - keep`` decisions; it shows in the p99 latency.

Return token: ``target_return`` (the checkpoint's scaled mean return-to-go on the train split, or the
value given to :func:`load_policy`) minus the rewards observed since the window start, when the caller
passes the ``reward`` of the previous decision (Decision-Transformer style; otherwise it stays at the
target). This is exactly the ``returns="target"`` input the offline evaluation uses
(:class:`~l4stb.model.dataset.WindowDataset`), so no future reward is ever an input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from l4stb.analysis.pool import NormStats
from l4stb.model.checkpoint import load_checkpoint
from l4stb.model.policy import L4SPolicyModel


class Policy:
    """``decide(state_row) -> action`` (0 forward, 1 drop, 2 mark) for the simulator's router."""

    def __init__(self, model: L4SPolicyModel, norm: NormStats, *, keep: int | None = None,
                 target_return: float | None = None, device: str | torch.device = "cpu"):
        self.model = model.eval().to(device)
        self.cfg = model.cfg
        self.device = torch.device(device)
        self.window = self.cfg.window
        self.keep = max(0, min(self.window - 1, self.window // 2 if keep is None else keep))
        self.mean = np.asarray(norm.mean, np.float32)
        self.std = np.asarray(norm.std, np.float32)
        self.target_return = float(self.cfg.target_return if target_return is None else target_return)
        self.reset()

    @property
    def n_features(self) -> int:
        return self.cfg.n_features

    def reset(self) -> None:
        """Forget the history (new episode)."""
        self._states = torch.zeros((1, self.window, self.n_features), dtype=torch.float32, device=self.device)
        self._returns = torch.zeros((1, self.window), dtype=torch.float32, device=self.device)
        self._actions = torch.zeros((1, self.window), dtype=torch.long, device=self.device)
        self._n = 0  # steps in the current window, including the one being decided
        self._past = None
        self._rtg = self.target_return
        self.last_logits: np.ndarray | None = None

    @property
    def window_steps(self) -> int:
        """Steps in the current window, the latest decision included (for tests and diagnostics)."""
        return self._n

    def observe_reward(self, reward: float) -> None:
        """Subtract the (raw, unscaled) reward of the previous decision from the return-to-go."""
        self._rtg -= float(reward) / self.cfg.return_scale

    @torch.inference_mode()
    def decide(self, state_row: np.ndarray, reward: float | None = None) -> int:
        """Decide for one packet; ``state_row`` is the raw feature vector in the pool's feature order."""
        if reward is not None:
            self.observe_reward(reward)
        row = np.asarray(state_row, dtype=np.float32).reshape(-1)
        if row.shape[0] != self.n_features:
            raise ValueError(f"state row has {row.shape[0]} features, the policy expects {self.n_features} "
                             f"({', '.join(self.cfg.feature_names)})")
        if self._n == self.window:
            self._slide()
        j = self._n
        self._states[0, j] = torch.from_numpy((row - self.mean) / self.std)
        self._returns[0, j] = self._rtg
        self._actions[0, j] = 0  # placeholder until decided; never seen by the prediction of step j
        n = j + 1
        logits, self._past = self.model.decode(self._past, self._returns[:, :n], self._states[:, :n],
                                               self._actions[:, :n])
        action = int(torch.argmax(logits[0]).item())
        self._actions[0, j] = action
        self._n = n
        self.last_logits = logits[0].float().cpu().numpy()
        return action

    def _slide(self) -> None:
        k = self.keep
        # re-base the return token on the new window start: target minus rewards seen since then
        shift = self.target_return - float(self._returns[0, self.window - k]) if k else self.target_return - self._rtg
        self._rtg += shift
        if k == 0:
            self._n, self._past = 0, None
            return
        self._states[:, :k] = self._states[:, self.window - k:].clone()
        self._returns[:, :k] = self._returns[:, self.window - k:].clone() + shift
        self._actions[:, :k] = self._actions[:, self.window - k:].clone()
        self._past = self.model.prefill(self._returns[:, :k], self._states[:, :k], self._actions[:, :k])
        self._n = k


def load_policy(checkpoint_dir: str | Path, *, device: str | None = None, keep: int | None = None,
                target_return: float | None = None) -> Policy:
    """Load a checkpoint written by training and wrap it as a closed-loop :class:`Policy`."""
    ckpt = load_checkpoint(Path(checkpoint_dir), device=device or "cpu")
    return Policy(ckpt.model, ckpt.norm, keep=keep, target_return=target_return, device=device or "cpu")
