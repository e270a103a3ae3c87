/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the receive-hash programs (tests/e2e/test_rxhash.py): xdp_rx_hash.c (the XDP
 * metadata kfunc) and tc_skb_hash.c (skb->hash).  Test frames are UDP to XDP_TEST_PORT
 * over IPv4 or IPv6 with a big-endian sequence number in their first 4 payload bytes;
 * what a program learnt about frame `seq` goes to rx_hashes[seq].
 */
#ifndef PVNET_RX_HASH_H
#define PVNET_RX_HASH_H

#include <linux/ipv6.h>
#include "xdp_common.h"

/* python/pvnet_harness/xdp.py RX_HASH_SLOTS must say the same (a unit test checks). */
#define RX_HASH_SLOTS 4096

struct rx_hash {
	__s32 ret;	/* the kfunc's return value (0, or -ENODATA...); 0 for skb->hash */
	__u32 hash;
	__u32 type;	/* enum xdp_rss_hash_type; 0 for skb->hash */
	__u32 seen;	/* frames with this sequence number */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RX_HASH_SLOTS);
	__type(key, __u32);
	__type(value, struct rx_hash);
} rx_hashes SEC(".maps");

/*
 * The sequence number of a test frame in [data, data_end), or -1 for any other frame
 * (IPv4 or IPv6 without extension headers, UDP to XDP_TEST_PORT).
 */
static __always_inline long test_frame_seq(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	struct udphdr *udp;
	struct iphdr *ip;
	__be32 *payload;

	if ((void *)(eth + 1) > data_end)
		return -1;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_UDP)
			return -1;
		udp = (void *)(ip6 + 1);
	} else {
		ip = ipv4_hdr(data, data_end);
		if (!ip || ip->protocol != IPPROTO_UDP)
			return -1;
		udp = (void *)ip + ip->ihl * 4;
	}
	payload = (void *)(udp + 1);
	if ((void *)(payload + 1) > data_end || udp->dest != bpf_htons(XDP_TEST_PORT))
		return -1;
	return bpf_ntohl(*payload);
}

/* Record what was learnt about frame `seq`. */
static __always_inline void record(__u32 seq, __s32 ret, __u32 hash, __u32 type)
{
	struct rx_hash *slot = bpf_map_lookup_elem(&rx_hashes, &seq);

	if (!slot)
		return;
	slot->ret = ret;
	slot->hash = hash;
	slot->type = type;
	slot->seen += 1;
}

#endif
