// SPDX-License-Identifier: GPL-2.0
/*
 * XDP_PASS for every frame, after moving IPv4 TCP/UDP frames around in their buffer:
 *
 *  - bpf_xdp_adjust_head(-HEAD_GROW): HEAD_GROW bytes of headroom become packet data;
 *    they are filled with a pattern, then adjust_head(+HEAD_GROW) gives them back;
 *  - bpf_xdp_adjust_tail(+TAIL_GROW): the frame grows into its tailroom, the new bytes
 *    are filled, then adjust_tail(-TAIL_GROW) trims them again.
 *
 * The frame's first CHECK_LEN bytes are compared with a copy after every step
 * (CNT_CORRUPT must stay 0) and the harness checks TCP transfers byte for byte, so a
 * driver that builds its skb from stale offsets is caught. Growing the tail may be
 * refused when the driver gives no tailroom (-EINVAL): that only counts CNT_TAIL_FAIL.
 * Built twice: SEC("xdp") here, SEC("xdp.frags") by xdp_pass_adjust_frags.c (multi-buffer
 * frames; the tail is written through bpf_xdp_store_bytes, it may sit in a fragment).
 */
#include "xdp_common.h"

#define HEAD_GROW 16
#define TAIL_GROW 32
#define CHECK_LEN 34	/* Ethernet + a minimal IPv4 header */

/* Whether the first CHECK_LEN bytes at data + off still equal `saved`. */
static __always_inline int same_start(struct xdp_md *ctx, const __u8 *saved, __u32 off)
{
	__u8 *p = (void *)(long)ctx->data + off;
	int i;

	if ((void *)(p + CHECK_LEN) > (void *)(long)ctx->data_end)
		return 0;
#pragma unroll
	for (i = 0; i < CHECK_LEN; i++)
		if (p[i] != saved[i])
			return 0;
	return 1;
}

static __always_inline int head_round_trip(struct xdp_md *ctx, const __u8 *saved)
{
	__u8 *p;
	int i;

	if (bpf_xdp_adjust_head(ctx, -HEAD_GROW)) {
		count(CNT_HEAD_FAIL);
		return 0;
	}
	p = (void *)(long)ctx->data;
	if ((void *)(p + HEAD_GROW) > (void *)(long)ctx->data_end)
		return -1;
#pragma unroll
	for (i = 0; i < HEAD_GROW; i++)
		p[i] = 0xa5;
	if (!same_start(ctx, saved, HEAD_GROW))
		return -1;
	if (bpf_xdp_adjust_head(ctx, HEAD_GROW))
		return -1;	/* the frame would keep 16 bytes of pattern: drop it */
	count(CNT_HEAD_OK);
	return 0;
}

static __always_inline int tail_round_trip(struct xdp_md *ctx)
{
#ifdef XDP_FRAGS
	static const __u8 pattern[TAIL_GROW] = { [0 ... TAIL_GROW - 1] = 0x5a };
	__u32 len = bpf_xdp_get_buff_len(ctx);

	if (bpf_xdp_adjust_tail(ctx, TAIL_GROW)) {
		count(CNT_TAIL_FAIL);
		return 0;
	}
	if (bpf_xdp_store_bytes(ctx, len, (void *)pattern, TAIL_GROW))
		return -1;
#else
	__u32 len = (long)ctx->data_end - (long)ctx->data;
	__u8 *p;
	int i;

	if (bpf_xdp_adjust_tail(ctx, TAIL_GROW)) {
		count(CNT_TAIL_FAIL);
		return 0;
	}
	/* the bound is for the verifier (a packet offset must stay below 64 KiB) */
	if (len <= 0x3fff) {
		p = (void *)(long)ctx->data + len;
		if ((void *)(p + TAIL_GROW) > (void *)(long)ctx->data_end)
			return -1;
#pragma unroll
		for (i = 0; i < TAIL_GROW; i++)
			p[i] = 0x5a;
	}
#endif
	if (bpf_xdp_adjust_tail(ctx, -TAIL_GROW))
		return -1;
	count(CNT_TAIL_OK);
	return 0;
}

static __always_inline int pass_adjust(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = ipv4_hdr(data, data_end);
	__u8 saved[CHECK_LEN];

	if (!ip || (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP) ||
	    data + CHECK_LEN > data_end) {
		count(CNT_PASS);
		return XDP_PASS;
	}
	count(CNT_HIT);
	__builtin_memcpy(saved, data, CHECK_LEN);
	if (head_round_trip(ctx, saved) || tail_round_trip(ctx) || !same_start(ctx, saved, 0)) {
		count(CNT_CORRUPT);
		return XDP_DROP;
	}
	return XDP_PASS;
}

#ifdef XDP_FRAGS
SEC("xdp.frags")
int xdp_pass_adjust_frags(struct xdp_md *ctx)
#else
SEC("xdp")
int xdp_pass_adjust(struct xdp_md *ctx)
#endif
{
	return pass_adjust(ctx);
}
