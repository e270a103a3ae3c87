// SPDX-License-Identifier: GPL-2.0
/*
 * XDP_ABORTED for test frames: the driver drops them, counts them as aborted and fires
 * the xdp_exception tracepoint. Everything else passes.
 */
#include "xdp_common.h"

SEC("xdp")
int xdp_aborted(struct xdp_md *ctx)
{
	return take(ctx) ? XDP_ABORTED : XDP_PASS;
}
