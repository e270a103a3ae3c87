// SPDX-License-Identifier: GPL-2.0
/*
 * XDP rx metadata kfuncs through net_device.xdp_metadata_ops, with
 * xmo_rx_hash reporting an RSS hash type (6.4 on; 6.3 had no type).
 */
#include <linux/netdevice.h>
#include <net/xdp.h>

static int pvnet_probe_rx_hash(const struct xdp_md *ctx, u32 *hash,
			       enum xdp_rss_hash_type *rss_type)
{
	*hash = 0;
	*rss_type = XDP_RSS_TYPE_L4_IPV6_UDP_EX;
	return 0;
}

static const struct xdp_metadata_ops pvnet_probe_ops = {
	.xmo_rx_hash = pvnet_probe_rx_hash,
};

static void pvnet_probe(struct net_device *dev)
{
	dev->xdp_metadata_ops = &pvnet_probe_ops;
}
