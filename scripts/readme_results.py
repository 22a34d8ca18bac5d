"""Turn a finished main job into the README's "Results on this machine" section: figures and measured numbers.

Usage: python scripts/readme_results.py WORKDIR [RUN_ID] > results.md
Copies the figures a reader wants first into docs/results/ and prints markdown built only from the
files the job wrote (manifest.json, report/headline.json, the closed-loop runs' manifests).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from l4stb.workspace import Workspace

DOCS = Path(__file__).resolve().parents[1] / "docs" / "results"
FIGURES = {
    "closed-loop-learned-policy-vs-dualpi2/closed_loop_delay_ecdf.png": "Queue delay ECDF: DualPI2 against the learned policy and the baselines",
    "throughput_box.png": "Steady-state throughput per flow, per congestion control (DualPI2 run)",
    "model-training/training_curves.png": "Training curves (train and validation)",
    "cost-latency-throughput-memory/cost.png": "Decision latency and training memory",
}


def _jain(row: dict) -> str:
    """Jain's index, or n/a where it is undefined (no flow carried anything: nothing to share)."""
    jain = row.get("jain")
    return "n/a" if row.get("jain_na") or not isinstance(jain, (int, float)) or jain != jain else f"{jain:.3f}"


def main() -> None:
    ws = Workspace.at(sys.argv[1])
    run_id = sys.argv[2] if len(sys.argv) > 2 else next(r for r in reversed(ws.run_ids()) if "-cl-" not in r)
    manifest = json.loads(ws.manifest_file(run_id).read_text())
    head = json.loads((ws.report_dir(run_id) / "headline.json").read_text())
    m = head["metrics"]
    DOCS.mkdir(parents=True, exist_ok=True)
    out = []
    for rel, caption in FIGURES.items():
        src = ws.report_dir(run_id) / "figures" / rel
        if src.is_file():
            shutil.copyfile(src, DOCS / src.name)
            out.append(f"![{caption}](docs/results/{src.name})\n\n*{caption}.*\n")
    test, base = m["test"], m["baselines"]
    rows = [("L4S-LLM (" + m["backbone"]["name"] + ")", test)] + [(k.replace("_", " "), v) for k, v in base.items()]
    out.append("| model (held-out test repeats) | accuracy | balanced accuracy | macro-F1 |\n|---|---|---|---|")
    out += [f"| {name} | {v['accuracy']:.3f} | {v['balanced_accuracy']:.3f} | {v['macro_f1']:.3f} |" for name, v in rows]
    out.append("")
    cl = head.get("closed_loop", [])
    if cl:
        ccs = sorted({cc for r in cl for cc in (r.get("cc_mbps") or {})})
        out.append("| closed loop (same held-out seeds) | repeats | C p95 (ms) | L p95 (ms) | utilisation | "
                   + " | ".join(f"{cc} Mbit/s" for cc in ccs)
                   + " | Jain | C drop / mark | L drop / mark | policy latency p50 / p99 (ms) |\n|"
                   + "---|" * (9 + len(ccs)))
        for r in cl:
            lat = "-" if r.get("latency_p50_ms") is None else f"{r['latency_p50_ms']:.3f} / {r['latency_p99_ms']:.3f}"
            cc = " | ".join(f"{r['cc_mbps'].get(c, float('nan')):.2f}" for c in ccs)
            out.append(f"| {r['label']} | {r['repeats']} | {r['c_p95_ms']:.1f} | {r['l_p95_ms']:.1f} | "
                       f"{r['utilization']:.1%} | {cc} | {_jain(r)} | {r['c_drop']:.1%} / {r['c_mark']:.1%} | "
                       f"{r['l_drop']:.1%} / {r['l_mark']:.1%} | {lat} |")
        out.append("")
        from l4stb.pipeline.verdicts import verdict_metrics

        words = {vm.key: vm.label for vm in verdict_metrics(ccs)}
        worse = [(r["label"], sorted(words.get(k, k) for k, v in (r.get("verdicts") or {}).items()
                                     if v.startswith("worse")))
                 for r in cl if r.get("verdicts")]
        out += [f"- {label}: worse than DualPI2 (paired 95 % interval over the repeats) on "
                + (", ".join(keys) if keys else "nothing") for label, keys in worse]
        out.append("")
    d = head.get("distill")
    if d:
        c_ns = d["latency_ns"]["c"]
        out.append(
            f"Distilled tree: {d['blob']['bytes']:,} bytes, {d['blob']['leaves']} leaves, depth {d['blob']['depth']}; "
            f"agreement with the LLM {d['agreement_with_teacher']:.1%} on the held-out test split; macro-F1 "
            f"{d['test']['macro_f1']:.3f} (the LLM {d['teacher_test']['macro_f1']:.3f}); "
            + (f"{c_ns:.0f} ns per decision in C" if c_ns is not None else "no C compiler for its latency")
            + f", {d['latency_ns']['python']:.0f} ns in the simulator's Python twin.\n")
    sims = [r["stats"] for r in manifest["repeats"].values() if r.get("stats")]
    sim_s = sum(s["sim_s"] for s in sims)
    sim_wall = sum(s["sim_wall_s"] for s in sims)
    lat = m["latency_ms"]
    out.append(
        f"Measured in this run: {len(sims)} repeats x {sims[0]['sim_s']:.0f} s simulated "
        f"({sum(s['packets'] for s in sims):,} packets) in {manifest['timings']['run_wall_s']:.1f} s wall on "
        f"{manifest['host_facts']['router'].get('cpu_count', '?')} cores; the simulator core ran "
        f"{sim_s / sim_wall:.0f} simulated seconds per wall second per repeat. Training "
        f"{m['backbone']['name']} took {m['train_seconds']:.0f} s for {m['epochs_run']} epochs; decisions at batch 1 "
        f"p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms; {m['decisions_per_s']:,.0f} decisions/s batched; "
        f"peak memory {m['memory']['peak_mb']:.0f} MB. `train-and-report` took {head['wall_s']:.0f} s in all."
    )
    print("\n".join(out))


if __name__ == "__main__":
    main()
