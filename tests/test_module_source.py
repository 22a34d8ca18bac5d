"""The kernel module's sources agree with their Python sources of truth: log header, parameter lists, sysctls."""

from __future__ import annotations

import dataclasses
import re

import pytest

from l4stb import aqm_catalogue, logformat, resources
from l4stb.config import load_scenario
from l4stb.providers.freebsd import plans
from l4stb.resources import list_scenarios

MODULE = resources.module_dir()


def _struct_fields(text: str, name: str) -> list[str]:
    body = re.search(r"struct %s \{(.*?)\n\};" % name, text, re.S).group(1)
    fields: list[str] = []
    for decl in body.split(";"):
        decl = re.sub(r"/\*.*?\*/", "", decl, flags=re.S).strip()
        if not decl:
            continue
        names = decl.split(None, 1)[1]
        fields += [n.strip().lstrip("*") for n in names.split(",")]
    return fields


def test_checked_in_log_header_is_the_generated_one():
    assert (MODULE / "dualpi2_log_fields.h").read_text() == logformat.render_c_header(), (
        "freebsd_module/dualpi2_log_fields.h drifted from l4stb/logformat.py; regenerate it with "
        "`python -m l4stb.logformat > freebsd_module/dualpi2_log_fields.h`")


def test_c_parameter_struct_follows_the_python_params_field_for_field():
    from l4stb.sim.aqm_dualpi2 import DualPI2Params
    from l4stb.sim.aqm_pie import PieParams

    header = (MODULE / "dualpi2_core.h").read_text()
    assert _struct_fields(header, "dp2_params") == [f.name for f in dataclasses.fields(DualPI2Params)]
    assert _struct_fields(header, "dp2_pie_params")[:10] == [f.name for f in dataclasses.fields(PieParams)]


def test_module_defaults_are_the_simulators_defaults():
    from l4stb.sim.aqm_dualpi2 import DualPI2Params
    from l4stb.sim.aqm_pie import PieParams

    glue = (MODULE / "dn_sched_dualpi2.c").read_text()

    def defaults(var: str) -> dict[str, int]:
        block = re.search(r"%s = \{(.*?)\};" % var, glue, re.S).group(1)
        out = {}
        for name, expr in re.findall(r"\.(\w+) = ([^,]+?)(?:,|\s*$)", block):
            expr = expr.replace("ULL", "")
            expr = re.sub(r"DP2_(\w+)", lambda m: str(_C_CONSTS[m.group(1)]), expr)
            out[name] = eval(expr, {})  # noqa: S307 - constant integer expressions from our own file
        return out

    dp = defaults("dualpi2_defaults")
    assert dp == dataclasses.asdict(DualPI2Params())
    pie = defaults("dualpi2_pie_defaults")
    want = dataclasses.asdict(PieParams())
    for name in ("qdelay_ref", "tupdate", "max_burst", "max_ecnth", "alpha", "beta", "flags"):
        assert pie[name] == want[name], name


_C_CONSTS = {"SCHED_WRR": 0, "SCHED_TSFIFO": 1, "STEP_LINUX": 0, "STEP_RFC_THLEN": 1, "PIE_ECN_ENABLED": 1, "PIE_CAPDROP_ENABLED": 2,
             "PIE_DERAND_ENABLED": 16}


@pytest.mark.parametrize("scenario", list_scenarios())
def test_every_sysctl_the_plans_set_exists_in_the_module(scenario: str):
    glue = (MODULE / "dn_sched_dualpi2.c").read_text()
    declared = set(re.findall(r"DP2_S64\((\w+),", glue)) | set(
        re.findall(r"SYSCTL_U64\(_net_inet_ip_dummynet_dualpi2, OID_AUTO, (\w+),", glue))
    sc = load_scenario(scenario)
    for setting in plans.aqm_sysctls(sc.aqm, sc):
        name = setting.split("=", 1)[0]
        assert name.startswith(plans.SYSCTL_ROOT + ".")
        assert name.rsplit(".", 1)[1] in declared, f"{scenario}: the module has no sysctl {name}"
    assert "log_lines" in declared


def test_makefile_builds_the_kld_the_plans_load():
    mk = (MODULE / "Makefile").read_text()
    assert re.search(r"^KMOD=\s*%s$" % plans.KMOD, mk, re.M)
    assert "dn_sched_dualpi2.c" in mk and "dualpi2_core.c" in mk
    assert ".include <bsd.kmod.mk>" in mk
    glue = (MODULE / "dn_sched_dualpi2.c").read_text()
    assert f'"{aqm_catalogue.MODULE_SCHED_TYPE.upper()}"' in glue, "ipfw selects the scheduler by this name"
    assert "sbinuptime()" in glue and "log(LOG_INFO" in glue


def test_core_has_no_kernel_or_float_dependencies():
    for name in ("dualpi2_core.c", "dualpi2_core.h", "dp2_policy.c", "dp2_policy.h"):
        text = (MODULE / name).read_text()
        includes = re.findall(r"#include [<\"]([^>\"]+)[>\"]", text)
        assert set(includes) <= {"dualpi2_core.h", "dualpi2_log_fields.h", "dp2_policy.h", "sys/types.h", "stdint.h",
                                 "stddef.h"}
        code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        assert not re.search(r"\b(float|double)\b", code)
        assert not re.search(r"\b(mbuf|malloc|printf)\b", code)


def test_readme_tells_how_to_build_load_unload_and_check_the_logs():
    text = (MODULE / "README.md").read_text()
    for needle in ("make SYSDIR=/usr/src/sys", "kldload ./dn_sched_dualpi2.ko", "kldunload", "type dualpi2",
                   "sysctl net.inet.ip.dummynet.dualpi2", "/var/log/dualpi2.log", "stock"):
        assert needle in text
