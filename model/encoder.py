"""State encoder: turns a window of normalised state vectors into one embedding per (timestep, feature).

Two paths, selected by ``kind``:

* ``"mlp"`` – the original L4S-LLM encoder: for every scalar feature its own ``Linear(1, d) + LeakyReLU``
  (vectorised here as one [F, d] weight instead of F modules, which is the same function).
* ``"conv"`` – the MLP path plus a multi-kernel ``Conv1d`` branch over the window for the temporal
  features (the paper's Algorithm 1): for each feature, kernels of several widths slide over its time
  series and their channels are concatenated to width d and added to the MLP output. The convolution
  is *causal* (padded on the left only), so the embedding of step t never sees step t+1.

Each feature's d-wide code is then projected to the backbone width H by its own linear map
(the original's ``embed_state_i = Linear(d, H)``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ENCODER_KINDS = ("mlp", "conv")


class StateEncoder(nn.Module):
    """[B, S, F] normalised states -> [B, S, F, H] per-feature token embeddings."""

    def __init__(self, n_features: int, hidden_size: int, state_dim: int = 128, kind: str = "mlp",
                 kernels: tuple[int, ...] = (3, 5, 9), conv_features: tuple[int, ...] | None = None):
        super().__init__()
        if kind not in ENCODER_KINDS:
            raise ValueError(f"encoder kind must be one of {ENCODER_KINDS}, got {kind!r}")
        self.n_features, self.state_dim, self.kind = n_features, state_dim, kind
        bound = 1.0  # nn.Linear(1, d) init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = 1
        self.w_in = nn.Parameter(torch.empty(n_features, state_dim).uniform_(-bound, bound))
        self.b_in = nn.Parameter(torch.empty(n_features, state_dim).uniform_(-bound, bound))
        b2 = 1.0 / math.sqrt(state_dim)
        self.w_out = nn.Parameter(torch.empty(n_features, state_dim, hidden_size).uniform_(-b2, b2))
        self.b_out = nn.Parameter(torch.empty(n_features, hidden_size).uniform_(-b2, b2))
        self.kernels = tuple(int(k) for k in kernels)
        if kind == "conv":
            idx = tuple(range(n_features)) if conv_features is None else tuple(int(i) for i in conv_features)
            self.register_buffer("conv_idx", torch.tensor(idx, dtype=torch.long), persistent=False)
            n_conv = len(idx)
            k_count = len(self.kernels)
            chans = [state_dim // k_count + (1 if i < state_dim % k_count else 0) for i in range(k_count)]
            self.chans = chans
            self.convs = nn.ModuleList(
                nn.Conv1d(n_conv, n_conv * c, kernel_size=k, groups=n_conv) for k, c in zip(self.kernels, chans)
            )

    def features(self, states: torch.Tensor, first: int = 0) -> torch.Tensor:
        """[B, S, F] -> [B, S - first, F, d] per-feature codes (before the projection to H) of steps first..S-1.

        The convolution still reads the whole window (steps before ``first`` are its left context).
        """
        h = F.leaky_relu(states[:, first:].unsqueeze(-1) * self.w_in + self.b_in)
        if self.kind == "conv":
            h = h.clone()
            x = states[..., self.conv_idx].transpose(1, 2)  # [B, Fc, S]
            b, fc, s = x.shape
            parts = []
            for conv, c, k in zip(self.convs, self.chans, self.kernels):
                y = conv(F.pad(x, (k - 1, 0)))  # causal: left padding only
                parts.append(y.view(b, fc, c, s))
            conv_h = F.leaky_relu(torch.cat(parts, dim=2)).permute(0, 3, 1, 2)[:, first:]  # [B, S-first, Fc, d]
            h[:, :, self.conv_idx] = h[:, :, self.conv_idx] + conv_h
        return h

    def forward(self, states: torch.Tensor, first: int = 0) -> torch.Tensor:
        """[B, S, F] -> [B, S - first, F, H]: the embeddings of steps first..S-1."""
        h = self.features(states, first)
        return torch.einsum("bsfd,fdh->bsfh", h, self.w_out) + self.b_out
