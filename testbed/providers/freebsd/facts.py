"""Every FreeBSD path, sysctl, rc/loader variable and command the playbook templates rely on, listed once with
the source it was checked against.

A test renders every plan of every shipped topology and scenario and fails when a plan uses a name that is
not here (``tests/test_freebsd_facts.py``), so a new dependency on the FreeBSD base system is written down,
with its evidence, before it ships. Sources are paths in freebsd/freebsd-src unless they name another
repository. ``checked`` says what the source shows; entries whose checked text starts with "not in the
indexed revision" are guarded at run time instead (the template refuses with a message when they are
missing).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    source: str
    checked: str


S = "freebsd/freebsd-src "

SYSCTLS: dict[str, Fact] = {
    "kern.hz": Fact(S + "sys/kern/subr_param.c", "SYSCTL_INT(_kern, hz, CTLFLAG_RDTUN): a boot tunable; init_param1 "
                    "uses HZ_VM (100) on a detected VM unless kern.hz is set in the loader"),
    "kern.msgbufsize": Fact(S + "sys/kern/subr_param.c", "SYSCTL_INT(_kern, msgbufsize, CTLFLAG_RDTUN), "
                            "TUNABLE_INT_FETCH(\"kern.msgbufsize\")"),
    "kern.log_wakeups_per_second": Fact(S + "sys/kern/subr_log.c", "SYSCTL_INT(_kern, log_wakeups_per_second, "
                                        "CTLFLAG_RW), default 5: how often a pending syslogd read is woken"),
    "kern.boottime": Fact(S + "sys/kern/kern_tc.c", "SYSCTL_PROC(_kern, KERN_BOOTTIME, boottime): the boot time, "
                          "which the first-boot probe compares across probes to see a reboot"),
    "debug.link_elf_obj_leak_locals": Fact(S + "sys/kern/link_elf_obj.c", "a tunable, 1 by default: local symbols "
                                           "of a loaded module (dummynet.ko's, kmod.mk makes them local) resolve "
                                           "for modules loaded after it; reported by `l4stb check --facts`"),
    "kern.osrelease": Fact(S + "sys/kern/kern_mib.c", "SYSCTL_STRING(_kern, KERN_OSRELEASE, osrelease)"),
    "hw.ncpu": Fact(S + "sys/kern/kern_mib.c", "SYSCTL_INT(_hw, HW_NCPU, ncpu)"),
    "hw.physmem": Fact(S + "sys/kern/kern_mib.c", "SYSCTL_PROC(_hw, HW_PHYSMEM, physmem)"),
    "net.inet.ip.forwarding": Fact(S + "libexec/rc/rc.d/routing", "options_inet sets it from gateway_enable "
                                   "(sysctl defined in sys/netinet/ip_input.c)"),
    "net.inet.ip.fw.enable": Fact(S + "libexec/rc/rc.d/ipfw", "ipfw_poststart: sysctl net.inet.ip.fw.enable=1"),
    "net.inet.ip.fw.one_pass": Fact(S + "sys/netpfil/ipfw/ip_fw2.c", "VNET_DEFINE(int, fw_one_pass) = 1; "
                                    "\"Only do a single pass through ipfw when using dummynet(4)\""),
    "net.inet.ip.fw.default_to_accept": Fact(S + "sys/netpfil/ipfw/ip_fw2.c; sbin/ipfw/ipfw.8",
                                             "static int default_to_accept, a loader tunable (kenv before ipfw "
                                             "loads): the default rule 65535 accepts instead of denying"),
    "net.inet.ip.dummynet.expire": Fact(S + "sys/netpfil/ipfw/ip_dummynet.c", "SYSCTL_UINT(_net_inet_ip_dummynet, "
                                        "expire, CTLFLAG_RW, DC(expire)) \"Expire empty queues/pipes\""),
    "net.inet.ip.dummynet.io_fast": Fact(S + "sys/netpfil/ipfw/ip_dummynet.c",
                                         "SYSCTL_INT(_net_inet_ip_dummynet, io_fast) \"Enable fast dummynet io.\""),
    "net.inet.ip.dummynet.pipe_slot_limit": Fact(S + "sys/netpfil/ipfw/ip_dummynet.c; sbin/ipfw/ipfw2.c",
                                                 "SYSCTL_PROC \"Upper limit in slots for pipe queue.\"; ipfw "
                                                 "falls back to 100 when it cannot read it"),
    "net.inet.ip.dummynet.pipe_byte_limit": Fact(S + "sys/netpfil/ipfw/ip_dummynet.c; sbin/ipfw/ipfw2.c",
                                                 "SYSCTL_PROC \"Upper limit in bytes for pipe queue.\"; ipfw "
                                                 "falls back to 1 MB"),
    "net.inet.siftr.enabled": Fact(S + "sys/netinet/siftr.c", "SYSCTL_PROC(_net_inet_siftr, enabled, CTLTYPE_UINT): "
                                   "1 writes the enable_time header and hooks pfil, 0 writes the disable_time "
                                   "footer and closes the log (siftr_manage_ops)"),
    "net.inet.siftr.logfile": Fact(S + "sys/netinet/siftr.c", "SYSCTL_PROC(_net_inet_siftr, logfile, CTLTYPE_STRING),"
                                   " default /var/log/siftr.log; a new name is test-opened with alq_open"),
    "net.inet.tcp.cc.algorithm": Fact(S + "sys/netinet/cc/cc.c", "SYSCTL_PROC(_net_inet_tcp_cc, algorithm)"),
    "net.inet.tcp.cc.available": Fact(S + "sys/netinet/cc/cc.c", "SYSCTL_PROC(_net_inet_tcp_cc, available)"),
    "net.inet.tcp.ecn.enable": Fact(S + "sys/netinet/tcp_input.c (indexed revision)", "SYSCTL_INT("
                                    "_net_inet_tcp_ecn, enable, &tcp_do_ecn) \"TCP ECN support\", default 2"),
    "net.inet.tcp.cc.dctcp.ect1": Fact(S + "sys/netinet/cc/cc_dctcp.c", "SYSCTL_UINT(_net_inet_tcp_cc_dctcp, OID_AUTO, "
                                       "ect1, CTLFLAG_VNET | CTLFLAG_RW, &VNET_NAME(dctcp_ect1), 0): default 0; "
                                       "dctcp_conn_init sets TF2_ECN_USE_ECT1 when it is 1 and ECN was negotiated "
                                       "(TF2_ECN_PERMIT; sys/netinet/tcp_var.h: TF2_ECN_USE_ECT1 'Use ECT(1) marking on "
                                       "session'). Added by commit dc9daa04fb68 (D24869, 'tcp: allow packets to be "
                                       "marked as ECT1 instead of ECT0', IETF 115 hackathon, November 2022), before "
                                       "stable/14 branched (August 2023), so it is in releng/14.1; read in a main-line "
                                       "copy of the file (fel1x-developer/freebsd-src 2d614aa), the index's own "
                                       "freebsd/freebsd-src copy being a 2015-era revision. configure_endpoint.sh still "
                                       "checks it (sysctl -N) and every run records it in the host facts"),
    "net.inet.ip.dummynet.dualpi2": Fact("freebsd_module/dn_sched_dualpi2.c (this repository)",
                                         "SYSCTL_NODE(_net_inet_ip_dummynet, dualpi2); its leaves are checked "
                                         "against that file by tests/test_freebsd_facts.py"),
}
SYSCTL_PREFIXES = ("net.inet.ip.dummynet.dualpi2.",)
"""The module's own sysctls: each name is checked against freebsd_module/ by the facts test."""

RC_VARIABLES: dict[str, Fact] = {
    "gateway_enable": Fact(S + "libexec/rc/rc.d/routing", "options_inet: checkyesno gateway_enable"),
    "firewall_enable": Fact(S + "libexec/rc/rc.d/ipfw", "rcvar=\"firewall_enable\""),
    "firewall_type": Fact(S + "libexec/rc/rc.d/ipfw", "ipfw_start passes ${firewall_type} to /etc/rc.firewall"),
    "dummynet_enable": Fact(S + "libexec/rc/rc.d/ipfw", "ipfw_prestart adds dummynet to required_modules"),
    "static_routes": Fact(S + "libexec/rc/rc.d/routing", "static_inet: for i in ${static_routes}"),
    "route_*": Fact(S + "libexec/rc/rc.d/routing", "static_inet: route_args=`get_if_var ${i%:*} route_IF`"),
    "ifconfig_*": Fact("hashicorp/vagrant templates/guests/freebsd/network_static.erb; " + S +
                       "release/tools/vagrant.conf", "ifconfig_<if>=\"inet A netmask M\"; the box sets "
                       "ifconfig_DEFAULT=\"SYNCDHCP\" for every NIC without its own line"),
    "kern.hz": Fact(S + "sys/kern/subr_param.c", "TUNABLE_INT_FETCH(\"kern.hz\") (in /boot/loader.conf)"),
    "cc_dctcp_load": Fact(S + "stand/defaults/loader.conf", "<module>_load=\"YES\" loads /boot/kernel/<module>.ko"),
}

PATHS: dict[str, Fact] = {
    "/boot/loader.conf": Fact(S + "stand/defaults/loader.conf", "loader tunables and <module>_load lines"),
    "/etc/syslog.d/l4stb-*": Fact(S + "usr.sbin/syslogd/syslog.conf", "`include /etc/syslog.d`: every file "
                                  "there is read (l4stb's own, written atomically through .new)"),
    "/etc/newsyslog.conf.d/l4stb-*": Fact(S + "usr.sbin/newsyslog/newsyslog.conf",
                                          "`<include> /etc/newsyslog.conf.d/[!.]*.conf` (l4stb's own file)"),
    "/etc/syslog.conf.l4stb-new": Fact(S + "libexec/rc/rc.d/syslogd", "a temp file beside /etc/syslog.conf, "
                                       "renamed over it"),
    "/etc/syslog.conf": Fact(S + "libexec/rc/rc.d/syslogd", "required_files=\"/etc/syslog.conf\""),
    "/etc/syslog.d": Fact(S + "usr.sbin/syslogd/syslog.conf", "the last lines: `!*` then `include /etc/syslog.d`"),
    "/etc/newsyslog.conf.d": Fact(S + "usr.sbin/newsyslog/newsyslog.conf",
                                  "`<include> /etc/newsyslog.conf.d/[!.]*.conf` (so the .new temp file is never read)"),
    "/etc/sysctl.conf": Fact(S + "libexec/rc/rc.d/sysctl", "read at boot by rc.d/sysctl"),
    "/etc/start_if.*": Fact(S + "libexec/rc/network.subr", "ifconfig_up sources /etc/start_if.<if>"),
    "/var/run/syslog.pid": Fact(S + "libexec/rc/rc.d/syslogd", "pidfile=\"/var/run/syslog.pid\"; "
                                "extra_commands=\"reload\" (SIGHUP to that pid)"),
    "/var/log/messages": Fact(S + "usr.sbin/syslogd/syslog.conf", "`*.notice;...;kern.debug;... /var/log/messages`: "
                              "where kernel messages go by default"),
    "/usr/src": Fact(S + "share/mk/bsd.kmod.mk", "SYSDIR defaults to the kernel sources under /usr/src/sys"),
    "/usr/src/sys": Fact(S + "share/mk/bsd.kmod.mk", "SYSDIR: the kernel headers a module builds against"),
    "/usr/src/sys/kern/kern_mbuf.c": Fact(S + "sys/kern/kern_mbuf.c", "defines m_rcvif_serialize and m_rcvif_restore, "
                                          "which the module calls (tests/module_builds.py KERNEL_EXPORTS); "
                                          "`l4stb check --facts` greps the router's installed copy"),
    "/usr/src/sys/conf/newvers.sh": Fact(S + "sys/conf/newvers.sh", "REVISION=\"14.1\" on releng/14.1"),
    "/dev/null": Fact("POSIX", "the null device"),
    "/bin/sh": Fact("POSIX", "the shell"),
    "/sbin": Fact("FreeBSD hier(7)", "system programs (ipfw, kldload, route, sysctl, ...)"),
}
PATH_PREFIXES = ("/var/l4stb",)
"""l4stb's own folders on the hosts (l4stb.layout.REMOTE_ROOT); the scenario's log file is added by the test."""

_BASE = "FreeBSD base system"
COMMANDS: dict[str, Fact] = {
    "sysctl": Fact(S + "sbin/sysctl/sysctl.c", "-n (value only), -N (name only), -i (ignore unknown names)"),
    "env": Fact(S + "usr.bin/env/env.c", "env NAME=VALUE command"),
    "sysrc": Fact(S + "usr.sbin/sysrc/sysrc", "-f FILE for loader.conf, -n -q to read a value"),
    "kldload": Fact(S + "sbin/kldload/kldload.c", "loads a module by name or path"),
    "kldunload": Fact(S + "sbin/kldunload/kldunload.c", "unloads by file name"),
    "kldstat": Fact(S + "sbin/kldstat/kldstat.c", "-q -n NAME: exit status only"),
    "kenv": Fact(S + "bin/kenv/kenv.c", "sets a kernel environment variable (read by TUNABLE on module load)"),
    "ipfw": Fact(S + "sbin/ipfw/dummynet.c; sbin/ipfw/ipfw.8", "pipe/sched/queue config; `type NAME` copies any "
                 "name of 1-15 characters for the kernel to look up (TOK_TYPE); `sched N show` prints \" sched %d type "
                 "%s flags 0x%x %d buckets %d active\"; `add N set S ...` and `delete set S` (RULE FORMAT); with NEW_AQM "
                 "(#defined in sys/netinet/ip_dummynet.h and sbin/ipfw/dummynet.c; dummynet.ko builds "
                 "dn_aqm_codel.c and dn_sched_fq_codel.c, sys/modules/dummynet/Makefile): `queue N config ... codel` and `sched N config ... type fq_codel` hand every later "
                 "word to process_extra_parms (target/interval as time_to_us times: us, ms, s; ecn, noecn; fq_codel "
                 "also quantum, limit, flows; codel defaults to noecn, fq_codel to ecn); the kernel's "
                 "dn_aqm_codel.c/dn_sched_fq_codel.c name them CODEL and FQ_CODEL"),
    "service": Fact(S + "usr.sbin/service/service.sh", "runs /etc/rc.d/<name> <command>"),
    "route": Fact(S + "sbin/route/route_netlink.c", "`route -n get` prints destination:, gateway: (only with "
                  "RTF_GATEWAY), interface:, flags: <UP,...,STATIC>"),
    "ifconfig": Fact(S + "sbin/ifconfig/ifconfig.c", "-l ether lists Ethernet NICs; -tso -lro"),
    "daemon": Fact(S + "usr.sbin/daemon/daemon.c", "-f (stdio to /dev/null), -p child pidfile"),
    "newsyslog": Fact(S + "usr.sbin/newsyslog/newsyslog.c", "-f CONF; do_zipwork forks bzip2 -f FILE and waits"),
    "sockstat": Fact(S + "usr.bin/sockstat/sockstat.c", "-46l -P proto -p port"),
    "freebsd-version": Fact(S + "bin/freebsd-version/freebsd-version.sh.in", "-k kernel, -r running, -u userland"),
    "sha256": Fact(S + "sbin/md5/md5.c", "-q prints the digest only"),
    "pkg": Fact("freebsd/pkg docs/pkg.conf.5", "IGNORE_OSVERSION: install from a repository of another OS version; "
                "`pkg -vv` prints the configuration, ABI and OSVERSION among it (recorded in the host facts)"),
    "pw": Fact(S + "usr.sbin/pw/pw.c", "usermod USER -s SHELL"),
    "tcpdump": Fact(S + "contrib/tcpdump (usr.sbin/tcpdump)", "-c N, -w/-r FILE, pcap filter `ip[1] & 3 == 3`"),
    "timeout": Fact(S + "bin/timeout/timeout.c", "exit 124 when the command ran past its time"),
    "iperf3": Fact("esnet/iperf src/iperf3.1", "-s -1 -J -p; -c -t -P -C CC -i -J"),
    "git": Fact("ports devel/git-lite", "clone, checkout, rev-parse"),
    "gmake": Fact("ports devel/gmake", "GNU make for udp_prague's Makefile"),
    "make": Fact(S + "share/mk/bsd.kmod.mk", "builds the module with SYSDIR and MAKEOBJDIR"),
    "bzcat": Fact(S + "usr.bin/bzip2", "decompresses newsyslog's .bz2"),
    "zcat": Fact(S + "usr.bin/gzip", "decompresses .gz"),
    "xzcat": Fact(S + "usr.bin/xz", "decompresses .xz"),
    "getent": Fact(S + "usr.bin/getent/getent.c", "getent passwd USER"),
    "install": Fact(S + "usr.bin/xinstall/xinstall.c", "-d -m MODE DIR..."),
    "uname": Fact(_BASE, "uname -a"), "paste": Fact(_BASE, "-s -d"), "grep": Fact(_BASE, "-q -x -F -E -c -v -s -w"),
    "awk": Fact(_BASE, "one-liners"), "sed": Fact(_BASE, "s|^|prefix|"), "tail": Fact(_BASE, "-n"),
    "head": Fact(_BASE, "-1"), "cut": Fact(_BASE, "-d: -f7"), "cat": Fact(_BASE, "cat"), "cmp": Fact(_BASE, "-s"),
    "mv": Fact(_BASE, "mv"), "rm": Fact(_BASE, "-f -rf"), "ls": Fact(_BASE, "-A -l"), "chmod": Fact(_BASE, "644"),
    "touch": Fact(_BASE, "touch"), "date": Fact(_BASE, "+%s"), "sleep": Fact(_BASE, "sleep"),
    "wc": Fact(_BASE, "-l"), "c++": Fact(S + "usr.bin/clang", "the base system's clang++"),
    "cc": Fact(S + "usr.bin/clang", "the base system's clang (builds the rate-schedule helper, -Wall -Werror)"),
    "pgrep": Fact(S + "bin/pkill/pkill.c", "-f matches the pattern (a regex) against the full argument list; used "
                  "by the first-boot probe (l4stb.providers.freebsd.firstboot) to see `sh /etc/rc autoboot` still running"),
    "hexdump": Fact(S + "usr.bin/hexdump/hexdump.c", "-v (no `*` squeezing) -e '1/1 \"%02x\"': one byte, two hex "
                    "digits, no separators"),
    "fold": Fact(S + "usr.bin/fold/fold.c", "-w WIDTH: breaks a line every WIDTH columns; no line-length limit "
                 "(reads wide characters one at a time)"),
}
SHELL_BUILTINS = frozenset({
    "set", "export", "echo", "printf", "test", "[", "kill", "cd", "exit", "wait", ":", "true", "false", "read",
    "shift", "eval", "return", "local", "trap", "command", "type", "break", "continue",
})
"""Builtins of FreeBSD's sh (bin/sh/builtins.def); l4stb_spawn and section are functions the templates define."""
TEMPLATE_FUNCTIONS = frozenset({"l4stb_spawn", "section"})


@dataclass(frozen=True)
class Limit:
    value: int
    source: str
    checked: str


LIMITS: dict[str, Limit] = {
    "sysctl_arg": Limit(1023, S + "sbin/sysctl/sysctl.c", "parse(): snprintf(buf, BUFSIZ, \"%s\", string) >= BUFSIZ "
                        "-> \"oid too long\"; BUFSIZ is 1024 (include/stdio.h), so a name=value argument has at most "
                        "1023 characters"),
    "arg_max": Limit(262144, S + "sys/sys/syslimits.h", "ARG_MAX 262144 \"max bytes for an exec function\" in the "
                     "indexed revision (argv and environment together; kern.argmax reports it); newer releases allow "
                     "more, the model keeps the smaller"),
    "ssh_packet": Limit(256 * 1024, "openssh/openssh-portable packet.c", "#define PACKET_MAX_SIZE (256 * 1024): the "
                        "largest SSH packet sshd accepts, so the exec request carrying l4stb's command must be "
                        "smaller"),
    "ipfw_rule_max": Limit(65534, S + "sbin/ipfw/ipfw.8", "RULE FORMAT: rule_number in 1..65535, 65535 reserved for "
                           "the default rule"),
    "ipfw_set_max": Limit(30, S + "sbin/ipfw/ipfw.8", "RULE FORMAT: set_number 0..31, 31 reserved for the default "
                          "rule"),
    "ipfw_autoinc_step": Limit(100, S + "sbin/ipfw/ipfw.8", "an unnumbered `ipfw add` gets the last rule's number + "
                               "net.inet.ip.fw.autoinc_step (default 100)"),
}
"""FreeBSD userland limits the plans must respect; tests/freebsd_userland.py enforces each one on the rendered plans."""

RC_FIREWALL_OPEN_RULES: tuple[int, ...] = (50, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 65000)
"""Rule numbers libexec/rc/rc.firewall gives the `open` type: 50 (natd or in-kernel NAT, when enabled), 100-500
(setup_loopback), five unnumbered `add pass ipv6-icmp` of setup_ipv6_mandatory (numbered 600-1000 by the 100 step),
65000 (`pass all from any to any`). l4stb's rules must use none of them."""
