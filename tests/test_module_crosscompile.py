"""The kernel module compiles for FreeBSD with bsd.kmod.mk's kernel flags and -Werror, and leaves undefined
only what the kernel and dummynet.ko export.

A compile check against FreeBSD 15.0's public headers (those the ziglang package ships) plus test-only
declarations of dummynet's private headers (freebsd_module/harness/dummynet_private), not a 14.1 KBI
check: struct layouts are not verified against a 14.1 kernel, and the router builds against its own
/usr/src. It is what found finding 4 of issue 11 (a 32-bit tag type in m_tag_alloc()'s uint16_t).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from module_builds import (KERNEL_EXPORTS, MODULE, Build, cross_compile, have_ck_headers, makefile_sources,
                           unresolvable_symbols, zig_cc)

pytestmark = [
    pytest.mark.skipif(zig_cc() is None, reason="needs the ziglang package (pip install ziglang; in the test extra)"),
    pytest.mark.skipif(not have_ck_headers(),
                       reason="needs Concurrency Kit headers for sys/epoch.h (apt-get install libck-dev)"),
    pytest.mark.skipif(shutil.which("nm") is None, reason="needs binutils' nm (apt-get install binutils)"),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Build:
    return cross_compile(MODULE, tmp_path_factory.mktemp("freebsd"))


def test_module_cross_compiles_for_freebsd_with_kernel_flags_and_werror(built: Build):
    assert built.ok, f"the module does not build with the kernel's flags:\n{built.output}"
    assert built.product.is_file()


def test_every_source_the_makefile_lists_is_compiled(built: Build):
    sources = makefile_sources()
    assert {"dn_sched_dualpi2.c", "dualpi2_core.c"} <= set(sources)
    for src in sources:
        assert (built.product.parent / (Path(src).stem + ".o")).is_file(), src


def test_module_needs_only_symbols_the_kernel_and_dummynet_export(built: Build):
    assert built.ok, built.output
    missing = unresolvable_symbols(built.product)
    assert not missing, (f"kldload would fail: {sorted(missing)} are neither exported by the kernel or "
                         "dummynet.ko nor listed in tests/module_builds.py KERNEL_EXPORTS (with their source file)")
    assert {"ecn_mark", "dn_tag_get", "dn_sched_modevent", "m_tag_alloc", "log"} <= set(KERNEL_EXPORTS)


def test_a_32_bit_tag_type_breaks_the_kernel_build_finding_4(tmp_path: Path):
    """Finding 4 (issue 11): m_tag_alloc()'s type is a uint16_t; clang's -Wconstant-conversion is fatal."""
    folder = tmp_path / "module"
    shutil.copytree(MODULE, folder, ignore=shutil.ignore_patterns("harness", "__pycache__"))
    glue = folder / "dn_sched_dualpi2.c"
    text = glue.read_text()
    old = "#define DUALPI2_MTAG_TYPE\t1\n"
    assert text.count(old) == 1, "the tag type definition moved: update this test"
    glue.write_text(text.replace(old, "#define DUALPI2_MTAG_TYPE\t0x4c345342\n"))
    build = cross_compile(folder, tmp_path / "build")
    assert not build.ok
    assert "-Wconstant-conversion" in build.output
