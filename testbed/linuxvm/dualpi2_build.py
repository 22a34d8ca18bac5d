"""Build the real sch_dualpi2 for the guest kernel, out of tree, from Debian's own source and header packages.

Debian's kernel config has ``# CONFIG_NET_SCH_DUALPI2 is not set``, so the qdisc is compiled at set-up time:
``debootstrap --variant=minbase sid`` into a cache folder (once), then in that chroot
``apt-get install make xz-utils linux-headers-<kernel>-amd64 linux-source-<major.minor>`` (the headers
package depends on the compiler Debian built the kernel with, ``gcc-NN-for-host``), extract
``net/sched/sch_dualpi2.c`` from ``/usr/src/linux-source-<major.minor>.tar.xz`` and run Kbuild's external
module build (``make -C <headers> M=<dir> modules``; Documentation/kbuild/modules.rst). The source is GPL
kernel code: it stays in the cache and is never copied into l4stb's repository. objtool reads /proc, so
/proc is mounted in the chroot for the build only. The module's vermagic is checked against the kernel's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from l4stb.errors import L4stbError
from l4stb.linuxvm.debian import SUITE, build_packages

SOURCE_MEMBER = "net/sched/sch_dualpi2.c"


def _run(argv: list[str], what: str, *, timeout: float = 1800, log: Path | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
        raise L4stbError(f"building sch_dualpi2: {what} failed (exit {proc.returncode}): {tail}"
                         + (f" The whole log is in {log}." if log else ""))
    return proc.stdout


def ensure_chroot(root: Path, mirror: str, log: Path) -> None:
    """A minimal sid root for building, made once (``.l4stb-ready`` marks a finished debootstrap)."""
    if (root / ".l4stb-ready").is_file():
        return
    if shutil.which("debootstrap") is None:
        raise L4stbError("debootstrap is not installed; the qemu provider builds sch_dualpi2 in a Debian sid "
                         "chroot. Run `bash scripts/install.sh` (it installs debootstrap) or `apt-get install "
                         "debootstrap`.")
    if os.geteuid() != 0:
        raise L4stbError("building sch_dualpi2 needs root (debootstrap and chroot); run `l4stb up --provider "
                         "qemu` as root once, or copy a cache built elsewhere into the cache folder.")
    if root.exists():
        shutil.rmtree(root)
    _run(["debootstrap", "--variant=minbase", SUITE, str(root), mirror], "debootstrap", log=log)
    # sid's Release files can expire between mirror pushes; relax the check for this chroot's apt only
    (root / "etc/apt/apt.conf.d/99l4stb").write_text('Acquire::Check-Valid-Until "false";\n')
    (root / ".l4stb-ready").write_text("ok\n")


def _chroot(root: Path, argv: list[str], what: str, log: Path, *, proc_mounted: bool = False) -> str:
    env = ["env", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C"]
    if not proc_mounted:
        return _run(["chroot", str(root), *env, *argv], what, log=log)
    _run(["mount", "-t", "proc", "proc", str(root / "proc")], "mount /proc in the build chroot", log=log)
    try:
        return _run(["chroot", str(root), *env, *argv], what, log=log)
    finally:
        subprocess.run(["umount", str(root / "proc")], capture_output=True)


def build(root: Path, kernel: str, out: Path, log: Path) -> Path:
    """Build sch_dualpi2.ko for ``kernel`` (``7.2.13+deb14``) in the chroot; returns ``out``/sch_dualpi2.ko."""
    headers, source = build_packages(kernel)
    _chroot(root, ["apt-get", "-q", "update"], "apt-get update in the build chroot", log)
    _chroot(root, ["apt-get", "install", "-y", "-q", "--no-install-recommends", "make", "xz-utils", headers,
                   source], f"installing {headers} and {source}", log)
    tarball = f"/usr/src/{source}.tar.xz"
    build_dir = root / "build" / "dualpi2"
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    top = source  # the tarball's top folder is named like the package
    _run(["tar", "-xJf", str(root / tarball.lstrip("/")), "-C", str(build_dir), "--strip-components=3",
          f"{top}/{SOURCE_MEMBER}"], f"extracting {SOURCE_MEMBER} from {tarball}", log=log)
    (build_dir / "Kbuild").write_text("obj-m := sch_dualpi2.o\n")
    _chroot(root, ["make", "-C", f"/usr/src/{headers}", "M=/build/dualpi2", "modules"], "make modules", log,
            proc_mounted=True)
    ko = build_dir / "sch_dualpi2.ko"
    magic = vermagic(ko.read_bytes())
    release = f"{kernel}-amd64"
    if magic.split(" ")[0] != release:
        raise L4stbError(f"the built sch_dualpi2.ko has vermagic {magic!r}, not the guest kernel's {release}; the "
                         f"headers and the kernel differ. Remove the cache's build chroot and run `l4stb up "
                         "--provider qemu` again.")
    out.mkdir(parents=True, exist_ok=True)
    target = out / "sch_dualpi2.ko"
    tmp = target.with_suffix(".ko.tmp")
    shutil.copyfile(ko, tmp)
    os.replace(tmp, target)
    return target


def vermagic(ko: bytes) -> str:
    m = re.search(rb"(?:^|\x00)vermagic=([^\x00]*)\x00", ko)
    return m.group(1).decode("ascii", "replace").strip() if m else ""
