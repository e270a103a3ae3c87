// SPDX-License-Identifier: GPL-2.0
/* XDP_DROP for test frames (UDP to XDP_TEST_PORT); everything else goes up the stack. */
#include "xdp_common.h"

SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	return take(ctx) ? XDP_DROP : XDP_PASS;
}
