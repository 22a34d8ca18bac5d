"""LoRA on the right layers of each backbone family (built offline from tiny configs), full fine-tuning at rank 0."""

import numpy as np
import pytest
import torch
from transformers import GPT2Config, LlamaConfig, OPTConfig, T5Config

from l4stb.analysis.pool import NormStats
from l4stb.model.backbones import build_from_config
from l4stb.model.inference import Policy
from l4stb.model.lora import LORA_TARGETS, LoraSettings, apply_lora, lora_modules
from l4stb.model.policy import PolicyConfig, build_model, param_counts

F = 4


def tiny_config(family):
    if family == "gpt2":
        return GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=16, n_positions=256, bos_token_id=0, eos_token_id=0)
    if family == "opt":
        return OPTConfig(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=16,
                         word_embed_proj_dim=32, max_position_embeddings=256, pad_token_id=1, bos_token_id=0,
                         eos_token_id=0)
    if family == "llama":
        return LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           num_key_value_heads=1, vocab_size=16, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return T5Config(d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16, vocab_size=16)


FAMILIES = ["gpt2", "opt", "llama", "t5"]


def _policy_model(family, rank=4, window=5):
    cfg = PolicyConfig(backbone=f"tiny-{family}", n_features=F, feature_names=list("abcd"), window=window,
                       lora_rank=rank, state_dim=8)
    return build_model(cfg, build_from_config(tiny_config(family), f"tiny-{family}")).eval()


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_wraps_exactly_the_family_target_layers(family):
    bb = build_from_config(tiny_config(family))
    total = sum(p.numel() for p in bb.module.parameters())
    wrapped = apply_lora(bb.module, family, LoraSettings(rank=4, alpha=8, dropout=0.0))
    names = lora_modules(wrapped)
    targets, fan_in_fan_out = LORA_TARGETS[family]
    assert names, "no layer got an adapter"
    assert {n.rsplit(".", 1)[-1] for n in names} == set(targets)
    assert len(names) == 2 * len(targets)  # two blocks
    assert wrapped.peft_config["default"].fan_in_fan_out is fan_in_fan_out
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    n_trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    assert 0 < n_trainable < total


def test_gpt2_adapter_sits_on_conv1d_with_fan_in_fan_out():
    from transformers.pytorch_utils import Conv1D

    bb = build_from_config(tiny_config("gpt2"))
    wrapped = apply_lora(bb.module, "gpt2", LoraSettings(rank=4))
    layer = dict(wrapped.named_modules())[lora_modules(wrapped)[0]]
    assert isinstance(layer.base_layer, Conv1D)
    assert layer.fan_in_fan_out
    # Conv1D weight is [in, out]; the adapter must map in -> out (a wrong orientation fails in forward)
    x = torch.randn(2, 3, 32)
    assert layer(x).shape == (2, 3, 96)


def test_paper_preset_is_rank_128_alpha_32_dropout_005():
    assert LoraSettings.paper() == LoraSettings(rank=128, alpha=32, dropout=0.05)


@pytest.mark.parametrize("family", FAMILIES)
def test_rank_zero_fine_tunes_every_backbone_weight(family):
    model = _policy_model(family, rank=0)
    counts = param_counts(model)
    assert counts["trainable"] == counts["total"]
    assert not lora_modules(model)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_policy_trains_fewer_params_than_it_has(family):
    counts = param_counts(_policy_model(family, rank=4))
    assert 0 < counts["trainable"] < counts["total"]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_is_causal(family):
    model = _policy_model(family)
    g = torch.Generator().manual_seed(0)
    r, s, a = torch.randn(2, 5, generator=g), torch.randn(2, 5, F, generator=g), torch.randint(0, 3, (2, 5), generator=g)
    with torch.no_grad():
        base = model(r, s, a)
        s2 = s.clone()
        s2[:, 3:] += 4.0
        out = model(r, s2, a)
    torch.testing.assert_close(out[:, :3], base[:, :3], atol=1e-6, rtol=0)
    assert not torch.allclose(out[:, 3], base[:, 3])


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_kv_cache_matches_the_full_forward(family):
    model = _policy_model(family, window=5)
    raw = np.random.default_rng(0).normal(size=(14, F)).astype(np.float32)
    norm = NormStats.fit(raw)
    policy = Policy(model, norm)
    states = torch.from_numpy(norm.apply(raw))
    acts = torch.zeros(14, dtype=torch.long)
    rets = torch.full((14,), model.cfg.target_return)
    for t in range(14):
        acts[t] = policy.decide(raw[t])
        start = t + 1 - policy.window_steps
        with torch.no_grad():
            ref = model(rets[None, start:t + 1], states[None, start:t + 1], acts[None, start:t + 1])[0, -1]
        torch.testing.assert_close(torch.from_numpy(policy.last_logits), ref, atol=1e-4, rtol=1e-4)
