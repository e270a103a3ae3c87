// SPDX-License-Identifier: GPL-2.0
/*
 * xdp_init_buff() / xdp_prepare_buff() (5.12 on).
 */
#include <linux/bpf.h>
#include <linux/netdevice.h>
#include <net/xdp.h>

static void pvnet_probe(struct xdp_buff *xdp, struct xdp_rxq_info *rxq,
			unsigned char *hard_start)
{
	xdp_init_buff(xdp, PAGE_SIZE, rxq);
	xdp_prepare_buff(xdp, hard_start, XDP_PACKET_HEADROOM, 64, true);
}
