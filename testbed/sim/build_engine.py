"""Compiles the simulator's hot modules with Cython into a build folder that :mod:`l4stb.sim.compiled` loads.

Usage: ``python -m l4stb.sim.build_engine [--force] [--dir DIR] [--jobs N]``

Cython compiles the unchanged Python sources (pure-Python mode with ``annotation_typing`` off, so every value
stays a Python object and the output is byte-identical to the Python engine's). Every class that declares
``__slots__`` (and whose base, if any, does too, in the same module) becomes an extension type whose slots are
C struct fields holding Python objects: :func:`augmenting_pxd` generates that declaration from ``__slots__``
at build time, so it is never a second, hand-kept copy of the class. Attribute access on ``self`` is then a
field load instead of a type-dict lookup, the largest per-packet cost of the plain compile. Each run compiles in a
temporary folder beside the target, then moves the extension modules in and writes ``engine.json`` (the
sources' sha256) last, so an interrupted build is never loaded. A build that already matches the sources is
kept (``--force`` rebuilds). Without Cython or a C compiler it says so in one line and exits 0: l4stb then runs
on the pure-Python engine (``scripts/install.sh`` must not fail on a machine without a compiler).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from l4stb.sim import compiled

DIRECTIVES = {"language_level": 3, "annotation_typing": False}
"""``annotation_typing`` off: a ``float`` annotation would otherwise become a C double and turn ints into floats."""


def target_dir(explicit: str | None) -> Path:
    """The first build folder (see :func:`l4stb.sim.compiled.build_dirs`) that can be written, or ``explicit``."""
    if explicit:
        return Path(explicit)
    for folder in compiled.build_dirs():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / ".write-probe"
            probe.write_text("")
            probe.unlink()
            return folder
        except OSError:
            continue
    raise OSError("no writable build folder: " + ", ".join(str(d) for d in compiled.build_dirs()))


def _slots(cls: ast.ClassDef) -> tuple[str, ...] | None:
    for st in cls.body:
        if isinstance(st, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in st.targets):
            try:
                value = ast.literal_eval(st.value)
            except ValueError:
                return None
            return (value,) if isinstance(value, str) else tuple(value)
    return None


def augmenting_pxd(source: str) -> str:
    """Cython declarations (an augmenting ``.pxd``) that make each plain slotted class of ``source`` an extension
    type with one ``public object`` field per slot. Left as Python classes: decorated ones, those with keywords
    (a metaclass), several bases, a base that is not such a class of the same module, or ``__dict__`` /
    ``__weakref__`` among their slots."""
    out: list[str] = []
    converted: set[str] = set()
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef) or node.decorator_list or node.keywords or len(node.bases) > 1:
            continue
        slots = _slots(node)
        if slots is None or {"__dict__", "__weakref__"} & set(slots):
            continue
        base = ""
        if node.bases:
            b = node.bases[0]
            if not (isinstance(b, ast.Name) and (b.id in converted or b.id == "object")):
                continue
            base = f"({b.id})" if b.id != "object" else ""
        converted.add(node.name)
        out.append(f"cdef class {node.name}{base}:\n")
        out += [f"    cdef public object {name}\n" for name in slots] or ["    pass\n"]
    return "".join(out)


def build(folder: Path, jobs: int = 1) -> dict:
    """Compile every hot module into ``folder``; returns the manifest written there."""
    from Cython import __version__ as cython_version  # lazy: the optional engine extra
    from Cython.Build import cythonize  # lazy: the optional engine extra
    from setuptools import Distribution, Extension  # lazy: the optional engine extra
    from setuptools.command.build_ext import build_ext  # lazy: the optional engine extra

    digests = compiled.source_digests()
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".tmp-") as tmp:
        # the sources as they are, each beside its generated declarations, under the package's dotted path
        tree = Path(tmp, "src", *compiled.PACKAGE.split("."))
        tree.mkdir(parents=True)
        for pkg in (tree.parent, tree):
            (pkg / "__init__.py").write_text("")
        exts = []
        for m in compiled.HOT_MODULES:
            source = (compiled.SOURCE_DIR / f"{m}.py").read_text()
            (tree / f"{m}.py").write_text(source)
            (tree / f"{m}.pxd").write_text(augmenting_pxd(source))
            exts.append(Extension(f"{compiled.PACKAGE}.{m}", [str(tree / f"{m}.py")]))
        exts = cythonize(exts, compiler_directives=DIRECTIVES, build_dir=os.path.join(tmp, "c"), quiet=True,
                         force=True)
        cmd = build_ext(Distribution({"ext_modules": exts, "script_name": "build_engine"}))
        cmd.build_lib = os.path.join(tmp, "lib")
        cmd.build_temp = os.path.join(tmp, "obj")
        cmd.parallel = jobs if jobs > 1 else None
        cmd.ensure_finalized()
        cmd.run()
        (folder / compiled.MANIFEST).unlink(missing_ok=True)  # the folder is invalid while it changes
        built = Path(cmd.build_lib) / Path(*compiled.PACKAGE.split("."))
        for m in compiled.HOT_MODULES:
            name = f"{m}{compiled.ext_suffix()}"
            os.replace(built / name, folder / name)
    manifest = {"compiler": f"Cython {cython_version}", "ext_suffix": compiled.ext_suffix(),
                "python": sys.version.split()[0], "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "sources": digests}
    tmp_manifest = folder / (compiled.MANIFEST + ".tmp")
    tmp_manifest.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp_manifest, folder / compiled.MANIFEST)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="rebuild even if the build matches the sources")
    ap.add_argument("--dir", default=None, help="build folder (default: the package's _build, else the user cache)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel C compilations")
    args = ap.parse_args(argv)
    try:
        folder = target_dir(args.dir or os.environ.get(compiled.DIR_ENV))
    except OSError as exc:
        print(f"simulator engine: pure Python ({exc})")
        return 0
    if not args.force and compiled.check_build(folder, compiled.source_digests()) is None:
        print(f"simulator engine: compiled, up to date in {folder}")
        return 0
    try:
        import Cython  # noqa: F401  # lazy: the optional engine extra
    except ImportError:
        print("simulator engine: pure Python (Cython is not installed: `pip install cython` and rerun "
              "`python -m l4stb.sim.build_engine` for the compiled engine)")
        return 0
    if shutil.which(os.environ.get("CC", "gcc")) is None and shutil.which("cc") is None:
        print("simulator engine: pure Python (no C compiler found: install gcc and rerun "
              "`python -m l4stb.sim.build_engine`)")
        return 0
    t0 = time.perf_counter()
    try:
        manifest = build(folder, args.jobs)
    except Exception as exc:  # a compiler or header problem: the pure-Python engine still runs
        print(f"simulator engine: pure Python (the build failed: {str(exc).splitlines()[0] if str(exc) else exc!r}; "
              "Python's headers are in python3-dev on Debian)")
        return 0
    print(f"simulator engine: compiled with {manifest['compiler']} into {folder} "
          f"in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
