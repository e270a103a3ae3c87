// SPDX-License-Identifier: GPL-2.0
/*
 * Reflector: test frames get their Ethernet addresses swapped and go back out of the
 * interface they came in on (XDP_TX). IP addresses and ports stay as they are: the host
 * sends from its bridge's MAC, so the reflected frame reaches the host stack, which drops
 * it quietly (the destination IP is not its own) instead of answering with ICMP.
 * Everything else passes.
 */
#include "xdp_common.h"

SEC("xdp")
int xdp_tx_swap(struct xdp_md *ctx)
{
	if (!take(ctx))
		return XDP_PASS;
	swap_macs(ctx);
	return XDP_TX;
}
