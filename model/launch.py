"""Command-line entry for distributed training: ``accelerate launch -m l4stb.model.launch --pool DIR --out DIR [options]``.

Every ``TrainConfig`` field is an option (``--lora-rank 128``, ``--epochs 80``...). ``--paper`` starts
from the original L4S-LLM hyper-parameters. ``--synthetic N`` trains on a synthetic pool of N rows
instead of ``--pool`` (smoke tests). The normal user path is ``l4stb train-and-report``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import types
import typing
from dataclasses import fields
from pathlib import Path

from l4stb.analysis.pool import load_pool
from l4stb.errors import L4stbError
from l4stb.model.config import TrainConfig
from l4stb.model.run import train_and_evaluate
from l4stb.model.synthetic import synthetic_splits


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m l4stb.model.launch", description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pool", type=Path, help="experience pool folder (meta.json + train/val/test.npz)")
    src.add_argument("--synthetic", type=int, metavar="ROWS", help="use a synthetic pool of this many rows")
    p.add_argument("--out", type=Path, required=True, help="output folder (metrics.json, checkpoint/)")
    p.add_argument("--paper", action="store_true", help="start from the paper's hyper-parameters")
    p.add_argument("-v", "--verbose", action="store_true")
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        typ = hints[f.name]
        args = [a for a in typing.get_args(typ) if a is not type(None)] if isinstance(typ, types.UnionType) else [typ]
        base = args[0] if args else str
        flag = "--" + f.name.replace("_", "-")
        if base is bool:
            p.add_argument(flag, dest=f.name, type=lambda s: s.lower() in ("1", "true", "yes", "on"), default=None,
                           metavar="BOOL")
        else:
            p.add_argument(flag, dest=f.name, type=base, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}
    try:
        cfg = TrainConfig.paper(**overrides) if args.paper else TrainConfig(**overrides)
        if args.synthetic:
            splits = synthetic_splits(args.synthetic, max(3, min(20, args.synthetic // 2000)), seed=cfg.seed % 2**31)
        else:
            splits = load_pool(args.pool)

        report = train_and_evaluate(splits, args.out, cfg)
    except L4stbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if "test" in report.metrics:
        m = report.metrics
        print(f"test macro-F1 {m['test']['macro_f1']:.4f}  accuracy {m['test']['accuracy']:.4f}  "
              f"latency p50 {m['latency_ms']['p50']:.2f} ms  metrics: {report.metrics_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
