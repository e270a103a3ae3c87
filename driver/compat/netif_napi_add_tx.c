// SPDX-License-Identifier: GPL-2.0
/*
 * netif_napi_add_tx(dev, napi, poll) for tx-only NAPI (5.19 on); older
 * kernels call it netif_tx_napi_add(dev, napi, poll, weight).
 */
#include <linux/netdevice.h>

static int pvnet_probe_poll(struct napi_struct *napi, int budget)
{
	return 0;
}

static void pvnet_probe(struct net_device *dev, struct napi_struct *napi)
{
	netif_napi_add_tx(dev, napi, pvnet_probe_poll);
}
