"""`accelerate launch -m l4stb.model.launch` trains end to end; the launcher maps TrainConfig fields to options."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from l4stb.model.config import TrainConfig
from l4stb.model.launch import _parser


def test_every_train_config_field_is_a_launch_option():
    args = _parser().parse_args(["--synthetic", "100", "--out", "x", "--lora-rank", "0", "--layers", "1",
                                 "--lr", "0.01", "--baselines", "false", "--encoder", "conv"])
    assert (args.lora_rank, args.layers, args.lr, args.baselines, args.encoder) == (0, 1, 0.01, False, "conv")
    assert all(hasattr(args, f) for f in TrainConfig.__dataclass_fields__)


def test_paper_preset_keeps_the_original_hyper_parameters():
    p = TrainConfig.paper()
    assert (p.lora_rank, p.lora_alpha, p.lora_dropout, p.lr, p.weight_decay, p.warmup_steps, p.grad_accum,
            p.window, p.seed, p.gamma) == (128, 32, 0.05, 1e-4, 1e-4, 2000, 32, 20, 100003, 1.0)
    assert TrainConfig.paper(epochs=3).epochs == 3


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not on PATH")
def test_accelerate_launch_trains_and_writes_metrics(tmp_path):
    out = tmp_path / "m"
    cmd = ["accelerate", "launch", "--cpu", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "l4stb.model.launch", "--synthetic", "1600", "--out", str(out),
           "--epochs", "1", "--window", "4", "--state-dim", "8", "--max-train-windows", "64",
           "--compare-full-finetune", "false", "--latency-decisions", "10", "--baselines", "false"]
    env = {**os.environ, "ACCELERATE_CONFIG_FILE": str(tmp_path / "none.yaml")}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert "macro_f1" in m["test"] and (out / "checkpoint" / "config.json").is_file()


@pytest.mark.slow
def test_launch_reports_user_errors_with_exit_code_2(tmp_path):
    res = subprocess.run([sys.executable, "-m", "l4stb.model.launch", "--pool", str(tmp_path), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "meta.json is missing" in res.stderr
