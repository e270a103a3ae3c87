// SPDX-License-Identifier: GPL-2.0
/*
 * Test frames go out of another interface: the one whose ifindex the harness puts at
 * index 0 of tx_port (bpftool map update). The Ethernet addresses are swapped on the
 * way, so the frame heads back to the sender's MAC and not to the DUT's: without that,
 * the host bridge would forward it to the DUT again and it would loop.
 * Everything else passes.
 */
#include "xdp_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);	/* ifindex, resolved in the updater's netns */
} tx_port SEC(".maps");

SEC("xdp")
int xdp_redirect_devmap(struct xdp_md *ctx)
{
	if (!take(ctx))
		return XDP_PASS;
	swap_macs(ctx);
	/* flags 0: an empty slot makes the redirect fail (XDP_ABORTED), never a silent pass */
	return bpf_redirect_map(&tx_port, 0, 0);
}
