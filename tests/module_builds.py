"""Build the FreeBSD module's sources without FreeBSD: a zig cross-compile with the kernel's own flags,
and a Linux build of the kernel glue against stand-ins. Shared by test_module_crosscompile.py and
test_module_glue.py; see freebsd_module/harness/dummynet_private/README.md for what each checks.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from l4stb import resources

MODULE = resources.module_dir()
HARNESS = MODULE / "harness"
DUMMYNET_PRIVATE = HARNESS / "dummynet_private"
KERNEL_STUBS = HARNESS / "kernel_stubs"
CK_INCLUDE = Path("/usr/include")  # Debian's libck-dev: ck_*.h, gcc/, spinlock/
GLUE = "dn_sched_dualpi2.c"

# sys/conf/config.mk (untied module builds, i.e. `make` outside buildkernel, as on the router): the option
# headers kmod.mk asks for. kmod.mk adds `-include opt_global.h` for these builds.
OPTION_HEADERS = {
    "opt_global.h": "#define SMP 1\n#define MAC 1\n#define VIMAGE 1\n",
    "opt_inet.h": "#define INET 1\n#define TCP_OFFLOAD 1\n",
    "opt_inet6.h": "#define INET6 1\n",
}

# The flags bsd.kmod.mk gives an out-of-tree module on amd64 (FreeBSD 14 share/mk/sys.mk -O2 -pipe,
# sys/conf/kmod.mk, sys/conf/kern.mk CWARNFLAGS/CWARNEXTRA for clang and CSTD), as a 14.x `make` prints
# them, without -I/-include (added per build), dependency and -fdebug-prefix-map flags.
KERNEL_CFLAGS = [
    "-O2", "-pipe", "-fno-strict-aliasing",                      # sys.mk; kmod.mk adds -fno-strict-aliasing
    "-Werror", "-D_KERNEL", "-DKLD_MODULE", "-nostdinc",         # kmod.mk
    "-fno-common", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer",  # kmod.mk (amd64)
    "-mcmodel=kernel", "-mno-red-zone", "-mno-mmx", "-mno-sse", "-msoft-float",
    "-fno-asynchronous-unwind-tables",                           # kern.mk, amd64
    "-ffreestanding", "-fwrapv", "-fstack-protector",             # kern.mk
    "-Wall", "-Wstrict-prototypes", "-Wmissing-prototypes", "-Wpointer-arith", "-Wcast-qual", "-Wundef",
    "-Wno-pointer-sign", "-D__printf__=__freebsd_kprintf__", "-Wmissing-include-dirs",
    "-fdiagnostics-show-option", "-Wno-unknown-pragmas", "-Wswitch",                 # kern.mk CWARNFLAGS
    "-Wno-error=tautological-compare", "-Wno-error=empty-body", "-Wno-error=parentheses-equality",
    "-Wno-error=unused-function", "-Wno-error=pointer-sign", "-Wno-error=shift-negative-value",
    "-Wno-address-of-packed-member", "-Wno-format-zero-length",                        # kern.mk CWARNEXTRA
    "-mno-aes", "-mno-avx",                                      # kern.mk, clang on amd64
    "-std=gnu17",                                                # kern.mk CSTD
]
ZIG_TARGET = "x86_64-freebsd.14.1"

# What the module may leave undefined: each symbol and where a 14.1 kernel or dummynet.ko defines it.
# dummynet.ko's symbols are visible to other modules although kmod.mk localizes them (EXPORT_SYMS=NO,
# sys/conf/kmod_syms.awk), because link_elf_obj.c lets local symbols resolve while the tunable
# debug.link_elf_obj_leak_locals is 1 (its default) -- to check on a VM, see freebsd_module/README.md.
KERNEL_EXPORTS = {
    "dn_sched_modevent": "dummynet.ko: sys/netpfil/ipfw/ip_dummynet.c",
    "dn_tag_get": "dummynet.ko: sys/netpfil/ipfw/ip_dn_io.c",
    "ecn_mark": "dummynet.ko: sys/netpfil/ipfw/ip_dn_io.c (not static under NEW_AQM)",
    "vnet_entry_dn_cfg": "dummynet.ko: sys/netpfil/ipfw/ip_dn_io.c VNET_DEFINE(struct dn_parms, dn_cfg)",
    "sysctl___net_inet_ip_dummynet": "dummynet.ko: sys/netpfil/ipfw/ip_dn_io.c SYSCTL_NODE (global under NEW_AQM)",
    "m_tag_alloc": "kernel: sys/kern/uipc_mbuf2.c",
    "m_tag_delete": "kernel: sys/kern/uipc_mbuf2.c",
    "m_freem": "kernel: sys/kern/uipc_mbuf.c",
    "m_rcvif_serialize": "kernel: sys/kern/kern_mbuf.c",
    "m_rcvif_restore": "kernel: sys/kern/kern_mbuf.c",
    "binuptime": "kernel: sys/kern/kern_tc.c (sbinuptime() is inline in sys/sys/time.h)",
    "log": "kernel: sys/kern/subr_prf.c",
    "sysctl_handle_64": "kernel: sys/kern/kern_sysctl.c",
    "module_register_init": "kernel: sys/kern/kern_module.c (DECLARE_MODULE's SYSINIT)",
    "memcpy": "kernel: sys/amd64/amd64/support.S (struct copies)",
    "__stack_chk_fail": "kernel: sys/kern/stack_protector.c (-fstack-protector)",
    "__stack_chk_guard": "kernel: sys/kern/stack_protector.c (-fstack-protector)",
    # the learned-policy sysctl (dn_sched_dualpi2.c, "learned policy" block)
    "malloc": "kernel: sys/kern/kern_malloc.c",
    "free": "kernel: sys/kern/kern_malloc.c",
    "malloc_init": "kernel: sys/kern/kern_malloc.c (MALLOC_DEFINE's SYSINIT)",
    "malloc_uninit": "kernel: sys/kern/kern_malloc.c (MALLOC_DEFINE's SYSUNINIT)",
    "__mtx_lock_flags": "kernel: sys/kern/kern_mutex.c (mtx_lock in a module, sys/sys/mutex.h)",
    "__mtx_unlock_flags": "kernel: sys/kern/kern_mutex.c (mtx_unlock in a module)",
    "mtx_sysinit": "kernel: sys/kern/kern_mutex.c (MTX_SYSINIT's SYSINIT)",
    "_mtx_destroy": "kernel: sys/kern/kern_mutex.c (MTX_SYSINIT's SYSUNINIT)",
    "snprintf": "kernel: sys/kern/subr_prf.c",
    "strcmp": "kernel: sys/libkern/strcmp.c",
    "strlen": "kernel: sys/libkern/strlen.c",
    "memset": "kernel: sys/amd64/amd64/machdep.c (DEFINE_IFUNC memset: memset_std/memset_erms of support.S)",
}

# Linker-set bounds (__start_set_vnet, __stop_set_sysctl_set, ...): sys/sys/linker_set.h, sys/net/vnet.h
# and sys/sys/pcpu.h reference them, and the kernel linker (sys/kern/link_elf_obj.c) points them at the
# module's own set_* sections when it loads the module.
LINKER_SET_BOUND = re.compile(r"__(start|stop)_set_\w+")


def makefile_sources(module_dir: Path = MODULE) -> list[str]:
    """The C files of the Makefile's SRCS (SRCS= and SRCS+= lines), as bsd.kmod.mk compiles them."""
    sources: list[str] = []
    for m in re.finditer(r"^SRCS\+?=\s*(.*)$", (module_dir / "Makefile").read_text(), re.M):
        sources += [s for s in m.group(1).split() if s.endswith(".c")]
    return sources


def zig_cc() -> list[str] | None:
    """`python -m ziglang cc` (the ziglang PyPI package), or None when it is not installed."""
    if importlib.util.find_spec("ziglang") is None:
        return None
    return [sys.executable, "-m", "ziglang", "cc"]


def zig_freebsd_includes() -> list[Path]:
    """The FreeBSD /usr/include that zig ships (FreeBSD 15.0's, kernel headers included)."""
    spec = importlib.util.find_spec("ziglang")
    assert spec is not None and spec.origin is not None
    base = Path(spec.origin).parent / "lib" / "libc" / "include"
    return [base / "x86_64-freebsd-none", base / "generic-freebsd"]


def have_ck_headers() -> bool:
    return (CK_INCLUDE / "ck_epoch.h").is_file()


def write_option_headers(folder: Path) -> None:
    for name, text in OPTION_HEADERS.items():
        (folder / name).write_text(text)


def ck_include_dir(folder: Path) -> Path:
    """A folder with only Concurrency Kit's headers (what -I${SYSDIR}/contrib/ck/include gives a module
    build); /usr/include itself would bring Linux's libc headers in."""
    ck = folder / "ck"
    ck.mkdir(exist_ok=True)
    for path in [*CK_INCLUDE.glob("ck_*.h"), CK_INCLUDE / "gcc", CK_INCLUDE / "spinlock"]:
        link = ck / path.name
        if not link.exists():
            link.symlink_to(path)
    return ck


@dataclass
class Build:
    ok: bool
    output: str
    product: Path


def _run(cmd: list[str], cwd: Path) -> tuple[bool, str]:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    return proc.returncode == 0, proc.stdout + proc.stderr


def cross_compile(module_dir: Path, out: Path) -> Build:
    """Compile every SRCS file for x86_64-freebsd with the kernel's flags and -Werror, and link them
    with `zig cc -r` into dn_sched_dualpi2.ko, as bsd.kmod.mk's `ld -r` does."""
    zig = zig_cc()
    assert zig is not None
    out.mkdir(parents=True, exist_ok=True)
    write_option_headers(out)
    includes = ["-include", "opt_global.h", "-I.", f"-I{module_dir}", f"-I{DUMMYNET_PRIVATE}",
                f"-I{ck_include_dir(out)}"]
    for folder in zig_freebsd_includes():
        includes += ["-isystem", str(folder)]
    objects: list[str] = []
    log: list[str] = []
    for src in makefile_sources(module_dir):
        obj = out / (Path(src).stem + ".o")
        ok, text = _run([*zig, "-target", ZIG_TARGET, "-c", *KERNEL_CFLAGS, *includes, "-o", str(obj),
                         str(module_dir / src)], out)
        log.append(text)
        if not ok:
            return Build(False, "".join(log), obj)
        objects.append(str(obj))
    ko = out / "dn_sched_dualpi2.ko"
    ok, text = _run([*zig, "-target", ZIG_TARGET, "-r", "-nostdlib", "-o", str(ko), *objects], out)
    return Build(ok, "".join(log) + text, ko)


def unresolvable_symbols(obj: Path) -> set[str]:
    """Undefined symbols of the module that neither the kernel and dummynet.ko nor the kernel linker
    provide; empty when the module can load."""
    return {s for s in undefined_symbols(obj) if s not in KERNEL_EXPORTS and not LINKER_SET_BOUND.fullmatch(s)}


def undefined_symbols(obj: Path) -> set[str]:
    """Undefined (and weak undefined) symbols of an ELF object, read with binutils' nm."""
    nm = shutil.which("nm")
    assert nm is not None
    proc = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True, check=True)
    return {line.split()[-1] for line in proc.stdout.splitlines() if line.strip()}


# Kernel headers the glue includes that glibc's own headers are needed for (not replaced by stand-ins).
_PASS_THROUGH = {"sys/queue.h"}


def _stub_kernel_headers(module_dir: Path, folder: Path) -> None:
    """One-line stand-ins for every kernel header the glue includes, each pulling in kstub.h; the
    dummynet-private ones come from dummynet_private/ instead."""
    for header in re.findall(r"^#include <([^>]+)>", (module_dir / GLUE).read_text(), re.M):
        if header in _PASS_THROUGH or (DUMMYNET_PRIVATE / header).is_file():
            continue
        path = folder / header
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('#define KSTUB_GLUE 1\n#include "kstub.h"\n')  # KSTUB_GLUE: the glue's own unit


def build_glue_harness(module_dir: Path, out: Path) -> Build:
    """The glue, the core, the kernel stand-ins and the driver, with gcc under ASan and UBSan."""
    gcc = shutil.which("gcc")
    assert gcc is not None
    out.mkdir(parents=True, exist_ok=True)
    stubs = out / "include"
    stubs.mkdir(exist_ok=True)
    write_option_headers(stubs)
    _stub_kernel_headers(module_dir, stubs)
    binary = out / "glue_harness"
    sources = [module_dir / s for s in makefile_sources(module_dir)]
    cmd = [gcc, "-std=gnu99", "-D_DEFAULT_SOURCE", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
           "-Wno-unused-parameter", "-fno-builtin-log", "-fsanitize=address,undefined",
           "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
           f"-I{stubs}", f"-I{KERNEL_STUBS}", f"-I{DUMMYNET_PRIVATE}", f"-I{module_dir}", f"-I{HARNESS}",
           *map(str, sources), str(KERNEL_STUBS / "kstub.c"), str(HARNESS / "glue_harness.c"), "-o", str(binary)]
    ok, text = _run(cmd, out)
    return Build(ok, text, binary)
