/*
 * dp2_policy.h -- the deployable learned policy: validator and integer evaluator of an l4stb policy blob.
 *
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * A distilled policy is a decision tree over fixed-point versions of the fields the module logs. The blob
 * format (magic "L4PB", version 1, feature table, nodes as a flat array in pre-order) is documented in
 * l4stb/policyblob.py, the Python twin of this file: the same checks in the same order (the same error
 * codes) and the same integer arithmetic (bit-identical decisions); tests/test_policy_parity.py holds both
 * to it. No kernel facility, no floating point, no allocation: the caller owns the blob's memory, and a
 * decision reads at most max_depth + 1 <= DP2_POLICY_MAX_DEPTH + 1 nodes.
 */
#ifndef DP2_POLICY_H
#define DP2_POLICY_H

#ifdef _KERNEL
#include <sys/types.h>
#else
#include <stdint.h>
#include <stddef.h>
#endif
#ifndef NULL
#define NULL ((void *)0)
#endif

#define DP2_POLICY_MAGIC0	'L'
#define DP2_POLICY_MAGIC1	'4'
#define DP2_POLICY_MAGIC2	'P'
#define DP2_POLICY_MAGIC3	'B'
#define DP2_POLICY_VERSION	1
#define DP2_POLICY_HEADER_BYTES	24
#define DP2_POLICY_FEATURE_BYTES 8
#define DP2_POLICY_NODE_BYTES	12
#define DP2_POLICY_MAX_DEPTH	24
#define DP2_POLICY_MAX_NODES	4095
#define DP2_POLICY_MAX_FEATURES	23	/* every logged field but dequeue_action */
#define DP2_POLICY_MAX_BYTES	(DP2_POLICY_HEADER_BYTES + DP2_POLICY_FEATURE_BYTES * DP2_POLICY_MAX_FEATURES + \
				 DP2_POLICY_NODE_BYTES * DP2_POLICY_MAX_NODES)
#define DP2_POLICY_LEAF		0xff

/* Validator codes (policyblob.py's E_* in the same order). */
#define DP2_POLICY_OK		0
#define DP2_POLICY_E_SHORT	1
#define DP2_POLICY_E_MAGIC	2
#define DP2_POLICY_E_VERSION	3
#define DP2_POLICY_E_LENGTH	4
#define DP2_POLICY_E_HEADER	5
#define DP2_POLICY_E_CHECKSUM	6
#define DP2_POLICY_E_FEATURE	7
#define DP2_POLICY_E_NODE	8
#define DP2_POLICY_E_LAYOUT	9
#define DP2_POLICY_E_DEPTH	10

/* Policy decisions (the simulator's POLICY_FORWARD/DROP/MARK). */
#define DP2_POLICY_FORWARD	0
#define DP2_POLICY_DROP		1
#define DP2_POLICY_MARK		2

/* A validated blob, with its header and feature table decoded; the nodes stay in the caller's bytes. */
struct dp2_policy {
	const uint8_t	*nodes;
	uint32_t	n_bytes;
	uint32_t	checksum;
	uint16_t	n_nodes;
	uint8_t		n_features;
	uint8_t		max_depth;
	uint8_t		field[DP2_POLICY_MAX_FEATURES];
	uint8_t		shift[DP2_POLICY_MAX_FEATURES];
};

/* Check every byte of blob[0, len): header, checksum, feature table, node indices, depth. */
int	dp2_policy_validate(const uint8_t *blob, size_t len);

/* Validate, then fill *p (which points into blob: keep blob alive and unchanged while p is used). */
int	dp2_policy_init(struct dp2_policy *p, const uint8_t *blob, size_t len);

/* One decision from the logged fields of a packet (at least DP2_POLICY_MAX_FEATURES values, log order). */
int	dp2_policy_decide(const struct dp2_policy *p, const int64_t *fields);

/*
 * Decode n hex digits (n even) into out[0, n / 2): how the blob travels through sysctl(8) and the test
 * harnesses. Returns the number of bytes, or -1 for an odd count, a non-hex character or more than cap bytes.
 */
long	dp2_policy_hex_decode(const char *hex, size_t n, uint8_t *out, size_t cap);

/* A sentence for a validator code, for log lines and error messages. */
const char *dp2_policy_strerror(int code);

#endif /* DP2_POLICY_H */
