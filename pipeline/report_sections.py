"""The model's report sections: training curves, confusion matrix, baselines, and the cost (latency, memory) bars.

The paper's own reported numbers appear only where the original repository states them
(``Graphs-Viz-L4S-LLM:Other Graphs/main.py``), and are labelled as the paper's in every figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from l4stb.analysis.figure_saver import figure_batch
from l4stb.analysis.pool import ACTION_NAMES
from l4stb.analysis.report_frame import ReportSection, ReportTable

PAPER_GPU_MEMORY_GB = {"Llama2-7B LoRA (paper)": 23.9, "Llama2-7B full fine-tune (paper)": 65.88}
PAPER_TRAINABLE = {"Llama2-7B (paper)": (67_108_864, 6_674_456_576), "OPT-1.3B (paper)": (25_165_824, 1_340_923_904)}
TRAIN_COLOR, VAL_COLOR, OURS_COLOR, PAPER_COLOR = "#0072B2", "#D55E00", "#009E73", "#999999"


def _fig(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, list(np.atleast_1d(axes))


def training_curves_figure(history: list[dict]) -> Figure:
    """Loss, accuracy and macro-F1 per epoch, train and validation: whole epochs on x (also for one epoch),
    accuracy and macro-F1 on their full 0-1 range, loss from 0, and one legend under the panels, never over data."""
    fig, (ax_loss, ax_acc, ax_f1) = _fig(11, 3.8, 3)
    epochs = [h["epoch"] + 1 for h in history]
    for ax, key, title in ((ax_loss, "loss", "cross-entropy loss"), (ax_acc, "accuracy", "accuracy"),
                           (ax_f1, "macro_f1", "macro-F1")):
        for split, color in (("train", TRAIN_COLOR), ("val", VAL_COLOR)):
            ys = [h.get(f"{split}_{key}") for h in history]
            if any(y is not None for y in ys):
                ax.plot(epochs, [np.nan if y is None else y for y in ys], marker="o", color=color,
                        label="train (running, over the epoch)" if split == "train" else "validation")
        ax.set_xlabel("epoch (1 = first)")
        if epochs:
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if key == "loss":
            top = np.nanmax([h.get(f"{sp}_loss") or np.nan for h in history for sp in ("train", "val")] + [np.nan]) \
                if history else np.nan
            ax.set_ylim(0, 1.1 * top if np.isfinite(top) and top > 0 else 1.0)
        else:
            ax.set_ylim(0, 1.02)
        ax.set_ylabel(f"{title} (unitless)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    best = [h["epoch"] + 1 for h in history if h.get("best")]
    if best:
        ax_f1.axvline(best[-1], color="#555555", linestyle=":", label=f"best epoch ({best[-1]})")
    handles, labels = ax_f1.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=len(handles), fontsize=8)
    return fig


def confusion_figure(confusion: list[list[int]]) -> Figure:
    """Confusion matrix on the held-out test split: counts, and row-normalised shares as colour."""
    fig, (ax,) = _fig(4.6, 4.0)
    cm = np.asarray(confusion, dtype=float)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{int(cm[i, j]):,}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(3), ACTION_NAMES)
    ax.set_yticks(range(3), ACTION_NAMES)
    ax.set_xlabel("predicted action (class)")
    ax.set_ylabel("logged action (class)")
    fig.colorbar(im, ax=ax, label="share of the logged class (0-1)")
    ax.legend(handles=[], title="counts and row shares", loc="upper right", fontsize=7, title_fontsize=7)
    return fig


def cost_figure(metrics: dict) -> Figure:
    """Decision latency and memory of this run's model, with the paper's memory numbers labelled as the paper's."""
    fig, (ax_lat, ax_mem) = _fig(10, 3.6, 2)
    lat = metrics.get("latency_ms", {})
    labels = ["p50", "p99"]
    ax_lat.bar(labels, [lat.get("p50", np.nan), lat.get("p99", np.nan)], color=OURS_COLOR,
               label=f"this run ({metrics.get('backbone', {}).get('name', '?')}, batch 1, KV cache)")
    ax_lat.set_ylabel("decision latency (ms)")
    ax_lat.set_xlabel("percentile over timed decisions")
    ax_lat.set_title("decision latency")
    ax_lat.legend(fontsize=8)

    names, values, colors = [], [], []
    for mode, cost in metrics.get("cost", {}).items():
        if cost.get("peak_mb") is not None:
            names.append(f"{mode.replace('_', ' ')} (this run)")
            values.append(cost["peak_mb"] / 1024)
            colors.append(OURS_COLOR)
    for name, gb in PAPER_GPU_MEMORY_GB.items():
        names.append(name)
        values.append(gb)
        colors.append(PAPER_COLOR)
    ax_mem.barh(names, values, color=colors)
    ax_mem.set_xscale("log")
    ax_mem.set_xlabel("peak memory (GiB, log scale)")
    ax_mem.set_title("training memory")

    ax_mem.legend(handles=[Patch(color=OURS_COLOR, label="measured in this run"),
                           Patch(color=PAPER_COLOR, label="the paper's reported GPU memory")], fontsize=8)
    return fig


def _f(x, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def _counts(counts) -> str:
    """``{'forward': 9800, 'drop': 50}`` -> ``forward 9,800, drop 50`` (no raw dict in the report)."""
    if isinstance(counts, dict):
        return ", ".join(f"{k} {int(v):,}" for k, v in counts.items()) or "none"
    if isinstance(counts, (list, tuple)):
        return ", ".join(f"{name} {int(v):,}" for name, v in zip(ACTION_NAMES, counts))
    return str(counts)


FAR_BELOW_F1 = 0.1
"""A learned model whose held-out macro-F1 is more than this below the best learned baseline's is flagged."""


def baseline_gap_warning(metrics: dict) -> str:
    """A warning (one sentence, "" when none) when the learned model's held-out macro-F1 is far below the simple
    learned baselines' (logistic regression, decision tree): its closed-loop numbers then show a weak model."""
    f1 = (metrics.get("test") or {}).get("macro_f1")
    learned = {name: b.get("macro_f1") for name, b in (metrics.get("baselines") or {}).items()
               if name != "always_forward" and isinstance(b, dict) and isinstance(b.get("macro_f1"), (int, float))}
    if not isinstance(f1, (int, float)) or not learned or max(learned.values()) - f1 <= FAR_BELOW_F1:
        return ""
    others = " and ".join(f"{name.replace('_', ' ')} {v:.3f}" for name, v in learned.items())
    return (f"The learned model is far below the simple baselines on the held-out test split: macro-F1 {f1:.3f} "
            f"against {others}. Its closed-loop numbers show what this weak model does, not what L4S-LLM can do: "
            "train longer (--epochs), on more windows (--max-train-windows 0) or with a larger backbone.")


def model_sections(metrics: dict, history: list[dict], fig_dir: Path) -> list[ReportSection]:
    """The training, classification and cost sections of a model, their figures written by the writer pool."""
    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    with figure_batch() as batch:
        return _model_sections(metrics, history, fig_dir, batch.save)


def _model_sections(metrics: dict, history: list[dict], fig_dir: Path, save) -> list[ReportSection]:
    test = metrics.get("test", {})
    data = metrics.get("data", {})
    backbone = metrics.get("backbone", {})
    params = metrics.get("params", {})
    out = []
    curves = save(training_curves_figure(history), fig_dir / "training_curves").png if history else None
    intro = (
        f"Backbone **{backbone.get('name')}** ({backbone.get('family')}, {backbone.get('layers')} layers, hidden "
        f"{backbone.get('hidden_size')}); trainable parameters {params.get('trainable', 0):,} of "
        f"{params.get('total', 0):,}. Trained {metrics.get('epochs_run')} epochs in {metrics.get('train_seconds', 0):.1f} s "
        f"on {data.get('train_rows', 0):,} rows ({data.get('train_windows', 0):,} windows); the checkpoint is the epoch "
        f"with the best validation macro-F1 (epoch {int(metrics.get('best_epoch', -1)) + 1}). All numbers below are "
        f"measured on the held-out test split ({data.get('test_rows', 0):,} rows; actions "
        f"{_counts(data.get('test_action_counts', {}))}), which no training step saw. The classes are very unbalanced, so "
        "read macro-F1 and balanced accuracy, not accuracy."
    )
    gap = baseline_gap_warning(metrics)
    if gap:
        intro = f"**Warning: {gap}**\n\n{intro}"
    out.append(ReportSection("Model training", markdown=intro,
                             figures=[("Loss, accuracy and macro-F1 per epoch (train: running over the epoch; "
                                       "validation: after the epoch).", curves)] if curves else []))

    rows = [["L4S-LLM (" + str(backbone.get("name")) + ")", _f(test.get("accuracy")), _f(test.get("balanced_accuracy")),
             _f(test.get("macro_f1"))] + [_f(test.get("per_class", {}).get(a, {}).get(k)) for a in ACTION_NAMES
                                           for k in ("precision", "recall")]]
    for name, b in metrics.get("baselines", {}).items():
        rows.append([name.replace("_", " "), _f(b.get("accuracy")), _f(b.get("balanced_accuracy")),
                     _f(b.get("macro_f1"))] + [_f(b.get("per_class", {}).get(a, {}).get(k)) for a in ACTION_NAMES
                                                for k in ("precision", "recall")])
    cols = ["model", "accuracy", "balanced acc.", "macro-F1"] + [f"{a} {k[:4]}." for a in ACTION_NAMES
                                                                  for k in ("precision", "recall")]
    figs = []
    if test.get("confusion"):
        figs.append(("Confusion matrix of the L4S-LLM on the test split.",
                     save(confusion_figure(test["confusion"]), fig_dir / "confusion").png))
    out.append(ReportSection(
        "Classification on held-out data",
        markdown="Baselines are fit on the same train split and see only the current state row: always-forward "
                 "(predicts the majority class), logistic regression and a depth-6 decision tree, both with "
                 "balanced class weights.",
        tables=[ReportTable(cols, rows, caption="Test-split metrics (per-class precision/recall)")], figures=figs))

    lat, mem = metrics.get("latency_ms", {}), metrics.get("memory", {})
    # Like with like: both modes from the same probe (same batches, same number of optimizer steps, same unit).
    cost_rows = [[mode.replace("_", " "), f"{c.get('trainable', 0):,}", f"{c.get('total', 0):,}",
                  _f(c.get("probe_peak_mb"), 0), _f(c.get("probe_seconds_per_step"), 4), c.get("probe_steps", "-")]
                 for mode, c in metrics.get("cost", {}).items() if c.get("probe_seconds_per_step") is not None]
    cost_rows += [[name, f"{t:,}", f"{tot:,}", "-", "-", "-"] for name, (t, tot) in PAPER_TRAINABLE.items()]
    out.append(ReportSection(
        "Cost: latency, throughput, memory",
        markdown=(f"Decision latency at batch 1 with incremental KV-cache inference over the sliding window: p50 "
                  f"{_f(lat.get('p50'), 2)} ms, p99 {_f(lat.get('p99'), 2)} ms ({lat.get('n', '?')} decisions). "
                  f"Batched: {_f(metrics.get('decisions_per_s'), 0)} decisions/s, timed over the test split's own "
                  f"evaluation pass. Peak memory while training "
                  f"{_f(mem.get('peak_mb'), 0)} MB ({mem.get('kind', 'RSS on CPU / max allocated on GPU')}). "
                  "Rows marked (paper) are the original authors' reported numbers, not measured here."),
        tables=[ReportTable(["configuration", "trainable params", "total params", "probe peak MB",
                             "probe s per optimizer step", "probe steps"], cost_rows,
                            caption="LoRA vs full fine-tuning on the same probe (same batches and steps); "
                                    "rows marked (paper) give only the paper's parameter counts")],
        figures=[("Decision latency and training memory; grey bars are the paper's reported numbers.",
                  save(cost_figure(metrics), fig_dir / "cost").png)]))
    return out
