// SPDX-License-Identifier: GPL-2.0
/*
 * XDP metadata for tc: test frames get META_LEN bytes of metadata in front of them
 * (bpf_xdp_adjust_meta), holding META_MAGIC and the frame's UDP source port, and are passed;
 * tc_meta.c, on tc ingress, checks that the skb carries exactly that metadata. Everything else
 * passes untouched.
 */
#include "xdp_common.h"
#include "xdp_meta.h"

SEC("xdp")
int xdp_meta(struct xdp_md *ctx)
{
	struct pvnet_test_meta *meta;
	struct udphdr *udp;

	if (!take(ctx))
		return XDP_PASS;
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(*meta))) {
		count(CNT_META_FAIL);
		return XDP_PASS;
	}
	meta = (void *)(long)ctx->data_meta;
	if ((void *)(meta + 1) > (void *)(long)ctx->data)
		return XDP_PASS;
	udp = test_udp_hdr(ctx);
	if (!udp)
		return XDP_PASS;
	meta->magic = META_MAGIC;
	meta->sport = udp->source;
	return XDP_PASS;
}
