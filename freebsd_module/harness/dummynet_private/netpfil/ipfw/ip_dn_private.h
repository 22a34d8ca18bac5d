/*
 * TEST-ONLY stand-in for sys/netpfil/ipfw/ip_dn_private.h (not installed by FreeBSD): the subset of
 * dummynet's internal API that dn_sched_dualpi2.c uses. Written from freebsd/freebsd-src
 * sys/netpfil/ipfw/ip_dn_private.h at 2de4e57535e3 (the VNET V_dn_cfg version that 14.x carries).
 * Field order follows that file so the structs have its shape, but nothing checks them against a
 * 14.1 kernel: the router builds against its own /usr/src.
 * SPDX-License-Identifier: BSD-2-Clause
 */
#ifndef L4STB_IP_DN_PRIVATE_H
#define L4STB_IP_DN_PRIVATE_H

/* ip_dn_private.h: dummynet's malloc type (defined in ip_dn_io.c). */
MALLOC_DECLARE(M_DUMMYNET);

/* ip_dn_private.h: a FIFO of mbufs linked through m_nextpkt. */
struct mq {
	struct mbuf	*head;
	struct mbuf	*tail;
	int		count;
};

/* ip_dn_private.h: fills the header every dummynet object starts with. */
static inline void
set_oid(struct dn_id *o, int type, int len)
{
	o->type = type;
	o->len = len;
	o->subtype = 0;
}

struct dn_fsk;
SLIST_HEAD(dn_fsk_head, dn_fsk);

/* ip_dn_private.h: dummynet's per-VNET state; io_pkt_drop is what `sysctl
 * net.inet.ip.dummynet.io_pkt_drop` shows, and schedulers that drop packets themselves add to it. */
struct dn_parms {
	uint32_t	id;
	int		red_lookup_depth;
	int		red_avg_pkt_size;
	int		red_max_pkt_size;
	int		hash_size;
	int		max_hash_size;
	long		byte_limit;
	long		slot_limit;
	int		io_fast;
	int		debug;
	struct timeval	prev_t;
	struct dn_heap	evheap;
	long		tick_last;
	long		tick_delta;
	long		tick_delta_sum;
	long		tick_adjustment;
	long		tick_lost;
	long		tick_diff;
	int		schk_count;
	int		si_count;
	int		fsk_count;
	int		queue_count;
	unsigned long	io_pkt;
	unsigned long	io_pkt_fast;
	unsigned long	io_pkt_drop;
	uint64_t	curr_time;
	struct dn_ht	*fshash;
	struct dn_ht	*schedhash;
	struct dn_fsk_head fsu;
	int		drain_fs;
	int		drain_sch;
	uint32_t	expire;		/* net.inet.ip.dummynet.expire */
	uint32_t	expire_cycle;
	int		init_done;
	struct mtx	uh_mtx;
	struct mtx	bh_mtx;
};

/* ip_dn_private.h: the packets a scheduler instance has sent, waiting out the link delay. */
struct dn_sch_inst;
struct delay_line {
	struct dn_id		oid;
	struct dn_sch_inst	*si;
	struct mq		mq;
};

/* ip_dn_private.h: a queue; for a !DN_MULTIQUEUE scheduler its instance's dn_queue must follow the
 * dn_sch_inst directly (drain_scheduler_cb() in ip_dummynet.c reads (si + 1)->ni.length). */
struct dn_queue {
	struct dn_flow		ni;
	struct mq		mq;
	struct dn_sch_inst	*_si;
	SLIST_ENTRY(dn_queue)	q_next;
	struct dn_fsk		*fs;
	int			avg;
	int			count;
	int			random;
	uint64_t		q_time;
#ifdef NEW_AQM
	void			*aqm_status;
#endif
};

/* ip_dn_private.h: the kernel side of `ipfw sched N config`. */
struct dn_alg;
struct dn_profile;
struct dn_schk {
	struct dn_sch		sch;
	struct dn_alg		*fp;
	struct dn_link		link;
	struct dn_profile	*profile;
	struct dn_id		*cfg;
	SLIST_ENTRY(dn_schk)	schk_next;
	struct dn_fsk_head	fsk_list;
	struct dn_fsk		*fs;
	int			drain_bucket;
	struct dn_ht		*siht;
};

/* ip_dn_private.h: one scheduler instance; dn_alg.si_datalen bytes of the scheduler's follow it. */
struct dn_sch_inst {
	struct dn_flow		ni;
	SLIST_ENTRY(dn_sch_inst) si_next;
	struct delay_line	dline;
	struct dn_schk		*sched;
	int			kflags;
	int64_t			credit;
	uint64_t		sched_time;
	uint64_t		idle_time;
	int			q_count;
};

/* ip_dn_private.h: the mbuf tag dummynet_io() prepends (PACKET_TAG_DUMMYNET, MTAG_ABI_COMPAT). */
struct dn_pkt_tag {
	struct ipfw_rule_ref	rule;
	int			dn_dir;
	uint64_t		output_time;
	struct ifnet		*ifp;
	struct _ip6dn_args	ip6opt;
	uint16_t		iphdr_off;	/* IP header offset for mtodo() */
};

/* ip_dn_private.h: dummynet's state, one copy per VNET. */
VNET_DECLARE(struct dn_parms, dn_cfg);
#define	V_dn_cfg	VNET(dn_cfg)

/* ip_dn_io.c: the first tag of the mbuf, which must be dummynet's. */
struct dn_pkt_tag *dn_tag_get(struct mbuf *m);

#ifdef NEW_AQM
/* ip_dn_io.c: sets CE in the IP header at dn_tag_get(m)->iphdr_off; 0 if not ECN-capable. */
int	ecn_mark(struct mbuf *m);
#endif

#endif
