"""Decision latency of a policy blob: the kernel's C evaluator (built here with the system C compiler) and the
simulator's Python twin, both timed on the same log records on one core."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from l4stb import policyblob, resources


@dataclass
class Latency:
    ns_per_decision: float
    decisions: int
    where: str  # "C (dp2_policy.c, -O2)" or "Python twin"


def records_matrix(rows: np.ndarray) -> np.ndarray:
    """[n, 23] int64 log records (the fields a policy may read), C-contiguous, for both evaluators."""
    out = np.ascontiguousarray(rows[:, :policyblob.MAX_FEATURES], dtype="<i8")
    return out


def c_compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def build_bench(out_dir: Path) -> Path | None:
    """Compile harness/policy_bench.c with dp2_policy.c; None when there is no C compiler."""
    cc = c_compiler()
    if cc is None:
        return None
    src = resources.module_dir()
    exe = out_dir / "policy_bench"
    proc = subprocess.run([cc, "-std=c99", "-O2", f"-I{src}", str(src / "harness" / "policy_bench.c"),
                           str(src / "dp2_policy.c"), "-o", str(exe)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building the policy bench failed:\n{proc.stderr}")
    return exe


def c_latency(blob: policyblob.PolicyBlob, records: np.ndarray, *, min_decisions: int = 2_000_000,
              exe: Path | None = None) -> Latency | None:
    """ns per decision of dp2_policy_decide over ``records`` (repeated to ``min_decisions``); None without a
    C compiler. The decisions' sum is checked against the Python twin's, so the timing is of the right work."""
    recs = records_matrix(records)
    with tempfile.TemporaryDirectory(prefix="l4stb-policy-bench-") as tmp:
        tmp_path = Path(tmp)
        exe = exe or build_bench(tmp_path)
        if exe is None:
            return None
        (tmp_path / "blob").write_bytes(blob.raw)
        recs.tofile(tmp_path / "records")
        rounds = max(1, -(-min_decisions // max(len(recs), 1)))
        proc = subprocess.run([str(exe), str(tmp_path / "blob"), str(tmp_path / "records"), str(rounds)],
                              capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"policy bench failed: {proc.stderr.strip()}")
    out = dict(kv.split("=") for kv in proc.stdout.split())
    want = rounds * sum(blob.decide(r) for r in recs.tolist())
    if int(out["checksum"]) != want:
        raise RuntimeError(f"the C evaluator's decisions differ from the Python twin's ({out['checksum']} != {want})")
    return Latency(float(out["ns_per_decision"]), int(out["decisions"]), "C (dp2_policy.c, -O2)")


def python_latency(blob: policyblob.PolicyBlob, records: np.ndarray, *, max_records: int = 20_000) -> Latency:
    """ns per decision of the simulator's Python twin (:meth:`PolicyBlob.decide`), best of 3 passes."""
    rows = records_matrix(records)[:max_records].tolist()
    best = float("inf")
    decide = blob.decide
    for _ in range(3):
        t0 = time.perf_counter_ns()
        for r in rows:
            decide(r)
        best = min(best, (time.perf_counter_ns() - t0) / max(len(rows), 1))
    return Latency(best, len(rows), "Python twin")
