"""The compiled simulator engine and the pure-Python one give byte-identical artifacts, and the fallback works.

The parity test runs the golden corpus of ``tests/test_sim_refactor_identity.py`` (every shipped scenario, both
sender stacks, both step semantics, UDP, short flows, rate schedules, the policy AQM, ``match: any`` with ticks)
once per engine, each in its own interpreter (the engine is chosen once per process), and compares the sha256 of
every router log file and iperf3 JSON between them and with the stored digests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from l4stb.sim import build_engine, compiled

TESTS = Path(__file__).resolve().parent

_CORPUS = """
import json, sys, tempfile
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_sim_refactor_identity import CASES, run_case
from l4stb.sim.compiled import engine_name
out = {{"engine": engine_name(), "cases": {{}}}}
with tempfile.TemporaryDirectory() as tmp:
    for i, name in enumerate(sorted(CASES)):
        folder = Path(tmp) / str(i)
        folder.mkdir()
        out["cases"][name] = run_case(folder, name)
print(json.dumps(out))
"""


def _env(pure: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
    if pure:
        env[compiled.PURE_ENV] = "1"
    return env


def _python(code: str, *, pure: bool) -> subprocess.Popen:
    """Run ``code`` in a fresh interpreter on one engine; its output goes to temporary files (two of these run side
    by side, and a full pipe would stall one while the other is read)."""
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "-c", code], env=_env(pure), stdout=out, stderr=err, text=True)
    proc.files = (out, err)  # type: ignore[attr-defined]
    return proc


def _result(proc: subprocess.Popen) -> dict:
    proc.wait(timeout=900)
    out, err = proc.files  # type: ignore[attr-defined]
    out.seek(0)
    err.seek(0)
    text, errors = out.read(), err.read()
    assert proc.returncode == 0, errors[-3000:]
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.slow
def test_golden_corpus_is_byte_identical_on_the_compiled_and_the_pure_python_engine():
    in_clean_env = subprocess.run([sys.executable, "-c", "from l4stb.sim.compiled import engine_name; "
                                   "print(engine_name())"], env=_env(False), capture_output=True, text=True)
    if not in_clean_env.stdout.startswith("compiled"):
        pytest.skip(f"no compiled engine on this machine: {in_clean_env.stdout.strip() or in_clean_env.stderr}")
    code = _CORPUS.format(tests=str(TESTS))
    procs = {"compiled": _python(code, pure=False), "pure": _python(code, pure=True)}  # side by side: 2 cores
    got = {name: _result(p) for name, p in procs.items()}
    assert got["compiled"]["engine"].startswith("compiled")
    assert got["pure"]["engine"].startswith("pure Python")
    golden = json.loads((TESTS / "golden" / "sim-digests.json").read_text())
    assert set(got["compiled"]["cases"]) == set(golden)
    for case, want in golden.items():
        fast, pure = got["compiled"]["cases"][case], got["pure"]["cases"][case]
        differ = sorted(k for k in fast.keys() | pure.keys() if fast.get(k) != pure.get(k))
        assert not differ, f"case {case}: the engines wrote different {differ}"
        assert fast == want, f"case {case}: both engines differ from the stored digests"


def test_forcing_pure_python_loads_the_sources_and_the_run_says_so(tmp_path):
    code = f"""
import json, sys
from l4stb.config import load_scenario, load_topology
from l4stb.sim.compiled import HOT_MODULES
from l4stb.sim.runner import SimJob, simulate_repeat
sc = load_scenario("dctcp-8mbps", ["duration=1s"])
st = simulate_repeat(SimJob(sc, load_topology(sc.topology), "fb", 1, 7, {str(tmp_path)!r}))
files = [sys.modules["l4stb.sim." + m].__file__ for m in HOT_MODULES if "l4stb.sim." + m in sys.modules]
print(json.dumps({{"engine": st["engine"], "files": files, "packets": st["packets"]}}))
"""
    res = _result(_python(code, pure=True))
    assert res["engine"] == "pure Python (forced by L4STB_PURE_PYTHON)"
    assert res["packets"] > 0
    assert res["files"] and all(f.endswith(".py") for f in res["files"])


def _fake_build(folder: Path, **changes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for m in compiled.HOT_MODULES:
        (folder / f"{m}{compiled.ext_suffix()}").write_bytes(b"")
    info = {"compiler": "Cython test", "ext_suffix": compiled.ext_suffix(), "sources": compiled.source_digests()}
    info.update(changes)
    (folder / compiled.MANIFEST).write_text(json.dumps(info))


def test_a_build_of_other_sources_is_not_loaded(tmp_path, monkeypatch):
    stale = dict(compiled.source_digests(), tcp="0" * 64)
    _fake_build(tmp_path / "b", sources=stale)
    monkeypatch.delenv(compiled.PURE_ENV, raising=False)
    monkeypatch.setenv(compiled.DIR_ENV, str(tmp_path / "b"))
    choice = compiled.choose()
    assert not choice.compiled and "stale" in choice.detail and "build_engine" in choice.detail


def test_a_build_for_another_python_or_with_a_module_missing_is_not_loaded(tmp_path):
    digests = compiled.source_digests()
    _fake_build(tmp_path / "abi", ext_suffix=".cpython-39-x86_64-linux-gnu.so")
    assert "another Python" in compiled.check_build(tmp_path / "abi", digests)
    _fake_build(tmp_path / "part")
    (tmp_path / "part" / f"engine{compiled.ext_suffix()}").unlink()
    assert "lacks engine" in compiled.check_build(tmp_path / "part", digests)
    _fake_build(tmp_path / "ok")
    assert compiled.check_build(tmp_path / "ok", digests) is None
    assert "no build" in compiled.check_build(tmp_path / "none", digests)


def test_build_without_cython_says_pure_python_in_one_line_and_succeeds(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "Cython", None)  # import Cython -> ImportError
    assert build_engine.main(["--dir", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("simulator engine: pure Python (Cython is not installed") and "\n" not in out
    assert not (tmp_path / "b" / compiled.MANIFEST).exists()
