"""The L4S-LLM network: return/state/action tokens with timestep embeddings through a causal backbone to the 3-way L4S head.

Sequence layout, per timestep t of a window (T = F + 2 tokens per step)::

    R_t, s_t^1 ... s_t^F, a_t

* ``R_t``: return-to-go (scaled), ``Linear(1, H)``.
* ``s_t^i``: one token per state feature from :class:`~l4stb.model.encoder.StateEncoder`.
* ``a_t``: the action taken, a *learned* ``Embedding(3, H)``. The original fed ``(a+1)/3`` through
  ``Linear(1, H)``, which makes the three action embeddings collinear (one direction, three lengths);
  a table lets each action have its own direction at a cost of 3*H parameters.
* Every token gets the timestep embedding of its step; the timestep is *relative to the window start*
  (0..window-1), so the table size is fixed by the configured window, not by the pool (the original's
  table size depended on the pool loaded, so train and eval checkpoints disagreed).
* LayerNorm, then ``inputs_embeds`` to the backbone. The L4S head ``Linear(H, 3)`` reads the hidden
  state of the LAST STATE TOKEN ``s_t^F`` of each step, i.e. the prediction for step t is made before
  ``a_t`` is in the sequence and (the backbone being causal) without any later step.

Incremental inference: :meth:`L4SPolicyModel.prefill` and :meth:`L4SPolicyModel.decode` run the same
computation token block by token block with the backbone's KV cache (``past_key_values``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from l4stb.errors import L4stbError
from l4stb.model.backbones import Backbone, load_backbone
from l4stb.model.encoder import ENCODER_KINDS, StateEncoder
from l4stb.model.lora import LoraSettings, apply_lora

N_ACTIONS = 3


@dataclass
class PolicyConfig:
    """Everything needed to rebuild the network (saved as config.json in a checkpoint)."""

    backbone: str
    n_features: int
    feature_names: list[str]
    hidden_size: int = 0  # filled from the backbone
    family: str = ""
    layers: int | None = None
    window: int = 20
    encoder: str = "mlp"
    state_dim: int = 128
    conv_kernels: list[int] = field(default_factory=lambda: [3, 5, 9])
    lora_rank: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    gamma: float = 1.0
    return_scale: float = 1.0  # returns-to-go are divided by this
    target_return: float = 0.0  # scaled return-to-go the closed-loop policy starts from
    backbone_config: dict | None = None  # for backbones that cannot be re-created from `backbone` (random init)

    @property
    def tokens_per_step(self) -> int:
        return self.n_features + 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PolicyConfig":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


class L4SPolicyModel(nn.Module):
    """Embeddings + backbone + L4S head. ``forward`` gives logits [B, S, 3] for every step of a window."""

    def __init__(self, cfg: PolicyConfig, backbone: nn.Module):
        super().__init__()
        if cfg.encoder not in ENCODER_KINDS:
            raise L4stbError(f"unknown state encoder {cfg.encoder!r}; use one of {', '.join(ENCODER_KINDS)}.")
        self.cfg = cfg
        h = cfg.hidden_size
        self.backbone = backbone
        self.state_encoder = StateEncoder(cfg.n_features, h, cfg.state_dim, cfg.encoder, tuple(cfg.conv_kernels))
        self.embed_return = nn.Linear(1, h)
        self.embed_action = nn.Embedding(N_ACTIONS, h)
        self.embed_timestep = nn.Embedding(cfg.window, h)
        self.embed_ln = nn.LayerNorm(h)
        self.head = nn.Linear(h, N_ACTIONS)
        # GPT-2-style small init for the tables: with N(0, 1) (torch's default) the timestep embedding is
        # several times larger than the feature tokens and drowns them before the LayerNorm.
        nn.init.normal_(self.embed_timestep.weight, std=0.02)
        nn.init.normal_(self.embed_action.weight, std=0.02)

    # -- parameters outside the backbone (saved as one state dict) ------------------------------------
    def own_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}

    def load_own_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.startswith("backbone.")]
        if missing or unexpected:
            raise RuntimeError(f"checkpoint modules do not match the network: missing {missing}, unexpected {unexpected}")

    # -- embeddings -----------------------------------------------------------------------------------
    def embed(self, returns: torch.Tensor, states: torch.Tensor, actions: torch.Tensor, first: int = 0) -> torch.Tensor:
        """[B,S], [B,S,F], [B,S] -> token embeddings [B, (S-first)*T, H] of steps first..S-1.

        Timesteps are relative to the window (step i gets timestep i); ``first`` > 0 skips the tokens of
        earlier steps (incremental decoding) without changing any value.
        """
        b, s, f = states.shape
        te = self.embed_timestep(torch.arange(first, s, device=states.device))  # [S', H]
        r = self.embed_return(returns[:, first:].unsqueeze(-1).to(te.dtype)) + te  # [B, S', H]
        st = self.state_encoder(states.to(te.dtype), first) + te[:, None, :]  # [B, S', F, H]
        a = self.embed_action(actions[:, first:]) + te  # [B, S', H]
        x = torch.cat([r.unsqueeze(2), st, a.unsqueeze(2)], dim=2).reshape(b, (s - first) * (f + 2), -1)
        return self.embed_ln(x)

    def _backbone(self, x: torch.Tensor, past=None, use_cache: bool = False):
        return self.backbone(inputs_embeds=x, use_cache=use_cache, **({CACHE_ARG: past} if past is not None else {}))

    def _state_positions(self, s: int) -> torch.Tensor:
        t = self.cfg.tokens_per_step
        return torch.arange(s) * t + self.cfg.n_features  # index of s_t^F within the sequence

    def forward(self, returns: torch.Tensor, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Logits [B, S, 3]; logit t depends only on R_<=t, s_<=t, a_<t."""
        x = self.embed(returns, states, actions)
        out = self._backbone(x)
        hidden = out.last_hidden_state[:, self._state_positions(states.shape[1]).to(x.device)]
        return self.head(hidden)

    # -- incremental inference (batch 1, KV cache) -----------------------------------------------------
    @torch.inference_mode()
    def prefill(self, returns: torch.Tensor, states: torch.Tensor, actions: torch.Tensor):
        """Cache for the complete steps of a window, all tokens except the last action (fed by the next decode)."""
        x = self.embed(returns, states, actions)[:, :-1]
        return _cache_of(self._backbone(x, use_cache=True))

    @torch.inference_mode()
    def decode(self, past, returns: torch.Tensor, states: torch.Tensor, actions: torch.Tensor):
        """Logits [B, 3] for the last step of the window given a cache of everything before it.

        ``returns/states/actions`` hold the whole current window (the last action is a placeholder);
        only the new tokens ``a_{t-1}, R_t, s_t^1..F`` go through the backbone.
        """
        s = states.shape[1]
        t = self.cfg.tokens_per_step
        first = max(0, s - 2)
        x = self.embed(returns, states, actions, first)  # the previous step (for a_{t-1}) and this one
        end = (s - 1 - first) * t + self.cfg.n_features + 1
        new = x[:, end - self.cfg.n_features - 1 - (1 if s > 1 else 0):end]
        out = self._backbone(new, past=past, use_cache=True)
        return self.head(out.last_hidden_state[:, -1]), _cache_of(out)


def _supported_cache_arg() -> str:
    """The KV-cache argument and output name of the installed transformers: ``cache`` where it replaced
    ``past_key_values`` (transformers/utils/generic.py: ``_BCCacheNameMeta`` maps the old name and warns that it
    goes away in 5.40), else ``past_key_values`` (4.x)."""
    # lazy: transformers is slow to import
    from transformers.utils import generic

    return "cache" if hasattr(generic, "_BCCacheNameMeta") else "past_key_values"


CACHE_ARG = _supported_cache_arg()


def _cache_of(out):
    return getattr(out, CACHE_ARG)


def build_model(cfg: PolicyConfig, backbone: Backbone | None = None) -> L4SPolicyModel:
    """Load the backbone named in ``cfg`` (or use ``backbone``), apply LoRA/full fine-tuning, build the network."""
    if backbone is None:
        backbone = load_backbone(cfg.backbone, cfg.layers)
    cfg.hidden_size, cfg.family = backbone.hidden_size, backbone.family
    if cfg.layers is None:
        cfg.layers = backbone.layers
    if not backbone.reproducible and cfg.backbone_config is None:
        cfg.backbone_config = backbone.module.config.to_dict()
    need = cfg.window * cfg.tokens_per_step
    if backbone.max_positions is not None and need > backbone.max_positions:
        raise L4stbError(
            f"a window of {cfg.window} steps is {need} tokens ({cfg.tokens_per_step} per step), more than the "
            f"{backbone.max_positions} positions backbone '{cfg.backbone}' supports. Use a smaller --window."
        )
    if cfg.window < 1:
        raise L4stbError(f"--window must be at least 1 step, got {cfg.window}.")
    trainable = apply_lora(backbone.module, backbone.family, LoraSettings(cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout))
    return L4SPolicyModel(cfg, trainable)


def param_counts(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": int(trainable), "total": int(total)}
