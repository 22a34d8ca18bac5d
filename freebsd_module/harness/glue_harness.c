/*
 * glue_harness.c -- drive the kernel glue (dn_sched_dualpi2.c, compiled on Linux against
 * kernel_stubs/) the way dummynet does, with real IPv4 packets, and print what comes out, so that
 * tests/test_module_glue.py can check the bytes that would reach the wire.
 *
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * Commands on stdin, one a line; each answer is one line on stdout, and log(9) lines appear as
 * "L <line>" where the glue logs them:
 *   load | unload                  the module's modevent (MOD_LOAD / MOD_UNLOAD)  -> "load <rc>"
 *   set NAME VALUE | get NAME      net.inet.ip.dummynet.dualpi2.NAME              -> "get NAME <value>"
 *   new | free                     create / free the scheduler instance (as ip_dummynet.c's
 *                                  si_new()/si_destroy() do)                      -> "new <rc>"
 *   failtags N                     make the next N m_tag_alloc() calls fail
 *   ifgone IFINDEX                 destroy an interface (1..3) while packets from it are queued
 *   enq NOW_US PROTO ECN LEN IFIDX [L2]  what dummynet_io() does: tag the packet (after an unrelated
 *                                  tag that was already there), then the scheduler's enqueue()
 *                                  -> "enq id=<packet id> rc=<0 queued | 1 dropped>"
 *                                  PROTO tcp|udp|icmp (IPv4) or tcp6|udp6 (IPv6), ECN 0..3 (the IP ECN
 *                                  field), IFIDX 0 = none, L2 = 1 for a layer-2 packet (an Ethernet
 *                                  header in front, dn_pkt_tag.iphdr_off = 14, as tag_mbuf() sets it)
 *   deq NOW_US                     one dequeue() -> "deq none" or "deq id=<packet id> ecn=<field>
 *                                  csum=<ok|bad|none (IPv6)> len=<bytes> rcvif=<idx>"
 *   sysctl NAME [VALUE]            a string sysctl (the learned policy: begin, +<hex>, commit, none), read
 *                                  or written as sysctl(8) does -> "sysctl NAME rc=<errno> value=<read value>"
 *   counters                       -> "counters live_mbufs=.. freed_mbufs=.. live_tags=.. log_lines=..
 *                                  io_pkt_drop=.. ecn_mark_calls=.."
 * At end of input the instance (if any) is freed and every mbuf and tag must have been freed.
 * Anything dummynet would trip over (a tag order dn_tag_get() cannot read, a tag left behind, an
 * unrestored rcvif) aborts with a message on stderr.
 */
#include <stdio.h>
#include <stdlib.h>

#include "kstub.h"
#include "opt_inet.h"
#include "opt_inet6.h"
#include <netpfil/ipfw/ip_fw_private.h>
#include <netpfil/ipfw/dn_heap.h>
#include <netpfil/ipfw/ip_dn_private.h>
#include <netpfil/ipfw/dn_sched.h>

#include "kstub_harness.h"

#define	OTHER_TAG_COOKIE	42	/* a tag some earlier hook left on the packet */
#define	OTHER_TAG_TYPE		7
#define	ETHER_HDR_LEN		14	/* net/ethernet.h */

static struct dn_schk schk;
static struct dn_sch_inst *si;
static uint16_t next_id = 1;

static void
fail(const char *what)
{
	fprintf(stderr, "glue harness: %s\n", what);
	fflush(NULL);
	abort();
}

/* The full IPv4 header checksum (RFC 791), 0 when the header is intact. */
static uint16_t
header_checksum(const struct ip *ip)
{
	const uint8_t *p = (const uint8_t *)ip;
	uint32_t sum = 0;
	int i;

	for (i = 0; i < ip->ip_hl * 4; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ((uint16_t)~sum);
}

/* An IPv4 header with a valid checksum; the packet id goes into ip_id. */
static void
fill_ipv4(struct ip *ip, int proto, int ecn, int len, uint16_t id)
{
	ip->ip_v = IPVERSION;
	ip->ip_hl = 5;
	ip->ip_tos = (uint8_t)ecn;
	ip->ip_len = htons((uint16_t)len);
	ip->ip_id = htons(id);
	ip->ip_ttl = 64;
	ip->ip_p = (uint8_t)proto;
	ip->ip_src = htonl(0x0a000102);		/* 10.0.1.2 */
	ip->ip_dst = htonl(0x0a000302);		/* 10.0.3.2 */
	ip->ip_sum = htons(header_checksum(ip));
}

/* An IPv6 header (version 6, the ECN field in the traffic class); the packet id is the flow label. */
static void
fill_ipv6(struct ip6_hdr *ip6, int proto, int ecn, int len, uint16_t id)
{
	ip6->ip6_flow = htonl(6U << 28 | (uint32_t)ecn << 20 | id);
	ip6->ip6_plen = htons((uint16_t)(len - (int)sizeof(*ip6)));
	ip6->ip6_nxt = (uint8_t)proto;
	ip6->ip6_hlim = 64;
	ip6->ip6_src[15] = 2;
	ip6->ip6_dst[15] = 3;
}

static struct mbuf *
make_packet(const char *proto, int ecn, int len, int ifidx, int l2)
{
	struct mbuf *m = kstub_mbuf_new();
	int off = l2 ? ETHER_HDR_LEN : 0, v6 = proto[strlen(proto) - 1] == '6';
	int p = strncmp(proto, "tcp", 3) == 0 ? IPPROTO_TCP : strncmp(proto, "udp", 3) == 0 ? IPPROTO_UDP :
	    IPPROTO_ICMP;
	int iplen = v6 ? (int)sizeof(struct ip6_hdr) : (int)sizeof(struct ip);
	uint16_t *ports = (uint16_t *)(m->m_data + off + iplen);
	int saved = kstub_counts.fail_tag_allocs;
	struct m_tag *other, *dn;
	struct dn_pkt_tag *dt;

	if (len < iplen + 20 || off + len > (int)sizeof(m->m_buf))
		fail("packet length out of range");
	memset(m->m_data, 0, (size_t)(off + len));
	if (v6)
		fill_ipv6((struct ip6_hdr *)(m->m_data + off), p, ecn, len, next_id++);
	else
		fill_ipv4((struct ip *)(m->m_data + off), p, ecn, len, next_id++);
	ports[0] = htons(40000);
	ports[1] = htons(5201);
	m->m_len = m->m_pkthdr.len = off + len;
	m->m_pkthdr.rcvif = ifidx ? &kstub_ifnets[ifidx] : NULL;

	/* dummynet_io() -> tag_mbuf() (ip_dn_io.c): m_tag_prepend()s its tag, in front of any other. */
	kstub_counts.fail_tag_allocs = 0;
	other = m_tag_alloc(OTHER_TAG_COOKIE, OTHER_TAG_TYPE, 4, M_NOWAIT);
	dn = m_tag_alloc(MTAG_ABI_COMPAT, PACKET_TAG_DUMMYNET, sizeof(*dt), M_NOWAIT | M_ZERO);
	kstub_counts.fail_tag_allocs = saved;
	if (other == NULL || dn == NULL)
		fail("out of memory");
	m_tag_prepend(m, other);
	m_tag_prepend(m, dn);
	dt = (struct dn_pkt_tag *)(dn + 1);
	dt->iphdr_off = (uint16_t)off;
	return (m);
}

/* What dummynet does with a dequeued packet before it goes out: serve_sched() sets
 * dn_tag_get(m)->output_time, dummynet_send() renames the first tag. Both read the first tag. */
static void
check_and_print_sent(struct mbuf *m)
{
	struct ip *ip = (struct ip *)mtodo(m, dn_tag_get(m)->iphdr_off);
	struct ip6_hdr *ip6 = (struct ip6_hdr *)ip;
	struct m_tag *t;
	int ifidx = -1, i;

	SLIST_FOREACH(t, &m->m_pkthdr.tags, m_tag_link)
		if (!(t->m_tag_cookie == MTAG_ABI_COMPAT && t->m_tag_id == PACKET_TAG_DUMMYNET) &&
		    !(t->m_tag_cookie == OTHER_TAG_COOKIE && t->m_tag_id == OTHER_TAG_TYPE))
			fail("the scheduler left its own tag on a packet it handed back");
	if (m->kstub_rcvif_serialized)
		fail("the scheduler handed back a packet whose rcvif is still serialized");
	for (i = 0; i < KSTUB_NIFNET; i++)
		if (m->m_pkthdr.rcvif == &kstub_ifnets[i])
			ifidx = i;
	if (m->m_pkthdr.rcvif == NULL)
		ifidx = 0;
	if (ifidx < 0)
		fail("the scheduler handed back a packet with a bad rcvif pointer");
	if (ip->ip_v == 6)
		printf("deq id=%u ecn=%u csum=none len=%d rcvif=%d\n", ntohl(ip6->ip6_flow) & 0xffff,
		    (ntohl(ip6->ip6_flow) >> 20) & IPTOS_ECN_MASK, m->m_pkthdr.len, ifidx);
	else
		printf("deq id=%u ecn=%u csum=%s len=%d rcvif=%d\n", ntohs(ip->ip_id), ip->ip_tos & IPTOS_ECN_MASK,
		    header_checksum(ip) == 0 ? "ok" : "bad", m->m_pkthdr.len, ifidx);
	m_freem(m);
}

static void
need_instance(void)
{
	if (si == NULL)
		fail("no scheduler instance (send 'new' first)");
}

int
main(void)
{
	char line[2048], name[64], proto[16];
	long long now, value;
	int ecn, len, ifidx, l2, n, i;

	for (i = 0; i < KSTUB_NIFNET; i++) {
		kstub_ifnets[i].if_index = (uint16_t)i;
		kstub_ifnets[i].if_idxgen = (uint16_t)(7 + i);
	}
	schk.fs = NULL;
	while (fgets(line, sizeof(line), stdin) != NULL) {
		if (line[0] == '\n' || line[0] == '#')
			continue;
		if (strncmp(line, "load", 4) == 0) {
			printf("load %d\n", kstub_module->evhand(NULL, MOD_LOAD, kstub_module->priv));
		} else if (strncmp(line, "unload", 6) == 0) {
			printf("unload %d\n", kstub_module->evhand(NULL, MOD_UNLOAD, kstub_module->priv));
		} else if (sscanf(line, "set %63s %lld", name, &value) == 2) {
			int64_t *v = kstub_sysctl(name, 1);

			if (v == NULL) {
				fprintf(stderr, "glue harness: no writable sysctl %s\n", name);
				return (2);
			}
			*v = value;
		} else if (sscanf(line, "get %63s", name) == 1) {
			int64_t *v = kstub_sysctl(name, 0);

			if (v == NULL) {
				fprintf(stderr, "glue harness: no sysctl %s\n", name);
				return (2);
			}
			printf("get %s %lld\n", name, (long long)*v);
		} else if (strncmp(line, "new", 3) == 0) {
			if (kstub_sched == NULL || si != NULL)
				fail("'new' needs a loaded module and no instance");
			si = calloc(1, sizeof(*si) + kstub_sched->si_datalen);
			if (si == NULL)
				fail("out of memory");
			si->sched = &schk;
			printf("new %d\n", kstub_sched->new_sched(si));
		} else if (strncmp(line, "free", 4) == 0) {
			need_instance();
			printf("free %d\n", kstub_sched->free_sched(si));
			free(si);
			si = NULL;
		} else if (sscanf(line, "failtags %d", &n) == 1) {
			kstub_counts.fail_tag_allocs = n;
		} else if (sscanf(line, "ifgone %d", &ifidx) == 1 && ifidx > 0 && ifidx < KSTUB_NIFNET) {
			kstub_ifnet_destroy(ifidx);
		} else if ((l2 = 0, sscanf(line, "enq %lld %15s %d %d %d %d", &now, proto, &ecn, &len, &ifidx,
		    &l2)) >= 5 && ecn >= 0 && ecn <= 3 && ifidx >= 0 && ifidx < KSTUB_NIFNET) {
			struct mbuf *m;
			uint16_t id = next_id;

			need_instance();
			kstub_now_us = now;
			m = make_packet(proto, ecn, len, ifidx, l2);
			printf("enq id=%u rc=%d\n", id, kstub_sched->enqueue(si, NULL, m));
		} else if (sscanf(line, "deq %lld", &now) == 1) {
			struct mbuf *m;

			need_instance();
			kstub_now_us = now;
			m = kstub_sched->dequeue(si);
			if (m == NULL)
				printf("deq none\n");
			else
				check_and_print_sent(m);
		} else if (sscanf(line, "sysctl %63s", name) == 1) {
			char *val, out[256] = "";
			int rc;

			line[strcspn(line, "\n")] = '\0';
			val = strchr(line + 7, ' ');
			rc = kstub_sysctl_string(name, val != NULL ? val + 1 : NULL, out, sizeof(out));
			printf("sysctl %s rc=%d value=%s\n", name, rc, out);
		} else if (strncmp(line, "counters", 8) == 0) {
			printf("counters live_mbufs=%ld freed_mbufs=%ld live_tags=%ld log_lines=%ld "
			    "io_pkt_drop=%lu ecn_mark_calls=%ld\n", kstub_counts.live_mbufs, kstub_counts.freed_mbufs,
			    kstub_counts.live_tags, kstub_counts.log_lines, V_dn_cfg.io_pkt_drop,
			    kstub_counts.ecn_mark_calls);
		} else {
			fprintf(stderr, "glue harness: bad line: %s", line);
			return (2);
		}
		fflush(stdout);
	}
	if (si != NULL) {
		kstub_sched->free_sched(si);
		free(si);
	}
	if (kstub_counts.live_mbufs != 0 || kstub_counts.live_tags != 0) {
		fprintf(stderr, "glue harness: leaked %ld mbufs and %ld tags\n", kstub_counts.live_mbufs,
		    kstub_counts.live_tags);
		return (3);
	}
	return (0);
}
