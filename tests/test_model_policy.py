"""The L4S-LLM network: causality, the prediction point, and KV-cache decisions equal to the full-window forward."""

import numpy as np
import pytest
import torch

from l4stb.analysis.pool import NormStats
from l4stb.model.inference import Policy
from l4stb.model.policy import PolicyConfig, build_model

F = 8


def _model(encoder="mlp", window=6, rank=4):
    torch.manual_seed(0)
    cfg = PolicyConfig(backbone="tiny-gpt2", n_features=F, feature_names=[f"f{i}" for i in range(F)], window=window,
                       encoder=encoder, lora_rank=rank, state_dim=16, target_return=0.3)
    return build_model(cfg).eval()


def _batch(b=3, s=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, s, generator=g), torch.randn(b, s, F, generator=g), torch.randint(0, 3, (b, s), generator=g)


@pytest.mark.parametrize("encoder", ["mlp", "conv"])
def test_changing_a_future_step_never_changes_an_earlier_prediction(encoder):
    model = _model(encoder)
    r, s, a = _batch()
    with torch.no_grad():
        base = model(r, s, a)
        for t in range(1, 6):
            r2, s2, a2 = r.clone(), s.clone(), a.clone()
            r2[:, t:] += 3.0
            s2[:, t:] = torch.randn_like(s2[:, t:]) * 5
            a2[:, t:] = (a2[:, t:] + 1) % 3
            out = model(r2, s2, a2)
            assert torch.equal(out[:, :t], base[:, :t]), f"step {t} leaked into earlier predictions"
            assert not torch.allclose(out[:, t], base[:, t])


def test_action_of_a_step_is_not_seen_by_its_own_prediction():
    model = _model("conv")
    r, s, a = _batch()
    with torch.no_grad():
        base = model(r, s, a)
        a2 = a.clone()
        a2[:, 3] = (a2[:, 3] + 1) % 3
        out = model(r, s, a2)
    assert torch.equal(out[:, :4], base[:, :4])
    assert not torch.allclose(out[:, 4], base[:, 4])


def _reference_logits(model, rets, states, acts, start, t):
    """Full-window forward over steps start..t; the logits of step t."""
    with torch.no_grad():
        out = model(rets[None, start:t + 1], states[None, start:t + 1], acts[None, start:t + 1])
    return out[0, -1]


@pytest.mark.parametrize("encoder,keep", [("mlp", None), ("conv", None), ("mlp", 0), ("conv", 5)])
def test_incremental_kv_cache_decisions_equal_the_full_window_forward(encoder, keep):
    model = _model(encoder, window=6)
    rng = np.random.default_rng(1)
    raw = rng.normal(50, 10, size=(40, F)).astype(np.float32)
    norm = NormStats.fit(raw)
    policy = Policy(model, norm, keep=keep)
    states = torch.from_numpy(norm.apply(raw))
    rets = torch.full((40,), 0.3)
    acts = torch.zeros(40, dtype=torch.long)
    start = 0
    for t in range(40):
        a = policy.decide(raw[t])
        start = t + 1 - policy.window_steps
        ref = _reference_logits(model, rets, states, acts, start, t)
        assert torch.allclose(torch.from_numpy(policy.last_logits), ref, atol=1e-4), t
        assert a == int(ref.argmax())
        acts[t] = a
        assert 1 <= policy.window_steps <= 6
    assert start > 0, "the window never slid"


def test_policy_reset_forgets_history():
    model = _model()
    raw = np.random.default_rng(2).normal(size=(10, F)).astype(np.float32)
    policy = Policy(model, NormStats.fit(raw))
    first = [policy.decide(r) for r in raw]
    logits_first = policy.last_logits.copy()
    policy.reset()
    again = [policy.decide(r) for r in raw]
    assert first == again
    np.testing.assert_allclose(policy.last_logits, logits_first, atol=1e-5)


def test_policy_rejects_a_row_with_the_wrong_number_of_features():
    model = _model()
    policy = Policy(model, NormStats([0.0] * F, [1.0] * F))
    with pytest.raises(ValueError, match="features"):
        policy.decide(np.zeros(F - 1))


def test_reward_feedback_lowers_the_return_to_go():
    model = _model()
    policy = Policy(model, NormStats([0.0] * F, [1.0] * F))
    policy.decide(np.zeros(F))
    policy.decide(np.zeros(F), reward=0.1)
    assert policy._returns[0, 1] == pytest.approx(0.3 - 0.1 / model.cfg.return_scale)


def test_policy_with_reward_feedback_sees_the_same_return_tokens_as_the_offline_evaluation():
    from l4stb.analysis.pool import ExperiencePool
    from l4stb.model.dataset import WindowDataset

    model = _model(window=6)
    rng = np.random.default_rng(3)
    n = 6
    raw = rng.normal(size=(n, F)).astype(np.float32)
    rewards = rng.uniform(0, 1, n).astype(np.float32)
    dones = np.zeros(n, bool)
    dones[-1] = True
    pool = ExperiencePool(raw, np.zeros(n, np.int64), rewards, dones, np.zeros(n, np.int32), tuple(f"f{i}" for i in range(F)))
    norm = NormStats.fit(raw)
    ds = WindowDataset(pool, norm, window=6, gamma=1.0, return_scale=model.cfg.return_scale, layout="eval",
                       returns="target", target_return=model.cfg.target_return)
    item = ds[0]
    policy = Policy(model, norm)
    for t in range(n):
        policy.decide(raw[t], reward=None if t == 0 else float(rewards[t - 1]))
        item["actions"][t] = int(np.argmax(policy.last_logits))
    np.testing.assert_allclose(policy._returns[0, :n].numpy(), item["returns"].numpy(), atol=1e-6)
    with torch.no_grad():
        ref = model(item["returns"][None], item["states"][None], item["actions"][None])[0, -1]
    torch.testing.assert_close(torch.from_numpy(policy.last_logits), ref, atol=1e-4, rtol=1e-4)
