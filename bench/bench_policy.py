"""Decision latency of the deployable policy: the kernel's C evaluator at each tree depth, the simulator's Python
twin, and the L4S-LLM at batch 1, on this CPU, one core; plus the blob sizes.

    python bench/bench_policy.py [--depths 2,4,6,8,12,16,24] [--records 20000] [--llm tiny-gpt2|none]

The trees are full-size CART trees fit to a synthetic rule over router-logged fields (depth d, up to 2^d
leaves, capped by the blob's 4095 nodes), so every decision walks close to d levels; the records are drawn
from the same distribution. The LLM row times `Policy.decide` (incremental KV cache) of a freshly built
model of the named backbone: its latency does not depend on its weights. Prints a table, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from l4stb import policyblob as pb
from l4stb.model.distill import DistillConfig, build_blob, fit_tree, fixed_point
from l4stb.model.policy_latency import c_compiler, c_latency, python_latency

FEATURES = ("queue_type", "drop_probability", "current_queue_delay", "accumulated_probability", "length_in_bytes",
            "packet_length", "queue_length")


def synthetic_records(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """[n, 23] log records and a label rule with fine structure (so deep trees stay deep)."""
    rng = np.random.default_rng(seed)
    recs = np.zeros((n, pb.MAX_FEATURES), np.int64)
    cols = {"queue_type": rng.integers(0, 2, n), "drop_probability": rng.integers(0, 2**31 - 1, n),
            "current_queue_delay": rng.integers(0, 60_000, n), "accumulated_probability": rng.integers(0, 2**31 - 1, n),
            "length_in_bytes": rng.integers(0, 300_000, n), "packet_length": rng.choice([66, 1500], n),
            "queue_length": rng.integers(0, 200, n)}
    for name, col in cols.items():
        recs[:, pb.FIELD_NAMES.index(name)] = col
    score = (np.sin(cols["current_queue_delay"] / 1500.0) + np.cos(cols["length_in_bytes"] / 9000.0)
             + cols["drop_probability"] / 2**31 + (cols["queue_length"] % 7) / 7.0)
    labels = np.digitize(score, [1.2, 2.0]).astype(np.int64)
    return recs, labels


def tree_for_depth(recs: np.ndarray, labels: np.ndarray, depth: int) -> pb.PolicyBlob:
    ints = recs[:, [pb.FIELD_NAMES.index(n) for n in FEATURES]]
    features = [pb.feature_for(n, int(ints[:, j].max())) for j, n in enumerate(FEATURES)]
    cfg = DistillConfig(max_depth=depth, max_leaves=min(2**depth, (pb.MAX_NODES + 1) // 2), max_bytes=pb.MAX_BYTES)
    clf = fit_tree(fixed_point(ints, features), labels, cfg, len(features))
    return build_blob(clf, features)


def mean_path_length(blob: pb.PolicyBlob, recs: np.ndarray, n: int = 2000) -> float:
    total = 0
    for r in recs[:n].tolist():
        x, i, steps = blob.feature_values(r), 0, 0
        while not blob.nodes[i].is_leaf:
            node = blob.nodes[i]
            i = node.left if x[node.feature] <= node.threshold else node.right
            steps += 1
        total += steps
    return total / min(n, len(recs))


def llm_latency_ms(backbone: str, n: int = 300) -> dict | None:
    if backbone == "none":
        return None
    import torch

    from l4stb.analysis.pool import NormStats
    from l4stb.model.evaluate import decision_latency
    from l4stb.model.inference import Policy
    from l4stb.model.policy import PolicyConfig, build_model

    torch.manual_seed(0)
    cfg = PolicyConfig(backbone=backbone, n_features=len(FEATURES), feature_names=list(FEATURES))
    model = build_model(cfg)
    norm = NormStats(mean=[0.0] * len(FEATURES), std=[1.0] * len(FEATURES))
    states = np.random.default_rng(1).random((n + 50, len(FEATURES))).astype(np.float32)
    return decision_latency(Policy(model, norm), states, n=n, threads=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", default="2,4,6,8,12,16,24")
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--llm", default="tiny-gpt2", help="backbone to time at batch 1, or none")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the kernel runs a decision
    recs, labels = synthetic_records(args.records)
    print(f"C compiler: {c_compiler() or 'none (C column empty)'}; records: {len(recs):,}; CPU: {_cpu()}")
    print()
    print("| evaluator | max depth | nodes | leaves | mean path (levels) | blob bytes | ns per decision |")
    print("|---|---|---|---|---|---|---|")
    for depth in (int(d) for d in args.depths.split(",")):
        blob = tree_for_depth(recs, labels, depth)
        c = c_latency(blob, recs)
        py = python_latency(blob, recs, max_records=5000)
        path = mean_path_length(blob, recs)
        shape = f"{blob.max_depth} | {len(blob.nodes):,} | {blob.leaves:,} | {path:.1f} | {blob.size_bytes:,}"
        print(f"| C dp2_policy_decide (-O2) | {shape} | {'-' if c is None else f'{c.ns_per_decision:.1f}'} |")
        print(f"| Python twin (simulator) | {shape} | {py.ns_per_decision:,.0f} |")
        sys.stdout.flush()
    lat = llm_latency_ms(args.llm)
    if lat is not None:
        print(f"| L4S-LLM {args.llm}, batch 1, KV cache | - | - | - | - | - | {lat['p50'] * 1e6:,.0f} "
              f"(p50; p99 {lat['p99'] * 1e6:,.0f}) |")


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
