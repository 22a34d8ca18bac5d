"""Training: windows, class weights, the lr schedule in optimizer steps, early stopping, checkpoints, end-to-end metrics."""

import json

import numpy as np
import pytest
import torch

from l4stb.analysis.pool import ExperiencePool, NormStats
from l4stb.errors import L4stbError
from l4stb.model import train as train_mod
from l4stb.model.checkpoint import load_checkpoint, save_checkpoint
from l4stb.model.config import TrainConfig
from l4stb.model.dataset import IGNORE, WindowDataset, episode_bounds
from l4stb.model.inference import load_policy
from l4stb.model.policy import PolicyConfig, build_model
from l4stb.model.run import train_and_evaluate
from l4stb.model.synthetic import synthetic_splits
from l4stb.model.train import class_weights, lr_factor, make_scheduler

SMALL = dict(window=4, batch_size=16, state_dim=8, baselines=False, compare_full_finetune=False,
             latency_decisions=20, device="cpu")


def _pool(episode_lengths):
    n = sum(episode_lengths)
    ep = np.concatenate([np.full(k, i) for i, k in enumerate(episode_lengths)])
    dones = np.zeros(n, bool)
    dones[np.cumsum(episode_lengths) - 1] = True
    return ExperiencePool(np.arange(n * 2, dtype=np.float32).reshape(n, 2), np.arange(n) % 3, np.ones(n), dones, ep,
                          ("a", "b"))


def test_training_windows_never_cross_an_episode_boundary():
    pool = _pool([23, 5, 17])
    ds = WindowDataset(pool, NormStats([0, 0], [1, 1]), window=8, gamma=1.0, return_scale=1.0, stride=3)
    bounds = episode_bounds(pool)
    assert bounds == [(0, 23), (23, 28), (28, 45)]
    for a, n in zip(ds.starts, ds.lengths):
        assert any(lo <= a and a + n <= hi for lo, hi in bounds), (a, n)
    covered = set(np.concatenate([np.arange(a, a + n) for a, n in zip(ds.starts, ds.lengths)]))
    assert covered == set(range(45))
    short = [i for i, n in enumerate(ds.lengths) if n < 8]
    assert len(short) == 1
    item = ds[short[0]]
    assert (item["labels"][5:] == IGNORE).all() and (item["labels"][:5] >= 0).all()


def test_eval_windows_predict_every_row_exactly_once_in_order():
    pool = _pool([23, 5, 17])
    ds = WindowDataset(pool, NormStats([0, 0], [1, 1]), window=8, gamma=1.0, return_scale=1.0, layout="eval")
    np.testing.assert_array_equal(ds.rows(), np.arange(45))
    labels = np.concatenate([ds[i]["labels"].numpy() for i in range(len(ds))])
    np.testing.assert_array_equal(labels[labels != IGNORE], pool.actions)


def test_returns_to_go_restart_at_each_episode_and_are_scaled():
    pool = _pool([4, 3])
    ds = WindowDataset(pool, NormStats([0, 0], [1, 1]), window=4, gamma=1.0, return_scale=2.0, layout="eval")
    np.testing.assert_allclose(ds.returns.numpy(), [2, 1.5, 1, 0.5, 1.5, 1, 0.5])


def test_max_train_windows_subsamples_reproducibly():
    pool = _pool([200])
    kw = dict(window=8, gamma=1.0, return_scale=1.0, stride=1, max_windows=50, seed=3)
    a = WindowDataset(pool, NormStats([0, 0], [1, 1]), **kw)
    b = WindowDataset(pool, NormStats([0, 0], [1, 1]), **kw)
    assert len(a) == 50
    np.testing.assert_array_equal(a.starts, b.starts)


def test_balanced_class_weights_upweight_rare_actions():
    w = class_weights(np.array([0] * 98 + [1] + [2]), "balanced")
    assert w[1] == w[2] and w[1] > 30 * w[0]
    assert class_weights(np.array([0, 1]), "none") is None
    assert class_weights(np.array([0, 0, 1]), "balanced")[2] == 0


def test_warmup_reaches_the_peak_lr_in_optimizer_steps_then_decays():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = make_scheduler(opt, warmup=10, total=100, kind="cosine", min_ratio=0.1)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-4)
    assert max(lrs) == pytest.approx(1e-3) and lrs.index(max(lrs)) == 9
    assert all(b <= a + 1e-12 for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(1e-4)
    assert lr_factor(50, 10, 100, "linear", 0.0) == pytest.approx(1 - 40 / 89)


def test_real_training_reaches_the_peak_lr_with_grad_accumulation(tmp_path):
    splits = synthetic_splits(800, 4, seed=5)
    cfg = TrainConfig(epochs=2, grad_accum=2, lr=2e-3, warmup_steps=3, max_train_windows=64, **SMALL)
    report = train_and_evaluate(splits, tmp_path, cfg)
    hist = report.history
    # 64 windows / batch 16 = 4 batches = 2 optimizer steps per epoch
    assert [h["optimizer_steps"] for h in hist] == [2, 4]
    assert max(h["lr_max"] for h in hist) == pytest.approx(2e-3)
    assert hist[-1]["lr"] < 2e-3


def test_early_stopping_keeps_the_best_epoch_checkpoint_not_the_last(tmp_path, monkeypatch):
    scripted = iter([0.2, 0.6, 0.4, 0.3, 0.9])
    snapshots = {}
    real_validate = train_mod.validate

    def fake_validate(model, loader, device):
        m = real_validate(model, loader, device)
        m["macro_f1"] = next(scripted)
        snapshots[len(snapshots)] = {k: v.clone() for k, v in model.own_state_dict().items()}
        return m

    monkeypatch.setattr(train_mod, "validate", fake_validate)
    splits = synthetic_splits(800, 4, seed=6)
    cfg = TrainConfig(epochs=5, patience=2, max_train_windows=32, lr=5e-3, **SMALL)
    report = train_and_evaluate(splits, tmp_path, cfg)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [0, 1, 2, 3]  # stopped: two epochs without improving on 0.6
    assert [x["best"] for x in lines] == [True, True, False, False]
    assert report.metrics["best_epoch"] == 1
    ckpt = load_checkpoint(tmp_path / "checkpoint")
    assert ckpt.meta["epoch"] == 1
    saved = ckpt.model.own_state_dict()
    for k, v in snapshots[1].items():
        torch.testing.assert_close(saved[k], v, rtol=0, atol=0)
    assert any(not torch.equal(saved[k], snapshots[3][k]) for k in saved)


@pytest.mark.parametrize("rank,encoder", [(4, "conv"), (0, "mlp")])
def test_checkpoint_reload_gives_identical_predictions(tmp_path, rank, encoder):
    torch.manual_seed(0)
    cfg = PolicyConfig(backbone="tiny-gpt2", n_features=3, feature_names=["x", "y", "z"], window=5,
                       encoder=encoder, lora_rank=rank, state_dim=8, return_scale=2.0, target_return=0.4)
    model = build_model(cfg)
    with torch.no_grad():  # move every weight away from its init, LoRA B included
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    norm = NormStats([1.0, 2.0, 3.0], [0.5, 1.0, 2.0])
    save_checkpoint(model, norm, tmp_path / "ckpt", meta={"epoch": 7})
    ckpt = load_checkpoint(tmp_path / "ckpt")
    assert ckpt.norm == norm and ckpt.meta["epoch"] == 7 and ckpt.cfg.target_return == 0.4
    g = torch.Generator().manual_seed(1)
    r, s, a = torch.randn(4, 5, generator=g), torch.randn(4, 5, 3, generator=g), torch.randint(0, 3, (4, 5), generator=g)
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(r, s, a), model(r, s, a), rtol=0, atol=0)
    raw = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
    from l4stb.model.inference import Policy

    fresh = Policy(model, norm)
    before = [fresh.decide(x) for x in raw]
    pol = load_policy(tmp_path / "ckpt")
    assert [pol.decide(x) for x in raw] == before


def test_loading_a_folder_that_is_not_a_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(L4stbError, match="config.json is missing"):
        load_checkpoint(tmp_path)


def test_bad_training_options_are_user_errors():
    with pytest.raises(L4stbError, match="class_weighting"):
        TrainConfig(class_weighting="magic").validated()
    with pytest.raises(L4stbError, match="unknown training option"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(L4stbError, match="window"):
        TrainConfig(window=0).validated()


def test_window_longer_than_the_backbone_positions_is_a_user_error():
    cfg = PolicyConfig(backbone="tiny-gpt2", n_features=8, feature_names=list("abcdefgh"), window=200)
    with pytest.raises(L4stbError, match="smaller --window"):
        build_model(cfg)


@pytest.mark.slow
def test_training_beats_always_forward_and_writes_every_metric(tmp_path):
    splits = synthetic_splits(12000, 8, seed=2, minority=0.1)
    cfg = TrainConfig(epochs=3, window=10, batch_size=16, lr=2e-3, state_dim=32, max_train_windows=600,
                      latency_decisions=50, probe_steps=1, device="cpu")
    report = train_and_evaluate(splits, tmp_path / "model", cfg)
    m = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert m == json.loads(json.dumps(report.metrics))
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "per_class", "confusion"):
        assert key in m["test"]
    assert set(m["test"]["per_class"]) == {"forward", "drop", "mark"}
    assert set(m["baselines"]) == {"always_forward", "logistic_regression", "decision_tree"}
    for b in m["baselines"].values():
        assert {"macro_f1", "accuracy", "balanced_accuracy", "confusion"} <= set(b)
    assert m["latency_ms"]["p50"] > 0 and m["latency_ms"]["p99"] >= m["latency_ms"]["p50"]
    assert m["decisions_per_s"] > 0
    assert 0 < m["params"]["trainable"] < m["params"]["total"]
    assert m["memory"]["peak_mb"] > 0 and m["train_seconds"] > 0
    assert m["backbone"]["name"] == "tiny-gpt2" and m["config"]["lora_rank"] == 8
    full, lora = m["cost"]["full_finetune"], m["cost"]["lora"]
    assert full["trainable"] == full["total"] and lora["trainable"] < full["trainable"]
    for c in (full, lora):
        assert c["peak_mb"] > 0 and c["seconds_per_step"] > 0 and c["probe_seconds_per_step"] > 0
    assert m["test"]["macro_f1"] > m["baselines"]["always_forward"]["macro_f1"] + 0.1
    lines = (tmp_path / "model" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == m["epochs_run"]
    assert {"train_loss", "val_loss", "val_accuracy", "val_macro_f1", "lr", "seconds"} <= set(json.loads(lines[0]))
    policy = load_policy(tmp_path / "model" / "checkpoint")
    assert policy.decide(splits.test.states[0]) in (0, 1, 2)


def test_learned_baselines_are_fit_on_train_and_predict_actions():
    from l4stb.model.evaluate import baseline_metrics, fit_baselines

    splits = synthetic_splits(3000, 5, seed=4)
    models = fit_baselines(splits.train, splits.meta.norm, seed=0)
    assert set(models) == {"logistic_regression", "decision_tree"}
    pred = models["decision_tree"].predict(splits.meta.norm.apply(splits.test.states))
    assert set(np.unique(pred)) <= {0, 1, 2}
    m = baseline_metrics(splits.train, splits.test, splits.meta.norm)
    assert m["always_forward"]["per_class"]["forward"]["recall"] == 1.0
    assert m["decision_tree"]["macro_f1"] > m["always_forward"]["macro_f1"]
