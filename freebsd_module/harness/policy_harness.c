/*
 * policy_harness.c -- drive dp2_policy.c from stdin, so that tests/test_policy_parity.py can compare the
 * C validator and evaluator with l4stb/policyblob.py on the same blobs and inputs.
 *
 * SPDX-License-Identifier: BSD-2-Clause
 *
 *   policy_harness              lines on stdin:
 *     B,<hex bytes>             validate a blob: prints "V,<code>"; a valid one becomes the current policy
 *     X,<23 integers>           one decision of the current policy on these log fields: prints "A,<action>"
 *   policy_harness FILE         load FILE as the policy (exit 2 with a one-line reason on stderr when the
 *                               validator refuses it), then read X lines from stdin
 *
 * Built by the tests with: gcc -Wall -Wextra -Werror -fsanitize=address,undefined -I.. policy_harness.c
 * ../dp2_policy.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dp2_policy.h"

#define LINE_MAX_BYTES	(2 * DP2_POLICY_MAX_BYTES + 64)

static uint8_t blob[DP2_POLICY_MAX_BYTES + 1];
static struct dp2_policy policy;
static int loaded;

/* Validate a hex-encoded blob into a buffer of exactly its length, so ASan sees every out-of-bounds read. */
static int
validate_hex(const char *hex)
{
	size_t len = strcspn(hex, "\r\n");
	uint8_t *buf = malloc(len / 2 > 0 ? len / 2 : 1);
	long n;
	int code;

	if (buf == NULL)
		return (-1);
	n = dp2_policy_hex_decode(hex, len, buf, DP2_POLICY_MAX_BYTES);
	if (n < 0) {
		free(buf);
		return (-1);
	}
	code = dp2_policy_validate(buf, (size_t)n);
	if (code == DP2_POLICY_OK) {
		memcpy(blob, buf, (size_t)n);
		loaded = dp2_policy_init(&policy, blob, (size_t)n) == DP2_POLICY_OK;
	}
	free(buf);
	return (code);
}

static int
load_file(const char *path)
{
	FILE *fh = fopen(path, "rb");
	size_t n;
	int code;

	if (fh == NULL) {
		fprintf(stderr, "policy_harness: cannot open %s\n", path);
		return (2);
	}
	n = fread(blob, 1, sizeof(blob), fh);
	fclose(fh);
	code = dp2_policy_init(&policy, blob, n);
	if (code != DP2_POLICY_OK) {
		fprintf(stderr, "policy_harness: %s: policy refused: %s (code %d)\n", path, dp2_policy_strerror(code),
		    code);
		return (2);
	}
	loaded = 1;
	printf("loaded %s: %u nodes, depth %u, %u bytes, checksum %08x\n", path, policy.n_nodes, policy.max_depth,
	    policy.n_bytes, policy.checksum);
	return (0);
}

int
main(int argc, char **argv)
{
	static char line[LINE_MAX_BYTES];
	int64_t fields[DP2_POLICY_MAX_FEATURES];
	char *p, *end;
	int i;

	if (argc > 1 && load_file(argv[1]) != 0)
		return (2);
	while (fgets(line, sizeof(line), stdin) != NULL) {
		if (line[0] == 'B' && line[1] == ',') {
			printf("V,%d\n", validate_hex(line + 2));
		} else if (line[0] == 'X' && line[1] == ',') {
			if (!loaded) {
				fprintf(stderr, "policy_harness: X before any valid blob\n");
				return (2);
			}
			p = line + 2;
			for (i = 0; i < DP2_POLICY_MAX_FEATURES; i++) {
				fields[i] = strtoll(p, &end, 10);
				if (end == p) {
					fprintf(stderr, "policy_harness: X needs %d integers\n", DP2_POLICY_MAX_FEATURES);
					return (2);
				}
				p = *end == ',' ? end + 1 : end;
			}
			printf("A,%d\n", dp2_policy_decide(&policy, fields));
		} else if (line[0] != '\n' && line[0] != '#') {
			fprintf(stderr, "policy_harness: bad line: %s", line);
			return (2);
		}
	}
	return (0);
}
