/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the XDP test programs (tests/e2e/test_xdp.py): the UDP port the tests aim
 * at, a parser that finds an IPv4/UDP frame to that port, and a per-CPU counter map.
 *
 * Every program acts on "test frames" (IPv4, UDP, destination port XDP_TEST_PORT) and
 * passes everything else (ARP, ICMP, TCP, IPv6), so the guest stays reachable while a
 * program is attached. The harness reads the counters with `bpftool map dump`.
 */
#ifndef PVNET_XDP_COMMON_H
#define PVNET_XDP_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* python/pvnet_harness/xdp.py XDP_TEST_PORT must say the same (a unit test checks). */
#define XDP_TEST_PORT 9

/* Counter slots of xdp_counts (python: xdp.COUNTERS). */
enum xdp_counter {
	CNT_HIT = 0,		/* test frames the program acted on */
	CNT_PASS = 1,		/* other frames, passed */
	CNT_HEAD_OK = 2,	/* xdp_pass_adjust: adjust_head -N/+N round trips done */
	CNT_HEAD_FAIL = 3,	/* ... refused by the helper */
	CNT_TAIL_OK = 4,	/* xdp_pass_adjust: adjust_tail +M/-M round trips done */
	CNT_TAIL_FAIL = 5,	/* ... grow refused (no tailroom: allowed, only counted) */
	CNT_CORRUPT = 6,	/* headers differ after a round trip (must stay 0) */
	CNT_META_FAIL = 7,	/* xdp_meta: bpf_xdp_adjust_meta() refused */
	CNT_MAX = 8,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} xdp_counts SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&xdp_counts, &slot);

	if (v)
		*v += 1;	/* per-CPU slot: no atomics needed */
}

/* The IPv4 header of an Ethernet frame, or NULL (not IPv4, or truncated). */
static __always_inline struct iphdr *ipv4_hdr(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return NULL;
	if (ip->ihl < 5)
		return NULL;
	return ip;
}

/*
 * The UDP header of a test frame (IPv4, UDP, destination port XDP_TEST_PORT) at data, or
 * NULL. For XDP and tc programs alike.
 */
static __always_inline struct udphdr *test_udp(void *data, void *data_end)
{
	struct iphdr *ip = ipv4_hdr(data, data_end);
	struct udphdr *udp;

	if (!ip || ip->protocol != IPPROTO_UDP)
		return NULL;
	udp = (void *)ip + ip->ihl * 4;
	if ((void *)(udp + 1) > data_end || udp->dest != bpf_htons(XDP_TEST_PORT))
		return NULL;
	return udp;
}

static __always_inline struct udphdr *test_udp_hdr(struct xdp_md *ctx)
{
	return test_udp((void *)(long)ctx->data, (void *)(long)ctx->data_end);
}

/* Whether the frame is a test frame. */
static __always_inline int is_test_udp(struct xdp_md *ctx)
{
	return test_udp_hdr(ctx) != NULL;
}

/* Counts a frame as a test frame (CNT_HIT) or another one (CNT_PASS); returns which. */
static __always_inline int take(struct xdp_md *ctx)
{
	int hit = is_test_udp(ctx);

	count(hit ? CNT_HIT : CNT_PASS);
	return hit;
}

/* Swap the Ethernet source and destination: the frame goes back where it came from. */
static __always_inline void swap_macs(struct xdp_md *ctx)
{
	struct ethhdr *eth = (void *)(long)ctx->data;
	unsigned char tmp[ETH_ALEN];

	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return;		/* cannot happen after take(): keeps the verifier happy */
	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
}

char _license[] SEC("license") = "GPL";

#endif
