/*
 * kstub_harness.h -- what kstub.c offers the glue harness beyond the kernel's own interfaces:
 * counters, a settable clock, interfaces that can disappear, the sysctl registry.
 * SPDX-License-Identifier: BSD-2-Clause
 */
#ifndef L4STB_KSTUB_HARNESS_H
#define L4STB_KSTUB_HARNESS_H

#define	KSTUB_NIFNET	4

struct kstub_counts {
	long	live_mbufs;
	long	freed_mbufs;
	long	live_tags;
	long	log_lines;
	long	ecn_mark_calls;
	int	fail_tag_allocs;	/* make this many m_tag_alloc() calls fail */
};
extern struct kstub_counts kstub_counts;
extern int64_t kstub_now_us;
extern struct ifnet kstub_ifnets[KSTUB_NIFNET];
extern struct dn_alg *kstub_sched;
extern moduledata_t *const kstub_module;

struct mbuf	*kstub_mbuf_new(void);
void		 kstub_ifnet_destroy(int idx);
int64_t		*kstub_sysctl(const char *name, int want_write);
int		 kstub_sysctl_string(const char *name, const char *value, char *out, size_t outlen);
long		 kstub_kmalloc_live(void);

#endif
