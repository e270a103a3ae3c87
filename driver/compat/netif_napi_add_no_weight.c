// SPDX-License-Identifier: GPL-2.0
/*
 * netif_napi_add(dev, napi, poll) without the weight argument (6.1 on;
 * before, every caller passed a weight, normally NAPI_POLL_WEIGHT).
 */
#include <linux/netdevice.h>

static int pvnet_probe_poll(struct napi_struct *napi, int budget)
{
	return 0;
}

static void pvnet_probe(struct net_device *dev, struct napi_struct *napi)
{
	netif_napi_add(dev, napi, pvnet_probe_poll);
}
