"""Import the original L4S-LLM ExperiencePool pickles, unpickling only the classes such a pool is made of.

The originals (``utils.exp_pool.ExperiencePool`` from deol-satish/LLM_Gen_Exp_Pool, or the same class
pickled from a notebook as ``__main__.ExperiencePool``) hold lists ``states`` (float32 arrays of 7 or 8
raw features), ``actions`` (0 forward, 1 drop, 2 mark), ``rewards`` and ``dones`` (all 0). The
unpickler resolves only that class (to an inert stand-in) and numpy's array/scalar/dtype
reconstructors; any other global -- ``os.system``, ``builtins.eval``, ``subprocess.Popen`` ... -- stops
the load before it is called, with an error naming the file and the global.

The file becomes one episode (its dones are all 0), split by position into contiguous 70/15/15 blocks
(neighbouring rows are near-duplicates: a random split would leak), with probabilities rescaled from
2^31-1 to [0, 1] and normalisation statistics from the train block.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from l4stb.analysis.pool import ExperiencePool, NormStats, PoolMeta, PoolSplits
from l4stb.analysis.pool_build import PRESETS, SPLIT_FRACTIONS
from l4stb.errors import L4stbError
from l4stb.logformat import PROB_SCALE
from l4stb.workspace import validate_name

try:
    from numpy._core import multiarray as _multiarray  # numpy >= 2
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray

POOL_CLASS_MODULES = ("utils.exp_pool", "__main__", "exp_pool", "llm_framework.utils.exp_pool",
                      "plm_special.utils.exp_pool", "utils")
"""Modules the original ExperiencePool class was pickled from."""

FEATURES_BY_WIDTH = {7: "paper7", 8: "paper8-early"}
PROBABILITY_FEATURES = ("drop_probability", "accumulated_probability")


class _PickledPool:
    """Inert stand-in for the original ExperiencePool: it only stores the pickled state."""

    def __setstate__(self, state) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("ExperiencePool state is not a dict")
        self.__dict__.update(state)


ALLOWED_DTYPE_KINDS = "biuf"
"""bool, signed and unsigned integers, floats: what a pool's arrays hold (never object arrays)."""


class _NdarrayRef:
    """What the pickle's ``numpy.ndarray`` global resolves to: a name for ``_reconstruct``, never called."""

    def __init__(self, *args, **kwargs):
        raise pickle.UnpicklingError("the pickle calls numpy.ndarray directly, which numpy's own pickles never do")


class _CheckedArray(np.ndarray):
    """An array whose pickled state is checked before numpy allocates it: a known dtype, and no more bytes
    than the file itself holds (every element of a real array is in the file)."""

    budget = 0  # bytes left to allocate in the file being read (set per file by the unpickler)

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("an array's pickled state has the wrong shape")
        shape, dtype = state[-4], state[-3]
        if not isinstance(dtype, np.dtype) or dtype.kind not in ALLOWED_DTYPE_KINDS:
            raise pickle.UnpicklingError(f"an array of dtype {dtype!r}: a pool holds numbers only")
        if not (isinstance(shape, tuple) and all(isinstance(d, int) and 0 <= d < 1 << 40 for d in shape)):
            raise pickle.UnpicklingError(f"an array of shape {shape!r}")
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if nbytes > _CheckedArray.budget:
            raise pickle.UnpicklingError(f"an array of shape {shape} ({nbytes:,} bytes) is larger than the file")
        _CheckedArray.budget -= nbytes
        super().__setstate__(state)


def _checked_dtype(obj, align=False, copy=False):
    dt = np.dtype(obj, align, copy)
    if dt.kind not in ALLOWED_DTYPE_KINDS:
        raise pickle.UnpicklingError(f"dtype {dt!r}: a pool holds numbers only")
    return dt


def _numpy_globals() -> dict[tuple[str, str], object]:
    ma = _multiarray

    def reconstruct(subtype, shape, dtype):
        """numpy's ``_reconstruct`` (always given ``ndarray, (0,), b'b'``), making a checked empty array."""
        if subtype is not _NdarrayRef or shape != (0,):
            raise pickle.UnpicklingError("numpy _reconstruct with arguments numpy never pickles")
        return ma._reconstruct(_CheckedArray, shape, dtype)

    def scalar(dtype, data=None):
        if not isinstance(dtype, np.dtype) or dtype.kind not in ALLOWED_DTYPE_KINDS or not isinstance(data, bytes):
            raise pickle.UnpicklingError("a numpy scalar that is not a number")
        return ma.scalar(dtype, data)

    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): _NdarrayRef, ("numpy", "dtype"): _checked_dtype}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = reconstruct
        allowed[(mod, "scalar")] = scalar
    for mod in ("numpy.dtypes",):  # numpy 2 pickles dtype classes by name
        for cls in ("Float32DType", "Float64DType", "Int64DType", "Int32DType", "BoolDType"):
            if hasattr(np.dtypes, cls):
                allowed[(mod, cls)] = getattr(np.dtypes, cls)
    return allowed


def _safe_reconstructor(cls, base, state):
    """copyreg._reconstructor for protocol 0/1 pickles, limited to the stand-in class."""
    if cls is not _PickledPool or base is not object or state is not None:
        raise pickle.UnpicklingError("copyreg._reconstructor used for something other than the ExperiencePool")
    return object.__new__(cls)


class _PoolUnpickler(pickle.Unpickler):
    def __init__(self, fh, source: Path):
        super().__init__(fh)
        self.source = source
        self.allowed = _numpy_globals()
        for mod in POOL_CLASS_MODULES:
            self.allowed[(mod, "ExperiencePool")] = _PickledPool
        self.allowed[("copyreg", "_reconstructor")] = _safe_reconstructor
        self.allowed[("builtins", "object")] = object
        self.allowed[("__builtin__", "object")] = object

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise L4stbError(
                f"refused to import {self.source}: it asks to load the global {module}.{name}, which an "
                "ExperiencePool pickle never needs (only the ExperiencePool class and numpy arrays are allowed). "
                "The file may be crafted to run code; nothing in it was run."
            ) from None

    def persistent_load(self, pid):
        raise L4stbError(f"refused to import {self.source}: it uses pickle persistent ids, which a pool never has.")


def load_original_pickle(path: Path) -> _PickledPool:
    """Unpickle an original pool file with the allow-list; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise L4stbError(f"pool file {path} does not exist.")
    data = path.read_bytes()
    _CheckedArray.budget = len(data)
    try:
        obj = _PoolUnpickler(io.BytesIO(data), path).load()
    except L4stbError:
        raise
    except Exception as exc:  # a truncated or corrupt pickle, or a numpy reconstructor given bad input
        raise L4stbError(f"{path} is not a readable ExperiencePool pickle ({type(exc).__name__}: {exc}).") from None
    if not isinstance(obj, _PickledPool):
        raise L4stbError(f"{path} holds a {type(obj).__name__}, not an ExperiencePool.")
    for attr in ("states", "actions", "rewards", "dones"):
        if not hasattr(obj, attr):
            raise L4stbError(f"{path}: the ExperiencePool has no '{attr}' list.")
        if not isinstance(getattr(obj, attr), (list, tuple, np.ndarray)):
            raise L4stbError(f"{path}: the ExperiencePool's '{attr}' is a {type(getattr(obj, attr)).__name__}, "
                             "not a list; this is not a pool the original code wrote.")
    return obj


def _detect_reward(states: np.ndarray, rewards: np.ndarray, names: tuple[str, ...]) -> str:
    pos = {n: i for i, n in enumerate(names)}
    delay = states[:, pos["current_queue_delay"]].astype(np.float64)
    if "packet_length" in pos:
        paper = states[:, pos["packet_length"]].astype(np.float64) / (delay + 1000.0)
        if np.allclose(rewards, paper, rtol=1e-5, atol=1e-9):
            return "paper"
    if np.allclose(rewards, delay, rtol=1e-6, atol=0.5):
        return "paper-delay"
    return "imported"


def import_pickle(path: Path, name: str | None = None) -> PoolSplits:
    """Read an original L4S-LLM pickle into train/val/test splits by position (see the module docstring)."""
    path = Path(path)
    name = validate_name(name or path.stem, "pool name")
    obj = load_original_pickle(path)
    n = len(obj.actions)
    if not (len(obj.states) == n == len(obj.rewards) == len(obj.dones)):
        raise L4stbError(f"{path}: states, actions, rewards and dones differ in length "
                         f"({len(obj.states)}, {n}, {len(obj.rewards)}, {len(obj.dones)}).")
    if n == 0:
        raise L4stbError(f"{path}: the pool is empty.")
    try:
        states = np.asarray(np.stack([np.asarray(s, dtype=np.float32).reshape(-1) for s in obj.states]), np.float32)
        actions = np.asarray([int(a) for a in obj.actions], dtype=np.int64)
        rewards = np.asarray([float(r) for r in obj.rewards], dtype=np.float64)
        dones = np.asarray([bool(d) for d in obj.dones], dtype=bool)
    except (TypeError, ValueError, OverflowError) as exc:
        raise L4stbError(f"{path}: the pool's lists do not hold numbers of one shape ({exc}).") from None
    bad = ~(np.isfinite(states).all(axis=1) & np.isfinite(rewards))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise L4stbError(f"{path}: {int(bad.sum()):,} of {n:,} rows hold NaN or infinite values (the first is row "
                         f"{first}); a pool of such rows cannot be trained on. Clean the pool and import it again.")
    width = states.shape[1]
    if width not in FEATURES_BY_WIDTH:
        raise L4stbError(f"{path}: states have {width} features; l4stb knows the originals' 7 (paper7) and 8 "
                         "(the earlier set) only.")
    if actions.min() < 0 or actions.max() > 2:
        found = sorted(set(actions.tolist()))[:5]
        raise L4stbError(f"{path}: actions must be 0 (forward), 1 (drop) or 2 (mark); found {found}.")
    preset = FEATURES_BY_WIDTH[width]
    names = PRESETS[preset]
    reward = _detect_reward(states, rewards, names)
    for feat in PROBABILITY_FEATURES:  # the originals kept the kernel's 2^31-1 scale; l4stb uses [0, 1]
        j = names.index(feat)
        if np.nanmax(states[:, j]) > 1.0:
            states[:, j] = (states[:, j].astype(np.float64) / PROB_SCALE).astype(np.float32)

    episodes_in_file = int(dones.sum())
    edges = np.concatenate(([0], np.round(np.cumsum(SPLIT_FRACTIONS)[:-1] * n).astype(int), [n]))
    parts = {}
    for k, which in enumerate(("train", "val", "test")):
        a, b = edges[k], edges[k + 1]
        d = dones[a:b].copy()
        if b > a:
            d[-1] = True  # each block is a contiguous, truncated stretch of the one episode
        parts[which] = ExperiencePool(states[a:b], actions[a:b], rewards[a:b].astype(np.float32), d,
                                      np.zeros(b - a, np.int32), names)
    train_r = parts["train"].rewards
    meta = PoolMeta(
        name=name, feature_names=list(names), preset=preset, reward=reward, gamma=1.0, source=f"import:{path.name}",
        split=(f"by-position: contiguous {'/'.join(f'{f:.2f}' for f in SPLIT_FRACTIONS)} blocks in file order; "
               f"the file is one episode (its dones: {episodes_in_file} set)"),
        norm=NormStats.fit(parts["train"].states),
        reward_min=float(train_r.min()) if len(train_r) else 0.0,
        reward_max=float(train_r.max()) if len(train_r) else 1.0,
        episodes=[{"episode": 0, "file": path.name, "rows": n, "split": "by-position"}],
    )
    return PoolSplits(meta, parts["train"], parts["val"], parts["test"])
