/*
 * dn_sched_dualpi2.c -- l4stb's DualPI2 (RFC 9332) dummynet scheduler for FreeBSD 14.1, with a log line
 * for every packet decision.
 *
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * This file is only the kernel glue: mbufs, dummynet's scheduler API, sysctls, log(9). Every decision is
 * made by the pure-C core in dualpi2_core.c, which is tested against l4stb's Python simulator.
 *
 *   kldload ./dn_sched_dualpi2.ko
 *   ipfw pipe 1 config bw 8Mbit/s delay 10
 *   ipfw sched 1 config pipe 1 type dualpi2        # stock ipfw: the type is looked up by name
 *   ipfw queue 1 config sched 1 queue 1000
 *   ipfw add 1000 queue 1 ip from 10.0.1.0/24,10.0.2.0/24 to 10.0.3.0/24 out
 *
 * Stock ipfw passes no scheduler parameters for an unknown type, so they are sysctls
 * (net.inet.ip.dummynet.dualpi2.*), copied into each scheduler instance when dummynet creates it
 * (at the first packet after `ipfw sched 1 config ...`). Change them, then re-run the ipfw config.
 *
 * Time is the kernel's uptime clock, sbinuptime(), in microseconds, not the dummynet tick; the PI
 * controller steps are run lazily at packet events at their scheduled times (dp2_advance), which is
 * exactly what a periodic timer would do because the queues only change at packet events.
 *
 * Per-packet record: the core's struct dp2_pkt lives in a private mbuf tag that sits right AFTER
 * dummynet's own tag, never before it: dn_tag_get() (sys/netpfil/ipfw/ip_dn_io.c) reads the FIRST tag
 * of the mbuf as dummynet's, and ecn_mark() finds the IP header through it, as do dummynet_io()'s
 * fast path and dummynet_send(), which rename the first tag. Stock fq_pie/fq_codel keep dummynet's tag
 * first whenever they mark (sys/netpfil/ipfw/dn_sched_fq_pie.c).
 *
 * Each decision is logged with log(9) at LOG_INFO as
 *   "dualpi2: l4stb_aqm-start,<27 integers>,end"
 * (fields: dualpi2_log_fields.h, generated from l4stb/logformat.py); syslogd routes lines with the
 * "dualpi2: " prefix by a `!dualpi2` block in syslog.conf. With log_every = N > 1 only every N-th decision of
 * an instance is logged (its 1st, N+1-th, 2N+1-th, ...: l4stb.sim.syslog samples the simulator's the same
 * way), so that the message buffer keeps up at high rates; the decisions counter counts them all.
 */

#include "opt_inet.h"
#include "opt_inet6.h"

#include <sys/param.h>
#include <sys/ck.h>		/* CK_LIST_ENTRY in dn_sched.h's struct dn_alg */
#include <sys/systm.h>
#include <sys/kernel.h>
#include <sys/lock.h>
#include <sys/malloc.h>
#include <sys/mbuf.h>
#include <sys/module.h>
#include <sys/mutex.h>
#include <sys/proc.h>
#include <sys/rwlock.h>
#include <sys/socket.h>
#include <sys/sysctl.h>
#include <sys/syslog.h>
#include <sys/time.h>

#include <net/if.h>
#include <net/vnet.h>
#include <netinet/in.h>
#include <netinet/ip_var.h>
#include <netinet/ip_fw.h>
#include <netinet/ip_dummynet.h>	/* defines NEW_AQM */
#include <netpfil/ipfw/ip_fw_private.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>

#include <netpfil/ipfw/dn_heap.h>
#include <netpfil/ipfw/ip_dn_private.h>
#include <netpfil/ipfw/dn_sched.h>

#include "dualpi2_core.h"

#define DN_SCHED_DUALPI2	42	/* a type number no stock scheduler uses; ipfw selects by name */

/*
 * The mbuf tag holding the core's per-packet record. sys/sys/mbuf.h: a tag is named by a 32-bit module
 * cookie ("by convention ... the date+time that the module is created", `date -u +%s`) and a 16-bit
 * type private to that cookie; MTAG_ABI_COMPAT (0) is the shared namespace of the PACKET_TAG_* types,
 * dummynet's included. Stock modules do the same (if_vlan_var.h: MTAG_8021Q 1326104895 with types 0
 * and 1; ip_var.h: MTAG_IPFW*).
 */
#define DUALPI2_MTAG_COOKIE	1796001471	/* `date -u +%s` when chosen */
#define DUALPI2_MTAG_TYPE	1

/* ------------------------------------------------------------------------------------------- sysctls */

/*
 * DualPI2Params (l4stb.sim.aqm_dualpi2) defaults, as DualPI2Params.from_aqm gives them for an empty aqm
 * section: Linux sch_dualpi2's dualpi2_reset_default (target 15 ms, tupdate 16 ms, alpha ~0.16 Hz, beta
 * ~3.2 Hz, step at 1 ms sojourn with min_qlen_step 0: every L packet, k = 2, classic_protection 10 %,
 * drop on overload).
 */
static struct dp2_params dualpi2_defaults = {
	.target_us = 15000, .tupdate_us = 16000, .alpha_q = 45035996, .beta_q = 900719925,
	.alpha_mhz = 160, .beta_mhz = 3200, .k_q8 = 512, .p_cmax = 1073741824ULL,
	.step_semantics = DP2_STEP_LINUX, .step_us = 1000, .step_in_packets = 0, .step_packets = 0,
	.range_us = 0, .min_qlen_step = 0, .th_len = 1, .min_backlog_bytes = 3000, .scheduler = DP2_SCHED_WRR,
	.wc = 10, .wl = 90, .tshift_us = 50000, .mtu = 1500, .limit_packets = 10000, .limit_bytes = 30000000,
	.ecn = 1, .drop_on_overload = 1, .tick_us = 1000,
};
/* PieParams (l4stb.sim.aqm_pie) defaults for mode 1 (l4s-pie), FreeBSD PIE's; tick_us and the limits
 * are shared with the dualpi2 mode's sysctls (copied at instance creation). */
static struct dp2_pie_params dualpi2_pie_defaults = {
	.qdelay_ref = 15000, .tupdate = 15000, .max_burst = 150000, .max_ecnth = 819, .alpha = 1024,
	.beta = 10240, .flags = DP2_PIE_ECN_ENABLED | DP2_PIE_CAPDROP_ENABLED | DP2_PIE_DERAND_ENABLED,
	.tick_us = 1000, .limit_packets = 1000, .limit_bytes = 1500000, .coupling = 2, .couple_same_flow = 1,
};
static int64_t dualpi2_mode = DP2_MODE_DUALPI2;
static int64_t dualpi2_seed = 1;
static int64_t dualpi2_log_enabled = 1;
static int64_t dualpi2_log_every = 1;
static uint64_t dualpi2_log_lines;
static uint64_t dualpi2_decisions;
static uint64_t dualpi2_nomem_drops;
static uint64_t dualpi2_rcvif_drops;
static uint64_t dualpi2_instances_created;
static uint64_t dualpi2_instances_freed;

SYSCTL_DECL(_net_inet_ip_dummynet);
static SYSCTL_NODE(_net_inet_ip_dummynet, OID_AUTO, dualpi2, CTLFLAG_RW | CTLFLAG_MPSAFE, 0,
    "l4stb DualPI2 scheduler (values are copied into each new scheduler instance)");

#define DP2_S64(name, var, descr) \
	SYSCTL_S64(_net_inet_ip_dummynet_dualpi2, OID_AUTO, name, CTLFLAG_RW, &(var), 0, descr)

DP2_S64(mode, dualpi2_mode, "0 = dualpi2 (RFC 9332), 1 = l4s-pie (the paper's PIE-based scheduler)");
DP2_S64(seed, dualpi2_seed, "seed of the 32-bit xorshift PRNG of each new instance");
DP2_S64(log, dualpi2_log_enabled, "1 = log(9) a line for every packet decision (every log_every-th)");
DP2_S64(log_every, dualpi2_log_every,
    "log only every N-th decision of an instance (its 1st, N+1-th, ...); 1 = every decision; taken at creation");
SYSCTL_U64(_net_inet_ip_dummynet_dualpi2, OID_AUTO, log_lines, CTLFLAG_RD, &dualpi2_log_lines, 0,
    "log lines written since the module was loaded");
SYSCTL_U64(_net_inet_ip_dummynet_dualpi2, OID_AUTO, decisions, CTLFLAG_RD, &dualpi2_decisions, 0,
    "decisions that had a log line, logged or left out by log_every, since the module was loaded");
SYSCTL_U64(_net_inet_ip_dummynet_dualpi2, OID_AUTO, nomem_drops, CTLFLAG_RD, &dualpi2_nomem_drops, 0,
    "packets dropped because no mbuf tag could be allocated");
SYSCTL_U64(_net_inet_ip_dummynet_dualpi2, OID_AUTO, rcvif_drops, CTLFLAG_RD, &dualpi2_rcvif_drops, 0,
    "packets dropped at dequeue because their receiving interface went away while they were queued");
/* dummynet creates an instance at the first packet after `ipfw sched N config` and, with
 * net.inet.ip.dummynet.expire != 0, destroys it when idle (dn_drain_scheduler(), ip_dummynet.c): each new
 * instance starts with p' = 0 and a re-seeded PRNG. A repeat must create exactly one and free none. */
SYSCTL_U64(_net_inet_ip_dummynet_dualpi2, OID_AUTO, instances_created, CTLFLAG_RD, &dualpi2_instances_created,
    0, "scheduler instances created since the module was loaded");
SYSCTL_U64(_net_inet_ip_dummynet_dualpi2, OID_AUTO, instances_freed, CTLFLAG_RD, &dualpi2_instances_freed, 0,
    "scheduler instances freed since the module was loaded");

/* dualpi2 mode: the DualPI2Params fields under their own names */
DP2_S64(target_us, dualpi2_defaults.target_us, "PI target queue delay (us)");
DP2_S64(tupdate_us, dualpi2_defaults.tupdate_us, "PI update interval (us)");
DP2_S64(alpha_q, dualpi2_defaults.alpha_q, "PI integral gain: 1/2^32 probability per us of delay error, << 16");
DP2_S64(beta_q, dualpi2_defaults.beta_q, "PI proportional gain, same units as alpha_q");
DP2_S64(alpha_mhz, dualpi2_defaults.alpha_mhz, "alpha in milli-Hz (logged only)");
DP2_S64(beta_mhz, dualpi2_defaults.beta_mhz, "beta in milli-Hz (logged only)");
DP2_S64(k_q8, dualpi2_defaults.k_q8, "coupling factor k in 1/256 units (2 -> 512)");
SYSCTL_U64(_net_inet_ip_dummynet_dualpi2, OID_AUTO, p_cmax, CTLFLAG_RW, &dualpi2_defaults.p_cmax, 0,
    "p_Cmax = min(1/k^2, 1) in 1/2^32 units, logged only (overload is k p' > 1)");
DP2_S64(step_semantics, dualpi2_defaults.step_semantics,
    "native L4S step gate: 0 = Linux (min_qlen_step at enqueue), 1 = RFC 9332 Th_len (at dequeue)");
DP2_S64(step_us, dualpi2_defaults.step_us, "native L4S AQM: step threshold / ramp start minTh (us of sojourn)");
DP2_S64(step_in_packets, dualpi2_defaults.step_in_packets, "1 = the step compares the L queue length with step_packets");
DP2_S64(step_packets, dualpi2_defaults.step_packets, "step threshold (packets left in L) when step_in_packets = 1");
DP2_S64(range_us, dualpi2_defaults.range_us, "native L4S AQM: RFC ramp range (us); 0 = step");
DP2_S64(min_qlen_step, dualpi2_defaults.min_qlen_step,
    "Linux gate: step only packets that found >= this many packets in L on arrival (0 = all)");
DP2_S64(th_len, dualpi2_defaults.th_len, "RFC gate: no native marking with <= th_len packets left in L");
DP2_S64(min_backlog_bytes, dualpi2_defaults.min_backlog_bytes, "no PI drop/mark below this backlog (bytes)");
DP2_S64(scheduler, dualpi2_defaults.scheduler, "0 = WRR with classic protection, 1 = time-shifted FIFO");
DP2_S64(wc, dualpi2_defaults.wc, "WRR weight of the Classic queue (percent)");
DP2_S64(wl, dualpi2_defaults.wl, "WRR weight of the L4S queue (percent)");
DP2_S64(tshift_us, dualpi2_defaults.tshift_us, "time-shifted FIFO: L advantage (us)");
DP2_S64(mtu, dualpi2_defaults.mtu, "MTU (bytes), for the WRR credit");
DP2_S64(limit_packets, dualpi2_defaults.limit_packets, "buffer limit of both queues together (packets)");
DP2_S64(limit_bytes, dualpi2_defaults.limit_bytes, "buffer limit of both queues together (bytes)");
DP2_S64(ecn, dualpi2_defaults.ecn, "1 = CE-mark ECN-capable packets, 0 = always drop");
DP2_S64(drop_on_overload, dualpi2_defaults.drop_on_overload,
    "1 = drop with p_C under overload (k p' > 1); 0 = overflow: p' <= 1/k, keep marking");
DP2_S64(tick_us, dualpi2_defaults.tick_us, "l4s-pie: its clock tick (us); dualpi2 logs microseconds");

/* l4s-pie mode: the PieParams fields, prefixed pie_ */
DP2_S64(pie_qdelay_ref, dualpi2_pie_defaults.qdelay_ref, "PIE target delay (us)");
DP2_S64(pie_tupdate, dualpi2_pie_defaults.tupdate, "PIE update interval (us)");
DP2_S64(pie_max_burst, dualpi2_pie_defaults.max_burst, "PIE burst allowance (us)");
DP2_S64(pie_max_ecnth, dualpi2_pie_defaults.max_ecnth, "PIE ECN threshold (scaled by 2^13)");
DP2_S64(pie_alpha, dualpi2_pie_defaults.alpha, "PIE alpha (scaled by 2^13)");
DP2_S64(pie_beta, dualpi2_pie_defaults.beta, "PIE beta (scaled by 2^13)");
DP2_S64(pie_flags, dualpi2_pie_defaults.flags, "PIE flags (1 ECN, 2 capdrop, 16 derand)");
DP2_S64(pie_coupling, dualpi2_pie_defaults.coupling, "l4s-pie: L prob = max(own p, k x C's p)");
DP2_S64(pie_couple_same_flow, dualpi2_pie_defaults.couple_same_flow,
    "1 = the original code's reading (L sees only its own PIE probability)");

/* ------------------------------------------------------- learned policy (l4stb distill): begin */
/*
 * net.inet.ip.dummynet.dualpi2.policy loads a distilled policy blob (format: l4stb/policyblob.py) at run
 * time, without a rebuild. Stock sysctl(8) refuses a "name=value" longer than BUFSIZ (1024) bytes
 * (sbin/sysctl/sysctl.c, parse(): "oid too long"), so a blob arrives as hex in pieces: "begin", then
 * "+<hex>" pieces of at most DUALPI2_POLICY_PIECE characters, then "commit". Commit validates every byte
 * (dp2_policy_init: bounds, depth, node indices, feature ids, checksum) before the policy is put in force;
 * a bad blob gets EINVAL and a log line, and the policy in force stays. "none" removes it. Reading gives
 * "none" or "v1, <bytes> bytes, <nodes> nodes, depth <d>, checksum <hex>".
 *
 * Like the parameters, the policy in force (and policy_every) is taken by each scheduler instance when
 * dummynet creates it; the instance holds a reference, so a replaced policy is freed after the last
 * instance using it. All references are counted under dualpi2_policy_mtx.
 */
#define DUALPI2_POLICY_PIECE	1000

static MALLOC_DEFINE(M_DUALPI2, "dualpi2", "l4stb dualpi2 policy blobs");

struct dualpi2_policy_ref {
	u_int		refs;
	struct dp2_policy pol;		/* points into blob[] */
	uint8_t		blob[];
};

static struct mtx dualpi2_policy_mtx;
MTX_SYSINIT(dualpi2_policy, &dualpi2_policy_mtx, "dualpi2 policy", MTX_DEF);
static struct dualpi2_policy_ref *dualpi2_policy;	/* in force; NULL: DualPI2 decides every packet */
static uint8_t *dualpi2_staging;			/* a blob being loaded piece by piece */
static size_t dualpi2_staged;
static int64_t dualpi2_policy_every = 1;

DP2_S64(policy_every, dualpi2_policy_every,
    "the loaded policy decides every N-th dequeue decision (1 = every packet), DualPI2 the rest; 0 = off");

/* Drop one reference (dualpi2_policy_mtx held). */
static void
dualpi2_policy_release(struct dualpi2_policy_ref *ref)
{
	if (ref != NULL && --ref->refs == 0)
		free(ref, M_DUALPI2);
}

static int
dualpi2_policy_refuse(const char *why)
{
	log(LOG_WARNING, "%s: policy refused: %s; the policy in force stays\n", DUALPI2_LOG_TAG, why);
	return (EINVAL);
}

/* "+<hex>": append a piece to the staged blob. */
static int
dualpi2_policy_piece(const char *hex, size_t n)
{
	uint8_t bytes[DUALPI2_POLICY_PIECE / 2];
	long len = dp2_policy_hex_decode(hex, n, bytes, sizeof(bytes));

	if (len < 0)
		return (dualpi2_policy_refuse("a piece is not an even number of hex digits (at most 1000)"));
	mtx_lock(&dualpi2_policy_mtx);
	if (dualpi2_staging == NULL || dualpi2_staged + (size_t)len > DP2_POLICY_MAX_BYTES) {
		mtx_unlock(&dualpi2_policy_mtx);
		return (dualpi2_policy_refuse(dualpi2_staging == NULL ? "a piece without \"begin\"" :
		    "longer than any policy blob"));
	}
	memcpy(dualpi2_staging + dualpi2_staged, bytes, (size_t)len);
	dualpi2_staged += (size_t)len;
	mtx_unlock(&dualpi2_policy_mtx);
	return (0);
}

/* "commit": validate the staged blob completely, then put it in force. */
static int
dualpi2_policy_commit(void)
{
	struct dualpi2_policy_ref *ref, *old;
	uint8_t *staged;
	size_t len;
	int code;

	mtx_lock(&dualpi2_policy_mtx);
	staged = dualpi2_staging;
	len = dualpi2_staged;
	dualpi2_staging = NULL;
	dualpi2_staged = 0;
	mtx_unlock(&dualpi2_policy_mtx);
	if (staged == NULL)
		return (dualpi2_policy_refuse("\"commit\" without \"begin\""));
	ref = malloc(sizeof(*ref) + (len > 0 ? len : 1), M_DUALPI2, M_WAITOK | M_ZERO);
	memcpy(ref->blob, staged, len);
	free(staged, M_DUALPI2);
	code = dp2_policy_init(&ref->pol, ref->blob, len);
	if (code != DP2_POLICY_OK) {
		free(ref, M_DUALPI2);
		return (dualpi2_policy_refuse(dp2_policy_strerror(code)));
	}
	ref->refs = 1;
	mtx_lock(&dualpi2_policy_mtx);
	old = dualpi2_policy;
	dualpi2_policy = ref;
	dualpi2_policy_release(old);
	mtx_unlock(&dualpi2_policy_mtx);
	log(LOG_INFO, "%s: policy loaded: %u bytes, %u nodes, depth %u, checksum %08x\n", DUALPI2_LOG_TAG,
	    (u_int)ref->pol.n_bytes, (u_int)ref->pol.n_nodes, (u_int)ref->pol.max_depth, (u_int)ref->pol.checksum);
	return (0);
}

static int
dualpi2_sysctl_policy(SYSCTL_HANDLER_ARGS)
{
	char buf[DUALPI2_POLICY_PIECE + 8];
	uint8_t *staging;
	size_t n;
	int error;

	if (req->newptr == NULL) {
		mtx_lock(&dualpi2_policy_mtx);
		if (dualpi2_policy == NULL)
			snprintf(buf, sizeof(buf), "none");
		else
			snprintf(buf, sizeof(buf), "v%d, %u bytes, %u nodes, depth %u, checksum %08x",
			    DP2_POLICY_VERSION, (u_int)dualpi2_policy->pol.n_bytes, (u_int)dualpi2_policy->pol.n_nodes,
			    (u_int)dualpi2_policy->pol.max_depth, (u_int)dualpi2_policy->pol.checksum);
		mtx_unlock(&dualpi2_policy_mtx);
		return (SYSCTL_OUT(req, buf, strlen(buf) + 1));
	}
	if (req->newlen >= sizeof(buf))
		return (dualpi2_policy_refuse("a piece longer than 1000 hex digits"));
	error = SYSCTL_IN(req, buf, req->newlen);
	if (error != 0)
		return (error);
	n = req->newlen;
	while (n > 0 && (buf[n - 1] == '\0' || buf[n - 1] == '\n' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	if (strcmp(buf, "begin") == 0) {
		staging = malloc(DP2_POLICY_MAX_BYTES, M_DUALPI2, M_WAITOK | M_ZERO);
		mtx_lock(&dualpi2_policy_mtx);
		if (dualpi2_staging != NULL)
			free(dualpi2_staging, M_DUALPI2);
		dualpi2_staging = staging;
		dualpi2_staged = 0;
		mtx_unlock(&dualpi2_policy_mtx);
		return (0);
	}
	if (buf[0] == '+')
		return (dualpi2_policy_piece(buf + 1, n - 1));
	if (strcmp(buf, "commit") == 0)
		return (dualpi2_policy_commit());
	if (strcmp(buf, "none") == 0) {
		mtx_lock(&dualpi2_policy_mtx);
		dualpi2_policy_release(dualpi2_policy);
		dualpi2_policy = NULL;
		mtx_unlock(&dualpi2_policy_mtx);
		return (0);
	}
	return (dualpi2_policy_refuse("write begin, +<hex>, commit or none"));
}
SYSCTL_PROC(_net_inet_ip_dummynet_dualpi2, OID_AUTO, policy, CTLTYPE_STRING | CTLFLAG_RW | CTLFLAG_MPSAFE, NULL, 0,
    dualpi2_sysctl_policy, "A", "learned policy: write begin, +<hex> pieces, commit (validated first) or none");

/* At unload (refused while a scheduler instance exists): free what is left. */
static void
dualpi2_policy_unload(void *arg __unused)
{
	mtx_lock(&dualpi2_policy_mtx);
	dualpi2_policy_release(dualpi2_policy);
	dualpi2_policy = NULL;
	if (dualpi2_staging != NULL)
		free(dualpi2_staging, M_DUALPI2);
	dualpi2_staging = NULL;
	mtx_unlock(&dualpi2_policy_mtx);
}
SYSUNINIT(dualpi2_policy_unload, SI_SUB_DRIVERS, SI_ORDER_ANY, dualpi2_policy_unload, NULL);
/* ------------------------------------------------------- learned policy (l4stb distill): end */

/* ------------------------------------------------------------------------------------ instances */

struct dualpi2_si {
	struct dn_sch_inst _si;		/* standard scheduler instance; must be first */
	struct dn_queue main_q;		/* counters shown by `ipfw sched show` */
	struct dp2_state core;
	struct dualpi2_policy_ref *policy;	/* the policy in force at creation (a reference), or NULL */
	uint64_t	log_every;	/* log_every at creation (>= 1) */
	uint64_t	decisions;	/* decisions with a log line so far; every log_every-th is logged */
};

static struct dn_alg dualpi2_desc;

/* The generated field list and the core agree on the number of logged values. */
CTASSERT(nitems(dualpi2_log_field_names) == DUALPI2_LOG_NFIELDS);
CTASSERT(DUALPI2_LOG_NFIELDS == 27);	/* dualpi2_log's format string prints exactly 27 values */

/* Microseconds of uptime from sbinuptime() (32.32 fixed point seconds), without overflow. */
static __inline int64_t
dualpi2_now_us(void)
{
	sbintime_t t = sbinuptime();

	return ((int64_t)(t >> 32) * 1000000 + (int64_t)((((uint64_t)t & 0xffffffffULL) * 1000000) >> 32));
}

/* Under dummynet's lock, as enqueue and dequeue run (ip_dn_io.c), so the counters need no atomics. */
static void
dualpi2_log(struct dualpi2_si *si, const struct dp2_decision *d)
{
	const int64_t *f = d->fields;

	if (!d->logged)
		return;
	dualpi2_decisions++;
	if (si->decisions++ % si->log_every != 0 || !dualpi2_log_enabled)
		return;
	dualpi2_log_lines++;
	log(LOG_INFO, "%s: %s,%jd,%jd,%jd,%jd,%jd,%jd,%jd,%jd,%jd,%jd,%jd,%jd,%jd,%jd,%jd,%jd,%jd,%jd,%jd,%jd,"
	    "%jd,%jd,%jd,%jd,%jd,%jd,%jd,%s\n", DUALPI2_LOG_TAG, DUALPI2_LOG_PREFIX,
	    (intmax_t)f[0], (intmax_t)f[1], (intmax_t)f[2], (intmax_t)f[3], (intmax_t)f[4], (intmax_t)f[5],
	    (intmax_t)f[6], (intmax_t)f[7], (intmax_t)f[8], (intmax_t)f[9], (intmax_t)f[10], (intmax_t)f[11],
	    (intmax_t)f[12], (intmax_t)f[13], (intmax_t)f[14], (intmax_t)f[15], (intmax_t)f[16], (intmax_t)f[17],
	    (intmax_t)f[18], (intmax_t)f[19], (intmax_t)f[20], (intmax_t)f[21], (intmax_t)f[22], (intmax_t)f[23],
	    (intmax_t)f[24], (intmax_t)f[25], (intmax_t)f[26], DUALPI2_LOG_END);
}

/* The packet's ECN field and a flow id ((source port << 16) | destination port for TCP/UDP over IPv4). */
static void
dualpi2_classify(struct mbuf *m, int *ecn, int64_t *flow)
{
	int off = dn_tag_get(m)->iphdr_off;	/* dummynet's tag is still the first one here */
	struct ip *ip = (struct ip *)mtodo(m, off);
	uint16_t *ports;

	*ecn = DP2_NOT_ECT;
	*flow = 0;
	if (ip->ip_v == 4) {
		*ecn = ip->ip_tos & IPTOS_ECN_MASK;
		off += ip->ip_hl << 2;
		if ((ip->ip_p == IPPROTO_TCP || ip->ip_p == IPPROTO_UDP) && m->m_len >= off + 4 &&
		    (ntohs(ip->ip_off) & IP_OFFMASK) == 0) {
			ports = (uint16_t *)mtodo(m, off);
			*flow = ((int64_t)ntohs(ports[0]) << 16) | ntohs(ports[1]);
		}
	}
#ifdef INET6
	else if (ip->ip_v == 6) {
		struct ip6_hdr *ip6 = (struct ip6_hdr *)ip;

		*ecn = (ntohl(ip6->ip6_flow) >> 20) & IPTOS_ECN_MASK;
	}
#endif
}

static __inline void
dualpi2_stats(struct dualpi2_si *si, int len, int drop)
{
	/* +len: enqueued; -len: dequeued; drop: dropped (at enqueue with len 0) */
	if (drop) {
		si->main_q.ni.drops++;
		si->_si.ni.drops++;
		/* as fq_pie's fq_update_stats() and dn_enqueue() do: dummynet_io() (ip_dn_io.c) takes one off
		 * io_pkt_drop when enqueue() reports a drop and adds it back, so the scheduler counts its own */
		V_dn_cfg.io_pkt_drop++;
	}
	if (len > 0) {
		si->main_q.ni.tot_pkts++;
		si->main_q.ni.tot_bytes += len;
		si->_si.ni.tot_pkts++;
		si->_si.ni.tot_bytes += len;
	}
	if (len != 0) {
		si->main_q.ni.length += len > 0 ? 1 : -1;
		si->main_q.ni.len_bytes += len;
		si->_si.ni.length += len > 0 ? 1 : -1;
		si->_si.ni.len_bytes += len;
	}
}

static void
dualpi2_free_pkt(struct dp2_pkt *pkt)
{
	FREE_PKT((struct mbuf *)pkt->ctx);	/* frees the tag, and the record in it, too */
}

/*
 * Link our tag in right after dummynet's, which dummynet_io() (tag_mbuf(), ip_dn_io.c) m_tag_prepend()ed,
 * so that m_tag_first() stays dummynet's tag for dn_tag_get() and ecn_mark(). sys/sys/mbuf.h has no
 * insert-after, but its m_tag_prepend() is SLIST_INSERT_HEAD on m_pkthdr.tags through m_tag_link.
 */
static void
dualpi2_tag_attach(struct mbuf *m, struct m_tag *mtag)
{
	struct m_tag *dn = m_tag_first(m);

	if (dn == NULL)
		m_tag_prepend(m, mtag);
	else
		SLIST_INSERT_AFTER(dn, mtag, m_tag_link);
}

static int
dualpi2_enqueue(struct dn_sch_inst *_si, struct dn_queue *q __unused, struct mbuf *m)
{
	struct dualpi2_si *si = (struct dualpi2_si *)_si;
	struct dp2_decision d;
	struct dp2_pkt *pkt;
	struct m_tag *mtag;
	int64_t now = dualpi2_now_us();
	int len = m->m_pkthdr.len;

	mtag = m_tag_alloc(DUALPI2_MTAG_COOKIE, DUALPI2_MTAG_TYPE, sizeof(struct dp2_pkt), M_NOWAIT);
	if (mtag == NULL) {
		dualpi2_nomem_drops++;
		dualpi2_stats(si, 0, 1);
		FREE_PKT(m);
		return (1);
	}
	pkt = (struct dp2_pkt *)(mtag + 1);
	pkt->next = NULL;
	pkt->len = len;
	pkt->ctx = m;
	dualpi2_classify(m, &pkt->ecn, &pkt->flow);
	dualpi2_tag_attach(m, mtag);
	/*
	 * The packet may wait here for a long time, and its receiving interface may be destroyed meanwhile:
	 * keep (index, generation) instead of the pointer, as dn_enqueue() does for dummynet's own queues,
	 * and restore it at dequeue as dn_dequeue() (dn_sched.h) does. dummynet_io() hands the packet to
	 * enqueue() unserialized (ip_dn_io.c).
	 */
	if (m->m_pkthdr.rcvif != NULL)
		m_rcvif_serialize(m);

	dp2_advance(&si->core, now);
	if (!dp2_enqueue(&si->core, pkt, now, &d)) {
		dualpi2_log(si, &d);
		dualpi2_stats(si, 0, 1);
		FREE_PKT(m);
		return (1);
	}
	dualpi2_log(si, &d);
	if (d.action == DUALPI2_ACTION_MARK)	/* l4s-pie decides (and marks) at enqueue */
		ecn_mark(m);
	dualpi2_stats(si, len, 0);
	while ((pkt = dp2_take_dropped(&si->core)) != NULL) {	/* l4s-pie over its limit: head drops */
		dualpi2_stats(si, -(int)pkt->len, 1);
		dualpi2_free_pkt(pkt);
	}
	return (0);
}

static struct mbuf *
dualpi2_dequeue(struct dn_sch_inst *_si)
{
	struct dualpi2_si *si = (struct dualpi2_si *)_si;
	struct dp2_decision d;
	struct dp2_pkt *pkt;
	struct mbuf *m;
	int64_t now = dualpi2_now_us();

	dp2_advance(&si->core, now);
	for (;;) {
		pkt = dp2_dequeue_one(&si->core, now, &d);
		if (pkt == NULL)
			return (NULL);
		m = pkt->ctx;
		dualpi2_log(si, &d);
		dualpi2_stats(si, -(int)pkt->len, d.action == DUALPI2_ACTION_DROP);
		if (d.action == DUALPI2_ACTION_DROP) {
			dualpi2_free_pkt(pkt);
			continue;
		}
		if (d.action == DUALPI2_ACTION_MARK && si->core.mode == DP2_MODE_DUALPI2)
			ecn_mark(m);
		m_tag_delete(m, ((struct m_tag *)pkt) - 1);
		if (m->m_pkthdr.rcvif != NULL && __predict_false(m_rcvif_restore(m) == NULL)) {
			/* the interface it came in on is gone (dn_dequeue() drops these too) */
			dualpi2_rcvif_drops++;
			dualpi2_stats(si, 0, 1);
			FREE_PKT(m);
			continue;
		}
		return (m);
	}
}

static int
dualpi2_new_sched(struct dn_sch_inst *_si)
{
	struct dualpi2_si *si = (struct dualpi2_si *)_si;
	struct dn_queue *q = &si->main_q;

	set_oid(&q->ni.oid, DN_QUEUE, sizeof(*q));
	q->_si = _si;
	q->fs = _si->sched->fs;
	if (dualpi2_mode == DP2_MODE_L4SPIE) {
		struct dp2_pie_params pie = dualpi2_pie_defaults;

		pie.tick_us = dualpi2_defaults.tick_us;
		pie.limit_packets = dualpi2_defaults.limit_packets;
		pie.limit_bytes = dualpi2_defaults.limit_bytes;
		dp2_init_l4spie(&si->core, &pie, (uint64_t)dualpi2_seed);
	} else
		dp2_init_dualpi2(&si->core, &dualpi2_defaults, (uint64_t)dualpi2_seed);
	si->log_every = dualpi2_log_every > 1 ? (uint64_t)dualpi2_log_every : 1;
	si->decisions = 0;
	mtx_lock(&dualpi2_policy_mtx);	/* learned policy: this instance keeps the one in force now */
	si->policy = dualpi2_policy;
	if (si->policy != NULL)
		si->policy->refs++;
	mtx_unlock(&dualpi2_policy_mtx);
	if (si->policy != NULL && dualpi2_mode == DP2_MODE_DUALPI2)
		dp2_set_policy(&si->core, &si->policy->pol, dualpi2_policy_every);
	/* Under dummynet's lock. unload_dn_sched() (ip_dummynet.c) refuses kldunload with EBUSY while
	 * ref_count != 0, i.e. only while an instance exists: see README.md on unloading. */
	dualpi2_desc.ref_count++;
	dualpi2_instances_created++;
	return (0);
}

static int
dualpi2_free_sched(struct dn_sch_inst *_si)
{
	struct dualpi2_si *si = (struct dualpi2_si *)_si;
	struct dp2_pkt *pkt, *next;

	for (pkt = dp2_drain(&si->core); pkt != NULL; pkt = next) {
		next = pkt->next;
		dualpi2_free_pkt(pkt);
	}
	mtx_lock(&dualpi2_policy_mtx);
	dualpi2_policy_release(si->policy);
	si->policy = NULL;
	mtx_unlock(&dualpi2_policy_mtx);
	dualpi2_desc.ref_count--;
	dualpi2_instances_freed++;
	return (0);
}

static struct dn_alg dualpi2_desc = {
	_SI( .type = )		DN_SCHED_DUALPI2,
	_SI( .name = )		"DUALPI2",
	_SI( .flags = )		0,
	_SI( .schk_datalen = )	0,
	_SI( .si_datalen = )	sizeof(struct dualpi2_si) - sizeof(struct dn_sch_inst),
	_SI( .q_datalen = )	0,
	_SI( .enqueue = )	dualpi2_enqueue,
	_SI( .dequeue = )	dualpi2_dequeue,
	_SI( .config = )	NULL,	/* stock ipfw passes no parameters: they are sysctls */
	_SI( .destroy = )	NULL,
	_SI( .new_sched = )	dualpi2_new_sched,
	_SI( .free_sched = )	dualpi2_free_sched,
	_SI( .new_fsk = )	NULL,
	_SI( .free_fsk = )	NULL,
	_SI( .new_queue = )	NULL,
	_SI( .free_queue = )	NULL,
#ifdef NEW_AQM
	_SI( .getconfig = )	NULL,
#endif
};

DECLARE_DNSCHED_MODULE(dn_dualpi2, &dualpi2_desc);
MODULE_VERSION(dn_dualpi2, 1);
