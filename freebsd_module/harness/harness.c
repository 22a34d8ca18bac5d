/*
 * harness.c -- run dualpi2_core over an event trace read from stdin and print every decision, so that
 * tests/test_module_parity.py can compare the C core with l4stb's Python cores on the same input.
 *
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * Input, one item per line (comma-separated integers after the kind letter):
 *   P,mode,seed,log,auto,<params...>   starts a trace (a fresh state; several traces may follow each
 *                                      other, each echoed as a line "P"): mode 0 = dualpi2 (the 22 DualPI2Params fields in
 *                                      order), 1 = l4s-pie (the 12 dp2_pie_params fields in order);
 *                                      log 1 also prints the log lines; auto 1 runs dp2_advance(now)
 *                                      before every E/D (the kernel's timer-less PI updates)
 *   E,now_us,length,ecn                enqueue one packet (its flow id is its sequence number)
 *   D,now_us                           one transmission opportunity
 *   U,now_us                           one controller step
 *   Q,every,<hex blob>                 dualpi2 mode: the policy blob decides every every-th dequeue decision
 *                                      (dp2_set_policy); a blob the validator refuses ends the run (exit 2)
 * Output: the tuples of l4stb.sim.aqm_dualpi2.replay() as "kind,now_us,queue,action,length,ecn_out,
 * prob,p_prime,delay_us", and with log=1 a line "L,<26 log fields>" right before the record of the
 * decision it belongs to (the Python core emits the line, then traces the decision).
 * Built by the tests with: gcc -Wall -Wextra -Werror -O2 -I.. harness.c ../dualpi2_core.c ../dp2_policy.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dualpi2_core.h"

#define MAXP 32

static int print_logs;
static uint8_t policy_blob[DP2_POLICY_MAX_BYTES];
static struct dp2_policy policy;

/* "Q,every,<hex>": load the blob and hand it to the core; 0 on success. */
static int
set_policy(struct dp2_state *s, const char *line)
{
	char *end;
	long long every = strtoll(line, &end, 10);
	long n;
	int code;

	if (*end != ',')
		return (-1);
	end++;
	n = dp2_policy_hex_decode(end, strcspn(end, "\r\n"), policy_blob, sizeof(policy_blob));
	if (n < 0)
		return (-1);
	code = dp2_policy_init(&policy, policy_blob, (size_t)n);
	if (code != DP2_POLICY_OK) {
		fprintf(stderr, "harness: policy refused: %s (code %d)\n", dp2_policy_strerror(code), code);
		return (-1);
	}
	dp2_set_policy(s, &policy, every);
	return (0);
}

static void
print_log(const struct dp2_decision *d)
{
	int i;

	if (!print_logs || !d->logged)
		return;
	fputs("L", stdout);
	for (i = 0; i < DUALPI2_LOG_NFIELDS; i++)
		printf(",%lld", (long long)d->fields[i]);
	fputs("\n", stdout);
}

static void
print_record(const struct dp2_decision *d)
{
	printf("%c,%lld,%d,%d,%lld,%d,%llu,%llu,%lld\n", d->kind, (long long)d->now_us, d->queue, d->action,
	    (long long)d->length, d->ecn_out, (unsigned long long)d->prob, (unsigned long long)d->p_prime,
	    (long long)d->delay_us);
}

static int
parse(const char *line, long long *v, int max)
{
	int n = 0;
	char *end;

	while (n < max) {
		v[n++] = strtoll(line, &end, 10);
		if (end == line || *end != ',')
			break;
		line = end + 1;
	}
	return (n);
}

static int
init_from(char *line, struct dp2_state *s, int *auto_update)
{
	long long v[MAXP + 8];
	int n = parse(line + 2, v, MAXP + 8);

	if (n < 4) {
		fprintf(stderr, "harness: short P line\n");
		return (-1);
	}
	print_logs = (int)v[2];
	*auto_update = (int)v[3];
	if (v[0] == DP2_MODE_DUALPI2) {
		struct dp2_params prm;

		if (n != 4 + 26) {
			fprintf(stderr, "harness: dualpi2 needs 26 parameters, got %d\n", n - 4);
			return (-1);
		}
		prm.target_us = v[4]; prm.tupdate_us = v[5]; prm.alpha_q = v[6]; prm.beta_q = v[7];
		prm.alpha_mhz = v[8]; prm.beta_mhz = v[9]; prm.k_q8 = v[10]; prm.p_cmax = (uint64_t)v[11];
		prm.step_semantics = v[12]; prm.step_us = v[13]; prm.step_in_packets = v[14];
		prm.step_packets = v[15]; prm.range_us = v[16]; prm.min_qlen_step = v[17]; prm.th_len = v[18];
		prm.min_backlog_bytes = v[19]; prm.scheduler = v[20]; prm.wc = v[21]; prm.wl = v[22];
		prm.tshift_us = v[23]; prm.mtu = v[24]; prm.limit_packets = v[25]; prm.limit_bytes = v[26];
		prm.ecn = v[27]; prm.drop_on_overload = v[28]; prm.tick_us = v[29];
		dp2_init_dualpi2(s, &prm, (uint64_t)v[1]);
	} else {
		struct dp2_pie_params prm;

		if (n != 4 + 12) {
			fprintf(stderr, "harness: l4s-pie needs 12 parameters, got %d\n", n - 4);
			return (-1);
		}
		prm.qdelay_ref = v[4]; prm.tupdate = v[5]; prm.max_burst = v[6]; prm.max_ecnth = v[7];
		prm.alpha = v[8]; prm.beta = v[9]; prm.flags = v[10]; prm.tick_us = v[11];
		prm.limit_packets = v[12]; prm.limit_bytes = v[13]; prm.coupling = v[14];
		prm.couple_same_flow = v[15];
		dp2_init_l4spie(s, &prm, (uint64_t)v[1]);
	}
	return (0);
}

static void
free_all(struct dp2_state *s)
{
	struct dp2_pkt *pkt, *next;

	for (pkt = dp2_drain(s); pkt != NULL; pkt = next) {
		next = pkt->next;
		free(pkt);
	}
}

int
main(void)
{
	static struct dp2_state s;
	struct dp2_decision d;
	struct dp2_pkt *pkt;
	char line[4096];
	long long v[8];
	int n, auto_update = 0, started = 0;
	long long seq = 0;

	while (fgets(line, sizeof(line), stdin) != NULL) {
		char kind = line[0];

		if (kind == '\n' || kind == '#')
			continue;
		if (kind == 'P') {
			/* a new trace: fresh state, sequence numbers from 0 */
			if (started)
				free_all(&s);
			if (init_from(line, &s, &auto_update) != 0)
				return (2);
			started = 1;
			seq = 0;
			puts("P");
			continue;
		}
		if (!started) {
			fprintf(stderr, "harness: the first line must be P,mode,seed,log,auto,params...\n");
			return (2);
		}
		if (kind == 'Q') {
			if (set_policy(&s, line + 2) != 0)
				return (2);
			continue;
		}
		n = parse(line + 2, v, 8);
		if ((kind == 'E' || kind == 'D') && auto_update && n >= 1)
			dp2_advance(&s, v[0]);
		if (kind == 'E' && n == 3) {
			pkt = calloc(1, sizeof(*pkt));
			if (pkt == NULL)
				return (3);
			pkt->len = v[1];
			pkt->ecn = (int)v[2];
			pkt->flow = seq++;
			n = dp2_enqueue(&s, pkt, v[0], &d);
			print_log(&d);
			print_record(&d);
			if (!n)
				free(pkt);
			while ((pkt = dp2_take_dropped(&s)) != NULL)
				free(pkt);
		} else if (kind == 'D' && n == 1) {
			for (;;) {
				pkt = dp2_dequeue_one(&s, v[0], &d);
				print_log(&d);
				print_record(&d);
				if (pkt == NULL)
					break;
				free(pkt);
				if (d.action != DUALPI2_ACTION_DROP)
					break;
			}
		} else if (kind == 'U' && n == 1) {
			dp2_update(&s, v[0], &d);
			print_record(&d);
		} else {
			fprintf(stderr, "harness: bad line: %s", line);
			return (2);
		}
	}
	if (started)
		free_all(&s);
	(void)dualpi2_log_field_names;
	return (0);
}
