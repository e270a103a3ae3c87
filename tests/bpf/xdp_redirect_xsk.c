// SPDX-License-Identifier: GPL-2.0
/*
 * Test frames go to the AF_XDP socket bound to the queue they arrived on: xsks_map is
 * keyed by rx queue index and filled by xsk_rx (the socket's owner). Everything else
 * passes.
 */
#include "xdp_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);	/* socket fd on update */
} xsks_map SEC(".maps");

SEC("xdp")
int xdp_redirect_xsk(struct xdp_md *ctx)
{
	if (!take(ctx))
		return XDP_PASS;
	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, 0);
}
