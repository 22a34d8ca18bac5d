/*
 * kstub.c -- TEST-ONLY stand-ins for the FreeBSD kernel and dummynet.ko functions that
 * dn_sched_dualpi2.c calls, each behaving as FreeBSD's does, and each failing loudly (abort) where
 * FreeBSD would silently corrupt memory or panic. Used by glue_harness.c.
 *
 * SPDX-License-Identifier: BSD-2-Clause
 */
#include <stdio.h>
#include <stdlib.h>

#include "kstub.h"
#include "opt_inet.h"
#include "opt_inet6.h"
#include <netpfil/ipfw/ip_fw_private.h>
#include <netpfil/ipfw/dn_heap.h>
#include <netpfil/ipfw/ip_dn_private.h>
#include <netpfil/ipfw/dn_sched.h>

#include "kstub_harness.h"

struct dn_parms vnet_entry_dn_cfg;	/* ip_dn_io.c: VNET_DEFINE(struct dn_parms, dn_cfg) */

static void
die(const char *what)
{
	fprintf(stderr, "kernel stand-in: %s\n", what);
	fflush(NULL);
	abort();
}

/* ------------------------------------------------------------------------------------ mbufs and tags */

struct kstub_counts kstub_counts;

/* kern/uipc_mbuf2.c m_tag_alloc(): malloc'd tag + len bytes of data; NULL when no memory (M_NOWAIT). */
struct m_tag *
m_tag_alloc(uint32_t cookie, uint16_t type, int len, int wait)
{
	struct m_tag *t;

	if (len < 0 || !(wait & M_NOWAIT))
		die("m_tag_alloc: the glue runs with dummynet's lock held and must pass M_NOWAIT");
	if (kstub_counts.fail_tag_allocs > 0) {
		kstub_counts.fail_tag_allocs--;
		return (NULL);
	}
	t = malloc(sizeof(*t) + (size_t)len);
	if (t == NULL)
		return (NULL);
	if (wait & M_ZERO)
		memset(t + 1, 0, (size_t)len);
	t->m_tag_id = type;
	t->m_tag_len = (uint16_t)len;
	t->m_tag_cookie = cookie;
	t->m_tag_free = NULL;
	kstub_counts.live_tags++;
	return (t);
}

static void
tag_free(struct m_tag *t)
{
	kstub_counts.live_tags--;
	free(t);
}

/* kern/uipc_mbuf2.c m_tag_delete(): unlink from this mbuf (wherever it is in the list) and free. */
void
m_tag_delete(struct mbuf *m, struct m_tag *t)
{
	struct m_tag *p;
	int found = 0;

	SLIST_FOREACH(p, &m->m_pkthdr.tags, m_tag_link)
		if (p == t)
			found = 1;
	if (!found)
		die("m_tag_delete: the tag is not on this mbuf");
	SLIST_REMOVE(&m->m_pkthdr.tags, t, m_tag, m_tag_link);
	tag_free(t);
}

struct mbuf *
kstub_mbuf_new(void)
{
	struct mbuf *m = calloc(1, sizeof(*m));

	if (m == NULL)
		die("out of memory");
	m->m_data = m->m_buf;
	SLIST_INIT(&m->m_pkthdr.tags);
	kstub_counts.live_mbufs++;
	return (m);
}

/* kern/uipc_mbuf.c m_freem() of a one-mbuf packet: frees its tags (m_tag_delete_chain) and itself. */
void
m_freem(struct mbuf *m)
{
	struct m_tag *t;

	if (m == NULL)
		return;
	if (m->m_nextpkt != NULL)
		die("m_freem: the packet is still linked into a queue (m_nextpkt != NULL)");
	while ((t = SLIST_FIRST(&m->m_pkthdr.tags)) != NULL) {
		SLIST_REMOVE_HEAD(&m->m_pkthdr.tags, m_tag_link);
		tag_free(t);
	}
	kstub_counts.live_mbufs--;
	kstub_counts.freed_mbufs++;
	free(m);
}

/* ------------------------------------------------------------------------- receive interface (rcvif) */

struct ifnet kstub_ifnets[KSTUB_NIFNET];
static int ifnet_gone[KSTUB_NIFNET];

/* kern/kern_mbuf.c m_rcvif_serialize(): keep (index, generation) in place of the pointer. FreeBSD
 * dereferences the pointer here, so serializing twice reads garbage: this stand-in aborts instead. */
void
m_rcvif_serialize(struct mbuf *m)
{
	struct ifnet *ifp = m->m_pkthdr.rcvif;

	if (m->kstub_rcvif_serialized)
		die("m_rcvif_serialize: rcvif is already serialized (FreeBSD would dereference garbage)");
	if (ifp == NULL)
		die("m_rcvif_serialize: no receive interface");
	m->m_pkthdr.rcvidx = ifp->if_index;
	m->m_pkthdr.rcvgen = ifp->if_idxgen;
	m->kstub_rcvif_serialized = 1;
}

/* kern/kern_mbuf.c m_rcvif_restore(): look the interface up by (index, generation); NULL if it is gone. */
struct ifnet *
m_rcvif_restore(struct mbuf *m)
{
	uint16_t idx = m->m_pkthdr.rcvidx, gen = m->m_pkthdr.rcvgen;

	if (!m->kstub_rcvif_serialized)
		die("m_rcvif_restore: rcvif was never serialized (FreeBSD would look up garbage)");
	m->kstub_rcvif_serialized = 0;
	if (idx >= KSTUB_NIFNET || ifnet_gone[idx] || kstub_ifnets[idx].if_idxgen != gen)
		return (NULL);
	m->m_pkthdr.rcvif = &kstub_ifnets[idx];
	return (m->m_pkthdr.rcvif);
}

void
kstub_ifnet_destroy(int idx)
{
	ifnet_gone[idx] = 1;
}

/* ----------------------------------------------------------------------------------------- dummynet */

/* ip_dn_io.c dn_tag_get(): the FIRST tag of the mbuf is taken to be dummynet's. FreeBSD checks this
 * only under INVARIANTS (KASSERT) and otherwise reads whatever tag is first; this stand-in aborts. */
struct dn_pkt_tag *
dn_tag_get(struct mbuf *m)
{
	struct m_tag *t = m_tag_first(m);

	if (t == NULL || t->m_tag_cookie != MTAG_ABI_COMPAT || t->m_tag_id != PACKET_TAG_DUMMYNET) {
		fprintf(stderr, "kernel stand-in: dn_tag_get: the first mbuf tag is not dummynet's "
		    "(cookie %u type %u): ecn_mark()/dummynet would read another tag's data as "
		    "struct dn_pkt_tag\n", t ? (unsigned)t->m_tag_cookie : 0, t ? (unsigned)t->m_tag_id : 0);
		fflush(NULL);
		abort();
	}
	return ((struct dn_pkt_tag *)(t + 1));
}

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') in one's complement arithmetic, one 16-bit word changed. */
static uint16_t
cksum_update(uint16_t hc, uint16_t old_word, uint16_t new_word)
{
	uint32_t sum = (uint16_t)~hc + (uint16_t)~old_word + new_word;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ((uint16_t)~sum);
}

/* ip_dn_io.c ecn_mark(): set CE in the IP header at dn_tag_get(m)->iphdr_off, fixing the IPv4 header
 * checksum; 0 for a not-ECT packet (the caller must drop instead), 1 when marked or already CE. */
int
ecn_mark(struct mbuf *m)
{
	struct ip *ip = (struct ip *)mtodo(m, dn_tag_get(m)->iphdr_off);

	kstub_counts.ecn_mark_calls++;
	if (ip->ip_v == IPVERSION) {
		uint16_t old_word, new_word;

		if ((ip->ip_tos & IPTOS_ECN_MASK) == IPTOS_ECN_NOTECT)
			return (0);
		if ((ip->ip_tos & IPTOS_ECN_MASK) == IPTOS_ECN_CE)
			return (1);
		memcpy(&old_word, ip, 2);
		ip->ip_tos |= IPTOS_ECN_CE;
		memcpy(&new_word, ip, 2);
		ip->ip_sum = cksum_update(ip->ip_sum, old_word, new_word);
		return (1);
	}
	if (ip->ip_v == 6) {
		struct ip6_hdr *ip6 = (struct ip6_hdr *)ip;
		uint32_t flow = ntohl(ip6->ip6_flow);

		if (((flow >> 20) & IPTOS_ECN_MASK) == IPTOS_ECN_NOTECT)
			return (0);
		ip6->ip6_flow = htonl(flow | ((uint32_t)IPTOS_ECN_CE << 20));
		return (1);
	}
	return (0);
}

/* ip_dummynet.c dn_sched_modevent(): MOD_LOAD registers the scheduler; MOD_UNLOAD is refused with EBUSY
 * while its ref_count != 0 (unload_dn_sched()). */
struct dn_alg *kstub_sched;

int
dn_sched_modevent(module_t mod __unused, int cmd, void *arg)
{
	struct dn_alg *d = arg;

	if (cmd == MOD_LOAD) {
		if (d == NULL || d->enqueue == NULL || d->dequeue == NULL)
			return (1);
		kstub_sched = d;
		return (0);
	}
	if (cmd == MOD_UNLOAD) {
		if (d->ref_count != 0)
			return (KSTUB_EBUSY);
		kstub_sched = NULL;
		return (0);
	}
	return (KSTUB_EINVAL);
}

/* ------------------------------------------------------------------------------------- time, log */

int64_t kstub_now_us;

/* kern/kern_tc.c (via sys/time.h): uptime as 32.32 fixed point; rounded up so that the glue's
 * conversion back to microseconds gives kstub_now_us exactly. */
sbintime_t
sbinuptime(void)
{
	int64_t s = kstub_now_us / 1000000, us = kstub_now_us % 1000000;

	return ((s << 32) + (int64_t)((((uint64_t)us << 32) + 999999) / 1000000));
}

/* kern/subr_prf.c log(9): the harness prints each line as "L <line>" on stdout. */
void
log(int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (level != LOG_INFO && level != LOG_WARNING)
		die("log: the glue logs at LOG_INFO (decisions) or LOG_WARNING (a refused policy)");
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		die("log: line too long");
	if (n == 0 || line[n - 1] != '\n')
		die("log: a log(9) line must end in a newline");
	kstub_counts.log_lines++;
	printf("L %s", line);
}

/* --------------------------------------------------------------------------------------- sysctls */

static struct {
	const char	*name;
	int64_t		*value;
	int		flags;
} sysctls[128];
static int nsysctls;

void
kstub_sysctl_register(const char *name, int64_t *value, int flags)
{
	if (nsysctls == (int)nitems(sysctls))
		die("too many sysctls");
	sysctls[nsysctls].name = name;
	sysctls[nsysctls].value = value;
	sysctls[nsysctls].flags = flags;
	nsysctls++;
}

int64_t *
kstub_sysctl(const char *name, int want_write)
{
	int i;

	for (i = 0; i < nsysctls; i++) {
		if (strcmp(sysctls[i].name, name) != 0)
			continue;
		if (want_write && !(sysctls[i].flags & CTLFLAG_WR))
			return (NULL);
		return (sysctls[i].value);
	}
	return (NULL);
}

/* ------------------------------------------------- the learned-policy sysctl (l4stb distill): begin */

static long kstub_kmallocs;	/* live malloc(9) blocks */

/* kern/kern_malloc.c malloc(9)/free(9): M_WAITOK never fails; M_ZERO zeroes. */
void *
kstub_kmalloc(size_t size, struct malloc_type *type, int flags)
{
	void *p;

	if (type == NULL || !(flags & (M_WAITOK | M_NOWAIT)))
		die("malloc(9): a type and M_WAITOK or M_NOWAIT are required");
	p = (flags & M_ZERO) ? calloc(1, size) : malloc(size);
	if (p == NULL)
		die("malloc(9): out of memory");
	kstub_kmallocs++;
	return (p);
}

void
kstub_kfree(void *addr, struct malloc_type *type)
{
	if (type == NULL)
		die("free(9): a malloc type is required");
	if (addr != NULL)
		kstub_kmallocs--;
	free(addr);
}

long
kstub_kmalloc_live(void)
{
	return (kstub_kmallocs);
}

/* kern/kern_mutex.c: one thread, so recursion or unlocking what is not held is a bug of the glue. */
void
kstub_mtx_lock(struct mtx *m)
{
	if (m->kstub_held)
		die("mtx_lock: already held (a non-recursive mutex would panic)");
	m->kstub_held = 1;
}

void
kstub_mtx_unlock(struct mtx *m)
{
	if (!m->kstub_held)
		die("mtx_unlock: not held");
	m->kstub_held = 0;
}

/* kern/kern_sysctl.c: SYSCTL_IN copies exactly l more bytes of the new value (EINVAL past its end);
 * SYSCTL_OUT appends to the old value (ENOMEM past the caller's buffer). */
int
kstub_sysctl_in(struct sysctl_req *req, void *p, size_t l)
{
	if (req->newptr == NULL || l > req->newlen - req->newidx)
		return (KSTUB_EINVAL);
	memcpy(p, (const char *)req->newptr + req->newidx, l);
	req->newidx += l;
	return (0);
}

int
kstub_sysctl_out(struct sysctl_req *req, const void *p, size_t l)
{
	if (req->oldptr != NULL) {
		if (l > req->oldlen - req->oldidx)
			return (12);	/* ENOMEM */
		memcpy(req->oldptr + req->oldidx, p, l);
	}
	req->oldidx += l;
	return (0);
}

static struct {
	const char		*name;
	kstub_sysctl_handler_t	handler;
	int			flags;
} procs[8];
static int nprocs;

void
kstub_sysctl_proc_register(const char *name, kstub_sysctl_handler_t handler, int flags)
{
	if (nprocs == (int)nitems(procs))
		die("too many SYSCTL_PROCs");
	procs[nprocs].name = name;
	procs[nprocs].handler = handler;
	procs[nprocs].flags = flags;
	nprocs++;
}

/* Read (value NULL) or write a string OID as sysctl(8) does: the written value without its NUL. */
int
kstub_sysctl_string(const char *name, const char *value, char *out, size_t outlen)
{
	struct sysctl_req req;
	int i;

	for (i = 0; i < nprocs; i++) {
		if (strcmp(procs[i].name, name) != 0)
			continue;
		memset(&req, 0, sizeof(req));
		if (value != NULL) {
			req.newptr = value;
			req.newlen = strlen(value);
			return (procs[i].handler(NULL, NULL, 0, &req));
		}
		req.oldptr = out;
		req.oldlen = outlen;
		return (procs[i].handler(NULL, NULL, 0, &req));
	}
	die("no such string sysctl");
	return (KSTUB_EINVAL);
}
/* --------------------------------------------------- the learned-policy sysctl (l4stb distill): end */
