// SPDX-License-Identifier: GPL-2.0
/*
 * Test frames are handed to CPU CPUMAP_TARGET through a CPUMAP: its kthread builds skbs
 * from them and passes them up the stack there (the harness sets the entry's queue size
 * with bpftool). Everything else passes on the receiving CPU as usual.
 */
#include "xdp_common.h"

#define CPUMAP_TARGET 0

struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);	/* queue size of the CPU's ptr_ring; 0 = no entry */
} cpu_map SEC(".maps");

SEC("xdp")
int xdp_redirect_cpumap(struct xdp_md *ctx)
{
	if (!take(ctx))
		return XDP_PASS;
	return bpf_redirect_map(&cpu_map, CPUMAP_TARGET, 0);
}
