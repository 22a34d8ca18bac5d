"""A model of the FreeBSD userland limits the rendered plans run into, for running them under sh on Linux.

Each limit comes from ``l4stb.providers.freebsd.facts.LIMITS`` (with its FreeBSD source there):

- ``sysctl``: an argument of BUFSIZ characters or more is refused ("oid too long", sbin/sysctl/sysctl.c parse());
  only OIDs of the facts table and the module's source exist; the learned-policy OID takes ``begin``,
  ``+<hex>`` pieces of at most 1000 digits and ``commit``, which validates the blob like the module does;
- ``ipfw``: rule numbers 1..65534, sets 0..30, the pipe/sched/queue syntax l4stb uses; rc.firewall's own rules
  (``RC_FIREWALL_OPEN_RULES``, set 0) exist from the start, and adding a rule on one of their numbers, or
  deleting one of them, is refused;
- every command run from the stub folder (the model's and the wrapped real ones) checks its argv and
  environment against ARG_MAX (kern.argmax);
- :func:`ssh_command` is what the SSH channel carries, checked against the SSH packet limit by the tests.

Paths under /var/l4stb, /etc, /var/log and /boot are moved into the model's root, so nothing outside it is touched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from l4stb import resources
from l4stb.providers.freebsd import facts, plans

ARG_MAX = facts.LIMITS["arg_max"].value
SYSCTL_ARG_MAX = facts.LIMITS["sysctl_arg"].value
MOVED_PREFIXES = ("/var/l4stb/", "/etc/", "/var/log/", "/boot/", "/usr/src/")
WRAPPED_REAL = ("grep", "cat", "mv", "rm", "install", "chmod", "cmp", "fold", "hexdump", "touch", "head", "tail",
                "sed", "awk", "wc", "date", "sleep", "env", "paste", "cut", "ls", "sh")
"""Real Linux commands the plans use, run through the ARG_MAX check (their FreeBSD twins take the same options)."""
STUBS_OK = ("kldstat", "kldload", "kldunload", "service", "sysrc", "route", "ifconfig", "newsyslog", "daemon",
            "pkg", "kenv", "tcpdump", "timeout", "sha256", "sockstat", "freebsd-version", "pw", "getent", "iperf3",
            "uname", "cc", "make", "git", "gmake", "c++")
"""FreeBSD commands with no limit the plans could meet: the model records them and succeeds."""

SYSCTL_DEFAULTS = {
    "kern.hz": "1000", "kern.msgbufsize": str(plans.MSGBUF_BYTES), "net.inet.ip.dummynet.pipe_slot_limit": "100",
    "net.inet.ip.dummynet.pipe_byte_limit": "1048576", f"{plans.SYSCTL_ROOT}.policy": "none",
}


def module_sysctls() -> set[str]:
    """The module's own OIDs, from its source (DP2_S64/SYSCTL_PROC/SYSCTL_* names under the dualpi2 node)."""
    text = (resources.module_dir() / "dn_sched_dualpi2.c").read_text()
    names = set(re.findall(r"DP2_S64\(\s*(\w+)", text)) | set(re.findall(r"DP2_\w+\(\s*(\w+)", text))
    names |= set(re.findall(r"SYSCTL_\w+\(_net_inet_ip_dummynet_dualpi2,\s*OID_AUTO,\s*(\w+)", text))
    return {f"{plans.SYSCTL_ROOT}.{n}" for n in names}


_ARGMAX_CHECK = f"""
total=0
for a in "$0" "$@"; do total=$((total + ${{#a}} + 1)); done
envsize=$(/usr/bin/env | /usr/bin/wc -c)
if [ $((total + envsize)) -gt {ARG_MAX} ]; then
  echo "model: exec $(basename "$0"): argument list too long ($((total + envsize)) bytes > kern.argmax {ARG_MAX})" >&2
  exit 126
fi
"""

_SYSCTL = r'''
import json, os, sys
state_file = os.path.join(os.environ["L4STB_MODEL"], "sysctl.json")
state = json.load(open(state_file))
args = sys.argv[1:]
flags = set()
while args and args[0].startswith("-"):
    flags |= set(args.pop(0)[1:])
rc = 0
for arg in args:
    state["calls"].append(arg)
    if len(arg) > SYSCTL_ARG_MAX:
        sys.stderr.write(f"sysctl: oid too long: '{arg[:60]}...' ({len(arg)} characters; BUFSIZ is 1024)\n")
        json.dump(state, open(state_file, "w"))
        sys.exit(1)
    name, eq, value = arg.partition("=")
    if name not in state["known"]:
        if "i" in flags:
            continue
        sys.stderr.write(f"sysctl: unknown oid '{name}'\n")
        json.dump(state, open(state_file, "w"))
        sys.exit(1)
    if not eq:
        if "N" in flags:
            print(name)
        else:
            print(state["values"].get(name, "0") if "n" in flags else f"{name}: {state['values'].get(name, '0')}")
        continue
    if name == POLICY:
        if value == "begin":
            state["staged"] = ""
        elif value.startswith("+") and state.get("staged") is not None and len(value) - 1 <= 1000:
            state["staged"] += value[1:]
        elif value == "commit" and state.get("staged") is not None:
            sys.path[:0] = [p for p in os.environ.get("L4STB_MODEL_PATH", "").split(":") if p]
            from l4stb import policyblob
            try:
                blob = policyblob.parse(bytes.fromhex(state["staged"]))
            except (ValueError, policyblob.PolicyBlobError):
                sys.stderr.write(f"sysctl: {name}={value}: Invalid argument\n")
                rc = 1
                continue
            state["values"][name] = (f"v{policyblob.VERSION}, {blob.size_bytes} bytes, {len(blob.nodes)} nodes, "
                                     f"depth {blob.max_depth}, checksum {blob.checksum:08x}")
            state["staged"] = None
        elif value == "none":
            state["values"][name] = "none"
        else:
            sys.stderr.write(f"sysctl: {name}={value[:40]}: Invalid argument\n")
            rc = 1
        continue
    state["values"][name] = value
json.dump(state, open(state_file, "w"))
sys.exit(rc)
'''

_IPFW = r'''
import json, os, re, sys
state_file = os.path.join(os.environ["L4STB_MODEL"], "ipfw.json")
state = json.load(open(state_file))
args = [a for a in sys.argv[1:] if a not in ("-q", "-f")]
state["calls"].append(" ".join(args))

def fail(msg, code=64):
    json.dump(state, open(state_file, "w"))
    sys.stderr.write(f"ipfw: {msg}\n")
    sys.exit(code)

def num(word, lo, hi, what):
    if not re.fullmatch(r"[0-9]+", word or "") or not lo <= int(word) <= hi:
        fail(f"{what} {word!r} is not a number in {lo}..{hi}")
    return int(word)

BW = re.compile(r"[0-9]+(bit|Kbit|Mbit|Gbit)/s")
TIME = re.compile(r"[0-9]+(\.[0-9]*)?(us|ms|s)?", re.I)

def aqm_params(kind, words):
    """sbin/ipfw/dummynet.c process_extra_parms for codel/fq_codel: every remaining word is a parameter; times as
    time_to_us reads them (us, ms, s; ms when bare), numbers as is_valid_number; quantum/limit/flows only for
    fq_codel ("... is not for codel"); the real ipfw prints and skips an unknown word, the model refuses it."""
    out, i = {"ecn": kind != "codel"}, 0
    while i < len(words):
        w = words[i]
        if w in ("target", "interval"):
            if i + 1 >= len(words) or not TIME.fullmatch(words[i + 1]):
                fail(f"{w} needs time")
            out[w] = words[i + 1]; i += 2
        elif w in ("ecn", "noecn"):
            out["ecn"] = w == "ecn"; i += 1
        elif w in ("quantum", "limit", "flows"):
            if kind == "codel":
                fail(f"{w} is not for codel")
            if i + 1 >= len(words) or not re.fullmatch(r"[0-9.]+", words[i + 1]):
                fail(f"{w} needs number")
            out[w] = int(float(words[i + 1])); i += 2
        else:
            fail(f"{w} is Invalid parameter")
    return out
if not args:
    fail("usage")
cmd = args[0]
if cmd == "add":
    n = num(args[1], 1, RULE_MAX, "rule number")
    rest = args[2:]
    s = 0
    if rest[:1] == ["set"]:
        s = num(rest[1], 0, SET_MAX, "set")
        rest = rest[2:]
    if n in STOCK:
        fail(f"rule {n} is one of rc.firewall's own numbers ({sorted(STOCK)}); l4stb must use others")
    if rest[:1] not in (["queue"], ["pipe"]) or not re.fullmatch(r"[0-9]+", rest[1]):
        fail(f"add {n}: expected `queue N ...` or `pipe N ...`, got {' '.join(rest[:2])!r}")
    state["rules"].append([n, s, " ".join(rest)])
elif cmd == "delete":
    if args[1:2] == ["set"]:
        s = num(args[2], 0, SET_MAX, "set")
        if s == 0:
            fail("delete set 0 would delete rc.firewall's rules")
        state["rules"] = [r for r in state["rules"] if r[1] != s]
    else:
        for word in args[1:]:
            n = num(word, 1, RULE_MAX, "rule number")
            if any(r[0] == n and r[1] == 0 and r[2] == "stock" for r in state["rules"]):
                fail(f"delete {n} would delete rc.firewall's rule {n}")
            if not any(r[0] == n for r in state["rules"]):
                fail(f"rule {n}: not found", 71)
            state["rules"] = [r for r in state["rules"] if r[0] != n]
elif cmd in ("pipe", "sched", "queue") and len(args) >= 3:
    n = num(args[1], 1, 65535, cmd)
    verb, words = args[2], args[3:]
    table = state[cmd + "s"]
    if verb == "delete":
        if str(n) not in table:
            fail(f"{cmd} {n}: not found", 71)
        del table[str(n)]
    elif verb == "show":
        if cmd == "sched" and str(n) in table:
            print(f" sched {n} type {table[str(n)].get('type', 'FIFO')} flags 0x0 0 buckets 0 active")
        elif cmd != "sched":
            print(f"{n:05d}: {table.get(str(n), {})}")
    elif verb == "config":
        conf = {}
        i = 0
        while i < len(words):
            w = words[i]
            if cmd == "pipe" and w == "bw" and BW.fullmatch(words[i + 1]):
                conf["bw"] = words[i + 1]; i += 2
            elif w == "delay":
                num(words[i + 1], 0, 10000, "delay (ms)"); conf["delay"] = words[i + 1]; i += 2
            elif cmd == "sched" and w == "pipe":
                if words[i + 1] not in state["pipes"]:
                    fail(f"sched {n}: pipe {words[i + 1]} does not exist")
                i += 2
            elif cmd == "sched" and w == "type":
                conf["type"] = words[i + 1]; i += 2
                if words[i - 1].lower() in ("fq_codel", "fq_pie"):
                    conf["params"] = aqm_params(words[i - 1].lower(), words[i:]); i = len(words)
            elif cmd == "queue" and w == "sched":
                if words[i + 1] not in state["scheds"]:
                    fail(f"queue {n}: sched {words[i + 1]} does not exist")
                i += 2
            elif cmd == "queue" and w == "queue":
                num(words[i + 1], 1, 100000, "queue size"); i += 2
            elif cmd == "queue" and w == "codel":
                conf["codel"] = aqm_params("codel", words[i + 1:]); i = len(words)
            elif cmd == "queue" and w in ("pie", "ecn", "noecn"):
                i += 1
            elif cmd == "queue" and w in ("target", "tupdate", "alpha", "beta", "max_burst", "max_ecnth"):
                i += 2
            else:
                fail(f"{cmd} {n} config: unexpected {w!r}")
        table[str(n)] = conf
    else:
        fail(f"{cmd} {n}: unknown verb {verb!r}")
elif cmd in ("list", "show"):
    for r in sorted(state["rules"]):
        print(f"{r[0]:05d} {r[2]}")
else:
    fail(f"unknown command {cmd!r}")
json.dump(state, open(state_file, "w"))
'''


@dataclass
class Userland:
    """One model host: a stub folder, a root the absolute paths move into, and the sysctl/ipfw state;
    ``provisioned``: what `l4stb up` builds on the router (the rate-schedule helper) is there."""

    root: Path
    provisioned: bool = True

    def __post_init__(self) -> None:
        self.bin = self.root / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        for d in ("etc", "var/log", "var/l4stb", "boot", "usr/src"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "etc/syslog.conf").write_text("*.notice\t/var/log/messages\n!*\ninclude /etc/syslog.d\n")
        known = set(facts.SYSCTLS) | module_sysctls()
        self._write_state("sysctl.json", {"known": sorted(known), "values": dict(SYSCTL_DEFAULTS), "calls": [],
                                          "staged": None})
        self._write_state("ipfw.json", {"rules": [[n, 0, "stock"] for n in facts.RC_FIREWALL_OPEN_RULES],
                                        "pipes": {}, "scheds": {}, "queues": {}, "calls": []})
        consts = (f"SYSCTL_ARG_MAX = {SYSCTL_ARG_MAX}\nPOLICY = {plans.SYSCTL_ROOT + '.policy'!r}\n"
                  f"RULE_MAX = {facts.LIMITS['ipfw_rule_max'].value}\nSET_MAX = {facts.LIMITS['ipfw_set_max'].value}\n"
                  f"STOCK = {set(facts.RC_FIREWALL_OPEN_RULES)!r}\n")
        self._python_stub("sysctl", consts + _SYSCTL)
        self._python_stub("ipfw", consts + _IPFW)
        for name in STUBS_OK:
            self._sh_stub(name, 'echo "$(basename "$0") $*" | /usr/bin/tr "\\n" " " >> "$L4STB_MODEL/calls"\n'
                                'echo >> "$L4STB_MODEL/calls"\nexit 0\n')
        if self.provisioned:
            helper = Path(self.localise(plans.RATESCHED_BIN).strip())
            helper.parent.mkdir(parents=True, exist_ok=True)
            helper.write_text("#!/bin/sh\nexit 0\n")
            helper.chmod(0o755)
        for name in WRAPPED_REAL:
            real = next((p for p in (f"/usr/bin/{name}", f"/bin/{name}") if os.path.exists(p)), None)
            if real:
                self._sh_stub(name, f'exec {real} "$@"\n')

    def _write_state(self, name: str, data: dict) -> None:
        (self.root / name).write_text(json.dumps(data))

    def state(self, name: str) -> dict:
        return json.loads((self.root / f"{name}.json").read_text())

    def calls(self) -> list[str]:
        path = self.root / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def _sh_stub(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text("#!/bin/sh\n" + _ARGMAX_CHECK + body)
        path.chmod(0o755)

    def _python_stub(self, name: str, code: str) -> None:
        (self.bin / f"{name}.py").write_text(code)
        self._sh_stub(name, f'exec {sys.executable} "$(dirname "$0")/{name}.py" "$@"\n')

    def localise(self, script: str) -> str:
        """The script with FreeBSD's absolute paths moved into the model's root and its PATH line dropped."""
        lines = [ln for ln in script.splitlines() if not ln.startswith("export PATH=")]
        text = "\n".join(lines) + "\n"
        for prefix in MOVED_PREFIXES:
            text = re.sub(r"(?<![\w/.])" + re.escape(prefix), str(self.root) + prefix, text)
        return text

    def run(self, script: str, *, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a rendered step under sh with the model's commands first on PATH (from a file: Linux's own limit on
        one argument, 128 KiB, would otherwise apply before the model's; the tests check `sh -c SCRIPT` against
        kern.argmax on their own)."""
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "L4STB_MODEL": str(self.root), "HOME": str(self.root),
               "L4STB_MODEL_PATH": os.pathsep.join(p for p in sys.path if p), "LC_ALL": "C"}
        path = self.root / "step.sh"
        path.write_text(self.localise(script))
        return subprocess.run([str(self.bin / "sh"), str(path)], capture_output=True, text=True, env=env,
                              timeout=timeout)

    def put(self, remote: str, content: bytes) -> Path:
        """An SFTP upload: the file lands at its remote path inside the model's root."""
        path = Path(self.localise(remote).strip())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return path


def ssh_command(script: str, user_is_root: bool = False) -> str:
    """What l4stb.providers.freebsd.remote sends as the SSH exec request for a script step (``sudo -n env PATH=... sh -c SCRIPT``)."""
    from l4stb.providers.freebsd.remote import SshHost, SshParams, quote_argv

    host = SshHost("model", SshParams("127.0.0.1", 22, "vagrant", None), sudo=not user_is_root)
    return host._wrap(quote_argv(["sh", "-c", script]))
