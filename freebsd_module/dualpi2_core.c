/*
 * dualpi2_core.c -- the pure-C core of l4stb's dualpi2 dummynet scheduler (see dualpi2_core.h).
 *
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * Every function below mirrors a method of the Python cores line by line; the comments name it.
 * Integer widths: the Python code uses unbounded integers, so the few products that can exceed 64 bits
 * (the PI update, p'^2, PIE's probability scaling) use 128-bit multiplication and shifts, which amd64
 * and arm64 compilers emit inline; no 128-bit division is used (the kernel has no __udivti3).
 */
#include "dualpi2_core.h"

typedef __int128 dp2_s128;
typedef unsigned __int128 dp2_u128;

#define P_FACTOR	((DP2_PIE_MAX_PROB << 12) / 1000000)	/* aqm_pie._P_FACTOR */

/* ---------------------------------------------------------------- PRNG (l4stb.sim.prng) */

uint32_t
dp2_seed_state(uint64_t seed)
{
	uint32_t state = (uint32_t)(((seed & 0xffffffffULL) * 2654435761ULL + 0x6D2B79F5ULL) & 0xffffffffULL);

	return (state != 0 ? state : 0x9E3779B9U);
}

uint32_t
dp2_xorshift32(uint32_t x)
{
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return (x);
}

/* aqm_dualpi2.to_log_prob: (p * (2^31-1)) >> 32, exact for any 64-bit p without a 128-bit product. */
uint64_t
dp2_to_log_prob(uint64_t p)
{
	uint64_t hi = p >> 32, lo = p & 0xffffffffULL;

	return (hi * DP2_LOG_PROB_SCALE + ((lo * DP2_LOG_PROB_SCALE) >> 32));
}

/* ---------------------------------------------------------------- queues */

static void
q_append(struct dp2_queue *q, struct dp2_pkt *pkt)
{
	pkt->next = NULL;
	if (q->tail != NULL)
		q->tail->next = pkt;
	else
		q->head = pkt;
	q->tail = pkt;
	q->len++;
}

static struct dp2_pkt *
q_popleft(struct dp2_queue *q)
{
	struct dp2_pkt *pkt = q->head;

	if (pkt == NULL)
		return (NULL);
	q->head = pkt->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->len--;
	pkt->next = NULL;
	return (pkt);
}

static void
clear_decision(struct dp2_decision *d, char kind, int64_t now_us)
{
	int i;

	d->kind = kind;
	d->now_us = now_us;
	d->queue = -1;
	d->action = 0;
	d->length = 0;
	d->ecn_out = 0;
	d->prob = 0;
	d->p_prime = 0;
	d->delay_us = 0;
	d->logged = 0;
	for (i = 0; i < DUALPI2_LOG_NFIELDS; i++)
		d->fields[i] = 0;
}

/* ================================================================ DualPI2 (aqm_dualpi2.DualPI2) */

/* DualPI2.set_base_probability */
static void
d_set_base_probability(struct dp2_dualpi2 *a, uint64_t p)
{
	a->p = p;
	a->p_c = (uint64_t)(((dp2_u128)p * p) >> 32);
	a->p_cl = (p * (uint64_t)a->prm.k_q8) >> DP2_K_SHIFT;
}

/* DualPI2._roll */
static int
d_roll(struct dp2_dualpi2 *a, uint64_t p)
{
	uint32_t x;

	if (p == 0)
		return (0);
	if (p >= DP2_P_ONE)
		return (1);
	x = dp2_xorshift32(a->rng);
	a->rng = x;
	return ((uint64_t)x < p);
}

/* DualPI2._fields: the 26 logged values for a decision on pkt in queue q. */
static void
d_fields(const struct dp2_dualpi2 *a, int64_t *f, int q, const struct dp2_pkt *pkt, int64_t now_us,
    uint64_t prob, int64_t sojourn, int64_t qlen, int64_t qbytes, int action)
{
	const struct dp2_params *prm = &a->prm;
	const uint64_t *st = a->stats[q];
	int64_t flags, status;

	flags = (DP2_FLAG_ECN * prm->ecn) | (prm->range_us == 0 ? DP2_FLAG_STEP : 0);
	if (a->p_cl > DP2_P_ONE)
		flags |= DP2_FLAG_OVERLOAD;
	status = (a->p ? DP2_STATUS_PI_ACTIVE : 0) | (a->cq.head ? DP2_STATUS_C_BUSY : 0) |
	    (a->lq.head ? DP2_STATUS_L_BUSY : 0);
	f[DUALPI2_F_QUEUE_TYPE] = q;
	f[DUALPI2_F_QDELAY_REFERENCE] = prm->target_us;
	f[DUALPI2_F_TUPDATE] = prm->tupdate_us;
	f[DUALPI2_F_MAX_BURST] = 0;
	f[DUALPI2_F_MAX_ECN_THRESHOLD] = (int64_t)dp2_to_log_prob(prm->p_cmax);
	f[DUALPI2_F_ALPHA_COEFFICIENT] = prm->alpha_mhz;
	f[DUALPI2_F_BETA_COEFFICIENT] = prm->beta_mhz;
	f[DUALPI2_F_FLAGS] = flags;
	f[DUALPI2_F_BURST_ALLOWANCE] = 0;
	f[DUALPI2_F_DROP_PROBABILITY] = (int64_t)dp2_to_log_prob(prob);
	f[DUALPI2_F_CURRENT_QUEUE_DELAY] = sojourn;
	f[DUALPI2_F_PREVIOUS_QUEUE_DELAY] = a->prev_q;
	f[DUALPI2_F_ACCUMULATED_PROBABILITY] = (int64_t)dp2_to_log_prob(a->p);
	f[DUALPI2_F_MEASUREMENT_START_TIME] = a->last_update_us;
	f[DUALPI2_F_AVERAGE_DEQUEUE_TIME] = 0;
	f[DUALPI2_F_DEQUEUE_COUNT] = (int64_t)st[0];
	f[DUALPI2_F_STATUS_FLAGS] = status;
	f[DUALPI2_F_TOTAL_PACKETS] = (int64_t)st[1];
	f[DUALPI2_F_TOTAL_BYTES] = (int64_t)st[2];
	f[DUALPI2_F_QUEUE_LENGTH] = qlen;
	f[DUALPI2_F_LENGTH_IN_BYTES] = qbytes;
	f[DUALPI2_F_TOTAL_DROPS] = (int64_t)st[3];
	f[DUALPI2_F_PACKET_LENGTH] = pkt->len;
	f[DUALPI2_F_DEQUEUE_ACTION] = action;
	f[DUALPI2_F_TIMESTAMP_US] = now_us;
	f[DUALPI2_F_FLOW_ID] = pkt->flow;
}

/* DualPI2.__init__ */
void
dp2_init_dualpi2(struct dp2_state *s, const struct dp2_params *prm, uint64_t seed)
{
	struct dp2_dualpi2 *a = &s->d;
	int i, j;

	s->mode = DP2_MODE_DUALPI2;
	a->prm = *prm;
	if (a->prm.tupdate_us <= 0)
		a->prm.tupdate_us = 1;
	if (a->prm.k_q8 <= 0)
		a->prm.k_q8 = 1 << DP2_K_SHIFT;
	a->rng = dp2_seed_state(seed);
	a->p = a->p_c = a->p_cl = 0;
	a->prev_q = 0;
	a->last_update_us = 0;
	a->next_update_us = a->prm.tupdate_us;
	a->credit = a->prm.mtu * (a->prm.wc - a->prm.wl);
	a->lq.head = a->lq.tail = NULL;
	a->lq.len = 0;
	a->cq.head = a->cq.tail = NULL;
	a->cq.len = 0;
	a->l_bytes = a->c_bytes = 0;
	for (i = 0; i < 2; i++) {
		for (j = 0; j < 5; j++)
			a->stats[i][j] = 0;
		a->marks[i] = a->drops[i] = 0;
	}
	/* overflow mode: p' <= 1/k, so k p' never exceeds 1 (Linux calculate_probability) */
	a->p_max = a->prm.drop_on_overload ? DP2_P_ONE : (DP2_P_ONE << DP2_K_SHIFT) / (uint64_t)a->prm.k_q8;
	a->policy = NULL;
	a->policy_every = 0;
	a->policy_count = a->policy_asked = 0;
}

void
dp2_set_policy(struct dp2_state *s, const struct dp2_policy *policy, int64_t every)
{
	s->d.policy = every >= 1 ? policy : NULL;
	s->d.policy_every = every;
	s->d.policy_count = s->d.policy_asked = 0;
}

/* PolicyGate.take: whether the policy takes this decision (counts decisions only while a policy is set). */
static int
d_gate_take(struct dp2_dualpi2 *a)
{
	uint64_t c;

	if (a->policy == NULL)
		return (0);
	c = a->policy_count++;
	if (c % (uint64_t)a->policy_every != 0)
		return (0);
	a->policy_asked++;
	return (1);
}

/* DualPI2._ask: the policy's decision on the fields this packet would be logged with (action not yet known). */
static int
d_ask(struct dp2_dualpi2 *a, int64_t *f, int q, const struct dp2_pkt *pkt, int64_t now_us, uint64_t prob,
    int64_t sojourn, int64_t qlen, int64_t qbytes)
{
	d_fields(a, f, q, pkt, now_us, prob, sojourn, qlen, qbytes, 0);
	switch (dp2_policy_decide(a->policy, f)) {
	case DP2_POLICY_DROP:
		return (DUALPI2_ACTION_DROP);
	case DP2_POLICY_MARK:
		return ((pkt->ecn != DP2_NOT_ECT && a->prm.ecn) ? DUALPI2_ACTION_MARK : DUALPI2_ACTION_DROP);
	default:
		return (DUALPI2_ACTION_FORWARD);
	}
}

/* DualPI2.enqueue */
static int
d_enqueue(struct dp2_dualpi2 *a, struct dp2_pkt *pkt, int64_t now_us, struct dp2_decision *d)
{
	const struct dp2_params *prm = &a->prm;
	int64_t length = pkt->len;
	int q = pkt->ecn & 1;
	struct dp2_queue *queue = q ? &a->lq : &a->cq;
	int64_t head;

	clear_decision(d, 'E', now_us);
	d->queue = q;
	d->length = length;
	d->ecn_out = pkt->ecn;
	if (a->lq.len + a->cq.len >= prm->limit_packets ||
	    a->l_bytes + a->c_bytes + length > prm->limit_bytes) {
		head = queue->head != NULL ? now_us - queue->head->t_enq_us : 0;
		d_fields(a, d->fields, q, pkt, now_us, q ? a->p_cl : a->p_c, head, queue->len,
		    q ? a->l_bytes : a->c_bytes, DUALPI2_ACTION_DROP);
		d->logged = 1;
		a->stats[q][3]++;
		a->drops[q]++;
		d->action = DUALPI2_ACTION_DROP;
		d->p_prime = a->p;
		return (0);
	}
	pkt->t_enq_us = now_us;
	a->stats[q][1]++;
	a->stats[q][2] += (uint64_t)length;
	/* Linux skb_apply_step: the L queue's length before this packet joins it, against min_qlen_step */
	pkt->apply_step = q ? a->lq.len >= prm->min_qlen_step : 0;
	q_append(queue, pkt);
	if (q)
		a->l_bytes += length;
	else
		a->c_bytes += length;
	d->action = DUALPI2_ACTION_FORWARD;
	d->p_prime = a->p;
	return (1);
}

/* DualPI2.update: the PI2 controller step. */
static void
d_update(struct dp2_dualpi2 *a, int64_t now_us, struct dp2_decision *d)
{
	const struct dp2_params *prm = &a->prm;
	int64_t qc = a->cq.head ? now_us - a->cq.head->t_enq_us : 0;
	int64_t ql = a->lq.head ? now_us - a->lq.head->t_enq_us : 0;
	int64_t qdelay = qc > ql ? qc : ql;
	dp2_s128 delta, p;

	delta = (dp2_s128)(qdelay - prm->target_us) * prm->alpha_q +
	    (dp2_s128)(qdelay - a->prev_q) * prm->beta_q;
	p = (dp2_s128)a->p;
	if (delta >= 0) {
		p += delta >> DP2_GAIN_SHIFT;
		if (p > (dp2_s128)a->p_max)
			p = (dp2_s128)a->p_max;
	} else {
		p -= (-delta) >> DP2_GAIN_SHIFT;
		if (p < 0)
			p = 0;
	}
	d_set_base_probability(a, (uint64_t)p);
	a->prev_q = qdelay;
	a->last_update_us = now_us;
	a->next_update_us = now_us + prm->tupdate_us;
	clear_decision(d, 'U', now_us);
	d->prob = a->p_c;
	d->p_prime = a->p;
	d->delay_us = qdelay;
}

/* The RFC ramp ((sojourn - minTh) << 32) // range, by binary long division (no 128-bit division). */
static uint64_t
ramp_prob(uint64_t x, uint64_t range)
{
	uint64_t rem = x, quo = 0;
	int i;

	/* x < range here, so rem stays below range < 2^63 and quo below 2^32 */
	for (i = 0; i < 32; i++) {
		rem <<= 1;
		quo <<= 1;
		if (rem >= range) {
			rem -= range;
			quo |= 1;
		}
	}
	return (quo);
}

/* DualPI2._native_l: p'_L for an L packet leaving 'left' packets behind it. */
static uint64_t
d_native_l(const struct dp2_params *prm, int apply_step, int64_t left, int64_t sojourn)
{
	if (!(prm->step_semantics == DP2_STEP_LINUX ? apply_step : left > prm->th_len))
		return (0);
	if (prm->step_in_packets)
		return (left > prm->step_packets ? DP2_P_ONE : 0);
	if (prm->range_us == 0)
		return (sojourn > prm->step_us ? DP2_P_ONE : 0);
	if (sojourn >= prm->step_us + prm->range_us)
		return (DP2_P_ONE);
	if (sojourn > prm->step_us)
		return (ramp_prob((uint64_t)(sojourn - prm->step_us), (uint64_t)prm->range_us));
	return (0);
}

/* One iteration of DualPI2.dequeue's loop. */
static struct dp2_pkt *
d_dequeue_one(struct dp2_dualpi2 *a, int64_t now_us, struct dp2_decision *d)
{
	const struct dp2_params *prm = &a->prm;
	struct dp2_pkt *pkt;
	int serve_l, q, ecn, action, pi_on, by;
	int64_t length, qlen, qbytes, sojourn, credit_change;
	uint64_t prob, p_cl, native;

	clear_decision(d, 'D', now_us);
	if (a->lq.head == NULL && a->cq.head == NULL) {
		/* Linux dequeue_packet: a dequeue that finds both queues empty resets the credit */
		a->credit = prm->mtu * (prm->wc - prm->wl);
		d->p_prime = a->p;
		return (NULL);
	}
	/* -------- scheduler */
	if (a->lq.head == NULL)
		serve_l = 0;
	else if (a->cq.head == NULL)
		serve_l = 1;
	else if (prm->scheduler == DP2_SCHED_WRR)
		serve_l = a->credit <= 0;
	else
		serve_l = a->cq.head->t_enq_us + prm->tshift_us > a->lq.head->t_enq_us;
	if (serve_l) {
		pkt = q_popleft(&a->lq);
		length = pkt->len;
		qlen = a->lq.len + 1;
		qbytes = a->l_bytes;
		a->l_bytes = qbytes - length;
		credit_change = a->cq.head != NULL ? prm->wc * length : 0;
		q = DP2_Q_L;
	} else {
		pkt = q_popleft(&a->cq);
		length = pkt->len;
		qlen = a->cq.len + 1;
		qbytes = a->c_bytes;
		a->c_bytes = qbytes - length;
		credit_change = a->lq.head != NULL ? -prm->wl * length : 0;
		q = DP2_Q_C;
	}
	sojourn = now_us - pkt->t_enq_us;
	ecn = pkt->ecn;
	/* -------- AQM decision: action and the probability it applied */
	action = DUALPI2_ACTION_FORWARD;
	by = 0;
	/* Linux guard: no PI-based drop/mark while fewer than min_backlog_bytes remain queued */
	pi_on = a->l_bytes + a->c_bytes >= prm->min_backlog_bytes;
	if (q) {
		p_cl = pi_on ? a->p_cl : 0;
		if (p_cl <= DP2_P_ONE) {	/* overload is k p' > 1 */
			native = d_native_l(prm, pkt->apply_step, qlen - 1, sojourn);
			prob = native > p_cl ? native : p_cl;
			if ((by = d_gate_take(a)) != 0)
				action = d_ask(a, d->fields, q, pkt, now_us, prob, sojourn, qlen, qbytes);
			else if (d_roll(a, prob))
				action = (ecn != DP2_NOT_ECT && prm->ecn) ? DUALPI2_ACTION_MARK : DUALPI2_ACTION_DROP;
		} else {
			prob = p_cl;
			if ((by = d_gate_take(a)) != 0)
				action = d_ask(a, d->fields, q, pkt, now_us, prob, sojourn, qlen, qbytes);
			else if (prm->drop_on_overload && d_roll(a, a->p_c)) {
				action = DUALPI2_ACTION_DROP;
				prob = a->p_c;
			} else
				action = (ecn != DP2_NOT_ECT && prm->ecn) ? DUALPI2_ACTION_MARK : DUALPI2_ACTION_DROP;
		}
	} else {
		prob = pi_on ? a->p_c : 0;
		if ((by = d_gate_take(a)) != 0)
			action = d_ask(a, d->fields, q, pkt, now_us, prob, sojourn, qlen, qbytes);
		else if (d_roll(a, prob)) {
			/* Linux dualpi2_classic_marking: overload (k p' > 1) disables ECN */
			if (ecn == DP2_NOT_ECT || !prm->ecn || a->p_cl > DP2_P_ONE)
				action = DUALPI2_ACTION_DROP;
			else
				action = DUALPI2_ACTION_MARK;
		}
	}
	/* -------- apply, log */
	d_fields(a, d->fields, q, pkt, now_us, prob, sojourn, qlen, qbytes, action);
	d->fields[DUALPI2_F_DECIDED_BY] = by ? DUALPI2_DECIDED_BY_POLICY : DUALPI2_DECIDED_BY_AQM;
	d->logged = 1;
	d->queue = q;
	d->action = action;
	d->length = length;
	d->ecn_out = action == DUALPI2_ACTION_MARK ? DP2_CE : ecn;
	d->prob = prob;
	d->p_prime = a->p;
	d->delay_us = sojourn;
	a->stats[q][0]++;
	if (action == DUALPI2_ACTION_DROP) {
		a->stats[q][3]++;
		a->drops[q]++;
		return (pkt);
	}
	/* Linux dualpi2_qdisc_dequeue: the WRR credit moves only for a packet that is sent */
	a->credit += credit_change;
	if (action == DUALPI2_ACTION_MARK) {
		pkt->ecn = DP2_CE;
		a->stats[q][4]++;
		a->marks[q]++;
	}
	return (pkt);
}

/* ================================================================ l4s-pie (aqm_l4spie.L4sPie + aqm_pie.PieState) */

static int64_t
l_draw31(struct dp2_l4spie *l)
{
	uint32_t x = dp2_xorshift32(l->rng);

	l->rng = x;
	return ((int64_t)(x >> 1));
}

/* PieState.__init__ */
static void
pie_queue_init(struct dp2_pie_queue *st, const struct dp2_pie_params *prm)
{
	st->burst_allowance = prm->max_burst;
	st->drop_prob = 0;
	st->current_qdelay = 0;
	st->qdelay_old = 0;
	st->accu_prob = 0;
	st->sflags = DP2_PIE_ACTIVE;
	st->tot_pkts = st->tot_bytes = 0;
	st->length = st->len_bytes = 0;
	st->drops = st->marks = 0;
	st->q.head = st->q.tail = NULL;
	st->q.len = 0;
}

/* PieState.calculate_drop_prob (FreeBSD calculate_drop_prob, TS mode) */
static void
pie_calculate_drop_prob(struct dp2_pie_queue *st, const struct dp2_pie_params *prm)
{
	int64_t prob;
	dp2_s128 p, pr;
	int neg, shift;

	if (!st->len_bytes)
		st->current_qdelay = 0;
	prob = st->drop_prob;
	p = (dp2_s128)prm->alpha * (st->current_qdelay - prm->qdelay_ref) +
	    (dp2_s128)prm->beta * (st->current_qdelay - st->qdelay_old);
	neg = p < 0;
	if (neg)
		p = -p;
	p *= P_FACTOR;
	shift = DP2_PIE_FIX_POINT_BITS + 12;
	if (prob < DP2_PIE_MAX_PROB / 1000000)
		shift += 11;
	else if (prob < DP2_PIE_MAX_PROB / 100000)
		shift += 9;
	else if (prob < DP2_PIE_MAX_PROB / 10000)
		shift += 7;
	else if (prob < DP2_PIE_MAX_PROB / 1000)
		shift += 5;
	else if (prob < DP2_PIE_MAX_PROB / 100)
		shift += 3;
	else if (prob < DP2_PIE_MAX_PROB / 10)
		shift += 1;
	p >>= shift;
	pr = prob;
	if (neg) {
		pr -= p;
		if (pr < 0)
			pr = 0;
	} else {
		if ((prm->flags & DP2_PIE_CAPDROP_ENABLED) && prob >= DP2_PIE_MAX_PROB / 10 &&
		    p > DP2_PIE_MAX_PROB / 50)
			p = DP2_PIE_MAX_PROB / 50;
		pr += p;
	}
	if (st->current_qdelay == 0 && st->qdelay_old == 0)
		pr -= pr >> 6;
	if (pr > DP2_PIE_MAX_PROB)
		pr = DP2_PIE_MAX_PROB;
	st->drop_prob = (int64_t)pr;
	st->qdelay_old = st->current_qdelay;
	if ((st->sflags & DP2_PIE_ACTIVE) && st->burst_allowance > 0)
		st->burst_allowance = st->burst_allowance > prm->tupdate ?
		    st->burst_allowance - prm->tupdate : 0;
}

/* PieState.not_congested: drop_early's safeguard for the probability prob it applies. */
static int
pie_not_congested(const struct dp2_pie_queue *st, const struct dp2_pie_params *prm, int64_t prob)
{
	return ((st->qdelay_old < (prm->qdelay_ref >> 1) && prob < DP2_PIE_MAX_PROB / 5) ||
	    st->len_bytes <= 2 * DP2_PIE_MEAN_PKTSIZE);
}

/* PieState.derand for probability prob: FORWARD/DROP when decided, else 0 (draw). */
static int
pie_derand(struct dp2_pie_queue *st, const struct dp2_pie_params *prm, int64_t prob)
{
	if (prob == 0)
		st->accu_prob = 0;
	if (prm->flags & DP2_PIE_DERAND_ENABLED) {
		st->accu_prob += prob;
		if (st->accu_prob < DP2_PIE_MAX_PROB * 17 / 20)
			return (DUALPI2_ACTION_FORWARD);
		if (st->accu_prob >= DP2_PIE_MAX_PROB * 17 / 2)
			return (DUALPI2_ACTION_DROP);
	}
	return (0);
}

/* PieState.pop_head: the head packet out of the queue's statistics (a departure or a head drop). */
static struct dp2_pkt *
pie_pop_head(struct dp2_pie_queue *st)
{
	struct dp2_pkt *pkt = q_popleft(&st->q);

	st->length--;
	st->len_bytes -= pkt->len;
	return (pkt);
}

/* PieState.refill_burst */
static void
pie_refill_burst(struct dp2_pie_queue *st, const struct dp2_pie_params *prm)
{
	if (st->drop_prob == 0 && st->current_qdelay < (prm->qdelay_ref >> 1) &&
	    st->qdelay_old < (prm->qdelay_ref >> 1))
		st->burst_allowance = prm->max_burst;
}

/* PieState.log_fields */
static void
pie_log_fields(int64_t *f, int qt, const struct dp2_pie_params *prm, const struct dp2_pie_queue *st,
    const struct dp2_pkt *pkt, int action, int64_t now_us)
{
	f[DUALPI2_F_QUEUE_TYPE] = qt;
	f[DUALPI2_F_QDELAY_REFERENCE] = prm->qdelay_ref;
	f[DUALPI2_F_TUPDATE] = prm->tupdate;
	f[DUALPI2_F_MAX_BURST] = prm->max_burst;
	f[DUALPI2_F_MAX_ECN_THRESHOLD] = prm->max_ecnth;
	f[DUALPI2_F_ALPHA_COEFFICIENT] = prm->alpha;
	f[DUALPI2_F_BETA_COEFFICIENT] = prm->beta;
	f[DUALPI2_F_FLAGS] = prm->flags;
	f[DUALPI2_F_BURST_ALLOWANCE] = st->burst_allowance;
	f[DUALPI2_F_DROP_PROBABILITY] = st->drop_prob;
	f[DUALPI2_F_CURRENT_QUEUE_DELAY] = st->current_qdelay;
	f[DUALPI2_F_PREVIOUS_QUEUE_DELAY] = st->qdelay_old;
	f[DUALPI2_F_ACCUMULATED_PROBABILITY] = st->accu_prob;
	f[DUALPI2_F_MEASUREMENT_START_TIME] = 0;
	f[DUALPI2_F_AVERAGE_DEQUEUE_TIME] = 0;
	f[DUALPI2_F_DEQUEUE_COUNT] = 0;
	f[DUALPI2_F_STATUS_FLAGS] = st->sflags;
	f[DUALPI2_F_TOTAL_PACKETS] = (int64_t)st->tot_pkts;
	f[DUALPI2_F_TOTAL_BYTES] = (int64_t)st->tot_bytes;
	f[DUALPI2_F_QUEUE_LENGTH] = st->length;
	f[DUALPI2_F_LENGTH_IN_BYTES] = st->len_bytes;
	f[DUALPI2_F_TOTAL_DROPS] = (int64_t)st->drops;
	f[DUALPI2_F_PACKET_LENGTH] = pkt->len;
	f[DUALPI2_F_DEQUEUE_ACTION] = action;
	f[DUALPI2_F_TIMESTAMP_US] = now_us;
	f[DUALPI2_F_FLOW_ID] = pkt->flow;
}

/* L4sPie.__init__: the sub-queues start zeroed (PIE off, no burst allowance) and on no list. */
void
dp2_init_l4spie(struct dp2_state *s, const struct dp2_pie_params *prm, uint64_t seed)
{
	struct dp2_l4spie *l = &s->l;
	int i;

	s->mode = DP2_MODE_L4SPIE;
	l->prm = *prm;
	if (l->prm.tupdate <= 0)
		l->prm.tupdate = 1;
	for (i = 0; i < 2; i++) {
		pie_queue_init(&l->qs[i], &l->prm);
		l->qs[i].sflags = 0;
		l->qs[i].burst_allowance = 0;
		l->next_upd[i] = DP2_NEVER;
		l->deficit[i] = 0;
		l->drops[i] = l->marks[i] = 0;
	}
	l->rng = dp2_seed_state(seed);
	l->next_update_us = DP2_NEVER;
	l->nnew = l->nold = 0;
	l->one_third = l->prm.limit_packets / 2 / 3;
	l->dropped.head = l->dropped.tail = NULL;
	l->dropped.len = 0;
	l->cur = 0;
}

/* L4sPie._next */
static void
l_next(struct dp2_l4spie *l)
{
	l->next_update_us = l->next_upd[0] < l->next_upd[1] ? l->next_upd[0] : l->next_upd[1];
}

/* L4sPie._activate (the original's fq_activate_pie): reset PIE and start its callout. */
static void
l_activate(struct dp2_l4spie *l, int qt, int64_t now_us)
{
	struct dp2_pie_queue *st = &l->qs[qt];

	st->drop_prob = 0;
	st->qdelay_old = 0;
	st->burst_allowance = l->prm.max_burst;
	st->accu_prob = 0;
	st->sflags = DP2_PIE_INMEASUREMENT | DP2_PIE_ACTIVE;
	l->next_upd[qt] = now_us + l->prm.tupdate;
	l_next(l);
}

/* L4sPie._deactivate (fq_deactivate_pie): PIE off, callout stopped, state kept. */
static void
l_deactivate(struct dp2_l4spie *l, int qt)
{
	l->qs[qt].sflags &= ~(DP2_PIE_ACTIVE | DP2_PIE_INMEASUREMENT);
	l->next_upd[qt] = DP2_NEVER;
	l_next(l);
}

/* L4sPie.update: the sub-queues' callouts that are due. */
static void
l_update(struct dp2_l4spie *l, int64_t now_us, struct dp2_decision *d)
{
	struct dp2_pie_queue *st;
	int qt;

	for (qt = 0; qt < 2; qt++) {
		if (l->next_upd[qt] <= now_us) {
			st = &l->qs[qt];
			pie_calculate_drop_prob(st, &l->prm);
			l->next_upd[qt] = (st->sflags & DP2_PIE_ACTIVE) ? now_us + l->prm.tupdate : DP2_NEVER;
		}
	}
	l_next(l);
	clear_decision(d, 'U', now_us);
	d->prob = (uint64_t)l->qs[0].drop_prob;
	d->p_prime = (uint64_t)l->qs[1].drop_prob;
}

/* L4sPie._drop_early: cqueue_drop_early (p^2) or lqueue_drop_early (max(own p, k x coupled p)), which
 * differ only in the probability the safeguard, the derandomisation and the draw use. */
static int
l_drop_early(struct dp2_l4spie *l, int qt, struct dp2_pie_queue *st)
{
	const struct dp2_pie_params *prm = &l->prm;
	int decided, hit;
	int64_t prob;

	if (qt == 0)
		prob = st->drop_prob;
	else {
		prob = prm->couple_same_flow ? 0 : l->qs[0].drop_prob * prm->coupling;
		if (st->drop_prob > prob)
			prob = st->drop_prob;
	}
	if (pie_not_congested(st, prm, prob))
		return (DUALPI2_ACTION_FORWARD);
	decided = pie_derand(st, prm, prob);
	if (decided)
		return (decided);
	if (qt == 0 || prob > DP2_PIE_MAX_PROB)	/* Classic, or L in overload: p^2 drops */
		hit = l_draw31(l) < st->drop_prob && l_draw31(l) < st->drop_prob;
	else
		hit = l_draw31(l) < prob;
	if (hit) {
		st->accu_prob = 0;
		return (DUALPI2_ACTION_DROP);
	}
	return (DUALPI2_ACTION_FORWARD);
}

/* Whether sub-queue qt is on the new or the old list (the original's flow->active). */
static int
l_listed(const struct dp2_l4spie *l, int qt)
{
	int i;

	for (i = 0; i < l->nnew; i++)
		if (l->newl[i] == qt)
			return (1);
	for (i = 0; i < l->nold; i++)
		if (l->oldl[i] == qt)
			return (1);
	return (0);
}

/* L4sPie.enqueue: every decision is taken (and logged) here, then FQ's activation and limit. */
static int
l_enqueue(struct dp2_l4spie *l, struct dp2_pkt *pkt, int64_t now_us, struct dp2_decision *d)
{
	const struct dp2_pie_params *prm = &l->prm;
	int ecn = pkt->ecn;
	int qt = ecn == DP2_ECT1 ? 1 : 0;
	struct dp2_pie_queue *st = &l->qs[qt], *victim;
	struct dp2_pkt *dropped;
	int64_t tick = prm->tick_us > 0 ? prm->tick_us : 1;
	int logged, enqueue = 1, big;

	clear_decision(d, 'E', now_us);
	logged = l_drop_early(l, qt, st);
	if (logged == DUALPI2_ACTION_DROP && (st->sflags & DP2_PIE_ACTIVE) && st->burst_allowance == 0) {
		if ((prm->flags & DP2_PIE_ECN_ENABLED) &&
		    st->drop_prob < (prm->max_ecnth << (31 - DP2_PIE_FIX_POINT_BITS)) && ecn != DP2_NOT_ECT)
			logged = DUALPI2_ACTION_MARK;
		else
			enqueue = 0;
	}
	pie_log_fields(d->fields, qt, prm, st, pkt, logged, now_us);
	d->logged = 1;
	d->queue = qt;
	d->action = logged;
	d->length = pkt->len;
	if (!(st->sflags & DP2_PIE_ACTIVE) && st->len_bytes >= l->one_third)
		l_activate(l, qt, now_us);
	pie_refill_burst(st, prm);
	if (!enqueue) {
		st->drops++;
		l->drops[qt]++;
		st->accu_prob = 0;
		d->ecn_out = ecn;
		d->prob = (uint64_t)st->drop_prob;
		return (0);
	}
	if (logged == DUALPI2_ACTION_MARK) {
		pkt->ecn = DP2_CE;
		st->marks++;
		l->marks[qt]++;
	}
	d->ecn_out = pkt->ecn;
	pkt->t_enq_us = now_us - now_us % tick;
	q_append(&st->q, pkt);
	st->length++;
	st->len_bytes += pkt->len;
	st->tot_pkts++;
	st->tot_bytes += (uint64_t)pkt->len;
	if (!l_listed(l, qt)) {	/* the sub-queue (re)joins the round robin */
		l->newl[l->nnew++] = qt;
		l->deficit[qt] = (qt ? DP2_PIE_WL : DP2_PIE_WC) * DP2_PIE_QUANTUM;
		l_activate(l, qt, now_us);
	}
	d->prob = (uint64_t)st->drop_prob;	/* after a (re)activation, as the Python record reads it */
	/* over the limit: drop the head of the longer sub-queue (not logged) */
	while (l->qs[0].q.len + l->qs[1].q.len > prm->limit_packets ||
	    l->qs[0].len_bytes + l->qs[1].len_bytes > prm->limit_bytes) {
		big = l->qs[0].q.len >= l->qs[1].q.len ? 0 : 1;
		victim = &l->qs[big];
		dropped = pie_pop_head(victim);
		victim->drops++;
		victim->accu_prob = 0;
		l->drops[big]++;
		q_append(&l->dropped, dropped);
	}
	return (1);
}

static void
list_pop_head(int *list, int *n)
{
	list[0] = list[1];
	(*n)--;
}

/* L4sPie.dequeue: the original's FQ round robin (new list first, weighted deficits); a sub-queue found
 * empty on the old list leaves it and its PIE is switched off. No decision. */
static struct dp2_pkt *
l_dequeue_one(struct dp2_l4spie *l, int64_t now_us, struct dp2_decision *d)
{
	struct dp2_pie_queue *st;
	struct dp2_pkt *pkt;
	int64_t tick = l->prm.tick_us > 0 ? l->prm.tick_us : 1;
	int *list, *n, f, isnew;

	clear_decision(d, 'D', now_us);
	for (;;) {
		isnew = l->nnew > 0;
		list = isnew ? l->newl : l->oldl;
		n = isnew ? &l->nnew : &l->nold;
		if (*n == 0)
			return (NULL);
		while (*n > 0) {
			f = list[0];
			if (l->deficit[f] < 0) {
				l->deficit[f] += (f ? DP2_PIE_WL : DP2_PIE_WC) * DP2_PIE_QUANTUM;
				list_pop_head(list, n);
				l->oldl[l->nold++] = f;
			} else
				break;
		}
		if (*n == 0)
			continue;
		f = list[0];
		st = &l->qs[f];
		if (st->q.head == NULL) {
			list_pop_head(list, n);
			if (isnew)
				l->oldl[l->nold++] = f;
			else
				l_deactivate(l, f);
			continue;
		}
		pkt = pie_pop_head(st);
		if (st->sflags & DP2_PIE_ACTIVE)	/* the queue delay is measured only while PIE is on */
			st->current_qdelay = (now_us - now_us % tick) - pkt->t_enq_us;
		l->deficit[f] -= pkt->len;
		l->cur = f;
		d->queue = f;
		d->action = DUALPI2_ACTION_FORWARD;
		d->length = pkt->len;
		d->ecn_out = pkt->ecn;
		d->prob = (uint64_t)st->drop_prob;
		d->delay_us = st->current_qdelay;
		return (pkt);
	}
}

/* ================================================================ dispatch */

int
dp2_enqueue(struct dp2_state *s, struct dp2_pkt *pkt, int64_t now_us, struct dp2_decision *d)
{
	if (s->mode == DP2_MODE_L4SPIE)
		return (l_enqueue(&s->l, pkt, now_us, d));
	return (d_enqueue(&s->d, pkt, now_us, d));
}

struct dp2_pkt *
dp2_dequeue_one(struct dp2_state *s, int64_t now_us, struct dp2_decision *d)
{
	if (s->mode == DP2_MODE_L4SPIE)
		return (l_dequeue_one(&s->l, now_us, d));
	return (d_dequeue_one(&s->d, now_us, d));
}

void
dp2_update(struct dp2_state *s, int64_t now_us, struct dp2_decision *d)
{
	if (s->mode == DP2_MODE_L4SPIE)
		l_update(&s->l, now_us, d);
	else
		d_update(&s->d, now_us, d);
}

int64_t
dp2_next_update(const struct dp2_state *s)
{
	return (s->mode == DP2_MODE_L4SPIE ? s->l.next_update_us : s->d.next_update_us);
}

/*
 * True when a DualPI2 controller step would change nothing but the clock. l4s-pie needs no skipping:
 * a sub-queue found empty switches its PIE (and its callout) off, so an idle scheduler has no steps due.
 */
static int
idle_fixed_point(const struct dp2_state *s)
{
	if (s->mode == DP2_MODE_L4SPIE)
		return (0);
	return (s->d.lq.head == NULL && s->d.cq.head == NULL && s->d.p == 0 && s->d.prev_q == 0);
}

int64_t
dp2_advance(struct dp2_state *s, int64_t now_us)
{
	struct dp2_decision d;
	int64_t n = 0, skip;

	while (dp2_next_update(s) <= now_us) {
		if (idle_fixed_point(s)) {
			skip = (now_us - dp2_next_update(s)) / s->d.prm.tupdate_us;
			if (skip > 0) {
				s->d.next_update_us += skip * s->d.prm.tupdate_us;
				n += skip;
			}
		}
		dp2_update(s, dp2_next_update(s), &d);
		n++;
	}
	return (n);
}

struct dp2_pkt *
dp2_take_dropped(struct dp2_state *s)
{
	return (s->mode == DP2_MODE_L4SPIE ? q_popleft(&s->l.dropped) : NULL);
}

struct dp2_pkt *
dp2_drain(struct dp2_state *s)
{
	struct dp2_queue *qs[2];
	struct dp2_pkt *list = NULL, *pkt;
	int i;

	if (s->mode == DP2_MODE_L4SPIE) {
		while ((pkt = q_popleft(&s->l.dropped)) != NULL) {
			pkt->next = list;
			list = pkt;
		}
		qs[0] = &s->l.qs[0].q;
		qs[1] = &s->l.qs[1].q;
		s->l.qs[0].length = s->l.qs[1].length = 0;
		s->l.qs[0].len_bytes = s->l.qs[1].len_bytes = 0;
	} else {
		qs[0] = &s->d.cq;
		qs[1] = &s->d.lq;
		s->d.l_bytes = s->d.c_bytes = 0;
	}
	for (i = 0; i < 2; i++) {
		while ((pkt = q_popleft(qs[i])) != NULL) {
			pkt->next = list;
			list = pkt;
		}
	}
	return (list);
}
