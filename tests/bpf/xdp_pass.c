// SPDX-License-Identifier: GPL-2.0
/* XDP_PASS for every frame, counted: the simplest program to attach and replace. */
#include "xdp_common.h"

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	take(ctx);
	return XDP_PASS;
}
