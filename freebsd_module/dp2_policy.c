/*
 * dp2_policy.c -- validator and integer evaluator of an l4stb policy blob (see dp2_policy.h).
 *
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * Each function mirrors l4stb/policyblob.py (validate, PolicyBlob.decide) line by line. Multi-byte
 * values are read byte by byte as little-endian, so the code needs no alignment and runs the same on
 * any byte order.
 */
#include "dp2_policy.h"

static uint32_t
rd16(const uint8_t *b)
{
	return ((uint32_t)b[0] | ((uint32_t)b[1] << 8));
}

static uint32_t
rd32(const uint8_t *b)
{
	return ((uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24));
}

/* policyblob.fnv1a32 */
static uint32_t
fnv1a32(const uint8_t *b, size_t n)
{
	uint32_t h = 0x811c9dc5U;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x01000193U;
	return (h);
}

/* policyblob.validate */
int
dp2_policy_validate(const uint8_t *blob, size_t len)
{
	uint32_t nf, max_depth, nn, total, expected, top;
	uint32_t st_idx[DP2_POLICY_MAX_DEPTH + 2], st_depth[DP2_POLICY_MAX_DEPTH + 2];
	const uint8_t *nodes, *nd;
	uint32_t k, idx, depth, left, right;

	if (blob == NULL || len < DP2_POLICY_HEADER_BYTES)
		return (DP2_POLICY_E_SHORT);
	if (blob[0] != DP2_POLICY_MAGIC0 || blob[1] != DP2_POLICY_MAGIC1 || blob[2] != DP2_POLICY_MAGIC2 ||
	    blob[3] != DP2_POLICY_MAGIC3)
		return (DP2_POLICY_E_MAGIC);
	if (rd16(blob + 4) != DP2_POLICY_VERSION)
		return (DP2_POLICY_E_VERSION);
	total = rd32(blob + 12);
	if ((size_t)total != len || len > DP2_POLICY_MAX_BYTES)
		return (DP2_POLICY_E_LENGTH);
	nf = blob[6];
	max_depth = blob[7];
	nn = rd16(blob + 8);
	if (nf < 1 || nf > DP2_POLICY_MAX_FEATURES || max_depth < 1 || max_depth > DP2_POLICY_MAX_DEPTH ||
	    nn < 1 || nn > DP2_POLICY_MAX_NODES || rd16(blob + 10) != 0 || rd32(blob + 20) != 0)
		return (DP2_POLICY_E_HEADER);
	if (total != DP2_POLICY_HEADER_BYTES + DP2_POLICY_FEATURE_BYTES * nf + DP2_POLICY_NODE_BYTES * nn)
		return (DP2_POLICY_E_LENGTH);
	if (fnv1a32(blob + DP2_POLICY_HEADER_BYTES, len - DP2_POLICY_HEADER_BYTES) != rd32(blob + 16))
		return (DP2_POLICY_E_CHECKSUM);
	for (k = 0; k < nf; k++) {
		const uint8_t *f = blob + DP2_POLICY_HEADER_BYTES + DP2_POLICY_FEATURE_BYTES * k;

		if (f[0] >= DP2_POLICY_MAX_FEATURES || f[1] > 62 || rd16(f + 2) != 0 || rd32(f + 4) == 0)
			return (DP2_POLICY_E_FEATURE);
	}
	/*
	 * Depth-first walk in pre-order: a popped node must be the next index, so every node is met exactly
	 * once (no out-of-range, shared or unreachable node, no cycle). The stack holds one pending right
	 * child per level plus the current node, so max_depth + 2 entries suffice.
	 */
	nodes = blob + DP2_POLICY_HEADER_BYTES + DP2_POLICY_FEATURE_BYTES * nf;
	top = 0;
	st_idx[top] = 0;
	st_depth[top] = 0;
	top++;
	expected = 0;
	while (top > 0) {
		top--;
		idx = st_idx[top];
		depth = st_depth[top];
		if (idx != expected)
			return (DP2_POLICY_E_LAYOUT);
		expected++;
		nd = nodes + DP2_POLICY_NODE_BYTES * idx;
		left = rd16(nd + 2);
		right = rd16(nd + 4);
		if (nd[0] == DP2_POLICY_LEAF) {
			if (nd[1] > DP2_POLICY_MARK || left != 0 || right != 0 || rd16(nd + 6) != 0 || rd32(nd + 8) != 0)
				return (DP2_POLICY_E_NODE);
			continue;
		}
		if (nd[0] >= nf || nd[1] != 0 || rd16(nd + 6) != 0)
			return (DP2_POLICY_E_NODE);
		if (left != idx + 1 || right <= left || right >= nn)
			return (DP2_POLICY_E_LAYOUT);
		if (depth + 1 > max_depth)
			return (DP2_POLICY_E_DEPTH);
		st_idx[top] = right;
		st_depth[top] = depth + 1;
		top++;
		st_idx[top] = left;
		st_depth[top] = depth + 1;
		top++;
	}
	if (expected != nn)
		return (DP2_POLICY_E_LAYOUT);
	return (DP2_POLICY_OK);
}

int
dp2_policy_init(struct dp2_policy *p, const uint8_t *blob, size_t len)
{
	int code = dp2_policy_validate(blob, len);
	uint32_t k;

	if (code != DP2_POLICY_OK)
		return (code);
	p->n_features = blob[6];
	p->max_depth = blob[7];
	p->n_nodes = (uint16_t)rd16(blob + 8);
	p->n_bytes = (uint32_t)len;
	p->checksum = rd32(blob + 16);
	for (k = 0; k < DP2_POLICY_MAX_FEATURES; k++) {
		const uint8_t *f = blob + DP2_POLICY_HEADER_BYTES + DP2_POLICY_FEATURE_BYTES * k;

		p->field[k] = k < p->n_features ? f[0] : 0;
		p->shift[k] = k < p->n_features ? f[1] : 0;
	}
	p->nodes = blob + DP2_POLICY_HEADER_BYTES + DP2_POLICY_FEATURE_BYTES * p->n_features;
	return (DP2_POLICY_OK);
}

/* PolicyBlob.decide: the feature is min(max(field, 0) >> shift, 2^31-1), compared as a signed 32-bit value. */
int
dp2_policy_decide(const struct dp2_policy *p, const int64_t *fields)
{
	const uint8_t *nd;
	uint32_t idx = 0, d;
	int64_t v;
	int32_t thr;

	for (d = 0; d <= p->max_depth; d++) {
		nd = p->nodes + DP2_POLICY_NODE_BYTES * idx;
		if (nd[0] == DP2_POLICY_LEAF)
			return (nd[1]);
		v = fields[p->field[nd[0]]];
		v = (v > 0 ? v : 0) >> p->shift[nd[0]];
		if (v > 0x7fffffff)
			v = 0x7fffffff;
		thr = (int32_t)rd32(nd + 8);
		idx = v <= (int64_t)thr ? rd16(nd + 2) : rd16(nd + 4);
	}
	return (DP2_POLICY_FORWARD);	/* unreachable for a validated blob */
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	if (c >= 'A' && c <= 'F')
		return (c - 'A' + 10);
	return (-1);
}

long
dp2_policy_hex_decode(const char *hex, size_t n, uint8_t *out, size_t cap)
{
	size_t i;
	int hi, lo;

	if (n % 2 != 0 || n / 2 > cap)
		return (-1);
	for (i = 0; i < n / 2; i++) {
		hi = hexval(hex[2 * i]);
		lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return (-1);
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return ((long)(n / 2));
}

const char *
dp2_policy_strerror(int code)
{
	switch (code) {
	case DP2_POLICY_OK:		return ("valid");
	case DP2_POLICY_E_SHORT:	return ("shorter than its 24-byte header");
	case DP2_POLICY_E_MAGIC:	return ("bad magic (not an l4stb policy blob)");
	case DP2_POLICY_E_VERSION:	return ("unsupported version");
	case DP2_POLICY_E_LENGTH:	return ("length does not match its header");
	case DP2_POLICY_E_HEADER:	return ("header field out of range (features, depth, nodes or flags)");
	case DP2_POLICY_E_CHECKSUM:	return ("checksum mismatch (corrupted)");
	case DP2_POLICY_E_FEATURE:	return ("bad feature entry (field id, shift, scale or reserved bits)");
	case DP2_POLICY_E_NODE:		return ("bad node (feature index, leaf action, threshold or reserved bits)");
	case DP2_POLICY_E_LAYOUT:	return ("node indices out of bounds or not in pre-order (shared, unreachable or cyclic nodes)");
	case DP2_POLICY_E_DEPTH:	return ("tree deeper than its declared max_depth");
	default:			return ("unknown validator code");
	}
}
