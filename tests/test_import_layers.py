"""The import graph tells the truth: every l4stb import points down the layers, no import cycle hides inside a
function, and a function-level import is there only for start-up cost (a heavy or optional library), with its
reason beside it.

The layer order is written once, here, as data (LAYERS); docs/architecture.md describes the same layers in words.
The graph is read with `ast` from every .py of the package folders named in pyproject.toml, so it sees imports
inside functions that a run-time import trace would miss.
"""

from __future__ import annotations

import ast
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("l4stb", "l4stb.errors", "l4stb.units", "l4stb.config", "l4stb.aqm_catalogue", "l4stb.logformat", "l4stb.logfiles",
              "l4stb.layout", "l4stb.workspace", "l4stb.manifest", "l4stb.console", "l4stb.resources",
              "l4stb.interrupts", "l4stb.workers", "l4stb.lograte", "l4stb.rate_applied", "l4stb.ratetrace", "l4stb.policyblob", "l4stb.topologies",
              "l4stb.playbooks", "l4stb.freebsd_module")),
    ("engines", ("l4stb.sim", "l4stb.providers", "l4stb.linuxvm")),  # the FreeBSD wing is l4stb.providers.freebsd
    ("orchestration", ("l4stb.runner", "l4stb.sweep", "l4stb.check", "l4stb.executors", "l4stb.run_selection",
                       "l4stb.fetch")),
    ("analysis", ("l4stb.analysis",)),
    ("model", ("l4stb.model",)),
    ("pipeline", ("l4stb.pipeline", "l4stb.calibrate")),  # calibrate is a job: runs, then their summaries
    ("cli", ("l4stb.cli", "l4stb.cli_analysis", "l4stb.cli_calibrate", "l4stb.cli_distill")),
)
"""From the bottom up. A module belongs to the layer of its longest listed prefix (a name or a package)."""

WINGS: tuple[str, ...] = ("l4stb.providers.freebsd",)
"""Packages that hold one testbed's code together (docs/architecture.md): nothing beside them in their layer imports
them (the simulator, the other providers), only the layers above (the orchestration)."""

SLOW_OR_OPTIONAL = frozenset({
    # measured with `python -c "import X"`: 0.2 s (pyarrow) to 11 s (peft) each, against 0.07 s for Python itself
    "torch", "transformers", "peft", "accelerate", "safetensors", "sklearn", "scipy", "matplotlib", "pandas",
    "pyarrow", "fabric", "paramiko", "invoke",
    # optional extras (pyproject's [project.optional-dependencies]) or tools a user may not have
    "dask", "ray", "vagrant", "gguf", "markdown_it", "Cython", "setuptools",
})
"""Third-party packages a module may import inside a function, so that a command that does not need them does
not pay for them."""

LAZY_LAYERS = frozenset({"cli"})
"""Layers whose functions may import any l4stb module: each click command imports its stage when it runs, so
that `l4stb --help` or `l4stb status` does not load every stage (measured: 0.8 s against 2.0 s)."""

MAY_BE_ABSENT: dict[tuple[str, str], str] = {
    ("l4stb.analysis.summary", "l4stb.analysis.packets"):
        "the log parser may be absent; summary then reads the data already parsed (tests/test_summary.py)",
    ("l4stb.pipeline.saved_sections", "l4stb.pipeline.closed_loop"):
        "the closed loop loads the log parser, which may be absent; only runs with a closed-loop series need it",
}
"""Function-level imports of an l4stb module that is allowed to fail to import, with the reason."""

KNOWN_UPWARD: dict[tuple[str, str], str] = {
    ("l4stb", "l4stb.analysis.export"):
        "the notebook facade (l4stb.load_run, l4stb.load_sweep) in the package's __init__, imported when called",
}
"""Imports up the layers that are known and explained. An entry that no longer occurs must be removed."""

NOT_YET_TIDIED: dict[str, str] = {}
"""Files whose function-level imports are not yet held to the start-up rule (the layer and cycle rules still
hold). An entry whose file has nothing left to tidy must be removed."""


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the l4stb module imported, or the top-level name of a third-party/stdlib package
    internal: bool
    in_function: bool
    type_only: bool  # under `if TYPE_CHECKING:`: never runs
    path: Path
    line: int
    reason: str  # the comment on the import's line or the line above it ('' when none)


def package_dirs() -> dict[str, Path]:
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {pkg: ROOT / folder for pkg, folder in setup["package-dir"].items()}


@functools.cache
def module_files() -> dict[str, Path]:
    """Every l4stb module and its file (a folder belongs to the package that names it most closely)."""
    dirs = sorted(package_dirs().items(), key=lambda kv: len(kv[1].parts), reverse=True)
    mods: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        for pkg, folder in dirs:
            if folder in path.parents:
                parts = list(path.relative_to(folder).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                if all(part.isidentifier() for part in parts):
                    mods[".".join([pkg, *parts])] = path
                break
    return mods


def _comment(lines: list[str], lineno: int) -> str:
    """The comment on the import's line, or on the line above it or above the run of imports it belongs to."""
    same = lines[lineno - 1]
    if "#" in same:
        return same.split("#", 1)[1].strip()
    for above in reversed(lines[:lineno - 1]):
        above = above.strip()
        if not above.startswith(("from ", "import ")):
            return above[1:].strip() if above.startswith("#") else ""
    return ""


def _resolve(name: str, mods: dict[str, Path]) -> str:
    while name not in mods and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports_of(module: str, path: Path, mods: dict[str, Path]) -> list[Import]:
    source = path.read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    in_function: set[int] = set()
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in mods else base for alias in node.names]
        else:
            continue
        for name in dict.fromkeys(names):
            internal = name == "l4stb" or name.startswith("l4stb.")
            found.append(Import(module, _resolve(name, mods) if internal else name.split(".")[0], internal,
                                id(node) in in_function, id(node) in type_only, path, node.lineno,
                                _comment(lines, node.lineno)))
    return found


def layer_of(module: str) -> int:
    best = None
    for index, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + ".") and prefix != "l4stb":
                if best is None or len(prefix) > len(best[1]):
                    best = (index, prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}"
    return best[0]


@functools.cache
def graph() -> tuple[Import, ...]:
    mods = module_files()
    return tuple(imp for module, path in mods.items() for imp in imports_of(module, path, mods))


def _where(imp: Import) -> str:
    return f"{imp.path.relative_to(ROOT)}:{imp.line}"


def test_every_module_has_a_layer():
    unplaced = []
    for module in module_files():
        try:
            layer_of(module)
        except AssertionError:
            unplaced.append(module)
    assert not unplaced, f"modules in no layer of LAYERS: {unplaced}"


def upward_imports(imports) -> list[Import]:
    """The imports that point from a layer to a higher one."""
    return [imp for imp in imports if imp.internal and not imp.type_only
            and layer_of(imp.target) > layer_of(imp.source)]


def test_no_import_runs_up_the_layers():
    names = [name for name, _ in LAYERS]
    found = upward_imports(graph())
    upward = [f"{_where(imp)}: {imp.source} ({names[layer_of(imp.source)]}) imports {imp.target} "
              f"({names[layer_of(imp.target)]})" for imp in found if (imp.source, imp.target) not in KNOWN_UPWARD]
    assert not upward, "imports up the layers (move the code down, or pass a callable in):\n" + "\n".join(upward)
    stale = set(KNOWN_UPWARD) - {(imp.source, imp.target) for imp in found}
    assert not stale, f"KNOWN_UPWARD entries that no longer occur, remove them: {sorted(stale)}"


def sideways_imports(imports) -> list[Import]:
    """The imports into a wing (WINGS) from a module outside it in the same layer or below."""
    def in_wing(module: str, wing: str) -> bool:
        return module == wing or module.startswith(wing + ".")

    return [imp for imp in imports for wing in WINGS if imp.internal and not imp.type_only
            and in_wing(imp.target, wing) and not in_wing(imp.source, wing) and layer_of(imp.source) <= layer_of(wing)]


def test_a_wing_is_imported_only_from_inside_it_or_from_a_higher_layer():
    sideways = [f"{_where(imp)}: {imp.source} imports {imp.target}" for imp in sideways_imports(graph())]
    assert not sideways, "imports into a wing from beside or below it (move the shared part down):\n" + \
        "\n".join(sideways)


def test_the_checks_see_an_upward_import_inside_a_function_and_a_cycle(tmp_path):
    """The checks above can fail: a core module that imports a job inside a function is caught."""
    path = tmp_path / "errors.py"
    path.write_text("def explain():\n    import json\n    from l4stb.pipeline.job import TrainJob\n")
    mods = {**module_files(), "l4stb.errors": path}
    found = imports_of("l4stb.errors", path, mods)
    assert [(i.target, i.in_function, i.reason) for i in found] == [("json", True, ""),
                                                                      ("l4stb.pipeline.job", True, "")]
    assert [(i.source, i.target) for i in upward_imports(found)] == [("l4stb.errors", "l4stb.pipeline.job")]
    beside = tmp_path / "sim.py"  # the sim provider reaching into the FreeBSD wing, as it once did for a constant
    beside.write_text("def sched():\n    from l4stb.providers.freebsd.plans import KMOD\n")
    found = imports_of("l4stb.providers.sim", beside, {**module_files(), "l4stb.providers.sim": beside})
    assert [(i.source, i.target) for i in sideways_imports(found)] == [("l4stb.providers.sim",
                                                                        "l4stb.providers.freebsd.plans")]
    assert _cycles({"l4stb.a": {"l4stb.b"}, "l4stb.b": {"l4stb.a"}, "l4stb.c": {"l4stb.a"}}) == [["l4stb.a",
                                                                                                 "l4stb.b"]]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in edges.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_even_through_function_level_imports():
    edges: dict[str, set[str]] = {}
    for imp in graph():
        # Every l4stb module runs the root package's __init__ before its own code, so an edge into the root
        # (for __version__) adds no order; the root's own imports are the notebook facade of KNOWN_UPWARD.
        if imp.internal and not imp.type_only and imp.target not in (imp.source, "l4stb"):
            edges.setdefault(imp.source, set()).add(imp.target)
    assert not _cycles(edges), f"import cycles (modules that import each other): {_cycles(edges)}"


@functools.cache
def _module_level_closure() -> dict[str, set[str]]:
    """For each module, the l4stb modules and the third-party top-level packages that importing it loads
    (module-level imports only, followed through l4stb modules and their parent packages)."""
    imports = graph()
    direct: dict[str, set[str]] = {}
    third: dict[str, set[str]] = {}
    stdlib = sys.stdlib_module_names
    for imp in imports:
        if imp.in_function or imp.type_only:
            continue
        if imp.internal:
            direct.setdefault(imp.source, set()).add(imp.target)
        elif imp.target not in stdlib and imp.target != "__future__":
            third.setdefault(imp.source, set()).add(imp.target)
    closure: dict[str, set[str]] = {}
    for module in module_files():
        todo, seen, libs = [module], set(), set()
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            libs |= third.get(current, set())
            parts = current.split(".")
            todo.extend(".".join(parts[:n]) for n in range(1, len(parts)))
            todo.extend(direct.get(current, ()))
        closure[module] = libs | seen
    return closure


def function_level_faults() -> list[tuple[str, str]]:
    """(file, what is wrong) for each function-level import that is not there for start-up cost or lacks its reason."""
    closure = _module_level_closure()
    stdlib = sys.stdlib_module_names
    faults = []
    for imp in graph():
        if not imp.in_function or imp.type_only:
            continue
        where = str(imp.path.relative_to(ROOT))
        if imp.internal:
            gain = (closure[imp.target] - closure[imp.source]) & SLOW_OR_OPTIONAL
            if (imp.source, imp.target) in MAY_BE_ABSENT:
                pass
            elif imp.target in closure[imp.source]:
                faults.append((where, f"{_where(imp)}: {imp.source} already loads {imp.target} at module level"))
            elif not gain and LAYERS[layer_of(imp.source)][0] not in LAZY_LAYERS:
                faults.append((where, f"{_where(imp)}: {imp.target} loads no slow library that {imp.source} does "
                                      "not already load: import it at module level"))
        elif imp.target in stdlib:
            faults.append((where, f"{_where(imp)}: {imp.target} is in the standard library: import it at module level"))
        elif imp.target not in SLOW_OR_OPTIONAL:
            faults.append((where, f"{_where(imp)}: {imp.target} is not in SLOW_OR_OPTIONAL: import it at module level"))
        elif imp.target in closure[imp.source]:
            faults.append((where, f"{_where(imp)}: {imp.source} already loads {imp.target} at module level"))
        if not imp.reason:
            faults.append((where, f"{_where(imp)}: a function-level import needs a one-line reason comment beside it"))
    return faults


def test_function_level_imports_are_for_start_up_cost_and_say_so():
    faults = function_level_faults()
    wrong = [what for where, what in faults if where not in NOT_YET_TIDIED]
    assert not wrong, "\n".join(wrong)
    tidy = set(NOT_YET_TIDIED) - {where for where, _ in faults}
    assert not tidy, f"NOT_YET_TIDIED files with nothing left to tidy, remove them: {sorted(tidy)}"
