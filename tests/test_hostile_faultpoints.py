"""SIGINT, SIGTERM and SIGKILL at exact points of fetch-logs, pool import, import-logs and train-and-report.

Each point sits between two writes of one output set (see faultpoint.py). After the signal, what is on disk
is either the old set whole or the new one whole; the command's re-run completes with outputs identical to
an uninterrupted run of the same command in a workdir of its own; nothing outside the workdir changed; and
the re-run stays under the stated peak-memory bound.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hostile import (PEAK_MEMORY_BOUND_MB, TINY, env_for, make_fetched_run, only_run, peak_rss_mb, run_cli,
                     run_files, snapshot)

pytestmark = pytest.mark.slow

FAULTPOINT = Path(__file__).with_name("faultpoint.py")
INTERRUPTED = "interrupted: what was finished is saved"
TRAIN_MEMORY_BOUND_MB = 1500
"""train-and-report loads torch and transformers and trains tiny-gpt2: about 700 MB on this machine."""


def _signalled(workdir: Path, target: str, nth: int, sig: signal.Signals, when: str, *args: str,
               env: dict[str, str] | None = None) -> str:
    """Run ``l4stb ARGS`` and signal it at the ``nth`` call of ``target``; check how it ended; return stderr."""
    done = subprocess.run([sys.executable, str(FAULTPOINT), target, str(nth), sig.name, when, "--", *args],
                          env=env_for(workdir, **(env or {})), cwd=workdir.parent, capture_output=True, text=True,
                          timeout=600)
    assert "faultpoint: fired" in done.stderr, f"the fault point was never reached:\n{done.stderr}"
    if sig == signal.SIGKILL:
        assert done.returncode == -signal.SIGKILL
    else:  # the documented interrupt: its message and the shell's 128 + signal status
        assert done.returncode == 128 + sig, done.stderr
        assert INTERRUPTED in done.stderr and "Traceback" not in done.stderr
    return done.stderr


def _rerun(workdir: Path, *args: str, bound_mb: int = PEAK_MEMORY_BOUND_MB) -> str:
    """The re-run after a fault: it succeeds, within the memory bound. Returns its stderr."""
    code, peak_mb, stderr = peak_rss_mb(workdir, *args)
    assert code == 0, stderr
    assert peak_mb < bound_mb, f"l4stb {' '.join(args)} peaked at {peak_mb:.0f} MB (bound {bound_mb} MB)"
    return stderr


# ---- fetch-logs ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fetched_reference(tmp_path_factory) -> dict[str, str]:
    """sha256 by path of every file of an uninterrupted TINY run's fetch."""
    ref = tmp_path_factory.mktemp("fetch-reference") / "work"
    return run_files(ref, make_fetched_run(ref, *TINY))


@pytest.mark.parametrize("sig, when, seed", [(signal.SIGINT, "before", 1), (signal.SIGTERM, "after", 2),
                                             (signal.SIGKILL, "after", 3), (signal.SIGKILL, "before", 4)])
def test_fetch_logs_signalled_between_files_completes_identically(tmp_path, outside, fetched_reference, sig, when,
                                                                 seed):
    workdir = tmp_path / "work"
    assert run_cli(workdir, "up").returncode == 0 and run_cli(workdir, "run", *TINY).returncode == 0
    run_id = only_run(workdir)
    before = snapshot(outside)
    nth = random.Random(seed).randint(1, len(fetched_reference))  # a random file of the fetch
    _signalled(workdir, "l4stb.providers.sim:SimHost.get", nth, sig, when, "fetch-logs")

    # what the manifest records as fetched is whole: its bytes are the verified sha256
    raw = workdir / "runs" / run_id
    for key, digest in run_files(workdir, run_id).items():
        assert hashlib.sha256((raw / key).read_bytes()).hexdigest() == digest, key

    _rerun(workdir, "fetch-logs")
    assert run_files(workdir, run_id) == fetched_reference
    for key, digest in fetched_reference.items():
        assert hashlib.sha256((raw / key).read_bytes()).hexdigest() == digest, key
    assert not [p for p in (raw / "raw").rglob("*") if p.name.startswith(".")], "a partial copy was left behind"
    assert snapshot(outside) == before


# ---- pool import ------------------------------------------------------------------------------------------


def _pool_files(folder: Path) -> dict[str, object]:
    """A pool's content: meta.json's text and every split's arrays (npz members carry write times)."""
    out: dict[str, object] = {"meta.json": (folder / "meta.json").read_text()}
    for split in ("train", "val", "test"):
        with np.load(folder / f"{split}.npz") as z:
            out.update({f"{split}/{k}": z[k].tobytes() for k in sorted(z.files)})
    return out


@pytest.mark.parametrize("sig, when, target, nth, left", [
    (signal.SIGINT, "before", "l4stb.analysis.pool:save_split", 2, "old"),  # train split saved, val not
    (signal.SIGTERM, "after", "l4stb.analysis.pool:save_split", 3, "old"),  # splits saved, meta.json not
    (signal.SIGKILL, "after", "l4stb.analysis.pool:atomic_write_text", 1, "old"),  # meta.json written, not swapped
    (signal.SIGKILL, "after", "l4stb.workspace:_rename_exchange", 1, "new"),  # swapped; the old one not yet removed
])
def test_pool_import_signalled_mid_save_leaves_one_whole_pool_and_completes_identically(tmp_path, outside, sig, when,
                                                                                         target, nth, left):
    from test_hostile_pickles import write_pool_pickle

    from l4stb.analysis.pool import load_pool

    small = write_pool_pickle(tmp_path / "small.pkl", 300)
    big = write_pool_pickle(tmp_path / "big.pkl", 5_000)
    reference = tmp_path / "reference"
    assert run_cli(reference, "pool", "import", str(big), "--name", "p").returncode == 0

    workdir = tmp_path / "work"
    assert run_cli(workdir, "pool", "import", str(small), "--name", "p").returncode == 0
    pool = workdir / "pools" / "p"
    old, before = _pool_files(pool), snapshot(outside)
    _signalled(workdir, target, nth, sig, when, "pool", "import", str(big), "--name", "p")
    whole = {"old": (old, 300), "new": (_pool_files(reference / "pools" / "p"), 5_000)}[left]
    assert _pool_files(pool) == whole[0] and sum(load_pool(pool).meta.sizes.values()) == whole[1]

    _rerun(workdir, "pool", "import", str(big), "--name", "p")
    assert _pool_files(pool) == _pool_files(reference / "pools" / "p")
    assert not [p for p in pool.parent.iterdir() if p.name.startswith(".")], "staging left behind"
    assert snapshot(outside) == before


# ---- import-logs ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw_files(tmp_path_factory) -> list[str]:
    """A router log and two iperf3 JSON files, as `import-logs` arguments."""
    from logfixtures import sim_log_lines

    folder = tmp_path_factory.mktemp("raw")
    (folder / "messages").write_text("\n".join(sim_log_lines(3000)) + "\n")
    sim = folder / "sim"
    for args in (("up",), ("run", *TINY)):
        assert run_cli(sim, *args).returncode == 0
    iperf = sorted((sim / "hosts").rglob("client1-*.json"))[:2]
    assert len(iperf) == 2
    return ["--router-log", str(folder / "messages"), *[a for p in iperf for a in ("--iperf3", str(p))]]


@pytest.mark.parametrize("sig, when, nth", [(signal.SIGINT, "before", 2), (signal.SIGTERM, "after", 3),
                                            (signal.SIGKILL, "after", 1)])
def test_import_logs_signalled_between_copies_leaves_no_run_and_completes_identically(tmp_path, outside, raw_files,
                                                                                       sig, when, nth):
    reference = tmp_path / "reference"
    assert run_cli(reference, "import-logs", *raw_files, "--name", "imp").returncode == 0

    workdir = tmp_path / "work"
    before = snapshot(outside)
    _signalled(workdir, "shutil:copyfile", nth, sig, when, "import-logs", *raw_files, "--name", "imp")
    assert not (workdir / "runs" / "imp").exists(), "a half-imported run is visible"

    _rerun(workdir, "import-logs", *raw_files, "--name", "imp")
    assert run_files(workdir, "imp") == run_files(reference, "imp")
    assert not [p for p in (workdir / "runs").iterdir() if p.name.startswith(".")], "staging left behind"
    summaries = [json.loads(run_cli(w, "summary", "--run", "imp", "--json").stdout)["parse"] for w in (workdir, reference)]
    assert summaries[0] == summaries[1]
    assert snapshot(outside) == before


# ---- train-and-report -------------------------------------------------------------------------------------

TRAIN = ("train-and-report", "--pool", "p", "--epochs", "1", "--max-train-windows", "40")
MEASURED = ("seconds", "_mb", "latency_ms", "decisions_per_s", "memory", "wall_s")
"""Keys of metrics.json that hold what was measured on this machine at that moment (times, rates, memory),
which two identical trainings do not share; everything else must be equal."""


def _learned(model: Path) -> dict[str, object]:
    """What a training learned and concluded: the checkpoint's bytes and metrics.json without measurements."""
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if not any(m in k for m in MEASURED)}
        return obj

    files = {str(p.relative_to(model)): p.read_bytes() for p in sorted((model / "checkpoint").rglob("*"))
             if p.is_file()}
    return {**files, "metrics": strip(json.loads((model / "metrics.json").read_text()))}


@pytest.fixture(scope="module")
def trained_reference(tmp_path_factory) -> dict[str, object]:
    """An uninterrupted rank-4 training on the 400-row pool."""
    from test_hostile_pickles import write_pool_pickle

    folder = tmp_path_factory.mktemp("train-reference")
    ref = folder / "work"
    assert run_cli(ref, "pool", "import", str(write_pool_pickle(folder / "p.pkl", 400)), "--name", "p").returncode == 0
    done = run_cli(ref, *TRAIN, "--lora-rank", "4")
    assert done.returncode == 0, done.stderr
    return _learned(ref / "models" / "p-tiny-gpt2")


@pytest.mark.parametrize("sig, when, target", [
    (signal.SIGINT, "after", "l4stb.model.train:validate"),  # the first epoch trained
    (signal.SIGTERM, "before", "l4stb.model.train:save_checkpoint"),  # the best epoch about to be saved
    (signal.SIGKILL, "before", "l4stb.pipeline.job:render_model_report"),  # model done, report not
])
def test_a_retrain_signalled_midway_keeps_the_old_model_and_completes_identically(tmp_path, outside,
                                                                                  trained_reference, sig, when,
                                                                                  target):
    from test_hostile_pickles import write_pool_pickle

    workdir = tmp_path / "work"
    assert run_cli(workdir, "pool", "import", str(write_pool_pickle(tmp_path / "p.pkl", 400)), "--name", "p").returncode == 0
    assert run_cli(workdir, *TRAIN).returncode == 0  # the old model: rank 8
    model = workdir / "models" / "p-tiny-gpt2"
    old, before = snapshot(model), snapshot(outside)

    _signalled(workdir, target, 1, sig, when, *TRAIN, "--force", "--lora-rank", "4")
    assert snapshot(model) == old, "the old model and its report are one set, untouched"

    _rerun(workdir, *TRAIN, "--force", "--lora-rank", "4", bound_mb=TRAIN_MEMORY_BOUND_MB)
    assert _learned(model) == trained_reference
    headline = json.loads((model / "report" / "headline.json").read_text())
    assert headline["fingerprint"] == json.loads((model / "job.json").read_text())["fingerprint"]
    assert not [p for p in model.parent.iterdir() if p.name.startswith(".")], "staging left behind"
    assert snapshot(outside) == before


MODEL_SWAP, MODEL_SWAP_IN = 2, 4
"""`train-and-report --pool` swaps in two existing sets, the distilled model and then the model folder: the model's
is the 2nd call of _rename_exchange (and of _move_aside without RENAME_EXCHANGE), the 4th of _swap_in (after the
checkpoint inside the staged model, the distilled model, and the report inside the staged model)."""


@pytest.mark.parametrize("sig, target, nth, when, exchange, kept", [
    # the new model folder is written in full, its rename not begun: the old model stays
    (signal.SIGINT, "l4stb.workspace:_swap_in", MODEL_SWAP_IN, "before", True, "old"),
    (signal.SIGTERM, "l4stb.workspace:_swap_in", MODEL_SWAP_IN, "before", True, "old"),
    # the signal comes during the swap: it is held until the exchange is done, and the new model is whole
    (signal.SIGINT, "l4stb.workspace:_rename_exchange", MODEL_SWAP, "before", True, "new"),
    (signal.SIGTERM, "l4stb.workspace:_rename_exchange", MODEL_SWAP, "before", True, "new"),
    # without RENAME_EXCHANGE: between the two renames (old aside, new not yet in place)
    (signal.SIGINT, "l4stb.workspace:_move_aside", MODEL_SWAP, "after", False, "new"),
    (signal.SIGTERM, "l4stb.workspace:_move_aside", MODEL_SWAP, "after", False, "new"),
], ids=["sigint-written", "sigterm-written", "sigint-exchange", "sigterm-exchange", "sigint-between-renames",
        "sigterm-between-renames"])
def test_a_signal_at_the_model_folders_swap_leaves_the_old_model_or_the_new_one_whole(
        tmp_path, trained_reference, sig, target, nth, when, exchange, kept):
    """SIGINT or SIGTERM while train-and-report swaps its model folder in: the usual interrupted message and
    exit status, no traceback, and the model folder is the old one untouched or the new one complete."""
    from test_hostile_pickles import write_pool_pickle

    workdir = tmp_path / "work"
    assert run_cli(workdir, "pool", "import", str(write_pool_pickle(tmp_path / "p.pkl", 400)), "--name", "p").returncode == 0
    assert run_cli(workdir, *TRAIN).returncode == 0  # the old model: rank 8
    model = workdir / "models" / "p-tiny-gpt2"
    old = snapshot(model)

    stderr = _signalled(workdir, target, nth, sig, when, *TRAIN, "--force", "--lora-rank", "4",
                        env=None if exchange else {"FAULTPOINT_NO_RENAME_EXCHANGE": "1"})
    assert target in stderr
    if kept == "old":
        assert snapshot(model) == old, "the old model and its report are one set, untouched"
    else:
        assert _learned(model) == trained_reference, "the new model is the uninterrupted training's, whole"
        headline = json.loads((model / "report" / "headline.json").read_text())
        assert headline["fingerprint"] == json.loads((model / "job.json").read_text())["fingerprint"]
    assert not [p for p in model.parent.iterdir() if p.name.startswith(".")], "staging or an old set left behind"


def test_a_run_report_left_unrendered_is_rendered_from_the_model_without_training_again(tmp_path):
    """Trained from a run, the model folder and the run's report are two sets. Killed after the model is
    swapped in and before the report is rendered, the next `train-and-report` renders the report from the
    saved model instead of training again, and the report then carries the model's fingerprint."""
    workdir = tmp_path / "work"
    run_id = make_fetched_run(workdir, *TINY)
    options = ("train-and-report", "--epochs", "1", "--max-train-windows", "40", "--no-closed-loop", "--no-distill")
    _signalled(workdir, "l4stb.analysis.report:render_report", 1, signal.SIGKILL, "before", *options)
    model = workdir / "runs" / run_id / "model" / "tiny-gpt2"
    checkpoint = snapshot(model / "checkpoint")
    assert checkpoint, "the model was swapped in before the kill"

    again = run_cli(workdir, *options)
    assert again.returncode == 0, again.stderr
    assert "rendering the run's report from it" in again.stdout and "up to date" in again.stdout
    assert snapshot(model / "checkpoint") == checkpoint, "the model was not trained again"
    headline = json.loads((workdir / "runs" / run_id / "report" / "headline.json").read_text())
    assert headline["fingerprint"] == json.loads((model / "job.json").read_text())["fingerprint"]
    assert "Model training" in (workdir / "runs" / run_id / "report" / "index.html").read_text()

    # `l4stb report` re-renders from the same saved files and keeps headline.json: still up to date
    assert run_cli(workdir, "report").returncode == 0
    assert (workdir / "runs" / run_id / "report" / "headline.json").read_text() == json.dumps(headline, indent=2) + "\n"
    assert "up to date" in run_cli(workdir, *options).stdout
