/*
 * TEST-ONLY stand-in for sys/netpfil/ipfw/ip_fw_private.h (not installed by FreeBSD): the subset that
 * dn_sched_dualpi2.c and ip_dn_private.h use. Written from freebsd/freebsd-src
 * sys/netpfil/ipfw/ip_fw_private.h at ff8527759e91 (FREE_PKT, struct _ip6dn_args).
 * SPDX-License-Identifier: BSD-2-Clause
 */
#ifndef L4STB_IP_FW_PRIVATE_H
#define L4STB_IP_FW_PRIVATE_H

/* ip_fw_private.h: "wrapper for freeing a packet", m_freem() on FreeBSD. */
#ifndef FREE_PKT
#define FREE_PKT(m)	m_freem(m)
#endif

/* ip_fw_private.h: dummynet's saved ip6_output() arguments, embedded in struct dn_pkt_tag. */
struct ip6_pktopts;
struct ip6_moptions;
struct _ip6dn_args {
	struct ip6_pktopts	*opt_or;
	int			flags_or;
	struct ip6_moptions	*im6o_or;
	struct ifnet		*origifp_or;
	struct ifnet		*ifp_or;
	struct sockaddr_in6	dst_or;
	u_long			mtu_or;
};

#endif
