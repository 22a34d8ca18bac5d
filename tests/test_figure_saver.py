"""Figures written by the writer pool are the same files, written before the batch ends; failures reach the caller."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from l4stb.analysis import figure_saver
from l4stb.analysis.figure_saver import figure_batch
from l4stb.analysis.plots import FigureData, save_figure
from l4stb.errors import L4stbError


def _figure(seed: int) -> Figure:
    fig = Figure(figsize=(4, 3), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x = np.arange(200)
    ax.plot(x, np.random.default_rng(seed).normal(size=200).cumsum(), label="queue delay")
    ax.set_xlabel("time (s)")
    ax.legend()
    return fig


def _data() -> FigureData:
    return FigureData("line", pd.DataFrame({"panel": 0, "series": "a", "x": [0.0, 1.0], "y": [1.0, 2.0]}), "x", "y")


def test_pool_writes_the_same_bytes_as_the_calling_process(tmp_path, monkeypatch):
    monkeypatch.setenv("L4STB_FIGURE_WORKERS", "2")
    direct = [save_figure(_figure(seed), tmp_path / f"direct{seed}", _data()) for seed in range(3)]
    with figure_batch() as batch:
        pooled = [batch.save(_figure(seed), tmp_path / f"pooled{seed}", _data()) for seed in range(3)]
    for d, p in zip(direct, pooled):
        for kind in ("png", "svg", "pdf", "data"):
            assert getattr(p, kind).read_bytes() == getattr(d, kind).read_bytes(), kind


def test_a_failed_write_raises_in_the_caller(tmp_path, monkeypatch):
    monkeypatch.setenv("L4STB_FIGURE_WORKERS", "2")
    (tmp_path / "a file").write_text("not a folder")
    with pytest.raises(OSError):
        with figure_batch() as batch:
            batch.save(_figure(0), tmp_path / "a file" / "fig")


def test_zero_workers_writes_in_this_process(tmp_path, monkeypatch):
    monkeypatch.setenv("L4STB_FIGURE_WORKERS", "0")
    with figure_batch() as batch:
        files = batch.save(_figure(1), tmp_path / "here")
        assert files.png.is_file()  # written at once, before the batch ends


def test_a_bad_worker_count_is_refused_with_the_variable_named(monkeypatch):
    monkeypatch.setenv("L4STB_FIGURE_WORKERS", "two")
    with pytest.raises(L4stbError, match="L4STB_FIGURE_WORKERS"):
        figure_saver.figure_workers()
