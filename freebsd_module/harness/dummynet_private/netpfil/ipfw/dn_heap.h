/*
 * TEST-ONLY stand-in for sys/netpfil/ipfw/dn_heap.h (not installed by FreeBSD): the types that
 * ip_dn_private.h embeds. Written from freebsd/freebsd-src sys/netpfil/ipfw/dn_heap.h at ba0fe1ddeff5.
 * SPDX-License-Identifier: BSD-2-Clause
 */
#ifndef L4STB_DN_HEAP_H
#define L4STB_DN_HEAP_H

/* dn_heap.h: one heap entry, a 64-bit key and the object it orders. */
struct dn_heap_entry {
	uint64_t	key;
	void		*object;
};

/* dn_heap.h: the binary heap dummynet keeps its timer events in (struct dn_parms.evheap). */
struct dn_heap {
	int			size;
	int			elements;
	int			ofs;
	struct dn_heap_entry	*p;
};

/* dn_heap.h: dummynet's hash table, opaque to its users. */
struct dn_ht;

#endif
