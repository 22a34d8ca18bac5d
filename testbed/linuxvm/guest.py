"""Render one repeat's guest script: the topology as network namespaces, the real qdisc at the bottleneck, real iperf3.

Inside the VM every topology host is a network namespace and every link a veth pair named after its network
(``lan1`` on both ends), with TSO, GSO and GRO off so that each packet on the wire is one MSS as on the real
testbed. The router forwards; its egress towards the server is the bottleneck: an htb class at the
scenario's rate with the scenario's qdisc as its only child (``dualpi2`` built from Debian's source, ``pie``,
``pfifo``, ``codel``, ``fq_codel``). Delays never sit in the bottleneck's queue: the base one-way delay is netem on the server's
egress (the ACK path), a host's ``extra_delay`` netem on the router's egress towards that client.

During the run the router's namespace captures packets on both sides of the bottleneck (tcpdump ``-Q in`` on
every client-facing link, ``-Q out`` on the bottleneck link) and samples ``tc -s qdisc show`` with a
nanosecond timestamp per sample. Everything is written to tmpfs and copied into the host's shared folder
at the end, laid out per host like the simulator's host folders. Every value in the script is validated
here and quoted with shlex; nothing from a scenario reaches the shell unquoted.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from l4stb import layout
from l4stb.config import Scenario, Topology
from l4stb.errors import L4stbError

IP, TC, ETHTOOL, IPERF3, TCPDUMP, DATE, BB = ("/usr/bin/ip", "/usr/sbin/tc", "/usr/sbin/ethtool", "/usr/bin/iperf3",
                                              "/usr/bin/tcpdump", "/usr/bin/date", "/usr/bin/busybox")
LINUX_CC = {"cubic": "cubic", "newreno": "reno", "dctcp": "dctcp"}
"""l4stb's cc names -> Linux's (net/ipv4/tcp_cong.c names reno; tcp_cubic.c, tcp_dctcp.c)."""
QDISCS = ("dualpi2", "pie", "fifo", "codel", "fq_codel")
SNAPLEN = 96
"""Ethernet + IPv4 + TCP with timestamps fits in 66 bytes; the capture needs headers only."""
TC_SAMPLE_S = 0.2
_IFNAME = re.compile(r"^[a-z][a-z0-9-]{0,14}$")


@dataclass(frozen=True)
class CaptureFiles:
    """Where the router's evidence lands in the shared folder (relative to the router's repeat folder)."""

    ingress: tuple[tuple[str, str], ...]
    """(interface, pcap file) per client-facing link."""
    egress: tuple[str, str]
    tc_samples: str = "tc-samples.txt"


def _ifname(network: str) -> str:
    if not _IFNAME.match(network):
        raise L4stbError(f"network name {network!r} cannot be a Linux interface name (at most 15 characters, "
                         "lowercase letters, digits and '-'); rename it in the topology for the qemu provider")
    return network


def _us(value_us: int) -> str:
    return f"{int(value_us)}us"


def unsupported(scenario: Scenario, *, as_written: bool = True) -> list[str]:
    """Scenario settings the real-Linux testbed cannot run, each with what to do instead.

    ``as_written``: the scenario is as the user wrote it, so a field they set (``hosts.X.stack: freebsd``,
    ``bottleneck.shaper: dummynet``) can be told from its default. A scenario read back from a manifest has
    every field set; there the defaults mean "the provider's own" (Linux senders, htb) and are not refused."""
    sc, aqm, b = scenario, scenario.aqm, scenario.bottleneck
    out = []
    if aqm.name not in QDISCS:
        out.append(f"aqm.name '{aqm.name}' is a FreeBSD dummynet scheduler (or l4stb's policy AQM); on the qemu "
                   f"provider use one of {', '.join(QDISCS)}, or run it on sim or vagrant")
    if aqm.name == "dualpi2":
        if not aqm.ecn:
            out.append("aqm.ecn false: Linux's dualpi2 always marks ECN-capable packets; use aqm pie with ecn "
                       "false for a drop-only AQM")
        if aqm.step_semantics != "linux":
            out.append("aqm.step_semantics rfc9332-thlen: Linux's dualpi2 implements only the linux step")
        if aqm.ramp_range:
            out.append("aqm.ramp_range: Linux's dualpi2 has a step, not a ramp; set ramp_range 0")
        if aqm.scheduler != "wrr":
            out.append("aqm.scheduler tsfifo: Linux's dualpi2 schedules by WRR credit (classic_protection)")
        if float(aqm.coupling_factor) != int(aqm.coupling_factor):
            out.append("aqm.coupling_factor: Linux's dualpi2 takes an integer")
    if aqm.name in ("codel", "fq_codel") and as_written and aqm.codel_semantics != "linux" \
            and "codel_semantics" in aqm.model_fields_set:
        out.append(f"aqm.codel_semantics {aqm.codel_semantics}: the qemu provider runs Linux's {aqm.name} qdisc; "
                   "set codel_semantics linux (or drop the field), or run FreeBSD's on vagrant or sim")
    if aqm.name == "pie" and (aqm.alpha is not None or aqm.beta is not None):
        out.append("aqm.alpha/beta for pie: Linux's sch_pie takes its own integer scale; leave them unset to run "
                   "Linux's defaults")
    if b.rate_schedule or b.rate_trace:
        out.append("bottleneck.rate_schedule / rate_trace are not run on the qemu provider yet; use sim")
    if as_written and "shaper" in b.model_fields_set and b.shaper != "htb":
        out.append(f"bottleneck.shaper {b.shaper}: the real-Linux testbed shapes with htb; drop the field or set htb")
    if b.serve_on_ticks or b.match != "egress":
        out.append("bottleneck.serve_on_ticks and match: any model dummynet; on Linux the qdisc serves the "
                   "bottleneck's egress only")
    for gi, g in enumerate(sc.flows):
        if g.cc == "prague":
            out.append(f"flows[{gi}]: cc prague needs TCP Prague or udp_prague, which Debian's kernel and archive "
                       "do not ship; run Prague on sim or vagrant")
        elif g.cc not in LINUX_CC and g.cc != "udp":
            out.append(f"flows[{gi}]: cc {g.cc} has no Linux module here")
        if g.size is not None:
            out.append(f"flows[{gi}]: short flows (size) are not run on the qemu provider yet; use sim")
        if g.extra_delay:
            out.append(f"flows[{gi}].extra_delay: on the qemu provider delays are per host "
                       f"(hosts.{g.host}.extra_delay), not per flow group")
        if g.on_time or g.off_time:
            out.append(f"flows[{gi}]: on/off UDP is not run on the qemu provider yet")
    if not sc.ecn:
        for host in sorted({g.host for g in sc.flows if g.cc == "dctcp"}):
            classic = sorted({g.cc for g in sc.flows if g.host == host and g.cc in ("cubic", "newreno")})
            if classic:
                out.append(f"ecn: false with {', '.join(classic)} beside dctcp on {host}: Linux negotiates ECN per "
                           f"host (net.ipv4.tcp_ecn), and DCTCP needs it, so {host}'s classic flows would use ECN "
                           "too; put them on another client")
    for name, h in sc.hosts.items():
        if as_written and "stack" in h.model_fields_set and h.stack != "linux":
            out.append(f"hosts.{name}.stack {h.stack}: every qemu host runs Linux; use vagrant for FreeBSD "
                       "senders, or drop the field")
        if h.prague_transport is not None:
            out.append(f"hosts.{name}.prague_transport: Prague does not run on the qemu provider")
    return out


def _runs_dctcp(scenario: Scenario, host: str) -> bool:
    return any(g.host == host and g.cc == "dctcp" for g in scenario.flows)


def check_supported(scenario: Scenario, *, as_written: bool = True) -> None:
    problems = unsupported(scenario, as_written=as_written)
    if problems:
        raise L4stbError(f"scenario {scenario.name} cannot run on the qemu provider (real Linux): "
                         + "; ".join(problems) + ".")


def _codel_args(scenario: Scenario) -> list[str]:
    """``codel`` / ``fq_codel`` with the scenario's resolved CoDel values, in the words iproute2's tc/q_codel.c and
    tc/q_fq_codel.c parse (limit in packets, times as ``NNNus``, ``ecn``/``noecn``, ``ce_threshold``; fq_codel also
    ``flows`` and ``quantum``). Linux defaults them as l4stb does (codel_params_init; fq_codel_init), but the plan
    says each, so the run does not depend on the guest kernel's defaults."""
    a, b = scenario.aqm.resolved(), scenario.bottleneck
    args = [a.name, "limit", str(b.limit_packets)]
    if a.name == "fq_codel":
        args += ["flows", str(a.flows), "quantum", str(a.quantum)]
    args += ["target", _us(a.target), "interval", _us(a.interval), "ecn" if a.ecn else "noecn"]
    if a.ce_threshold is not None:
        args += ["ce_threshold", _us(a.ce_threshold)]
    return args


def qdisc_args(scenario: Scenario) -> list[str]:
    """The bottleneck qdisc's tc arguments. Unset DualPI2 parameters are left to the real qdisc's own defaults."""
    aqm, b = scenario.aqm, scenario.bottleneck
    if aqm.name == "fifo":
        return ["pfifo", "limit", str(b.limit_packets)]
    if aqm.name in ("codel", "fq_codel"):
        return _codel_args(scenario)
    if aqm.name == "pie":
        args = ["pie", "limit", str(b.limit_packets)]
        if aqm.target is not None:
            args += ["target", _us(aqm.target)]
        if aqm.tupdate is not None:
            args += ["tupdate", _us(aqm.tupdate)]
        return args + (["ecn"] if aqm.ecn else ["noecn"])
    args = ["dualpi2", "limit", str(b.limit_packets)]
    if aqm.max_rtt is not None or aqm.typical_rtt is not None:
        if aqm.max_rtt is not None:
            args += ["max_rtt", _us(aqm.max_rtt)]
        if aqm.typical_rtt is not None:
            args += ["typical_rtt", _us(aqm.typical_rtt)]
    else:
        for key in ("target", "tupdate"):
            if getattr(aqm, key) is not None:
                args += [key, _us(getattr(aqm, key))]
        for key in ("alpha", "beta"):
            if getattr(aqm, key) is not None:
                args += [key, f"{float(getattr(aqm, key)):.6f}"]
    args += ["step_thresh", f"{aqm.step_packets}packets" if aqm.step_packets is not None
             else _us(aqm.step_threshold)]
    if aqm.min_qlen_step is not None:
        args += ["min_qlen_step", str(aqm.min_qlen_step)]
    args += ["coupling_factor", str(int(aqm.coupling_factor))]
    args += ["drop_on_overload" if aqm.drop_on_overload else "overflow"]
    args += ["classic_protection", str(int(round(aqm.classic_protection * 100)))]
    args += [l4s_classifier(scenario)]
    return args


def l4s_classifier(scenario: Scenario) -> str:
    """dualpi2's L-queue classifier: ``l4s_ect`` (ECT(1) and CE, Linux's default) or ``any_ect`` (ECT(0) too)."""
    return scenario.aqm.l4s_classifier


def capture_files(topology: Topology) -> CaptureFiles:
    router = topology.router
    ingress = []
    egress = None
    for link in topology.links:
        if router not in link.endpoints:
            continue
        dev = _ifname(link.network)
        if link.bottleneck:
            egress = (dev, f"capture-out-{dev}.pcap")
        else:
            ingress.append((dev, f"capture-in-{dev}.pcap"))
    if egress is None:
        raise L4stbError(f"topology {topology.name} has no bottleneck link at its router")
    return CaptureFiles(tuple(ingress), egress)


def _tcpdump_args(dev: str, direction: str, path: str) -> list[object]:
    """Headers only, nanosecond stamps, a large kernel buffer, and root kept (Debian's tcpdump otherwise
    switches to a ``tcpdump`` user the image does not have: tcpdump.c, -Z)."""
    return [TCPDUMP, "-n", "-i", dev, "-Q", direction, "-s", SNAPLEN, "-B", 16384, "-Z", "root",
            "--time-stamp-precision=nano", "-w", path]


def _q(*argv: object) -> str:
    return " ".join(shlex.quote(str(a)) for a in argv)


def _in(ns: str, *argv: object) -> str:
    return _q(IP, "netns", "exec", ns, *argv)


def render(scenario: Scenario, topology: Topology, run_id: str, repeat: int, *, as_written: bool = True,
           capture: bool = True) -> str:
    """The busybox-sh script one repeat's VM runs (from its shared folder, as /out/guest.sh).

    ``capture`` False leaves tcpdump out (no router log set; iperf3 and the qdisc's samples only), for
    measuring what the capture costs and for rates where the guest cannot capture every packet."""
    check_supported(scenario, as_written=as_written)
    sc, topo = scenario, topology
    sc.check_against(topo)
    caps = capture_files(topo)
    bottleneck_dev = caps.egress[0]
    lines = [
        "# l4stb guest script: " + _q(sc.name, run_id, f"repeat {repeat}"),
        "set -u",
        f"B={BB}",
        'fail() { echo "l4stb-guest: $*" >&2; exit 1; }',
        'step() { echo "l4stb-step: $*"; }',
        "step namespaces",
    ]
    lines += _namespace_lines(topo)
    lines += _link_lines(topo)
    lines += _route_and_ecn_lines(sc, topo)
    lines += _bottleneck_lines(sc, topo, bottleneck_dev)
    lines += [f"mkdir -p /tmp/{h}" for h in topo.hosts]
    lines += _capture_and_sampler_lines(topo, caps, bottleneck_dev, capture)
    lines += _iperf3_lines(sc, topo)
    lines += _collect_lines(topo, bottleneck_dev)
    return "\n".join(lines) + "\n"


def _namespace_lines(topo: Topology) -> list[str]:
    """One network namespace per host, loopback up, IPv6 off."""
    lines: list[str] = []
    for h in topo.hosts:
        lines.append(_q(IP, "netns", "add", h) + " || fail " + _q(f"netns {h}"))
        lines.append(_q(IP, "-n", h, "link", "set", "lo", "up"))
        # no IPv6 autoconfiguration traffic in the bottleneck's qdisc: only the experiment's packets
        lines.append(_in(h, BB, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                         "net.ipv6.conf.default.disable_ipv6=1"))
    return lines


def _link_lines(topo: Topology) -> list[str]:
    """A veth pair per link with its addresses, offloads off and permanent neighbours."""
    lines: list[str] = []
    lines.append("step links")
    for link in topo.links:
        a, b = link.endpoints
        dev = _ifname(link.network)
        lines.append(_q(IP, "link", "add", "name", dev, "netns", a, "type", "veth", "peer", "name", dev, "netns", b)
                     + " || fail " + _q(f"veth {dev}"))
        for h in (a, b):
            iface = next(i for i in topo.hosts[h].interfaces if i.network == link.network)
            lines.append(_q(IP, "-n", h, "addr", "add", iface.address, "dev", dev))
            lines.append(_q(IP, "-n", h, "link", "set", dev, "up"))
            # one packet per MSS on the wire, as on the real testbed (no TSO/GSO/GRO aggregation)
            lines.append(_in(h, ETHTOOL, "-K", dev, "tso", "off", "gso", "off", "gro", "off") + " >/dev/null 2>&1")
        # permanent neighbours: no ARP through the bottleneck, so its qdisc counts exactly the captured packets
        (ia, ib) = (next(i for i in topo.hosts[x].interfaces if i.network == link.network) for x in (a, b))
        for (h, peer_if) in ((a, ib), (b, ia)):
            lines.append(f"MAC=$({_q(IP, '-n', b if h == a else a, 'link', 'show', dev)} | $B awk '/link\\/ether/ {{print $2}}')")
            lines.append(_q(IP, "-n", h, "neigh", "replace", peer_if.ip, "lladdr") + ' "$MAC" '
                         + _q("dev", dev, "nud", "permanent"))
    return lines


def _route_and_ecn_lines(sc: Scenario, topo: Topology) -> list[str]:
    """Default routes via the router, forwarding on, and each host's tcp_ecn."""
    router, server = topo.router, topo.server
    lines: list[str] = []
    lines.append("step routes")
    for h in topo.hosts:
        if h == router:
            continue
        net = topo.hosts[h].interfaces[0].network
        lines.append(_q(IP, "-n", h, "route", "add", "default", "via", topo.router_address_on(net))
                     + " || fail " + _q(f"route {h}"))
    lines.append(_in(router, BB, "sysctl", "-qw", "net.ipv4.ip_forward=1") + " || fail forwarding")
    for h in topo.clients:
        # net.ipv4.tcp_ecn 1 requests ECN on the host's connections. DCTCP needs it negotiated, or it falls back
        # to Reno without ECN (tcp_dctcp.c dctcp_init; iperf3 reports "dctcp-reno"), and measured on this
        # kernel with iperf3 3.22 it is only negotiated when the client's tcp_ecn is 1: so a host running
        # DCTCP requests ECN whatever the scenario's ecn (unsupported() refuses classic flows beside it then)
        ecn = 1 if sc.ecn or _runs_dctcp(sc, h) else 0
        lines.append(_in(h, BB, "sysctl", "-qw", f"net.ipv4.tcp_ecn={ecn}"))
    # the server accepts ECN whenever a sender asks (2, Linux's default: tcp_input.c tcp_ecn_create_request), as
    # the FreeBSD server does; with 0 it would refuse DCTCP's ECN SYN and DCTCP would fall back to Reno without
    # ECN (tcp_dctcp.c dctcp_init: "No ECN support? Fall back to Reno"), reported by iperf3 as dctcp-reno
    lines.append(_in(server, BB, "sysctl", "-qw", "net.ipv4.tcp_ecn=2"))
    return lines


def _bottleneck_lines(sc: Scenario, topo: Topology, bottleneck_dev: str) -> list[str]:
    """The htb shaper with the AQM's qdisc under it on the router's egress, and the netem delays."""
    router, server = topo.router, topo.server
    lines: list[str] = []
    lines.append("step bottleneck")
    rate = f"{int(sc.bottleneck.rate)}bit"
    lines += [
        _q(TC, "-n", router, "qdisc", "add", "dev", bottleneck_dev, "root", "handle", "1:", "htb", "default", "1")
        + " || fail htb",
        _q(TC, "-n", router, "class", "add", "dev", bottleneck_dev, "parent", "1:", "classid", "1:1", "htb", "rate",
           rate, "ceil", rate, *(("burst", int(sc.bottleneck.burst), "cburst", int(sc.bottleneck.burst))
                                 if sc.bottleneck.burst else ())) + " || fail htb-class",
        _q(TC, "-n", router, "qdisc", "add", "dev", bottleneck_dev, "parent", "1:1", "handle", "10:",
           *qdisc_args(sc)) + " || fail " + _q(f"qdisc {sc.aqm.name}"),
    ]
    if sc.bottleneck.delay:
        server_dev = next(i.network for i in topo.hosts[server].interfaces)
        lines.append(_q(TC, "-n", server, "qdisc", "add", "dev", _ifname(server_dev), "root", "netem", "delay",
                        _us(sc.bottleneck.delay), "limit", "100000") + " || fail netem-base")
    for client in topo.clients:
        extra = sc.host(client).extra_delay
        if extra:
            net = topo.hosts[client].interfaces[0].network
            lines.append(_q(TC, "-n", router, "qdisc", "add", "dev", _ifname(net), "root", "netem", "delay",
                            _us(extra), "limit", "100000") + " || fail " + _q(f"netem-{client}"))
    return lines


def _capture_and_sampler_lines(topo: Topology, caps, bottleneck_dev: str, capture: bool) -> list[str]:
    """tcpdump on the router's interfaces (when ``capture``) and the loop that samples the qdisc's counters."""
    router = topo.router
    server_ip = topo.address(topo.server)
    lines: list[str] = []
    rdir = f"/tmp/{router}"
    lines.append(": > /tmp/tcpdump.pids")
    lines.append("EGRESS_CAP=")
    if capture:
        lines.append("step capture")
        filt = f"ip and dst host {server_ip}"
        # the egress capture starts first and stops last, so every packet it could hold is already in it
        dev, name = caps.egress
        lines.append(_in(router, *_tcpdump_args(dev, "out", f"{rdir}/{name}"), filt)
                     + f" 2>{shlex.quote(f'{rdir}/{name}.stderr')} &")
        lines.append("EGRESS_CAP=$!")
        lines.append("$B sleep 0.5")
        for dev, name in caps.ingress:
            lines.append(_in(router, *_tcpdump_args(dev, "in", f"{rdir}/{name}"), filt)
                         + f" 2>{shlex.quote(f'{rdir}/{name}.stderr')} &")
            lines.append("echo $! >> /tmp/tcpdump.pids")
    samples = f"{rdir}/{caps.tc_samples}"
    lines.append(f"( while [ ! -e /tmp/stop-sampling ]; do echo \"@$({DATE} +%s%N)\"; "
                 f"{_q(TC, '-n', router, '-s', 'qdisc', 'show', 'dev', bottleneck_dev)}; "
                 f"$B sleep {TC_SAMPLE_S}; done ) > {shlex.quote(samples)} 2>&1 &")
    lines.append("SAMPLER=$!")
    lines.append("$B sleep 1")
    return lines


def _iperf3_lines(sc: Scenario, topo: Topology) -> list[str]:
    """An iperf3 server per connection, then the clients, each started at its group's start."""
    server = topo.server
    server_ip = topo.address(server)
    dur_s = max(1, sc.duration // 1_000_000)
    lines: list[str] = []
    lines.append("step iperf3")
    sdir = f"/tmp/{server}"
    clients = []
    for gi, g in enumerate(sc.flows):
        for c in range(g.connections):
            port = sc.connection_port(gi, c + 1)
            lines.append(_in(server, IPERF3, "-s", "-1", "-p", port, "-J", "--logfile",
                             f"{sdir}/{layout.iperf3_server_name(port)}") + " &")
            argv = [IPERF3, "-c", server_ip, "-p", port, "-t", dur_s, "-P", g.parallel, "-J",
                    "-i", f"{sc.iperf3.interval / 1e6:g}",
                    "--logfile", f"/tmp/{g.host}/{layout.iperf3_client_name(g.host, g.cc, gi, c + 1)}"]
            if g.cc == "udp":
                argv += ["-u", "-b", f"{int(g.rate or 1_000_000)}"]
                if g.ecn != "not-ect":
                    argv += ["--tos", {"ect0": 2, "ect1": 1}[g.ecn]]
            else:
                argv += ["-C", LINUX_CC[g.cc]]
            clients.append((g.start, _in(g.host, *argv)))
    lines.append("$B sleep 1")
    lines.append(": > /tmp/client.pids")
    for start_us, cmd in sorted(clients, key=lambda x: x[0]):
        delay = f"$B sleep {start_us / 1e6:g}; " if start_us else ""
        lines.append(f"( {delay}{cmd} ) & echo $! >> /tmp/client.pids")
    return lines


def _collect_lines(topo: Topology, bottleneck_dev: str) -> list[str]:
    """Wait for the clients, stop the capture and the sampler, and copy every host's files and the facts out."""
    router = topo.router
    rdir = f"/tmp/{router}"
    lines: list[str] = []
    lines += [
        "RC=0",
        "for p in $(cat /tmp/client.pids); do wait $p || RC=1; done",
        "$B sleep 1",
        "step collect",
        ": > /tmp/stop-sampling",
        "wait $SAMPLER",
        "for p in $(cat /tmp/tcpdump.pids); do kill -INT $p; done",
        "for p in $(cat /tmp/tcpdump.pids); do wait $p; done",
        "$B sleep 1",  # longer than any queue delay the bottleneck holds at its packet limit's worth of data
        'if [ -n "$EGRESS_CAP" ]; then kill -INT $EGRESS_CAP; wait $EGRESS_CAP; fi',
        _q(TC, "-n", router, "-s", "qdisc", "show", "dev", bottleneck_dev) + f" > {shlex.quote(rdir + '/tc-final.txt')}",
        _q(TC, "-n", router, "-s", "class", "show", "dev", bottleneck_dev) + f" >> {shlex.quote(rdir + '/tc-final.txt')}",
        "$B sleep 1",
        "mkdir -p /out/hosts",
    ]
    for h in topo.hosts:
        lines.append(f"cp -r /tmp/{h} /out/hosts/ || RC=1")
    lines += [
        "{ uname -a; cat /proc/sys/net/ipv4/tcp_available_congestion_control; "
        "cat /proc/sys/net/core/default_qdisc; $B lsmod; } > /out/facts.txt 2>&1",
        "exit $RC",
    ]
    return lines
