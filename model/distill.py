"""Distillation: a trained policy (the teacher) becomes a small integer decision tree that the router runs.

Metis-style imitation with DAgger: the student is a CART tree over fixed-point versions of the router-logged
features of the pool preset (:func:`l4stb.policyblob.feature_for`), fit to the teacher's decisions on the
training split; then, for each DAgger round, the student drives the simulated router on training-split
seeds (never the test repeats), the teacher labels every state the student visited (it reads the student's
own trajectory as its history), and the tree is refit on everything gathered so far. Imitation alone drifts
off the data because the student's mistakes lead to states the teacher's data never showed it.

The tree is limited in depth, leaves and blob bytes, serialised as a policy blob, and judged on the held-out
test split: agreement with the teacher, macro-F1 against the logged labels (beside the teacher's and the
baselines'), size and decision latency (C evaluator and Python twin).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from l4stb import policyblob as pb
from l4stb.analysis.pool import ExperiencePool, PoolSplits
from l4stb.errors import L4stbError
from l4stb.logformat import FIELD_NAMES, PROB_SCALE, PROBABILITY_FIELDS
from l4stb.model.policy_latency import c_latency, python_latency
from l4stb.sim.policy import BlobPolicy
from l4stb.sim.runner import SimJob, simulate_repeat
from l4stb.workspace import staged_folder, stored_path

log = logging.getLogger(__name__)

DISTILL_JSON = "distill.json"


@dataclass
class DistillConfig:
    """Limits of the student and the data it learns from (see `l4stb distill --help`)."""

    max_depth: int = 8
    max_leaves: int = 64
    max_bytes: int = 4096
    dagger_rounds: int = 1
    dagger_repeats: int = 1
    max_teacher_rows: int = 60_000
    max_eval_rows: int = 60_000
    seed: int = 0

    def validated(self) -> "DistillConfig":
        def bad(what: str, rule: str) -> None:
            raise L4stbError(f"distill: {what} {rule}")

        if not 1 <= self.max_depth <= pb.MAX_DEPTH:
            bad("--max-depth", f"must be 1..{pb.MAX_DEPTH} (the kernel bounds the walk), got {self.max_depth}.")
        if not 2 <= self.max_leaves <= (pb.MAX_NODES + 1) // 2:
            bad("--max-leaves", f"must be 2..{(pb.MAX_NODES + 1) // 2}, got {self.max_leaves}.")
        if not 64 <= self.max_bytes <= pb.MAX_BYTES:
            bad("--max-bytes", f"must be 64..{pb.MAX_BYTES}, got {self.max_bytes}.")
        if self.dagger_rounds < 0 or self.dagger_repeats < 1:
            bad("--dagger-rounds/--dagger-repeats", "must be >= 0 and >= 1.")
        return self


# -- features ---------------------------------------------------------------------------------------------


def log_integers(states: np.ndarray, names) -> np.ndarray:
    """Pool rows (probabilities unscaled to [0, 1]) back to the integers the router logs, one column per name."""
    out = np.empty(states.shape, dtype=np.int64)
    for j, name in enumerate(names):
        col = states[:, j].astype(np.float64)
        out[:, j] = np.rint(col * PROB_SCALE if name in PROBABILITY_FIELDS else col).astype(np.int64)
    return out


def records(ints: np.ndarray, names) -> np.ndarray:
    """[n, 23] log records (zeros for the fields the features do not read) from per-feature integer columns."""
    out = np.zeros((len(ints), pb.MAX_FEATURES), dtype=np.int64)
    for j, name in enumerate(names):
        out[:, FIELD_NAMES.index(name)] = ints[:, j]
    return out


def fixed_point(ints: np.ndarray, features: list[pb.Feature]) -> np.ndarray:
    """The evaluator's feature values: min(max(v, 0) >> shift, 2^31-1), per column."""
    out = np.empty(ints.shape, dtype=np.int64)
    for j, f in enumerate(features):
        out[:, j] = np.minimum(np.maximum(ints[:, j], 0) >> f.shift, pb.INT32_MAX)
    return out


# -- the tree ---------------------------------------------------------------------------------------------


def _leaves_for_bytes(max_bytes: int, n_features: int) -> int:
    nodes = (max_bytes - pb.HEADER_BYTES - pb.FEATURE_BYTES * n_features) // pb.NODE_BYTES
    return max(2, (nodes + 1) // 2)


def fit_tree(xq: np.ndarray, y: np.ndarray, cfg: DistillConfig, n_features: int):
    # lazy: sklearn is slow to import
    from sklearn.tree import DecisionTreeClassifier

    leaves = min(cfg.max_leaves, _leaves_for_bytes(cfg.max_bytes, n_features))
    clf = DecisionTreeClassifier(max_depth=cfg.max_depth, max_leaf_nodes=leaves, random_state=cfg.seed)
    clf.fit(xq.astype(np.float64), y)
    return clf


def tree_nodes(clf) -> tuple[list[pb.Node], int]:
    """sklearn's tree as blob nodes in pre-order, with integer thresholds and sibling leaves of one action
    merged (they decide nothing); returns the nodes and their depth."""
    t = clf.tree_
    classes = [int(c) for c in clf.classes_]

    def action(i: int) -> int:
        return classes[int(np.argmax(t.value[i][0]))]

    def simplify(i: int):
        """A nested form: ("leaf", action) or ("split", feature, threshold, left, right)."""
        left, right = t.children_left[i], t.children_right[i]
        if left == -1:
            return ("leaf", action(i))
        a, b = simplify(left), simplify(right)
        if a[0] == "leaf" and b[0] == "leaf" and a[1] == b[1]:
            return a
        # x <= t for an integer x is x <= floor(t); the feature never exceeds 2^31-1
        thr = int(np.clip(np.floor(t.threshold[i]), -(2**31), pb.INT32_MAX))
        return ("split", int(t.feature[i]), thr, a, b)

    nodes: list[pb.Node] = []

    def emit(node, depth: int) -> int:
        idx = len(nodes)
        if node[0] == "leaf":
            nodes.append(pb.Node(pb.LEAF, node[1], 0, 0, 0))
            return depth
        nodes.append(pb.Node(node[1], 0, 0, 0, node[2]))
        d_left = emit(node[3], depth + 1)
        right = len(nodes)
        d_right = emit(node[4], depth + 1)
        nodes[idx] = pb.Node(node[1], 0, idx + 1, right, node[2])
        return max(d_left, d_right)

    depth = emit(simplify(0), 0)
    return nodes, depth


def build_blob(clf, features: list[pb.Feature]) -> pb.PolicyBlob:
    nodes, depth = tree_nodes(clf)
    if len(nodes) == 1:  # one action everywhere: still a valid tree (a split whose children agree)
        a = nodes[0].action
        nodes = [pb.Node(0, 0, 1, 2, 0), pb.Node(pb.LEAF, a, 0, 0, 0), pb.Node(pb.LEAF, a, 0, 0, 0)]
        depth = 1
    return pb.parse(pb.encode(features, nodes, max(depth, 1)), source="distilled tree")


def decide_all(blob: pb.PolicyBlob, recs: np.ndarray) -> np.ndarray:
    """The twin's decision for every record (what the router and the simulator decide)."""
    decide = blob.decide
    return np.fromiter((decide(r) for r in recs.tolist()), dtype=np.int64, count=len(recs))


# -- the teacher ------------------------------------------------------------------------------------------


@dataclass
class Teacher:
    """A trained L4S-LLM checkpoint that labels states in batch (eval windows, as its test metrics do)."""

    checkpoint: Path
    eval_returns: str = "target"
    batch_size: int = 64
    final_checkpoint: Path | None = None
    """Where the checkpoint will live when it is read from a staging folder (what the summary names)."""
    _ckpt: object = field(default=None, repr=False)

    def label(self, pool: ExperiencePool) -> np.ndarray:
        # lazy: loads torch, slow to import
        from l4stb.model.checkpoint import load_checkpoint
        from l4stb.model.dataset import WindowDataset
        from l4stb.model.evaluate import predict

        if self._ckpt is None:
            self._ckpt = load_checkpoint(self.checkpoint)
        ck = self._ckpt
        cfg = ck.cfg
        if list(cfg.feature_names) != list(pool.feature_names):
            raise L4stbError(f"the teacher at {self.checkpoint} reads {cfg.feature_names}, the pool holds "
                             f"{list(pool.feature_names)}; distil with the pool the teacher was trained on.")
        ds = WindowDataset(pool, ck.norm, window=cfg.window, gamma=cfg.gamma, return_scale=cfg.return_scale,
                           layout="eval", returns=self.eval_returns, target_return=cfg.target_return)
        _, preds, _ = predict(ck.model, ds, self.batch_size)
        out = np.empty(len(pool), dtype=np.int64)
        out[ds.rows()] = preds
        return out


def spread_rows(pool: ExperiencePool, n: int, seed: int) -> ExperiencePool:
    """At most ``n`` rows: one contiguous block from each episode (history stays intact for the teacher)."""
    # lazy: loads torch, slow to import
    from l4stb.model.dataset import episode_bounds

    if len(pool) <= n:
        return pool
    bounds = episode_bounds(pool)
    per = max(1, n // max(len(bounds), 1))
    rng = np.random.default_rng(seed)
    idx = []
    for a, b in bounds:
        start = a if b - a <= per else int(rng.integers(a, b - per + 1))
        idx.append(np.arange(start, min(b, start + per)))
    return pool.subset(np.concatenate(idx))


# -- DAgger rollouts --------------------------------------------------------------------------------------


@dataclass
class Rollout:
    """A student-driven simulation of one training seed: what the router logged, as a pool and as records."""

    repeat: int
    pool: ExperiencePool
    records: np.ndarray


def rollout(scenario, topology, repeat: int, blob: pb.PolicyBlob, feature_names, reward_name: str) -> Rollout:
    """Simulate ``repeat``'s seed with the student deciding every packet; read back its log."""
    # lazy: loads pandas, slow to import
    from l4stb.analysis.logparse import parse_log_files
    from l4stb.analysis.packets import batch_to_record_batch
    from l4stb.analysis.pool_build import get_reward

    with tempfile.TemporaryDirectory(prefix="l4stb-dagger-") as tmp:
        job = SimJob(scenario, topology, "distill-dagger", repeat, scenario.repeat_seed(repeat), tmp)
        stats = simulate_repeat(job, policy=BlobPolicy(blob, 1))
        batch, _ = parse_log_files([Path(p) for p in stats["log_files"]])
    cols = {name: batch.column(name) for name in FIELD_NAMES}
    # the columns packets.parquet would hold (probabilities unscaled, action 0/1/2), so the pool is built from
    # what build_pool reads for a logged run
    packets = batch_to_record_batch(batch, repeat, np.zeros(len(batch)))
    unscaled = {n: packets.column(n).to_numpy() for n in (*FIELD_NAMES, "action")}
    states = np.stack([unscaled[n].astype(np.float32) for n in feature_names], axis=1)
    rewards = get_reward(reward_name).fn(unscaled).astype(np.float32)
    n = len(states)
    dones = np.zeros(n, bool)
    if n:
        dones[-1] = True
    pool = ExperiencePool(states, unscaled["action"].astype(np.int64), rewards, dones, np.zeros(n, np.int32),
                          tuple(feature_names))
    recs = np.stack([cols[name] for name in FIELD_NAMES[:pb.MAX_FEATURES]], axis=1).astype(np.int64)
    return Rollout(repeat, pool, recs)


# -- the whole distillation -------------------------------------------------------------------------------


@dataclass
class DistillResult:
    blob: pb.PolicyBlob
    out_dir: Path
    summary: dict


def _train_repeats(splits: PoolSplits, run_id: str) -> list[int]:
    eps = getattr(splits.meta, "episodes", None) or []
    return sorted({int(e["repeat"]) for e in eps if e.get("split") == "train" and e.get("run") == run_id})


def _stored(root: Path | None, path) -> str:
    return stored_path(root, path) if root is not None else str(path)


def _decidable_features(splits: PoolSplits) -> tuple[str, ...]:
    """The pool's features, each one a router log field the tree can decide on (else a user error)."""
    names = tuple(splits.meta.feature_names)
    for n in names:
        if n not in pb.DECIDABLE_FIELDS:
            raise L4stbError(f"distill: the pool's feature '{n}' is not a router log field; distil a model trained "
                             "on a pool built from l4stb runs (presets paper7, paper8 or dualpi2).")
    return names


def distill(splits: PoolSplits, teacher: Teacher, out_dir: Path, cfg: DistillConfig, *, scenario=None,
            topology=None, run_id: str | None = None, teacher_metrics: dict | None = None,
            progress=None, root: Path | None = None) -> DistillResult:
    """Distil ``teacher`` on ``splits`` into ``out_dir`` (policy.l4pb + distill.json, swapped in as a set).

    ``root``: the workdir, so that distill.json names the teacher relative to it (the workdir can move)."""
    # lazy: loads torch, slow to import
    from l4stb.model.evaluate import classification_metrics

    cfg = cfg.validated()
    t0 = time.perf_counter()
    names = _decidable_features(splits)

    def stage(text: str) -> None:
        log.info("distill: %s", text)
        if progress is not None:
            progress(text)

    stage("the teacher labels the training split")
    train = spread_rows(splits.train, cfg.max_teacher_rows, cfg.seed)
    train_ints = log_integers(train.states, names)
    y = teacher.label(train)
    features = [pb.feature_for(n, int(train_ints[:, j].max(initial=1))) for j, n in enumerate(names)]
    xs, ys = [fixed_point(train_ints, features)], [y]
    clf = fit_tree(xs[0], y, cfg, len(features))
    blob = build_blob(clf, features)

    dagger: list[dict] = []
    repeats = _train_repeats(splits, run_id) if run_id else []
    if cfg.dagger_rounds and (scenario is None or not repeats):
        log.warning("distill: no training-split sim repeats to roll out; DAgger rounds skipped")
    elif cfg.dagger_rounds:
        for k in range(cfg.dagger_rounds):
            for r in repeats[k * cfg.dagger_repeats:(k + 1) * cfg.dagger_repeats] or repeats[:cfg.dagger_repeats]:
                stage(f"DAgger round {k + 1}: the student drives the router on training repeat {r}")
                ro = rollout(scenario, topology, r, blob, names, splits.meta.reward)
                labels = teacher.label(ro.pool)
                ints = log_integers(ro.pool.states, names)
                before = float((decide_all(blob, ro.records) == labels).mean()) if len(labels) else float("nan")
                xs.append(fixed_point(ints, features))
                ys.append(labels)
                dagger.append({"round": k + 1, "repeat": r, "states": int(len(labels)),
                               "student_agreement_before": round(before, 4)})
            clf = fit_tree(np.concatenate(xs), np.concatenate(ys), cfg, len(features))
            blob = build_blob(clf, features)

    stage("judging the tree on the held-out test split")
    test = spread_rows(splits.test, cfg.max_eval_rows, cfg.seed + 1)
    test_recs = records(log_integers(test.states, names), names)
    student = decide_all(blob, test_recs)
    teacher_test = teacher.label(test)
    lat_c = c_latency(blob, test_recs)
    lat_py = python_latency(blob, test_recs)
    m_student = classification_metrics(test.actions, student)
    m_teacher = classification_metrics(test.actions, teacher_test)
    summary = {
        "config": asdict(cfg), "teacher": _stored(root, getattr(teacher, "final_checkpoint", None) or teacher.checkpoint),
        "pool": splits.meta.name,
        "features": [{"name": f.name, "field_id": f.field_id, "shift": f.shift, "scale": f.scale} for f in features],
        "blob": {"bytes": blob.size_bytes, "nodes": len(blob.nodes), "leaves": blob.leaves, "depth": blob.max_depth,
                 "sha256": blob.sha256, "checksum": f"{blob.checksum:08x}"},
        "data": {"teacher_rows": int(len(train)), "dagger": dagger,
                 "total_rows": int(sum(len(v) for v in ys)), "test_rows": int(len(test))},
        "agreement_with_teacher": float((student == teacher_test).mean()) if len(test) else float("nan"),
        "test": {k: m_student[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "per_class", "confusion")},
        "teacher_test": {k: m_teacher[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")},
        "teacher_reported": {k: (teacher_metrics or {}).get("test", {}).get(k) for k in ("macro_f1",)},
        "baselines": {name: {k: m.get(k) for k in ("accuracy", "balanced_accuracy", "macro_f1")}
                      for name, m in (teacher_metrics or {}).get("baselines", {}).items()},
        "latency_ns": {"c": None if lat_c is None else round(lat_c.ns_per_decision, 2),
                       "python": round(lat_py.ns_per_decision, 1),
                       "c_note": None if lat_c is not None else "no C compiler on this machine"},
        "teacher_latency_ms": (teacher_metrics or {}).get("latency_ms"),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    _write_set(out_dir, blob, summary)
    return DistillResult(blob, out_dir, summary)


def _write_set(out_dir: Path, blob: pb.PolicyBlob, summary: dict) -> None:
    """policy.l4pb and distill.json, swapped in together (a reader never sees a blob with another's summary)."""
    with staged_folder(Path(out_dir)) as tmp:
        (tmp / pb.BLOB_NAME).write_bytes(blob.raw)
        (tmp / DISTILL_JSON).write_text(json.dumps(summary, indent=2, default=float) + "\n")
