/*
 * dualpi2_core.h -- the pure-C core of l4stb's dualpi2 dummynet scheduler.
 *
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * State, PI update, classification, marking decisions and the log fields, with no kernel headers,
 * no floating point and no division wider than 64 bits. It is a line-by-line port of l4stb's Python
 * cores, which it must match bit for bit (tests/test_module_parity.py replays thousands of random
 * packet sequences through both):
 *
 *   mode DP2_MODE_DUALPI2  <->  testbed/sim/aqm_dualpi2.py  (class DualPI2, RFC 9332 DualPI2)
 *   mode DP2_MODE_L4SPIE   <->  testbed/sim/aqm_l4spie.py   (class L4sPie, the paper's PIE-based
 *                                                            "l4s" scheduler) + aqm_pie.py (PieState)
 *
 * The caller owns the packets: each has a struct dp2_pkt (in the kernel it lives in an mbuf tag and
 * 'ctx' points at the mbuf), which the core links into its two queues. Times are integer
 * microseconds; probabilities are integers (DualPI2: 1/2^32 units, PIE: 2^31-1 scale).
 */
#ifndef DUALPI2_CORE_H
#define DUALPI2_CORE_H

#ifdef _KERNEL
#include <sys/types.h>		/* fixed-width integers only: the core uses no kernel facility */
#else
#include <stdint.h>
#include <stddef.h>
#endif
#ifndef NULL
#define NULL ((void *)0)
#endif

#include "dualpi2_log_fields.h"
#include "dp2_policy.h"

#define DP2_MODE_DUALPI2	0
#define DP2_MODE_L4SPIE		1

#define DP2_P_ONE		((uint64_t)1 << 32)	/* DualPI2 probability 1.0 */
#define DP2_GAIN_SHIFT		16			/* fractional bits of alpha_q/beta_q */
#define DP2_K_SHIFT		8			/* coupling factor in 1/256 units */
#define DP2_LOG_PROB_SCALE	((uint64_t)DUALPI2_PROB_SCALE)	/* 2^31-1 */

#define DP2_SCHED_WRR		0
#define DP2_SCHED_TSFIFO	1
#define DP2_STEP_LINUX		0	/* step_semantics: Linux's skb_apply_step (min_qlen_step, at enqueue) */
#define DP2_STEP_RFC_THLEN	1	/* RFC 9332 A.1's Th_len (packets left in L, at dequeue) */
#define DP2_Q_C			0
#define DP2_Q_L			1

#define DP2_FLAG_ECN		1	/* logged 'flags' bits */
#define DP2_FLAG_OVERLOAD	2
#define DP2_FLAG_STEP		4
#define DP2_STATUS_PI_ACTIVE	1	/* logged 'status_flags' bits */
#define DP2_STATUS_C_BUSY	2
#define DP2_STATUS_L_BUSY	4

#define DP2_NOT_ECT		0	/* ECN field of the IP header */
#define DP2_ECT1		1
#define DP2_ECT0		2
#define DP2_CE			3

/* FreeBSD PIE (dn_aqm_pie.h) constants, as l4stb.sim.aqm_pie uses them */
#define DP2_PIE_MAX_PROB	((int64_t)0x7fffffff)
#define DP2_PIE_FIX_POINT_BITS	13
#define DP2_PIE_MEAN_PKTSIZE	800
#define DP2_PIE_ECN_ENABLED	1
#define DP2_PIE_CAPDROP_ENABLED	2
#define DP2_PIE_DERAND_ENABLED	16
#define DP2_PIE_ACTIVE		1
#define DP2_PIE_INMEASUREMENT	2
#define DP2_PIE_QUANTUM		1514
#define DP2_PIE_WC		1	/* the original's DRR weights: Classic 1 quantum a round, */
#define DP2_PIE_WL		2	/* L 2 quanta */
#define DP2_NEVER		((int64_t)1 << 62)

/* One packet as the core sees it. */
struct dp2_pkt {
	struct dp2_pkt	*next;
	int64_t		t_enq_us;	/* set by the core at enqueue */
	int64_t		len;		/* IP length in bytes */
	int		ecn;		/* ECN field; the core sets DP2_CE when it marks */
	int64_t		flow;		/* flow id, only logged */
	int		apply_step;	/* DualPI2, L queue: Linux's skb_apply_step, set by the core at enqueue */
	void		*ctx;		/* the caller's handle (the mbuf) */
};

struct dp2_queue {
	struct dp2_pkt	*head;
	struct dp2_pkt	*tail;
	int64_t		len;		/* packets */
};

/* DualPI2Params (aqm_dualpi2.py), field for field. */
struct dp2_params {
	int64_t		target_us;
	int64_t		tupdate_us;
	int64_t		alpha_q;
	int64_t		beta_q;
	int64_t		alpha_mhz;
	int64_t		beta_mhz;
	int64_t		k_q8;
	uint64_t	p_cmax;		/* logged only: overload is k p' > 1 */
	int64_t		step_semantics;	/* DP2_STEP_LINUX or DP2_STEP_RFC_THLEN */
	int64_t		step_us;
	int64_t		step_in_packets;
	int64_t		step_packets;
	int64_t		range_us;
	int64_t		min_qlen_step;
	int64_t		th_len;
	int64_t		min_backlog_bytes;
	int64_t		scheduler;
	int64_t		wc;
	int64_t		wl;
	int64_t		tshift_us;
	int64_t		mtu;
	int64_t		limit_packets;
	int64_t		limit_bytes;
	int64_t		ecn;
	int64_t		drop_on_overload;
	int64_t		tick_us;	/* not used by DualPI2, which logs microseconds: the l4s-pie tick */
};

/* PieParams (aqm_pie.py), field for field, plus L4sPie's coupling. */
struct dp2_pie_params {
	int64_t		qdelay_ref;
	int64_t		tupdate;
	int64_t		max_burst;
	int64_t		max_ecnth;	/* scaled by 2^13 */
	int64_t		alpha;		/* scaled by 2^13 */
	int64_t		beta;		/* scaled by 2^13 */
	int64_t		flags;
	int64_t		tick_us;
	int64_t		limit_packets;
	int64_t		limit_bytes;
	int64_t		coupling;	/* L4sPie's k (an integer, 2) */
	int64_t		couple_same_flow; /* 1 reproduces the original code's reading of its own flow */
};

/* DualPI2 state (class DualPI2). */
struct dp2_dualpi2 {
	struct dp2_params prm;
	uint32_t	rng;
	uint64_t	p, p_c, p_cl, p_max;
	int64_t		prev_q, last_update_us, next_update_us, credit;
	struct dp2_queue lq, cq;
	int64_t		l_bytes, c_bytes;
	uint64_t	stats[2][5];	/* per queue: dequeued, enqueued pkts, enqueued bytes, drops, marks */
	uint64_t	marks[2], drops[2];
	/* the learned policy (aqm "policy"; l4stb.sim.policy.PolicyGate): decides every policy_every-th decision */
	const struct dp2_policy *policy;
	int64_t		policy_every;
	uint64_t	policy_count, policy_asked;
};

/* One PIE sub-queue (class PieState). */
struct dp2_pie_queue {
	int64_t		burst_allowance, drop_prob, current_qdelay, qdelay_old, accu_prob, sflags;
	uint64_t	tot_pkts, tot_bytes, drops, marks;
	int64_t		length, len_bytes;
	struct dp2_queue q;
};

/* The l4s-pie state (class L4sPie). */
struct dp2_l4spie {
	struct dp2_pie_params prm;
	struct dp2_pie_queue qs[2];
	uint32_t	rng;
	int64_t		next_update_us;	/* the earlier of next_upd[] */
	int64_t		next_upd[2];	/* each sub-queue's PIE callout; DP2_NEVER while its PIE is off */
	int64_t		deficit[2];
	int		newl[2], nnew;	/* FQ's newflows list (queue indices, head first) */
	int		oldl[2], nold;	/* FQ's oldflows list */
	int64_t		one_third;	/* (limit / 2 flows) / 3, compared with bytes as the original does */
	struct dp2_queue dropped;	/* head drops of the last enqueues (over the limit): dp2_take_dropped */
	int		cur;
	uint64_t	drops[2], marks[2];
};

struct dp2_state {
	int mode;
	struct dp2_dualpi2 d;
	struct dp2_l4spie l;
};

/* The outcome of one call: what replay() would record, plus the log line when one is due. */
struct dp2_decision {
	char		kind;		/* 'E', 'D' or 'U' */
	int64_t		now_us;
	int		queue;		/* 0 C, 1 L, -1 none */
	int		action;		/* DUALPI2_ACTION_*, 0 = none */
	int64_t		length;
	int		ecn_out;
	uint64_t	prob;
	uint64_t	p_prime;
	int64_t		delay_us;
	int		logged;		/* 1 when fields[] holds a log line */
	int64_t		fields[DUALPI2_LOG_NFIELDS];
};

uint32_t dp2_seed_state(uint64_t seed);
uint32_t dp2_xorshift32(uint32_t x);
uint64_t dp2_to_log_prob(uint64_t p);

void	dp2_init_dualpi2(struct dp2_state *s, const struct dp2_params *prm, uint64_t seed);
void	dp2_init_l4spie(struct dp2_state *s, const struct dp2_pie_params *prm, uint64_t seed);

/*
 * Let a validated policy decide every every-th dequeue decision (the 1st, the every+1-th, ...) and DualPI2
 * the rest (dualpi2 mode only); NULL or every < 1 turns it off. The caller keeps *policy alive meanwhile.
 */
void	dp2_set_policy(struct dp2_state *s, const struct dp2_policy *policy, int64_t every);

/* Enqueue: 1 = queued, 0 = dropped (the caller frees it). d->logged says whether to log d->fields. */
int	dp2_enqueue(struct dp2_state *s, struct dp2_pkt *pkt, int64_t now_us, struct dp2_decision *d);

/*
 * One dequeue decision: the packet decided on (NULL when both queues are empty). When d->action is
 * DUALPI2_ACTION_DROP the caller frees it and calls again; otherwise it sends it (CE-marked when
 * d->action is DUALPI2_ACTION_MARK: pkt->ecn is DP2_CE then).
 */
struct dp2_pkt *dp2_dequeue_one(struct dp2_state *s, int64_t now_us, struct dp2_decision *d);

/* The periodic controller step (PI2 for dualpi2, both PIEs for l4s-pie). */
void	dp2_update(struct dp2_state *s, int64_t now_us, struct dp2_decision *d);

/* Time of the next controller step. */
int64_t	dp2_next_update(const struct dp2_state *s);

/*
 * Run every controller step due at or before now_us, each at its own scheduled time (exactly what a
 * periodic timer would have done, since the queues only change at packet events). Idle stretches with
 * nothing left to change are skipped in one go. Returns the number of steps run.
 */
int64_t	dp2_advance(struct dp2_state *s, int64_t now_us);

/* Unlink every queued packet (for teardown); returns them as a list through ->next. */
struct dp2_pkt *dp2_drain(struct dp2_state *s);

/* A packet an enqueue pushed out of the queue (l4s-pie drops the head of the longer sub-queue when over
 * the limit), for the caller to free; NULL when there is none. Call it after every dp2_enqueue. */
struct dp2_pkt *dp2_take_dropped(struct dp2_state *s);

#endif /* DUALPI2_CORE_H */
