/*
 * policy_bench.c -- time dp2_policy_decide, the kernel module's evaluator, on one core.
 *
 * SPDX-License-Identifier: BSD-2-Clause
 *
 *   policy_bench BLOB RECORDS ROUNDS
 *
 * RECORDS is a file of little-endian int64 log records, DP2_POLICY_MAX_FEATURES values each (the fields a
 * policy may read, in log order). Every record is decided ROUNDS times; the output is one line
 * "ns_per_decision=<float> decisions=<n> checksum=<sum of actions>" (the sum keeps the compiler from
 * dropping the work, and lets the caller check the decisions against the Python twin).
 * Built by l4stb.model.policy_latency and bench/bench_policy.py with: cc -O2 -I.. policy_bench.c ../dp2_policy.c
 */
#define _POSIX_C_SOURCE 199309L	/* clock_gettime under -std=c99 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "dp2_policy.h"

static uint8_t blob[DP2_POLICY_MAX_BYTES + 1];

int
main(int argc, char **argv)
{
	struct dp2_policy policy;
	struct timespec t0, t1;
	int64_t *rec;
	long n, rounds, r, i;
	unsigned long long sum = 0;
	size_t len;
	FILE *fh;
	int code;
	double ns;

	if (argc != 4) {
		fprintf(stderr, "usage: policy_bench BLOB RECORDS ROUNDS\n");
		return (2);
	}
	if ((fh = fopen(argv[1], "rb")) == NULL)
		return (2);
	len = fread(blob, 1, sizeof(blob), fh);
	fclose(fh);
	if ((code = dp2_policy_init(&policy, blob, len)) != DP2_POLICY_OK) {
		fprintf(stderr, "policy_bench: %s: policy refused: %s\n", argv[1], dp2_policy_strerror(code));
		return (2);
	}
	if ((fh = fopen(argv[2], "rb")) == NULL)
		return (2);
	fseek(fh, 0, SEEK_END);
	n = ftell(fh) / (long)(sizeof(int64_t) * DP2_POLICY_MAX_FEATURES);
	fseek(fh, 0, SEEK_SET);
	rec = malloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t) * DP2_POLICY_MAX_FEATURES);
	if (rec == NULL || fread(rec, sizeof(int64_t) * DP2_POLICY_MAX_FEATURES, (size_t)n, fh) != (size_t)n)
		return (2);
	fclose(fh);
	rounds = atol(argv[3]);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (r = 0; r < rounds; r++)
		for (i = 0; i < n; i++)
			sum += (unsigned long long)dp2_policy_decide(&policy, rec + i * DP2_POLICY_MAX_FEATURES);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / (double)(n * rounds);
	printf("ns_per_decision=%.3f decisions=%ld checksum=%llu\n", ns, n * rounds, sum);
	free(rec);
	return (0);
}
