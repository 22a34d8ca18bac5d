"""Pick the kernel modules a guest needs out of Debian's modules package, in an order busybox insmod can load.

Debian's ``linux-modules-*`` package ships ``.ko.xz`` files without ``modules.dep`` (depmod runs at install
time), and the guest's busybox has no modprobe index to read, so the dependency order is computed here from
each module's own ``.modinfo`` section: the ``depends=`` key that modpost writes (scripts/mod/modpost.c,
add_depends) lists the modules whose symbols it uses. A module that is not in the package is built into the
kernel (Debian builds e.g. fq_codel and virtio_net in); the guest's own script fails loudly if a qdisc or
congestion control is still missing.
"""

from __future__ import annotations

import lzma
import re
from dataclasses import dataclass
from pathlib import Path

from l4stb.errors import L4stbError

_DEPENDS_RE = re.compile(rb"(?:^|\x00)depends=([^\x00]*)\x00")


@dataclass(frozen=True)
class KernelModule:
    name: str
    path: Path
    depends: tuple[str, ...]


def canonical(name: str) -> str:
    """Module names treat '-' and '_' alike (kernel/module/main.c compares them as equal)."""
    return name.replace("-", "_")


def _read_ko(path: Path) -> bytes:
    data = path.read_bytes()
    return lzma.decompress(data) if path.suffix == ".xz" else data


def index_modules(modules_dir: Path) -> dict[str, Path]:
    """Module name -> file, for every .ko / .ko.xz under a kernel's modules folder."""
    out: dict[str, Path] = {}
    for path in modules_dir.rglob("*.ko*"):
        if path.name.endswith((".ko", ".ko.xz")):
            out[canonical(path.name.split(".ko")[0])] = path
    return out


def module_depends(ko: bytes) -> tuple[str, ...]:
    m = _DEPENDS_RE.search(ko)
    if not m or not m.group(1):
        return ()
    return tuple(canonical(d) for d in m.group(1).decode("ascii", "replace").split(",") if d)


def load_order(wanted: list[str], index: dict[str, Path]) -> list[KernelModule]:
    """The wanted modules and everything they depend on, dependencies first; built-in ones are skipped."""
    order: list[KernelModule] = []
    seen: set[str] = set()
    visiting: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        name = canonical(name)
        if name in seen or name not in index:
            return
        if name in visiting:
            raise L4stbError(f"kernel modules depend on each other in a cycle: {' -> '.join(chain + (name,))}")
        visiting.add(name)
        deps = module_depends(_read_ko(index[name]))
        for dep in deps:
            visit(dep, chain + (name,))
        visiting.discard(name)
        seen.add(name)
        order.append(KernelModule(name, index[name], deps))

    for name in wanted:
        visit(name, ())
    return order


def install_modules(order: list[KernelModule], dest: Path) -> list[str]:
    """Write each module decompressed into ``dest`` (busybox insmod cannot read .xz); returns the file names in order."""
    dest.mkdir(parents=True, exist_ok=True)
    names = []
    for mod in order:
        target = dest / f"{mod.name}.ko"
        target.write_bytes(_read_ko(mod.path))
        names.append(target.name)
    return names
