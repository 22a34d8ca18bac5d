"""The provider interface every command uses: bring a testbed up and down, reach its hosts, run repeats.

Both providers leave the same artifacts on their hosts (see ``l4stb.layout``), so everything after
``run`` -- fetch, parse, pools, training, reports -- is one code path.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from l4stb.config import Scenario, Topology
from l4stb.errors import L4stbError
from l4stb.workspace import Workspace, atomic_write_json, read_json, utc_iso


@dataclass
class CommandResult:
    host: str
    command: str
    exit_code: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    mtime: float


class RemoteCommandError(L4stbError):
    """A command failed on a host: says host, step, command and the tail of stderr."""

    def __init__(self, host: str, step: str, command: str, exit_code: int, stderr: str):
        tail = "\n".join(stderr.strip().splitlines()[-5:]) or "(no stderr)"
        super().__init__(
            f"{host}: step '{step}' failed (exit {exit_code}) running `{command}`. Last lines of stderr: {tail}"
        )
        self.host, self.step, self.command, self.exit_code, self.stderr = host, step, command, exit_code, stderr


class Host(ABC):
    """One testbed host: run commands, move files, list folders. Commands are argv lists, quoted here."""

    name: str

    @abstractmethod
    def run(self, argv: list[str], *, timeout: float | None = 60, check: bool = True, step: str = "command") -> CommandResult:
        """Run ``argv`` (each element quoted with shlex) and return its result; raise RemoteCommandError on failure when ``check``."""

    def run_script(self, script: str, *, timeout: float | None = 600, check: bool = True, step: str = "script") -> CommandResult:
        """Run a rendered shell script (from a playbook template) with ``sh -c``."""
        return self.run(["sh", "-c", script], timeout=timeout, check=check, step=step)

    @abstractmethod
    def put(self, local: Path, remote: str) -> None: ...

    @abstractmethod
    def get(self, remote: str, local: Path) -> None:
        """Copy ``remote`` to ``local`` (the caller writes to a temp name and renames)."""

    @abstractmethod
    def list(self, remote_dir: str) -> list[RemoteFile]:
        """Files (recursively) under ``remote_dir``; an empty list when it does not exist."""

    @abstractmethod
    def sha256(self, remote: str) -> str: ...

    @abstractmethod
    def remove(self, remote: str) -> None: ...


@dataclass
class PlanStep:
    host: str
    step: str
    script: str


@dataclass
class Plan:
    """What a command would do on each host, in order; printed by --dry-run."""

    title: str
    steps: list[PlanStep] = field(default_factory=list)

    def add(self, host: str, step: str, script: str) -> None:
        self.steps.append(PlanStep(host, step, script))

    def render(self) -> str:
        out = [f"# {self.title}"]
        for s in self.steps:
            out.append(f"\n## [{s.host}] {s.step}")
            out.append(s.script.rstrip())
        return "\n".join(out) + "\n"

    def hosts(self) -> list[str]:
        return sorted({s.host for s in self.steps})


@dataclass
class TestbedInfo:
    """``testbed.json``: which provider and topology are up, and how to reach each host."""

    provider: str
    topology: str
    created: str = field(default_factory=utc_iso)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def save(self, ws: Workspace) -> None:
        atomic_write_json(ws.testbed_file, asdict(self))

    @classmethod
    def load(cls, ws: Workspace) -> "TestbedInfo":
        if not ws.testbed_file.is_file():
            raise L4stbError(
                f"no testbed is up in {ws.root} (testbed.json is missing). Run `l4stb up` first "
                "(`l4stb up --provider vagrant` for FreeBSD VMs), or pass the --workdir that has one."
            )
        data = read_json(ws.testbed_file, "testbed description")
        try:
            info = cls(**data)
        except TypeError:
            info = None
        if (info is None or not isinstance(info.provider, str) or not isinstance(info.topology, str)
                or not isinstance(info.created, str) or not isinstance(info.hosts, dict)
                or not all(isinstance(h, str) and isinstance(m, dict) for h, m in info.hosts.items())):
            raise L4stbError(f"{ws.testbed_file} does not describe a testbed (it needs provider, topology and hosts: "
                             "a mapping of host names to their details). Move it aside and run `l4stb up` again; "
                             "runs and host folders are kept.")
        return info


@dataclass
class RunContext:
    """Everything a provider needs to run repeats of one run."""

    run_id: str
    scenario: Scenario
    topology: Topology
    workspace: Workspace


@dataclass
class RepeatOutcome:
    repeat: int
    seed: int
    ok: bool
    started: str
    finished: str
    wall_s: float
    detail: str = ""
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class FlowProbe:
    """One flow of the self-check: who sent it, with which CC, to which server port, and the ECN codepoints of
    its packets as the receiver saw them (0 not-ECT, 1 ECT(1), 2 ECT(0), 3 CE -> packets)."""

    host: str
    cc: str
    port: int
    codepoints: dict[int, int] = field(default_factory=dict)


@dataclass
class CheckEvidence:
    """What ``l4stb check`` measured on a testbed, provider-independent; :mod:`l4stb.check` judges it."""

    provider: str
    router: str
    receiver: str
    module_loaded: bool | None
    """The AQM module is loaded on the router (None: the scenario's AQM needs no module)."""
    sched_show: str
    """``ipfw sched show`` on the router (vagrant), the simulated AQM's description (sim)."""
    kern_hz: dict[str, int | None]
    log_lines_in_file: int | None
    log_lines_counter: int | None
    """The module's log_lines counter over the flow (vagrant: the sysctl's delta; sim: decisions the AQM logged)."""
    flows: list[FlowProbe] = field(default_factory=list)
    flow_problems: list[str] = field(default_factory=list)
    where: dict[str, str] = field(default_factory=dict)
    """Where each fact came from (for the report): e.g. the log set's folder on the router."""


ProgressFn = Callable[[int, float], None]
"""Called with (repeat, fraction done in [0, 1]) while a repeat runs."""
DoneFn = Callable[[RepeatOutcome], None]


class Provider(ABC):
    name: str = ""

    def __init__(self, workspace: Workspace):
        self.ws = workspace

    @abstractmethod
    def plan_up(self, topology: Topology) -> Plan: ...

    @abstractmethod
    def up(self, topology: Topology) -> TestbedInfo: ...

    @abstractmethod
    def down(self, *, destroy: bool = False) -> None: ...

    @abstractmethod
    def status(self) -> dict[str, str]:
        """Host name -> state ("running", "stopped", "not created", ...)."""

    @abstractmethod
    def host(self, name: str) -> Host: ...

    @abstractmethod
    def host_facts(self, topology: Topology) -> dict[str, dict[str, Any]]:
        """uname, freebsd-version, kldstat, sysctls per host, for the manifest."""

    @abstractmethod
    def plan_run(self, ctx: RunContext, repeat: int) -> Plan: ...

    @abstractmethod
    def self_check(self, ctx: RunContext) -> CheckEvidence:
        """Run the check scenario's one short repeat (``ctx.scenario``) and gather the evidence ``l4stb check``
        judges: module and scheduler, kern.hz per host, log lines vs the module's counter, ECN at the receiver."""

    def check_scenario(self, scenario: Scenario) -> None:  # noqa: B027 - a no-op unless a provider refuses some
        """Refuse, before a run starts, a scenario this testbed cannot run (raise L4stbError with advice)."""

    def max_parallel_repeats(self) -> int | None:
        """How many repeats this testbed can run at once (None: as many as the caller asks)."""
        return None

    @abstractmethod
    def run_repeats(self, ctx: RunContext, repeats: list[int], on_progress: ProgressFn, on_done: DoneFn,
                    *, jobs: int = 1) -> None:
        """Run the given repeats (the sim in parallel up to ``jobs``), reporting each as it ends."""


def quote_argv(argv: list[str]) -> str:
    return shlex.join(str(a) for a in argv)
