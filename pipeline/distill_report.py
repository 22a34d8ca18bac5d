"""The report section of the deployable policy: fidelity, size and latency of the distilled tree, from distill.json."""

from __future__ import annotations

import math

from l4stb.analysis.report import ReportSection, ReportTable


def _f(x, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def fidelity_rows(s: dict) -> list[list[str]]:
    """One row per model: agreement with the teacher and the held-out test metrics, with size and latency."""
    blob, lat, t = s["blob"], s["latency_ns"], s.get("teacher_latency_ms") or {}
    rows = [[f"distilled tree (depth {blob['depth']}, {blob['leaves']} leaves)", _f(s["agreement_with_teacher"]),
             _f(s["test"]["accuracy"]), _f(s["test"]["balanced_accuracy"]), _f(s["test"]["macro_f1"]),
             f"{blob['bytes']:,} B", f"{_f(lat['c'], 1)} ns (C), {_f(lat['python'] / 1000, 2)} µs (Python)"],
            ["teacher: L4S-LLM", "1.000", _f(s["teacher_test"]["accuracy"]), _f(s["teacher_test"]["balanced_accuracy"]),
             _f(s["teacher_test"]["macro_f1"]), "-", f"{_f(t.get('p50'), 2)} ms p50 (batch 1)" if t else "-"]]
    for name, b in s.get("baselines", {}).items():
        rows.append([name.replace("_", " "), "-", _f(b.get("accuracy")), _f(b.get("balanced_accuracy")),
                     _f(b.get("macro_f1")), "-", "-"])
    return rows


def distill_section(s: dict) -> ReportSection:
    data, blob, cfg = s["data"], s["blob"], s["config"]
    dagger = "; ".join(f"round {d['round']}: {d['states']:,} states of training repeat {d['repeat']} "
                       f"(the student agreed with the teacher on {d['student_agreement_before']:.1%} of them)"
                       for d in data["dagger"]) or "none"
    feats = ", ".join(f"{f['name']} >> {f['shift']}" if f["shift"] else f["name"] for f in s["features"])
    text = (
        f"The L4S-LLM (the teacher) distilled into an integer decision tree that the FreeBSD module runs "
        f"(`sysctl net.inet.ip.dummynet.dualpi2.policy`) and the simulator runs bit for bit (aqm `policy`). "
        f"Limits: depth {cfg['max_depth']}, {cfg['max_leaves']} leaves, {cfg['max_bytes']:,} bytes; the blob "
        f"has {blob['nodes']} nodes in {blob['bytes']:,} bytes (sha256 `{blob['sha256'][:16]}…`). Features, "
        f"fixed point (log integers, right-shifted): {feats}. Trained on the teacher's decisions on "
        f"{data['teacher_rows']:,} training-split rows plus DAgger rollouts in which the tree drives the "
        f"simulated router on training seeds and the teacher labels every state it visits ({dagger}); "
        f"{data['total_rows']:,} rows in all. Judged on {data['test_rows']:,} held-out test rows: agreement "
        f"with the teacher's decisions there, and the usual metrics against the logged labels. Latency is "
        f"ns per decision of the module's C evaluator on this CPU (one core, "
        f"{'not measured: ' + s['latency_ns']['c_note'] if s['latency_ns']['c'] is None else 'compiled -O2'}) "
        f"and of the simulator's Python twin; the teacher's is its batch-1 latency with the KV cache. "
        f"Distillation took {s['seconds']:.1f} s."
    )
    table = ReportTable(["model", "agreement with teacher", "accuracy", "balanced acc.", "macro-F1", "size",
                         "decision latency"], fidelity_rows(s),
                        caption="Deployable policy: fidelity to the teacher and held-out test metrics")
    return ReportSection("Deployable policy (distilled decision tree)", markdown=text, tables=[table])
