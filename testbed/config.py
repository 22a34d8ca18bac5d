"""Typed, validated topology and scenario files, `--set KEY=VALUE` overrides, and user-facing error messages.

Every value in a scenario is checked here once: units (8Mbit, 10ms, 60s), allow-listed names (hosts
from the topology, congestion controls, AQMs) and ranges. Everything downstream -- the simulator, the
command templates for FreeBSD hosts, the manifest -- trusts these records and nothing else.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from l4stb import resources
from l4stb.errors import L4stbError
from l4stb.units import (
    format_duration,
    format_rate,
    format_size,
    parse_duration_us,
    parse_rate_bps,
    parse_size_bytes,
)

CC_NAMES = ("cubic", "newreno", "dctcp", "prague")
AQM_NAMES = ("dualpi2", "l4s-pie", "pie", "fifo", "policy")
SCALABLE_CCS = ("dctcp", "prague")
"""Scalable congestion controls send ECT(1) and are classified into the L queue."""

Rate = Annotated[int, BeforeValidator(parse_rate_bps), PlainSerializer(format_rate, return_type=str)]
Duration = Annotated[int, BeforeValidator(parse_duration_us), PlainSerializer(format_duration, return_type=str)]
Size = Annotated[int, BeforeValidator(parse_size_bytes), PlainSerializer(format_size, return_type=str)]
HostName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")]
FilePath = Annotated[str, Field(pattern=r"^/[A-Za-z0-9._/-]{1,200}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Topology
# ---------------------------------------------------------------------------------------------


class Interface(Strict):
    network: HostName
    address: str

    @field_validator("address")
    @classmethod
    def _cidr(cls, v: str) -> str:
        try:
            ipaddress.IPv4Interface(v)
        except ValueError:
            raise ValueError(f"'{v}' is not an IPv4 address with prefix length, like 10.0.1.11/24")
        if "/" not in v:
            raise ValueError(f"'{v}' needs a prefix length, like {v}/24")
        return v

    @property
    def ip(self) -> str:
        return str(ipaddress.IPv4Interface(self.address).ip)


class TopologyHost(Strict):
    role: Literal["client", "router", "server"]
    cpus: int = Field(1, ge=1, le=64)
    memory_mb: int = Field(1024, ge=256, le=262144)
    interfaces: list[Interface] = Field(min_length=1)


class Link(Strict):
    network: HostName
    endpoints: tuple[HostName, HostName]
    rate: Rate = parse_rate_bps("1Gbit")
    delay: Duration = 50
    bottleneck: bool = False


class Topology(Strict):
    name: HostName
    description: str = ""
    hosts: dict[HostName, TopologyHost]
    links: list[Link]

    @model_validator(mode="after")
    def _consistent(self) -> "Topology":
        routers = [h for h, spec in self.hosts.items() if spec.role == "router"]
        if len(routers) != 1:
            raise ValueError(f"a topology needs exactly one host with role router, found {routers or 'none'}")
        if [h for h, s in self.hosts.items() if s.role == "server"] == []:
            raise ValueError("a topology needs a host with role server")
        for link in self.links:
            for end in link.endpoints:
                if end not in self.hosts:
                    raise ValueError(f"link '{link.network}' names unknown host '{end}'{_did_you_mean(end, self.hosts)}")
        if sum(link.bottleneck for link in self.links) != 1:
            raise ValueError("exactly one link must be marked bottleneck: true")
        return self

    @property
    def router(self) -> str:
        return next(h for h, s in self.hosts.items() if s.role == "router")

    @property
    def server(self) -> str:
        return next(h for h, s in self.hosts.items() if s.role == "server")

    @property
    def clients(self) -> list[str]:
        return [h for h, s in self.hosts.items() if s.role == "client"]

    @property
    def bottleneck(self) -> Link:
        return next(link for link in self.links if link.bottleneck)

    def address(self, host: str, network: str | None = None) -> str:
        """The host's IP on ``network`` (or its first interface)."""
        for iface in self.hosts[host].interfaces:
            if network is None or iface.network == network:
                return iface.ip
        raise L4stbError(f"topology {self.name}: host {host} has no interface on network {network}")

    def router_address_on(self, network: str) -> str:
        return self.address(self.router, network)


# ---------------------------------------------------------------------------------------------
# Scenario
# ---------------------------------------------------------------------------------------------


class Bottleneck(Strict):
    """The router's dummynet pipe, and which packets the ipfw rule sends through it.

    ``match: egress`` (default) is ``ip from <client nets> to <server net> out``: client data crosses the
    pipe once, on its way out to the server, and ACKs bypass it (the clean dumbbell). ``match: any`` is the
    original testbed's ``ip from any to any``: ipfw runs on a forwarded packet's input *and* output pass,
    so every packet, ACKs included, crosses the pipe twice (twice the delay each way, every byte twice
    on the wire) -- the regime of ../shared/realdata.

    ``serve_on_ticks`` (simulator): serve the pipe as dummynet does, on the router's kernel ticks
    (``aqm.kern_hz``): a packet reaching an idle pipe goes at once, the rest in per-tick batches as the
    pipe's credit allows. Off by default: at hz=1000 and 8 Mbit/s a tick holds under one packet; at
    hz=100 the 10 ms batches shape the whole regime.
    """

    rate: Rate = Field(parse_rate_bps("8Mbit"))
    delay: Duration = 10_000
    limit_packets: int = Field(1000, ge=2, le=100_000)
    limit_bytes: Size = Field(1_500_000, ge=3000, le=10**9)
    mtu: int = Field(1500, ge=576, le=9000)
    match: Literal["egress", "any"] = "egress"
    serve_on_ticks: bool = False

    @property
    def pipe_passes(self) -> int:
        """How many times a packet crosses the pipe on its way through the router."""
        return 2 if self.match == "any" else 1

    @field_validator("rate")
    @classmethod
    def _rate_range(cls, v: int) -> int:
        if not 100_000 <= v <= 10 * 10**9:
            raise ValueError(f"{format_rate(v)} is out of range: use 100Kbit to 10Gbit")
        return v

    @field_validator("delay")
    @classmethod
    def _delay_range(cls, v: int) -> int:
        if not 0 <= v <= 2_000_000:
            raise ValueError(f"{format_duration(v)} is out of range: use 0ms to 2s")
        return v


class Aqm(Strict):
    """AQM at the bottleneck. Unset parameters take the chosen AQM's defaults (see ``resolved``)."""

    name: Literal["dualpi2", "l4s-pie", "pie", "fifo", "policy"] = "dualpi2"
    ecn: bool = True
    target: Optional[Duration] = None
    tupdate: Optional[Duration] = None
    alpha: Optional[float] = Field(None, gt=0, le=100)
    beta: Optional[float] = Field(None, gt=0, le=100)
    coupling_factor: float = Field(2.0, ge=1, le=16)
    step_threshold: Duration = 1000
    ramp_range: Duration = 0
    min_qlen_step: int = Field(1, ge=0, le=1000)
    classic_protection: float = Field(0.10, ge=0.0, le=1.0)
    scheduler: Literal["wrr", "tsfifo"] = "wrr"
    tshift: Duration = 50_000
    drop_on_overload: bool = True
    max_burst: Duration = 150_000
    max_ecnth: float = Field(0.1, ge=0, le=1)
    pie_coupling: Literal["as-coded", "intended"] = "as-coded"
    """l4s-pie only: "as-coded" reproduces the original scheduler, whose L queue reads its own (never set)
    Classic probability, so L sees only its own PIE; "intended" couples L to k x the Classic PIE's p."""
    kern_hz: int = Field(1000, ge=10, le=100_000)
    policy_every: int = Field(1, ge=1, le=100_000)
    policy: Optional[str] = Field(None, min_length=1, max_length=4096)
    """``policy`` only: a distilled policy, as a model folder written by `l4stb distill` or its blob file."""
    every: int = Field(1, ge=1, le=100_000)
    """``policy`` only: the policy decides every N-th packet (1 = every packet), the fallback AQM the rest."""
    fallback: Literal["dualpi2"] = "dualpi2"
    """``policy`` only: the AQM that runs the queues and decides the packets the policy does not."""

    @model_validator(mode="after")
    def _policy_needs_a_blob(self) -> "Aqm":
        if self.name == "policy" and self.policy is None:
            raise ValueError("aqm 'policy' needs aqm.policy: a model folder written by `l4stb distill` or its "
                             "policy.l4pb blob")
        if self.name != "policy" and self.policy is not None:
            raise ValueError(f"aqm.policy is only read by aqm 'policy'; set aqm.name to policy or drop aqm.policy "
                             f"(aqm is '{self.name}')")
        return self

    @property
    def engine(self) -> str:
        """The AQM that runs the queues: the fallback under ``policy`` (it decides what the policy does not)."""
        return self.fallback if self.name == "policy" else self.name

    def resolved(self) -> "Aqm":
        """Fill AQM-specific defaults: Linux sch_dualpi2 for dualpi2, the original FreeBSD values for l4s-pie/pie."""
        if self.engine == "dualpi2":
            defaults = {"target": 15_000, "tupdate": 16_000, "alpha": 0.16, "beta": 3.2}
        else:
            defaults = {"target": 15_000, "tupdate": 15_000, "alpha": 0.125, "beta": 1.25}
        updates = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        return self.model_copy(update=updates)


class FlowGroup(Strict):
    """One iperf3 client command: ``connections`` processes, each with ``-P parallel`` streams."""

    host: HostName
    cc: Literal["cubic", "newreno", "dctcp", "prague"]
    connections: int = Field(1, ge=1, le=64)
    parallel: int = Field(1, ge=1, le=128)
    start: Duration = 0

    @property
    def streams(self) -> int:
        return self.connections * self.parallel

    @property
    def scalable(self) -> bool:
        return self.cc in SCALABLE_CCS


class Logging(Strict):
    file: FilePath = "/var/log/dualpi2.log"
    rotate_size: Size = Field(10_000_000, ge=10_000, le=10**10)
    rotate_count: int = Field(100, ge=1, le=10_000)
    compress: Literal["bzip2", "gzip", "xz", "none"] = "bzip2"


class Iperf3(Strict):
    base_port: int = Field(5101, ge=1024, le=65000)
    interval: Duration = 1_000_000


class Scenario(Strict):
    name: HostName
    description: str = ""
    topology: HostName = "dumbbell-4"
    duration: Duration = 60_000_000
    repeats: int = Field(10, ge=1, le=1000)
    seed: int = Field(1, ge=0, le=2**31 - 1)
    ecn: bool = True
    bottleneck: Bottleneck = Bottleneck()
    aqm: Aqm = Aqm()
    flows: list[FlowGroup] = Field(min_length=1)
    logging: Logging = Logging()
    iperf3: Iperf3 = Iperf3()

    @field_validator("duration")
    @classmethod
    def _duration_range(cls, v: int) -> int:
        if not 1_000_000 <= v <= 86_400_000_000:
            raise ValueError(f"{format_duration(v)} is out of range: use 1s to 86400s (iperf3 -t takes whole seconds)")
        if v % 1_000_000:
            raise ValueError(f"{format_duration(v)} is not a whole number of seconds, which iperf3 -t needs")
        return v

    @property
    def total_streams(self) -> int:
        return sum(f.streams for f in self.flows)

    def repeat_seed(self, repeat: int) -> int:
        """Seed of repeat ``repeat`` (1-based): distinct, stable, derived from the scenario seed."""
        return (self.seed * 1_000_003 + repeat) % (2**31 - 1)

    def check_against(self, topology: Topology) -> None:
        """Hosts must exist in the testbed's topology (which may differ from the scenario's default one)."""
        for i, flow in enumerate(self.flows):
            if flow.host not in topology.hosts or topology.hosts[flow.host].role != "client":
                clients = topology.clients
                raise L4stbError(
                    f"scenario {self.name}: flows.{i}.host = '{flow.host}' is not a client of topology "
                    f"{topology.name}; allowed: {', '.join(clients)}{_did_you_mean(flow.host, clients)}"
                )


# ---------------------------------------------------------------------------------------------
# Loading, overrides and errors
# ---------------------------------------------------------------------------------------------


def load_topology(name_or_path: str) -> Topology:
    path = resources.find_topology(name_or_path)
    return _validate(Topology, _read_yaml(path), str(path))


def load_scenario(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Load a scenario by name or path and apply ``KEY=VALUE`` overrides through the same validation."""
    path = resources.find_scenario(name_or_path)
    data = _read_yaml(path)
    source = str(path)
    for item in overrides:
        key, value = _split_override(item)
        _set_path(data, key, value, Scenario, item)
    if overrides:
        source += " with --set " + " ".join(overrides)
    scenario = _validate(Scenario, data, source)
    topology = load_topology(scenario.topology)
    scenario.check_against(topology)
    return scenario


def scenario_with(scenario: Scenario, overrides: dict[str, Any]) -> Scenario:
    """A copy of ``scenario`` with dotted-key overrides applied and re-validated (used by sweeps)."""
    data = scenario.model_dump(mode="json")
    for key, value in overrides.items():
        _set_path(data, key, value, Scenario, f"{key}={value}")
    return _validate(Scenario, data, f"scenario {scenario.name} with {overrides}")


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise L4stbError(f"{path} is not valid YAML: {exc}. Fix the syntax and try again.") from None
    if not isinstance(data, dict):
        raise L4stbError(f"{path} must hold a YAML mapping (key: value lines), not {type(data).__name__}.")
    return data


def _split_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise L4stbError(f"--set '{item}' is not KEY=VALUE; write it like --set bottleneck.rate=20Mbit.")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not re.fullmatch(r"[a-z_]+(\.[a-z0-9_]+)*", key):
        raise L4stbError(f"--set '{item}': '{key}' is not a field path; write it like bottleneck.rate or aqm.target.")
    return key, yaml.safe_load(raw) if raw.strip() else raw


def _set_path(data: dict, key: str, value: Any, model: type[BaseModel], item: str) -> None:
    parts = key.split(".")
    node: Any = data
    current: Any = model
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise L4stbError(f"--set '{item}': '{part}' is not an index of {'.'.join(parts[:depth])} (0..{len(node) - 1}).")
            idx = int(part)
            if last:
                node[idx] = value
                return
            node = node[idx]
            continue
        fields = _model_fields(current)
        if fields is not None and part not in fields:
            where = ".".join(parts[:depth]) or "the scenario"
            raise L4stbError(
                f"--set '{item}': {where} has no field '{part}'; allowed: {', '.join(sorted(fields))}"
                f"{_did_you_mean(part, fields)}."
            )
        if last:
            node[part] = value
            return
        current = _field_model(current, part)
        node = node.setdefault(part, {} if current is not None else [])


def _model_fields(model: Any) -> dict | None:
    return model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else None


def _field_model(model: Any, name: str) -> Any:
    fields = _model_fields(model)
    if not fields or name not in fields:
        return None
    ann = fields[name].annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _validate(model: type[BaseModel], data: dict, source: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise L4stbError(explain(exc, source, model)) from None


def explain(exc: ValidationError, source: str, model: type[BaseModel]) -> str:
    """Turn pydantic's errors into one paragraph: file, field path, bad value, what is allowed."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        bad = err.get("input")
        kind = err["type"]
        if kind == "extra_forbidden":
            fields = _fields_at(model, err["loc"][:-1])
            name = str(err["loc"][-1])
            parts.append(f"unknown field '{loc}'; allowed here: {', '.join(sorted(fields))}{_did_you_mean(name, fields)}")
        elif kind == "literal_error":
            allowed = re.findall(r"'([^']*)'", err.get("ctx", {}).get("expected", ""))
            parts.append(f"{loc} = {bad!r} is not allowed; use one of {', '.join(allowed)}{_did_you_mean(str(bad), allowed)}")
        elif kind == "missing":
            parts.append(f"{loc} is required")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            shown = "" if isinstance(bad, (dict, list)) else f" = {bad!r}"
            parts.append(f"{loc}{shown}: {msg}")
    more = len(exc.errors()) - 5
    tail = f" (and {more} more)" if more > 0 else ""
    return f"{source}: " + "; ".join(parts) + tail + "."


def _fields_at(model: Any, loc: tuple) -> list[str]:
    current = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = _model_fields(current)
        if fields is None or part not in fields:
            return []
        ann = fields[part].annotation
        inner = getattr(ann, "__args__", None)
        if inner and isinstance(inner[0], type) and issubclass(inner[0], BaseModel):
            current = inner[0]
        else:
            current = ann
    fields = _model_fields(current)
    return list(fields) if fields else []


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
