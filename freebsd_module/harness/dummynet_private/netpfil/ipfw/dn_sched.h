/*
 * TEST-ONLY stand-in for sys/netpfil/ipfw/dn_sched.h (not installed by FreeBSD): the scheduler API
 * that dn_sched_dualpi2.c implements. Written from freebsd/freebsd-src sys/netpfil/ipfw/dn_sched.h at
 * ba0fe1ddeff5 (August 2023, before stable/14 branched: the list link is a CK_LIST_ENTRY).
 * SPDX-License-Identifier: BSD-2-Clause
 */
#ifndef L4STB_DN_SCHED_H
#define L4STB_DN_SCHED_H

#define	DN_MULTIQUEUE	0x01

/* dn_sched.h: a scheduler's descriptor, registered by DECLARE_DNSCHED_MODULE. */
struct dn_alg {
	uint32_t	type;
	const char	*name;
	uint32_t	flags;
	size_t		schk_datalen;
	size_t		si_datalen;
	size_t		q_datalen;
	int		(*enqueue)(struct dn_sch_inst *, struct dn_queue *, struct mbuf *);
	struct mbuf	*(*dequeue)(struct dn_sch_inst *);
	int		(*config)(struct dn_schk *);
	int		(*destroy)(struct dn_schk *);
	int		(*new_sched)(struct dn_sch_inst *);
	int		(*free_sched)(struct dn_sch_inst *);
	int		(*new_fsk)(struct dn_fsk *);
	int		(*free_fsk)(struct dn_fsk *);
	int		(*new_queue)(struct dn_queue *);
	int		(*free_queue)(struct dn_queue *);
#ifdef NEW_AQM
	int		(*getconfig)(struct dn_schk *, struct dn_extra_parms *);
#endif
	int		ref_count;	/* unload_dn_sched() (ip_dummynet.c) refuses while != 0 */
	CK_LIST_ENTRY(dn_alg) next;
};

/* dn_sched.h: the initializer wrapper (empty on Windows). */
#define	_SI(fld)	fld

/* ip_dummynet.c: MOD_LOAD registers the dn_alg, MOD_UNLOAD unregisters it (EBUSY while in use). */
int	dn_sched_modevent(module_t mod, int cmd, void *arg);

/* dn_sched.h: the module glue every dummynet scheduler uses. */
#define	DECLARE_DNSCHED_MODULE(name, dnsched)				\
	static moduledata_t name##_mod = {				\
		#name, dn_sched_modevent, dnsched			\
	};								\
	DECLARE_MODULE(name, name##_mod,				\
	    SI_SUB_PROTO_FIREWALL, SI_ORDER_ANY);			\
	MODULE_DEPEND(name, dummynet, 3, 3, 3)

#endif
