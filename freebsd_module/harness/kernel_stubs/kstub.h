/*
 * kstub.h -- TEST-ONLY stand-ins for the FreeBSD kernel headers that dn_sched_dualpi2.c includes, so
 * that tests/test_module_glue.py can compile the kernel glue itself on Linux (under ASan/UBSan) and
 * drive real IPv4 packets through it. Every kernel header the glue includes is replaced by a
 * generated one-line header that includes this file (see tests/module_builds.py); the dummynet-private
 * headers are the shared test-only declarations in ../dummynet_private.
 *
 * Each declaration names the FreeBSD file whose interface it mirrors; the behaviour lives in kstub.c.
 * Nothing here is copied from FreeBSD.
 *
 * SPDX-License-Identifier: BSD-2-Clause
 */
#ifndef L4STB_KSTUB_H
#define L4STB_KSTUB_H

#include <endian.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/queue.h>		/* glibc's copy of BSD's queue(3) macros: SLIST_*, LIST_* */
#include <sys/select.h>		/* struct timeval */
#include <sys/types.h>		/* u_long, u_int16_t, ... */

/* sys/cdefs.h */
#define	__unused		__attribute__((__unused__))
#define	__predict_false(e)	__builtin_expect((e), 0)
#define	__predict_true(e)	__builtin_expect((e), 1)
#define	CTASSERT(x)		_Static_assert((x), "compile-time assertion failed")

/* sys/param.h */
#ifndef nitems
#define	nitems(x)		(sizeof((x)) / sizeof((x)[0]))
#endif

/* sys/ck.h: the kernel's Concurrency Kit lists; plain LIST_* is enough for one thread. */
#define	CK_LIST_ENTRY(type)	LIST_ENTRY(type)

/* sys/errno.h (values as FreeBSD's) */
#define	KSTUB_EBUSY		16
#define	KSTUB_EINVAL		22

/* netinet/in.h, sys/param.h byte order */
#define	ntohs(x)		be16toh(x)
#define	htons(x)		htobe16(x)
#define	ntohl(x)		be32toh(x)
#define	htonl(x)		htobe32(x)
#define	IPPROTO_ICMP		1
#define	IPPROTO_TCP		6
#define	IPPROTO_UDP		17
struct sockaddr_in6 {
	uint8_t		sin6_len;
	uint8_t		sin6_family;
	uint16_t	sin6_port;
	uint32_t	sin6_flowinfo;
	uint8_t		sin6_addr[16];
	uint32_t	sin6_scope_id;
};

/* netinet/ip.h: the IPv4 header in FreeBSD's layout (little-endian bit fields, __packed: it may start
 * at any offset, e.g. 14 behind an Ethernet header). */
#if BYTE_ORDER != LITTLE_ENDIAN
#error "kstub.h models FreeBSD's struct ip for little-endian hosts only"
#endif
struct ip {
	uint8_t		ip_hl:4, ip_v:4;
	uint8_t		ip_tos;
	uint16_t	ip_len;
	uint16_t	ip_id;
	uint16_t	ip_off;
	uint8_t		ip_ttl;
	uint8_t		ip_p;
	uint16_t	ip_sum;
	uint32_t	ip_src;
	uint32_t	ip_dst;
} __attribute__((__packed__));
#define	IPVERSION		4
#define	IP_OFFMASK		0x1fff
#define	IPTOS_ECN_NOTECT	0x00
#define	IPTOS_ECN_ECT1		0x01
#define	IPTOS_ECN_ECT0		0x02
#define	IPTOS_ECN_CE		0x03
#define	IPTOS_ECN_MASK		0x03

/* netinet/ip6.h (__packed): only the first word (version, traffic class, flow label) matters. */
struct ip6_hdr {
	uint32_t	ip6_flow;
	uint16_t	ip6_plen;
	uint8_t		ip6_nxt;
	uint8_t		ip6_hlim;
	uint8_t		ip6_src[16];
	uint8_t		ip6_dst[16];
} __attribute__((__packed__));

/* net/if_var.h: what m_rcvif_serialize()/m_rcvif_restore() (kern_mbuf.c) use of an interface. */
struct ifnet {
	uint16_t	if_index;
	uint16_t	if_idxgen;
};

/* sys/mbuf.h: packet tags. */
struct m_tag {
	SLIST_ENTRY(m_tag)	m_tag_link;
	uint16_t		m_tag_id;
	uint16_t		m_tag_len;
	uint32_t		m_tag_cookie;
	void			(*m_tag_free)(struct m_tag *);
};
#define	MTAG_ABI_COMPAT		0
#define	PACKET_TAG_DUMMYNET	15
#define	M_NOWAIT		0x0001
#define	M_ZERO			0x0100

/* sys/mbuf.h: a single-buffer mbuf with a packet header. The receive interface shares its storage
 * with (index, generation) as in FreeBSD's struct pkthdr. */
struct pkthdr {
	union {
		struct ifnet	*rcvif;
		struct {
			uint16_t rcvidx;
			uint16_t rcvgen;
		};
	};
	SLIST_HEAD(packet_tags, m_tag) tags;
	int32_t		len;
};
struct mbuf {
	struct mbuf	*m_next;
	struct mbuf	*m_nextpkt;
	char		*m_data;
	int32_t		m_len;
	int		m_flags;
	struct pkthdr	m_pkthdr;
	int		kstub_rcvif_serialized;	/* lets kstub.c catch a wrong serialize/restore order */
	char		m_buf[2048];
};
#define	mtod(m, t)	((t)((m)->m_data))
#define	mtodo(m, o)	((void *)(((m)->m_data) + (o)))

struct m_tag	*m_tag_alloc(uint32_t cookie, uint16_t type, int len, int wait);
void		 m_tag_delete(struct mbuf *m, struct m_tag *t);
void		 m_freem(struct mbuf *m);
void		 m_rcvif_serialize(struct mbuf *m);
struct ifnet	*m_rcvif_restore(struct mbuf *m);

static inline struct m_tag *
m_tag_first(struct mbuf *m)
{
	return (SLIST_FIRST(&m->m_pkthdr.tags));
}

static inline void
m_tag_prepend(struct mbuf *m, struct m_tag *t)
{
	SLIST_INSERT_HEAD(&m->m_pkthdr.tags, t, m_tag_link);
}

/* sys/time.h: the uptime clock, 32.32 fixed-point seconds. */
typedef int64_t sbintime_t;
sbintime_t	sbinuptime(void);

/* sys/syslog.h, sys/systm.h: log(9). */
#define	LOG_INFO	6
void	log(int level, const char *fmt, ...) __attribute__((__format__(__printf__, 2, 3)));

/* sys/malloc.h, sys/mutex.h, net/vnet.h */
#define	MALLOC_DECLARE(type)	extern int kstub_malloc_type_##type
struct mtx {
	int	kstub_held;		/* set while locked (the learned-policy stand-ins check it) */
};
#define	VNET_DECLARE(t, n)	extern t vnet_entry_##n
#define	VNET(n)			vnet_entry_##n

/* sys/sysctl.h: OIDs become entries of a registry the harness reads and writes by name. */
#define	OID_AUTO	(-1)
#define	CTLFLAG_RD	0x80000000
#define	CTLFLAG_WR	0x40000000
#define	CTLFLAG_RW	(CTLFLAG_RD | CTLFLAG_WR)
#define	CTLFLAG_MPSAFE	0x00040000
struct sysctl_oid {
	const char	*oid_name;
};
void	kstub_sysctl_register(const char *name, int64_t *value, int flags);
#define	SYSCTL_DECL(name)	extern struct sysctl_oid sysctl_##name
#define	SYSCTL_NODE(parent, nbr, name, access, handler, descr)			\
	struct sysctl_oid sysctl_##parent##_##name __attribute__((__unused__)) = { #name }
#define	KSTUB_SYSCTL64(name, ptr, access)					\
	static void __attribute__((__constructor__)) kstub_sysctl_init_##name(void)	\
	{									\
		kstub_sysctl_register(#name, (int64_t *)(void *)(ptr), (access));	\
	}									\
	struct kstub_sysctl_semicolon
#define	SYSCTL_S64(parent, nbr, name, access, ptr, val, descr)	KSTUB_SYSCTL64(name, ptr, access)
#define	SYSCTL_U64(parent, nbr, name, access, ptr, val, descr)	KSTUB_SYSCTL64(name, ptr, access)

/* sys/module.h, sys/kernel.h: the one module of the harness, handed to dn_sched_modevent() by it. */
typedef struct module *module_t;
typedef int (*modeventhand_t)(module_t, int, void *);
typedef struct moduledata {
	const char	*name;
	modeventhand_t	evhand;
	void		*priv;
} moduledata_t;
enum { MOD_LOAD, MOD_UNLOAD, MOD_SHUTDOWN, MOD_QUIESCE };
#define	SI_SUB_PROTO_FIREWALL	0x2800000
#define	SI_ORDER_ANY		0xfffffff
#define	DECLARE_MODULE(name, data, sub, order)	moduledata_t *const kstub_module = &(data)
#define	MODULE_DEPEND(mod, dep, min, pref, max)	extern int kstub_depend_##mod##_##dep
#define	MODULE_VERSION(mod, ver)		extern int kstub_version_##mod

/* netinet/ip_var.h: the ipfw rule reference at the start of dummynet's tag. */
struct ipfw_rule_ref {
	uint32_t	slot;
	uint32_t	rulenum;
	uint32_t	rule_id;
	uint32_t	chain_id;
	uint32_t	info;
	uint32_t	pkt_mark;
	uint32_t	spare[2];
};

/* netinet/ip_fw.h */
struct ipfw_flow_id {
	uint32_t	dst_ip;
	uint32_t	src_ip;
	uint16_t	dst_port;
	uint16_t	src_port;
	uint8_t		fib;
	uint8_t		proto;
	uint8_t		flags;
	uint8_t		addr_type;
};

/* netinet/ip_dummynet.h (installed by FreeBSD; this is the part the private headers embed). */
#define	NEW_AQM
struct dn_id {
	uint16_t	len;
	uint8_t		type;
	uint8_t		subtype;
	uint32_t	id;
};
enum { DN_NONE, DN_LINK, DN_FS, DN_SCH, DN_SCH_I, DN_QUEUE };
struct dn_flow {
	struct dn_id	oid;
	struct ipfw_flow_id fid;
	uint64_t	tot_pkts;
	uint64_t	tot_bytes;
	uint32_t	length;
	uint32_t	len_bytes;
	uint32_t	drops;
};
struct dn_link {
	struct dn_id	oid;
	uint32_t	link_nr;
	uint32_t	bandwidth;
	int		delay;
	int		burst;
};
struct dn_fs {
	struct dn_id	oid;
	uint32_t	fs_nr;
	uint32_t	sched_nr;
	uint32_t	flags;
	int		qsize;
};
struct dn_sch {
	struct dn_id	oid;
	uint32_t	sched_nr;
	uint32_t	buckets;
	uint32_t	flags;
	char		name[16];
	struct ipfw_flow_id sched_mask;
};
struct dn_extra_parms;

/* ------------------------------------------------- the learned-policy sysctl (l4stb distill): begin
 * Stand-ins for what dn_sched_dualpi2.c's "learned policy" block uses. malloc(9)/free(9) take a malloc
 * type, so they replace libc's names only in the glue's own translation unit (KSTUB_GLUE, set by the
 * generated kernel headers); kstub.c and the harness keep libc's. */
#define	EINVAL			KSTUB_EINVAL
#define	LOG_WARNING		4
#define	MTX_DEF			0x00000000	/* sys/mutex.h */
#define	M_WAITOK		0x0002		/* sys/malloc.h */
#define	SI_SUB_DRIVERS		0x3100000	/* sys/kernel.h */
#define	CTLTYPE_STRING		3		/* sys/sysctl.h */
struct malloc_type {
	const char	*ks_shortdesc;
};
void	*kstub_kmalloc(size_t size, struct malloc_type *type, int flags);
void	 kstub_kfree(void *addr, struct malloc_type *type);
#define	MALLOC_DEFINE(type, shortdesc, longdesc)	struct malloc_type type[1] = { { (shortdesc) } }
/* sys/mutex.h: one thread, so a lock is a flag that catches recursion and unlocking what is not held */
#define	MTX_SYSINIT(name, mtx, desc, opts)	extern int kstub_mtx_sysinit_##name
void	kstub_mtx_lock(struct mtx *m);
void	kstub_mtx_unlock(struct mtx *m);
#define	mtx_lock(m)		kstub_mtx_lock(m)
#define	mtx_unlock(m)		kstub_mtx_unlock(m)
/* sys/kernel.h: a SYSUNINIT runs when the harness process ends (after its last unload) */
#define	SYSUNINIT(uniq, sub, order, func, ident)					static void __attribute__((__destructor__)) kstub_sysuninit_##uniq(void) { (func)(ident); }		struct kstub_sysuninit_semicolon_##uniq
/* sys/sysctl.h: a string OID served by a handler, reachable from the harness by name */
struct sysctl_req {
	const void	*newptr;
	size_t		newlen;
	size_t		newidx;
	char		*oldptr;
	size_t		oldlen;
	size_t		oldidx;
};
#define	SYSCTL_HANDLER_ARGS	struct sysctl_oid *oidp, void *arg1, intmax_t arg2, struct sysctl_req *req
typedef int (*kstub_sysctl_handler_t)(SYSCTL_HANDLER_ARGS);
int	kstub_sysctl_in(struct sysctl_req *req, void *p, size_t l);
int	kstub_sysctl_out(struct sysctl_req *req, const void *p, size_t l);
#define	SYSCTL_IN(r, p, l)	kstub_sysctl_in((r), (p), (l))
#define	SYSCTL_OUT(r, p, l)	kstub_sysctl_out((r), (p), (l))
void	kstub_sysctl_proc_register(const char *name, kstub_sysctl_handler_t handler, int flags);
#define	SYSCTL_PROC(parent, nbr, name, access, ptr, arg, handler, fmt, descr)		\
	static void __attribute__((__constructor__)) kstub_sysctl_proc_init_##name(void)	\
	{										\
		kstub_sysctl_proc_register(#name, (handler), (access));			\
	}										\
	struct kstub_sysctl_proc_semicolon_##name
#ifdef KSTUB_GLUE
#include <stdio.h>		/* snprintf, as sys/systm.h declares it */
#define	malloc(size, type, flags)	kstub_kmalloc((size), (type), (flags))
#define	free(addr, type)		kstub_kfree((addr), (type))
#endif
/* --------------------------------------------------- the learned-policy sysctl (l4stb distill): end */

#endif /* L4STB_KSTUB_H */
