"""Typed, validated topology and scenario files, `--set KEY=VALUE` overrides, and user-facing error messages.

Every value in a scenario is checked here once: units (8Mbit, 10ms, 60s), allow-listed names (hosts
from the topology, congestion controls, AQMs) and ranges. Everything downstream -- the simulator, the
command templates for FreeBSD hosts, the manifest -- trusts these records and nothing else.
"""

from __future__ import annotations

import difflib
import ipaddress
import posixpath
import random
import re
from dataclasses import dataclass
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
    ValidationInfo,
    field_validator,
    model_validator,
)

from l4stb import resources
from l4stb.aqm_catalogue import CODEL_INTERVAL_US, CODEL_TARGET_US, dualpi2_rtt_gains, resolved_defaults
from l4stb.errors import L4stbError
from l4stb.ratetrace import read_trace_ms, trace_schedule
from l4stb.units import (
    format_duration,
    format_rate,
    format_size,
    parse_duration_us,
    parse_rate_bps,
    parse_size_bytes,
)

CC_NAMES = ("cubic", "newreno", "dctcp", "prague", "udp")
"""``udp`` is no congestion control: an unresponsive UDP sender (iperf3 ``-u -b``), CBR or on-off."""
STACKS = ("freebsd", "linux")
AQM_NAMES = ("dualpi2", "l4s-pie", "pie", "fifo", "codel", "fq_codel", "policy")
SCALABLE_CCS = ("dctcp", "prague")
"""Scalable congestion controls send ECT(1) and are classified into the L queue."""

Rate = Annotated[int, BeforeValidator(parse_rate_bps), PlainSerializer(format_rate, return_type=str)]
Duration = Annotated[int, BeforeValidator(parse_duration_us), PlainSerializer(format_duration, return_type=str)]
Size = Annotated[int, BeforeValidator(parse_size_bytes), PlainSerializer(format_size, return_type=str)]
HostName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")]
FilePath = Annotated[str, Field(pattern=r"^/[A-Za-z0-9._/-]{1,200}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML's ``true`` is not a number: ``seed: true`` or ``connections=true`` is a mistake, not 1."""
        if isinstance(value, bool) and cls.model_fields[info.field_name].annotation in (int, float):
            raise ValueError("is true/false, but this field takes a number")
        return value


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
            raise ValueError(f"'{v}' is not an IPv4 address with prefix length, like 10.1.1.11/24") from None
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


MANAGEMENT_NETWORKS = {
    "VirtualBox NAT": "10.0.2.0/24",
    "vagrant-libvirt management": "192.168.121.0/24",
}
"""The subnets the vagrant provider's VMs already sit on through their first NIC, which carries SSH.

VirtualBox's NAT adapter 1 is 10.0.2.0/24 (guest 10.0.2.15, gateway 10.0.2.2; `VBoxManage modifyvm
--natnet1` moves it), as the issue states and third-party notes show (the VirtualBox manual was not at
hand); vagrant-libvirt's management network defaults to 192.168.121.0/24 (lib/vagrant-libvirt/config.rb:
``@management_network_address = '192.168.121.0/24'``). A topology subnet that
overlaps one of them is also a connected prefix on the management NIC, so the kernel may send testbed
traffic (or SSH) the wrong way.
"""


def check_management_overlap(topology: "Topology") -> None:
    """Refuse topology subnets that overlap a VM provider's management network (vagrant provider only)."""
    nets = {str(ipaddress.IPv4Interface(i.address).network) for h in topology.hosts.values() for i in h.interfaces}
    taken = [ipaddress.IPv4Network(n) for n in (*nets, *MANAGEMENT_NETWORKS.values())]
    for net_text in sorted(nets):
        net = ipaddress.IPv4Network(net_text)
        for name, mgmt_text in MANAGEMENT_NETWORKS.items():
            mgmt = ipaddress.IPv4Network(mgmt_text)
            if net.overlaps(mgmt):
                raise L4stbError(
                    f"topology {topology.name}: subnet {net} overlaps the {name} network {mgmt}, which every VM "
                    "already has on its first NIC for SSH, so testbed traffic would leave the wrong way (or SSH "
                    f"would break). Move that network to a free subnet such as {_free_subnet(net, taken)} in the "
                    "topology file (every interface on it, and its hosts' addresses)."
                )


def _free_subnet(net: ipaddress.IPv4Network, taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first subnet of ``net``'s size in 10.1.0.0/16 that overlaps nothing in ``taken``."""
    for candidate in ipaddress.IPv4Network("10.1.0.0/16").subnets(new_prefix=max(net.prefixlen, 16)):
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise L4stbError(f"no free subnet of size /{net.prefixlen} left in 10.1.0.0/16")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# Scenario
# ---------------------------------------------------------------------------------------------


TracePath = Annotated[str, Field(pattern=r"^[A-Za-z0-9._/~-]{1,300}$")]


def _check_rate(v: int) -> int:
    if not 100_000 <= v <= 10 * 10**9:
        raise ValueError(f"{format_rate(v)} is out of range: use 100Kbit to 10Gbit")
    return v


class RateStep(Strict):
    """One step of ``bottleneck.rate_schedule``: from ``at`` (after the repeat's start) the pipe runs at ``rate``."""

    at: Duration
    rate: Rate

    @field_validator("rate")
    @classmethod
    def _rate_range(cls, v: int) -> int:
        return _check_rate(v)


HTB_DEFAULT_BURST_BYTES = 1600
"""iproute2 tc/q_htb.c: ``buffer = rate / get_hz() + mtu`` with mtu 1600; get_hz() reads 10^9 from /proc/net/psched
on a kernel with high-resolution timers, so the rate term is 0 below 8 Gbit/s."""


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

    ``shaper``: what limits the rate. ``dummynet`` (default; the FreeBSD testbed): a pipe that serialises each
    packet's IP length at the rate. ``htb`` (the real-Linux testbed: ``tc ... htb rate R`` with the AQM as its
    leaf, over veth): a token bucket of ``burst`` bytes that charges each packet its length plus the 14-byte
    Ethernet header and lets it go at once while tokens last (net/sched/sch_htb.c), so after an idle moment two
    back-to-back full packets both leave with no queueing; ``burst`` defaults to tc's own default, ``rate /
    get_hz() + mtu`` = 1600 bytes on a kernel with high-resolution timers (iproute2 tc/q_htb.c, get_hz() =
    10^9 from /proc/net/psched).
    """

    rate: Rate = Field(parse_rate_bps("8Mbit"))
    delay: Duration = 10_000
    limit_packets: int = Field(1000, ge=2, le=100_000)
    limit_bytes: Size = Field(1_500_000, ge=3000, le=10**9)
    mtu: int = Field(1500, ge=576, le=9000)
    match: Literal["egress", "any"] = "egress"
    serve_on_ticks: bool = False
    shaper: Literal["dummynet", "htb"] = "dummynet"
    burst: Optional[Size] = Field(None, ge=1, le=10**9)
    """htb only: the class's burst in bytes (default 1600, tc's default)."""
    rate_schedule: list["RateStep"] = Field(default_factory=list, max_length=100_000)
    """Time-varying rate: the pipe's rate changes to ``rate`` at ``at`` after the repeat starts (sorted,
    distinct times); ``rate`` above is the rate until the first step."""
    rate_trace: Optional[TracePath] = None
    """A mahimahi trace (one line per 1500-byte delivery opportunity, in ms; it loops), turned into a
    ``rate_schedule`` of one rate per ``trace_bin`` (see :mod:`l4stb.ratetrace`)."""
    trace_bin: Duration = 100_000

    @model_validator(mode="after")
    def _shaper_options_agree(self) -> "Bottleneck":
        if self.shaper == "dummynet" and self.burst is not None:
            raise ValueError("bottleneck.burst is htb's token bucket size; set bottleneck.shaper: htb or unset burst")
        if self.shaper == "htb" and (self.serve_on_ticks or self.match == "any"):
            raise ValueError("bottleneck.shaper: htb models Linux's htb on a veth (continuous, egress only); unset "
                             "serve_on_ticks and match: any (they describe dummynet), or use shaper: dummynet")
        return self

    @property
    def burst_bytes(self) -> int:
        """htb's burst: the scenario's, or tc's default (1600 bytes with high-resolution timers)."""
        return self.burst if self.burst is not None else HTB_DEFAULT_BURST_BYTES

    @model_validator(mode="after")
    def _one_schedule(self) -> "Bottleneck":
        if self.rate_schedule and self.rate_trace:
            raise ValueError("set bottleneck.rate_schedule or bottleneck.rate_trace, not both")
        times = [s.at for s in self.rate_schedule]
        if times != sorted(set(times)):
            raise ValueError("bottleneck.rate_schedule: the steps' 'at' times must increase")
        if not 1_000 <= self.trace_bin <= 60_000_000:
            raise ValueError(f"bottleneck.trace_bin = {format_duration(self.trace_bin)}: use 1ms to 60s")
        return self

    def schedule(self, horizon_us: int) -> list[tuple[int, int]]:
        """(at_us, rate_bps) steps before ``horizon_us``: the schedule, or the trace's bins, or none."""
        if self.rate_trace:
            return trace_schedule(self.rate_trace, self.trace_bin, horizon_us)
        return [(s.at, s.rate) for s in self.rate_schedule if s.at < horizon_us]

    @property
    def pipe_passes(self) -> int:
        """How many times a packet crosses the pipe on its way through the router."""
        return 2 if self.match == "any" else 1

    @field_validator("rate")
    @classmethod
    def _rate_range(cls, v: int) -> int:
        return _check_rate(v)

    @field_validator("delay")
    @classmethod
    def _delay_range(cls, v: int) -> int:
        if not 0 <= v <= 2_000_000:
            raise ValueError(f"{format_duration(v)} is out of range: use 0ms to 2s")
        return v


class Aqm(Strict):
    """AQM at the bottleneck. Unset parameters take the chosen AQM's defaults (see ``resolved``)."""

    name: Literal["dualpi2", "l4s-pie", "pie", "fifo", "codel", "fq_codel", "policy"] = "dualpi2"
    ecn: bool = True
    target: Optional[Duration] = None
    tupdate: Optional[Duration] = None
    alpha: Optional[float] = Field(None, gt=0, le=100)
    beta: Optional[float] = Field(None, gt=0, le=100)
    max_rtt: Optional[Duration] = None
    """dualpi2: derive target, tupdate, alpha and beta from RTTs as ``tc qdisc ... dualpi2 max_rtt`` does."""
    typical_rtt: Optional[Duration] = None
    """dualpi2: the typical RTT for that derivation (default max_rtt / 6; max_rtt defaults to 6 x this)."""
    coupling_factor: float = Field(2.0, ge=1, le=16)
    step_semantics: Literal["linux", "rfc9332-thlen"] = "linux"
    """dualpi2's native L4S step: "linux" (sch_dualpi2: a packet may be step-marked when the L queue held at
    least ``min_qlen_step`` packets as it arrived; 0 = always) or "rfc9332-thlen" (RFC 9332 A.1: only when more
    than ``th_len`` packets remain in the L queue as it leaves)."""
    l4s_classifier: Literal["l4s_ect", "any_ect"] = "l4s_ect"
    """dualpi2's L-queue classifier, tc's keyword (sch_dualpi2.c ``ecn_mask``): ``l4s_ect`` (Linux's default and RFC
    9332: ECT(1) and CE go to L) or ``any_ect`` (ECT(0) too, so Linux's DCTCP, which sends ECT(0), uses L). The
    vagrant testbed's module classifies as ``l4s_ect`` only."""
    step_threshold: Duration = 1000
    """The step (or the RFC ramp's minTh) on the L packet's sojourn time; unused when ``step_packets`` is set."""
    step_packets: Optional[int] = Field(None, ge=0, le=1_000_000)
    """A step on the L queue length in packets instead (Linux ``step_thresh 10packets``)."""
    ramp_range: Duration = 0
    min_qlen_step: Optional[int] = Field(None, ge=0, le=1_000_000)
    """Only with step_semantics "linux": Linux's min_qlen_step (default 0)."""
    th_len: Optional[int] = Field(None, ge=0, le=1_000_000)
    """Only with step_semantics "rfc9332-thlen": RFC 9332's Th_len (default 1)."""
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
    policy: Optional[str] = Field(None, min_length=1, max_length=4096)
    """``policy`` only: a distilled policy, as a model folder written by `l4stb distill` or its blob file."""
    every: int = Field(1, ge=1, le=100_000)
    """``policy`` only: the policy decides every N-th packet (1 = every packet), the fallback AQM the rest."""
    fallback: Literal["dualpi2"] = "dualpi2"
    """``policy`` only: the AQM that runs the queues and decides the packets the policy does not."""
    interval: Optional[Duration] = None
    """codel, fq_codel: CoDel's interval (default 100 ms); ``target`` is its sojourn target (default 5 ms)."""
    quantum: Optional[int] = Field(None, ge=1, le=65_536)
    """fq_codel: bytes a flow queue may send per round (default 1514)."""
    flows: Optional[int] = Field(None, ge=1, le=65_536)
    """fq_codel: the number of flow queues flows are hashed into (default 1024)."""
    ce_threshold: Optional[Duration] = None
    """codel, fq_codel with ``codel_semantics: linux``: CE-mark every ECT packet whose sojourn exceeds this (Linux's
    ``ce_threshold``; FreeBSD has none). Unset: off."""
    codel_semantics: Literal["freebsd", "linux"] = "freebsd"
    """codel, fq_codel: whose CoDel the simulator runs where the two differ (see :mod:`l4stb.sim.aqm_codel`):
    ``freebsd`` (dummynet, the vagrant testbed's) or ``linux`` (sch_codel/sch_fq_codel, the qemu provider's)."""

    @model_validator(mode="before")
    @classmethod
    def _policy_every_is_every(cls, data: Any) -> Any:
        """``policy_every`` was a field that nothing read (``every`` is the policy's share). Manifests written while
        it existed carry its default, 1, which said nothing: that is dropped; any other value is refused."""
        if isinstance(data, dict) and "policy_every" in data:
            value = data["policy_every"]
            if value != 1 or isinstance(value, bool):
                raise ValueError(f"aqm.policy_every ({value!r}) is not a setting: the share of packets the policy "
                                 f"AQM decides is aqm.every (every N-th packet, 1 = all); rename the key to every")
            data = {k: v for k, v in data.items() if k != "policy_every"}
        return data

    @model_validator(mode="after")
    def _policy_needs_a_blob(self) -> "Aqm":
        if self.name == "policy" and self.policy is None:
            raise ValueError("aqm 'policy' needs aqm.policy: a model folder written by `l4stb distill` or its "
                             "policy.l4pb blob")
        if self.name != "policy" and self.policy is not None:
            raise ValueError(f"aqm.policy is only read by aqm 'policy'; set aqm.name to policy or drop aqm.policy "
                             f"(aqm is '{self.name}')")
        return self

    @model_validator(mode="after")
    def _codel_options_agree(self) -> "Aqm":
        """CoDel's parameters only on the CoDel family, and the PI/PIE family's never there: a setting that the
        chosen AQM would ignore is refused, naming the field."""
        codel = self.name in ("codel", "fq_codel")
        if not codel:
            given = [k for k in ("interval", "quantum", "flows", "ce_threshold") if getattr(self, k) is not None]
            if self.codel_semantics != "freebsd":  # not model_fields_set: a manifest sets every field
                given.append("codel_semantics")
            if given:
                raise ValueError(f"aqm.{', aqm.'.join(given)} {'is' if len(given) == 1 else 'are'} CoDel's and only "
                                 f"read by aqm codel or fq_codel (aqm is '{self.name}'); drop "
                                 f"{'it' if len(given) == 1 else 'them'} or set aqm.name to codel or fq_codel")
            return self
        pi = [k for k in ("tupdate", "alpha", "beta", "max_rtt", "typical_rtt") if getattr(self, k) is not None]
        if pi:
            raise ValueError(f"aqm.{', aqm.'.join(pi)}: {self.name} has no PI controller; CoDel takes target and "
                             "interval (and fq_codel quantum and flows); drop them")
        if self.name == "codel" and (self.quantum is not None or self.flows is not None):
            raise ValueError("aqm.quantum and aqm.flows are fq_codel's flow-queue settings; codel has one queue "
                             "(set aqm.name to fq_codel, or drop them)")
        if self.ce_threshold is not None and self.codel_semantics != "linux":
            raise ValueError("aqm.ce_threshold is Linux's (sch_codel, sch_fq_codel); FreeBSD's dummynet CoDel has "
                             "no such parameter: set aqm.codel_semantics to linux, or drop ce_threshold")
        if self.target is not None and not 1 <= self.target <= 5_000_000:
            raise ValueError(f"aqm.target = {format_duration(self.target)}: CoDel's target must be 1us to 5s "
                             "(dummynet's bounds, dn_aqm_codel.c)")
        if self.interval is not None and not 1 <= self.interval <= 5_000_000:
            raise ValueError(f"aqm.interval = {format_duration(self.interval)}: use 1us to 5s (dummynet's bounds)")
        target = self.target if self.target is not None else CODEL_TARGET_US
        interval = self.interval if self.interval is not None else CODEL_INTERVAL_US
        if target >= interval:
            raise ValueError(f"aqm.target ({format_duration(target)}) must be shorter than aqm.interval "
                             f"({format_duration(interval)}): CoDel waits an interval above target before it "
                             "drops (RFC 8289 recommends target = 5-10% of interval)")
        if self.ce_threshold is not None and not 0 <= self.ce_threshold <= 5_000_000:
            raise ValueError(f"aqm.ce_threshold = {format_duration(self.ce_threshold)}: use 0us to 5s")
        return self

    @property
    def engine(self) -> str:
        """The AQM that runs the queues: the fallback under ``policy`` (it decides what the policy does not)."""
        return self.fallback if self.name == "policy" else self.name

    @model_validator(mode="after")
    def _dualpi2_options_agree(self) -> "Aqm":
        """Refuse settings that contradict each other instead of silently ignoring one of them."""
        if self.step_semantics == "linux" and self.th_len is not None:
            raise ValueError("th_len is RFC 9332's threshold and only applies with step_semantics: rfc9332-thlen; "
                             "for the linux step use min_qlen_step (packets in the L queue at arrival)")
        if self.step_semantics == "rfc9332-thlen" and self.min_qlen_step is not None:
            raise ValueError("min_qlen_step is Linux's threshold and only applies with step_semantics: linux; "
                             "for rfc9332-thlen use th_len (packets left in the L queue at departure)")
        if self.step_packets is not None and self.ramp_range:
            raise ValueError("ramp_range is a ramp on sojourn time and cannot be combined with step_packets; "
                             "unset one of them")
        if self.max_rtt is not None or self.typical_rtt is not None:
            given = [k for k in ("target", "tupdate", "alpha", "beta") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"max_rtt/typical_rtt derive target, tupdate, alpha and beta; unset "
                                 f"{', '.join(given)} (or unset max_rtt and typical_rtt to give them yourself)")
            if self.max_rtt is not None and self.typical_rtt is not None and self.typical_rtt > self.max_rtt:
                raise ValueError(f"typical_rtt ({format_duration(self.typical_rtt)}) must be <= max_rtt "
                                 f"({format_duration(self.max_rtt)})")
            if self.max_rtt == 0 or self.typical_rtt == 0:
                raise ValueError("max_rtt and typical_rtt must be > 0")
            dualpi2_rtt_gains(self.max_rtt, self.typical_rtt)  # out-of-range gains are refused here
        return self

    def resolved(self) -> "Aqm":
        """This AQM with its unset parameters filled from the AQM catalogue
        (:func:`l4stb.aqm_catalogue.resolved_defaults`: Linux sch_dualpi2's for dualpi2 and policy, FreeBSD's PIE
        values for l4s-pie, pie and fifo, RFC 8289's CoDel values for codel and fq_codel)."""
        return self.model_copy(update=resolved_defaults(self))


class FlowGroup(Strict):
    """One iperf3 client command: ``connections`` processes, each with ``-P parallel`` streams.

    Section-4 options (an AQM study's traffic):

    * ``extra_delay``: one-way delay added to this group's packets on their way to the router (a longer
      base RTT for these flows only); adds to the host's ``hosts.<name>.extra_delay``.
    * ``cc: udp`` with ``rate``: an unresponsive UDP sender (iperf3 ``-u -b rate``), constant bit rate,
      or on-off with ``on_time``/``off_time`` periods; ``ecn`` sets its ECN field (``ect1`` lands in the L queue).
    * ``size`` with ``mean_gap``: short flows. Each of the ``connections`` sends ``size`` bytes (iperf3
      ``-n``) and ends; their starts are Poisson arrivals, ``mean_gap`` apart on average, from ``start``.
    * ``server_cc``: run iperf3 without ``-C``, as scripts that set ``net.inet.tcp.cc.algorithm`` on the client
      do: the client's default is then this group's ``cc`` and the server's accepted socket runs the server's
      default, ``server_cc``. Unset (the default), iperf3 ``-C cc`` puts the server's socket on the flow's CC too
      (esnet/iperf ``iperf_tcp.c``). It matters for FreeBSD DCTCP: only a cc_dctcp receiver echoes CE segment by
      segment (``dctcp_ecnpkt_handler``); any other holds ECE until the sender's CWR (:mod:`l4stb.sim.tcp`).
    """

    host: HostName
    cc: Literal["cubic", "newreno", "dctcp", "prague", "udp"]
    connections: int = Field(1, ge=1, le=1000)
    parallel: int = Field(1, ge=1, le=128)
    start: Duration = 0
    extra_delay: Duration = 0
    rate: Optional[Rate] = None
    on_time: Duration = 0
    off_time: Duration = 0
    ecn: Literal["not-ect", "ect0", "ect1"] = "not-ect"
    size: Optional[Size] = None
    mean_gap: Optional[Duration] = None
    server_cc: Optional[Literal["cubic", "newreno", "dctcp"]] = None

    @model_validator(mode="after")
    def _kind_fields(self) -> "FlowGroup":
        if not 0 <= self.extra_delay <= 2_000_000:
            raise ValueError(f"extra_delay = {format_duration(self.extra_delay)}: use 0ms to 2s")
        if self.cc == "udp":
            if self.rate is None:
                raise ValueError("cc: udp needs a rate (iperf3 -b), like rate: 2Mbit")
            _check_rate(self.rate)
            if bool(self.on_time) != bool(self.off_time):
                raise ValueError("an on-off UDP flow needs both on_time and off_time (like on_time: 1s, "
                                 "off_time: 1s); leave both out for constant bit rate")
            if self.size is not None or self.parallel != 1:
                raise ValueError("cc: udp takes rate/on_time/off_time/ecn; size and parallel are for TCP flows")
        else:
            if self.rate is not None or self.on_time or self.off_time or self.ecn != "not-ect":
                raise ValueError(f"rate, on_time, off_time and ecn are for cc: udp flows; cc: {self.cc} sets its own ECN "
                                 "and rate")
        if self.server_cc is not None and self.cc in ("udp", "prague"):
            raise ValueError(f"server_cc is for iperf3 TCP flows (cubic, newreno, dctcp), not cc: {self.cc}")
        if (self.size is None) != (self.mean_gap is None):
            raise ValueError("short flows need both size (bytes per flow) and mean_gap (mean time between "
                             "Poisson arrivals)")
        if self.size is not None:
            if not 1448 <= self.size <= 10**10:
                raise ValueError(f"size = {format_size(self.size)}: use 1448B to 10GB")
            if self.cc == "prague":
                raise ValueError("short flows (size) are iperf3 TCP flows; udp_prague has no byte count: "
                                 "use cubic, newreno or dctcp")
            if not 1_000 <= self.mean_gap <= 3_600_000_000:
                raise ValueError(f"mean_gap = {format_duration(self.mean_gap)}: use 1ms to 3600s")
        return self

    @property
    def short(self) -> bool:
        """Short flows: a byte count per connection and Poisson arrivals."""
        return self.size is not None

    def arrivals_us(self, seed: int, group: int) -> list[int]:
        """Each connection's start (us after the repeat's start): ``start`` for long flows; for short flows
        ``start`` plus a Poisson process (exponential gaps of mean ``mean_gap``) drawn from ``seed``, so the
        simulator and the vagrant plan start the same flows at the same times."""
        if not self.short:
            return [self.start] * self.connections
        rng = random.Random(seed * 7919 + group)
        t = float(self.start)
        out = []
        for _ in range(self.connections):
            t += rng.expovariate(1.0 / self.mean_gap)
            out.append(int(t))
        return out

    @property
    def streams(self) -> int:
        return self.connections * self.parallel

    @property
    def scalable(self) -> bool:
        return self.cc in SCALABLE_CCS or (self.cc == "udp" and self.ecn == "ect1")


def default_prague_transport(stack: str) -> str:
    """How ``cc: prague`` runs on a host of ``stack`` unless it says otherwise: udp_prague on FreeBSD (which has no
    TCP Prague), Linux's TCP Prague on Linux."""
    return "udp" if stack == "freebsd" else "tcp"


class HostSettings(Strict):
    """Per-client settings (``hosts: {client2: {stack: linux}}``).

    ``stack``: whose TCP the host runs. ``freebsd`` (the real testbed's FreeBSD 14.1) or ``linux`` (the
    senders most published L4S results come from); the simulator models each from its source (see
    :mod:`l4stb.sim.tcp`); the vagrant testbed is all FreeBSD. ``prague_transport``: how ``cc: prague`` runs
    on this host: ``udp`` (udp_prague, the FreeBSD default: FreeBSD has no TCP Prague) or ``tcp`` (Linux's
    TCP Prague, the linux default). ``extra_delay``: one-way delay added to every packet the host sends
    towards the router (a longer base RTT for all its flows).
    """

    stack: Literal["freebsd", "linux"] = "freebsd"
    prague_transport: Optional[Literal["tcp", "udp"]] = None
    extra_delay: Duration = 0

    @field_validator("extra_delay")
    @classmethod
    def _delay_range(cls, v: int) -> int:
        if not 0 <= v <= 2_000_000:
            raise ValueError(f"{format_duration(v)} is out of range: use 0ms to 2s")
        return v

    @property
    def prague(self) -> str:
        """The transport ``cc: prague`` uses on this host."""
        return self.prague_transport or default_prague_transport(self.stack)


LOG_DIR = "/var/log/"
"""The only folder a router log may be written to: syslogd and newsyslog own it on FreeBSD (hier(7))."""


class Logging(Strict):
    file: FilePath = "/var/log/dualpi2.log"
    rotate_size: Size = Field(10_000_000, ge=10_000, le=10**10)
    rotate_count: int = Field(100, ge=1, le=10_000)
    compress: Literal["bzip2", "gzip", "xz", "none"] = "bzip2"
    sample_every: int = Field(1, ge=1, le=1_000_000)
    """Log only every N-th AQM decision of a repeat (its 1st, N+1-th, 2N+1-th, ...; 1 = every decision): the
    router's kernel message buffer cannot keep per-packet lines at rates like 1 Gbit/s (l4stb.lograte). The
    module (sysctl ``log_every``) and the simulator's syslog emulation pick the same decisions; the analysis
    scales counts by N and the report says the log was sampled."""

    @field_validator("file")
    @classmethod
    def _confined_to_var_log(cls, v: str) -> str:
        """The vagrant plan truncates and rotates this file as root: it must be a file name inside /var/log/."""
        parts = v.split("/")
        if ".." in parts or "." in parts or v.endswith("/") or "//" in v:
            raise ValueError(f"must be a plain path without '.', '..', '//' or a trailing '/', like {LOG_DIR}dualpi2.log")
        if not v.startswith(LOG_DIR) or len(v) == len(LOG_DIR) or posixpath.normpath(v) != v:
            raise ValueError(f"must name a file inside {LOG_DIR}, like {LOG_DIR}dualpi2.log")
        return v


class Iperf3(Strict):
    base_port: int = Field(5101, ge=1024, le=65000)
    interval: Duration = 1_000_000


@dataclass(frozen=True)
class StreamSpec:
    """One iperf3 stream of a scenario (:meth:`Scenario.streams`)."""

    fid: int
    """The flow id the simulator logs: the stream's index in the scenario."""
    group: int
    connection: int
    """1-based within the group: one iperf3 process (one server port) per connection."""
    stream: int
    """0-based within the connection (iperf3 ``-P``); a connection's streams share its port."""
    host: str
    cc: str
    port: int


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
    hosts: dict[HostName, HostSettings] = Field(default_factory=dict)
    logging: Logging = Logging()
    iperf3: Iperf3 = Iperf3()
    siftr: bool = False
    """vagrant: run FreeBSD's siftr(4) on every client while its iperf3 flows run; each client leaves
    ``<host>.siftr.log`` (one line per TCP packet: cwnd, ssthresh, srtt, flight) in its repeat folder, fetched
    with the rest and read by :mod:`l4stb.analysis.siftr`. The simulator writes no SIFTR log (its senders are
    traced directly, :mod:`l4stb.sim.trace`)."""

    start_jitter: Duration = 0
    """Each connection starts up to this much later than its group's start (or Poisson arrival), drawn uniformly
    from the repeat's seed: real clients start milliseconds apart, and flows started in lockstep make repeats with
    different seeds nearly identical (false precision; e.g. ``start_jitter: 50ms``). 0 (the default, so that
    published results stay reproducible) starts them together, up to the simulator's 1 ms stream jitter. The
    vagrant plan sleeps the same time before each client."""

    @field_validator("start_jitter")
    @classmethod
    def _jitter_range(cls, v: int) -> int:
        if not 0 <= v <= 10_000_000:
            raise ValueError(f"{format_duration(v)} is out of range: use 0ms to 10s")
        return v

    def connection_starts_us(self, seed: int, group: int) -> list[int]:
        """Each connection's start of flow group ``group`` (us after the repeat's start): its arrival
        (:meth:`FlowGroup.arrivals_us`) plus its seeded share of ``start_jitter``. The simulator, the vagrant plan
        and the analysis all take starts from here."""
        arrivals = self.flows[group].arrivals_us(seed, group)
        if not self.start_jitter:
            return arrivals
        rng = random.Random(seed * 7919 + 104_729 + group)
        return [a + int(rng.random() * self.start_jitter) for a in arrivals]

    @field_validator("duration")
    @classmethod
    def _duration_range(cls, v: int) -> int:
        if not 1_000_000 <= v <= 86_400_000_000:
            raise ValueError(f"{format_duration(v)} is out of range: use 1s to 86400s (iperf3 -t takes whole seconds)")
        if v % 1_000_000:
            raise ValueError(f"{format_duration(v)} is not a whole number of seconds, which iperf3 -t needs")
        return v

    @model_validator(mode="after")
    def _schedule_within_the_repeat(self) -> "Scenario":
        """A rate_schedule step at or after the repeat's end would never happen: refuse it rather than drop it."""
        end = self.duration + max((g.start for g in self.flows), default=0)
        for i, step in enumerate(self.bottleneck.rate_schedule):
            if step.at >= end:
                raise ValueError(f"bottleneck.rate_schedule.{i}.at = {format_duration(step.at)} is at or after the end "
                                 f"of the repeat ({format_duration(end)}: duration plus the latest flow start), so the "
                                 "rate would never change; drop the step or lengthen duration")
        return self

    @model_validator(mode="after")
    def _one_default_cc_per_host(self) -> "Scenario":
        """Flows without iperf3 -C (``server_cc``) run their host's default CC and the server's: one of each."""
        server = {g.server_cc for g in self.flows if g.server_cc}
        if len(server) > 1:
            raise ValueError(f"flows name different server_cc ({', '.join(sorted(server))}); the server has one "
                             "default congestion control: give them all the same")
        for host in {g.host for g in self.flows}:
            own = {g.cc for g in self.flows if g.host == host and g.server_cc}
            if len(own) > 1:
                raise ValueError(f"flows of {host} with server_cc run {', '.join(sorted(own))}, but without iperf3 -C "
                                 f"a flow runs its host's one default congestion control: give {host} one of them")
        return self

    def default_cc(self, host: str) -> str:
        """``net.inet.tcp.cc.algorithm`` of ``host`` (a client, or the server as ``""``): the CC of its flows that run
        without iperf3 -C, else its first TCP flow's; the server's is the flows' ``server_cc``; else cubic."""
        groups = [g for g in self.flows if g.cc not in ("prague", "udp")]
        if not host:
            return next((g.server_cc for g in groups if g.server_cc), "cubic")
        return next((g.cc for g in groups if g.host == host and g.server_cc),
                    next((g.cc for g in groups if g.host == host), "cubic"))

    def host(self, name: str) -> HostSettings:
        """The settings of client ``name`` (defaults when the scenario names none)."""
        return self.hosts.get(name, _DEFAULT_HOST)

    def flow_delay_us(self, group: int) -> int:
        """Extra one-way delay of flow group ``group``: its host's plus its own."""
        g = self.flows[group]
        return self.host(g.host).extra_delay + g.extra_delay

    @property
    def total_streams(self) -> int:
        return sum(f.streams for f in self.flows)

    def connection_port(self, group: int, connection: int) -> int:
        """The server port of connection ``connection`` (1-based) of flow group ``group``: ``iperf3.base_port`` plus
        the connection's number in the scenario, counted over the groups in order. The one port rule that the
        vagrant plan, the qemu guest, the simulator and the flow labels (a FreeBSD module's flow id holds the
        destination port) all follow."""
        return self.iperf3.base_port + sum(f.connections for f in self.flows[:group]) + connection - 1

    def streams(self) -> list[StreamSpec]:
        """Every iperf3 stream of the scenario, in flow-id order, with its connection's port."""
        out = []
        for gi, g in enumerate(self.flows):
            for c in range(1, g.connections + 1):
                port = self.connection_port(gi, c)
                for s in range(g.parallel):
                    out.append(StreamSpec(len(out), gi, c, s, g.host, g.cc, port))
        return out

    def repeat_seed(self, repeat: int) -> int:
        """Seed of repeat ``repeat`` (1-based): distinct, stable, derived from the scenario seed."""
        return (self.seed * 1_000_003 + repeat) % (2**31 - 1)

    def check_against(self, topology: Topology) -> None:
        """Hosts must exist in the testbed's topology (which may differ from the scenario's default one), and a
        rate trace must be readable here, before anything runs."""
        if self.bottleneck.rate_trace:
            read_trace_ms(self.bottleneck.rate_trace)
        for i, flow in enumerate(self.flows):
            if flow.host not in topology.hosts or topology.hosts[flow.host].role != "client":
                clients = topology.clients
                raise L4stbError(
                    f"scenario {self.name}: flows.{i}.host = '{flow.host}' is not a client of topology "
                    f"{topology.name}; allowed: {', '.join(clients)}{_did_you_mean(flow.host, clients)}"
                )
        for name in self.hosts:
            if name not in topology.hosts or topology.hosts[name].role != "client":
                clients = topology.clients
                raise L4stbError(
                    f"scenario {self.name}: hosts.{name} is not a client of topology {topology.name}; sender "
                    f"settings apply to clients: {', '.join(clients)}{_did_you_mean(name, clients)}"
                )


_DEFAULT_HOST = HostSettings()
Bottleneck.model_rebuild()


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class reports it
                duplicate = False
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice (line {key_node.start_mark.line + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


MAX_YAML_BYTES = 1 << 20
"""A scenario or topology is a few hundred bytes; anything over 1 MiB is not one."""


def parse_yaml(text: str, source: str) -> Any:
    """YAML text -> Python values, with every way it can be wrong as a user error naming ``source``."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise L4stbError(f"{source} is not valid YAML: {exc}. Fix the syntax and try again.") from None
    except RecursionError:
        raise L4stbError(f"{source} is nested too deeply to be a scenario or topology; fix the file.") from None


def _read_yaml(path: Path) -> dict:
    raw = path.read_bytes()
    if len(raw) > MAX_YAML_BYTES:
        raise L4stbError(f"{path} is {len(raw):,} bytes, too large for a scenario or topology (at most "
                         f"{MAX_YAML_BYTES:,}); check that it is the right file.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise L4stbError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 and try again.") from None
    data = parse_yaml(text, str(path))
    if not isinstance(data, dict):
        raise L4stbError(f"{path} must hold a YAML mapping (key: value lines), not {type(data).__name__}.")
    return data


def _split_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise L4stbError(f"--set '{item}' is not KEY=VALUE; write it like --set bottleneck.rate=20Mbit.")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not re.fullmatch(r"[a-z_][a-z0-9_]*(\.[a-z0-9_]+)*", key):  # a field name may hold a digit: iperf3
        raise L4stbError(f"--set '{item}': '{key}' is not a field path; write it like bottleneck.rate or aqm.target.")
    return key, parse_yaml(raw, f"--set '{item}'") if raw.strip() else raw


def _set_path(data: dict, key: str, value: Any, model: type[BaseModel], item: str) -> None:
    parts = key.split(".")
    node: Any = data
    current: Any = model
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if not isinstance(node, (dict, list)):
            where = ".".join(parts[:depth])
            raise L4stbError(f"--set '{item}': {where} is a value ({node!r}), not a section with fields; "
                             f"set {where}=VALUE instead.")
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise L4stbError(f"--set '{item}': '{part}' is not an index of {'.'.join(parts[:depth])} (0..{len(node) - 1}).")
            idx = int(part)
            if last:
                node[idx] = value
                return
            node = node[idx]
            continue
        if isinstance(current, _KeysOf):  # a dict field (hosts): this part is a key, then the value's fields
            if last:
                node[part] = value
                return
            node = node.setdefault(part, {})
            current = current.model
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


@dataclass(frozen=True)
class _KeysOf:
    """``_set_path``'s marker for a ``dict[str, Model]`` field: the next path part is a key."""

    model: type[BaseModel]


def _field_model(model: Any, name: str) -> Any:
    fields = _model_fields(model)
    if not fields or name not in fields:
        return None
    ann = fields[name].annotation
    if getattr(ann, "__origin__", None) is dict:
        value = ann.__args__[1]
        return _KeysOf(value) if isinstance(value, type) and issubclass(value, BaseModel) else None
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


RENAMED_KEYS = {"policy_every": "every"}
"""Keys a user may reach for that are spelled otherwise: ``aqm.policy_every`` was a field nothing read."""


def _did_you_mean(word: str, choices) -> str:
    if RENAMED_KEYS.get(str(word)) in choices:
        return f" (did you mean '{RENAMED_KEYS[str(word)]}'?)"
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
