"""The rendered plans rely only on FreeBSD paths, sysctls, rc variables and commands listed (with their source)
in l4stb.providers.freebsd.facts; and the module sysctls they set exist in the module's source."""

from __future__ import annotations

import re

import pytest

from l4stb.providers.freebsd import facts
from l4stb import resources
from rendered_plans import all_rendered

SYSCTL_RE = re.compile(r"\b(?:kern|net|hw)\.[a-z0-9_.]*[a-z0-9_]")
PATH_RE = re.compile(r"(?<![\w.:/$-])/[A-Za-z0-9_][A-Za-z0-9_./-]*")
SYSRC_RE = re.compile(r"\bsysrc\s+(?:-f\s+\S+\s+)?(?:-n\s+)?(?:-q\s+)?['\"]?([A-Za-z_][A-Za-z0-9_.]*)")
SH_KEYWORDS = {"if", "then", "else", "elif", "fi", "for", "in", "do", "done", "while", "until", "case", "esac",
               "!", "{", "}", "(", ")", ";;"}


def _code(script: str) -> str:
    """The script without comment lines (comments may name things the script does not run)."""
    return "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))


def _mask(text: str) -> tuple[str, list[str]]:
    """The script with quoted text and comments masked (words kept, no separators left inside them), and the
    bodies of its command substitutions ``$(...)`` to scan on their own. A tiny POSIX sh lexer, enough for
    the templates: arithmetic ``$((...))`` is masked whole."""
    out: list[str] = []
    subs: list[str] = []
    i, n, in_dq = 0, len(text), False
    while i < n:
        if text.startswith("$((", i):
            j = text.index("))", i) + 2
            out.append("0")
            i = j
            continue
        if text.startswith("$(", i):
            depth, j = 1, i + 2
            while j < n and depth:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            subs.append(text[i + 2:j - 1])
            out.append("x")
            i = j
            continue
        c = text[i]
        if in_dq:
            if c == "\\":
                out.append("x")
                i += 2
                continue
            in_dq = c != '"'
            out.append(c if c in '"\n' else "x")
        elif c == "'":
            i = text.index("'", i + 1)
            out.append("''")
        elif c == '"':
            in_dq = True
            out.append(c)
        elif c == "#" and (i == 0 or text[i - 1] in " \t\n;"):
            j = text.find("\n", i)
            i = n if j == -1 else j
            continue
        elif c == "\\" and text.startswith("\\\n", i):
            out.append(" ")
            i += 1
        else:
            out.append(c)
        i += 1
    return "".join(out), subs


def _commands(script: str) -> set[str]:
    """The first word of every simple command (after a newline, ;, ;;, &&, ||, |, &, then/do/else, !), in the
    script and in every command substitution."""
    found: set[str] = set()
    masked, subs = _mask(script)
    for chunk in re.split(r"\n|;;|;|&&|\|\||\||(?<![<>])&(?!>)", masked):
        words = chunk.split()
        if words and words[0].startswith("(") and words[0] != "(":
            words[0] = words[0].lstrip("(")  # a subshell: (cd dir && make)
        while words and (words[0] in SH_KEYWORDS or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0])
                         or words[0].endswith(")") and "(" not in words[0] or words[0].endswith("()")):
            if words[0] == "for":  # `for x in ...`: no command on this line
                words = []
                break
            words = words[3:] if words[0] == "case" else words[1:]  # `case WORD in PATTERN) command`
        if words and words[0] != "''" and not words[0].startswith(("$", '"', "-", "<", ">", "2>")):
            found.add(words[0])
    for sub in subs:
        found |= _commands(sub)
    return found


def test_the_command_lexer_itself():
    script = ("set -eux\nif ! sysctl -N a 2>/dev/null; then kldload x; fi\nfor f in a b; do cat \"$f\"; done\n"
              "x=$(route -n get y | awk '{print}')\ncase \"$x\" in *) echo 'kill me' ;; esac\n# ipfw in a comment\n")
    assert _commands(script) == {"set", "sysctl", "kldload", "cat", "route", "awk", "echo"}


def _known_command(name: str) -> bool:
    return (name in facts.COMMANDS or name in facts.SHELL_BUILTINS or name in facts.TEMPLATE_FUNCTIONS
            or name.startswith("/var/l4stb/") or name == "test")


def test_every_command_the_plans_run_is_in_the_facts_table():
    missing: dict[str, str] = {}
    for r in all_rendered():
        for cmd in _commands(r.script):
            if not _known_command(cmd):
                missing.setdefault(cmd, r.where)
    assert not missing, f"commands not in l4stb.providers.freebsd.facts.COMMANDS: {missing}"


def test_every_sysctl_the_plans_use_is_in_the_facts_table():
    missing: dict[str, str] = {}
    for r in all_rendered():
        for name in SYSCTL_RE.findall(_code(r.script)):
            if name not in facts.SYSCTLS and not name.startswith(facts.SYSCTL_PREFIXES):
                missing.setdefault(name, r.where)
    assert not missing, f"sysctls not in l4stb.providers.freebsd.facts.SYSCTLS: {missing}"


def test_every_path_the_plans_use_is_in_the_facts_table():
    def known(path: str, log_file: str) -> bool:
        if any(k.endswith("*") and path.startswith(k[:-1]) for k in facts.PATHS):
            return True
        path = path.rstrip(".")
        return path in facts.PATHS or path.startswith(facts.PATH_PREFIXES) or bool(log_file and
                                                                                  path.startswith(log_file))

    missing: dict[str, str] = {}
    for r in all_rendered():
        code = re.sub(r"https?://\S+", "", _code(r.script))
        for path in PATH_RE.findall(code):
            if not known(path, r.log_file):
                missing.setdefault(path, r.where)
    assert not missing, f"paths not in l4stb.providers.freebsd.facts.PATHS: {missing}"


def test_every_rc_and_loader_variable_the_plans_set_is_in_the_facts_table():
    def known(name: str) -> bool:
        return name in facts.RC_VARIABLES or any(k.endswith("*") and name.startswith(k[:-1])
                                                 for k in facts.RC_VARIABLES)

    missing: dict[str, str] = {}
    for r in all_rendered():
        for line in _code(r.script).splitlines():
            for name in SYSRC_RE.findall(line):
                if not known(name):
                    missing.setdefault(name, r.where)
    assert not missing, f"rc variables not in l4stb.providers.freebsd.facts.RC_VARIABLES: {missing}"


def test_module_sysctls_the_plans_set_exist_in_the_module_source():
    source = "\n".join(p.read_text() for p in resources.module_dir().glob("*.c"))
    used = {name.split(".")[-1] for r in all_rendered() for name in SYSCTL_RE.findall(_code(r.script))
            if name.startswith(facts.SYSCTL_PREFIXES)}
    assert used, "the plans set no module sysctl: the scan is broken"
    missing = sorted(n for n in used if not re.search(rf"\b{re.escape(n)}\b", source))
    assert not missing, f"module sysctls set by the plans but not declared in freebsd_module/*.c: {missing}"


@pytest.mark.parametrize("table", ["SYSCTLS", "RC_VARIABLES", "PATHS", "COMMANDS"])
def test_every_fact_names_its_source(table: str):
    for name, fact in getattr(facts, table).items():
        assert fact.source.strip() and fact.checked.strip(), f"{table}[{name!r}] lacks its source or what it shows"
