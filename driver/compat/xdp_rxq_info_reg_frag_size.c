// SPDX-License-Identifier: GPL-2.0
/*
 * __xdp_rxq_info_reg(rxq, dev, queue, napi_id, frag_size) (5.18 on);
 * older kernels have the 3-argument xdp_rxq_info_reg().
 */
#include <linux/netdevice.h>
#include <net/xdp.h>

static int pvnet_probe(struct xdp_rxq_info *rxq, struct net_device *dev)
{
	int err = __xdp_rxq_info_reg(rxq, dev, 0, 0, PAGE_SIZE);

	return err ?: (int)rxq->frag_size;
}
