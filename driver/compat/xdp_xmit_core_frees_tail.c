// SPDX-License-Identifier: GPL-2.0
/*
 * Proxy for the ndo_xdp_xmit contract of 5.13 on: the core frees the
 * frames a driver did not send (before, the driver had to).  The prototype
 * did not change; dev_map_enqueue_multi() and BPF_F_BROADCAST came in the
 * same release and rely on the new contract.
 */
#include <linux/bpf.h>
#include <net/xdp.h>

static int pvnet_probe(struct xdp_frame *xdpf, struct net_device *dev_rx,
		       struct bpf_map *map)
{
	return dev_map_enqueue_multi(xdpf, dev_rx, map, BPF_F_BROADCAST != 0);
}
