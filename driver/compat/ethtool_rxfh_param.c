// SPDX-License-Identifier: GPL-2.0
/*
 * ethtool_ops.get_rxfh(dev, struct ethtool_rxfh_param *) (6.8 on; before:
 * (dev, indir, key, hfunc)).
 */
#include <linux/ethtool.h>
#include <linux/netdevice.h>

static int pvnet_probe_get_rxfh(struct net_device *dev,
				struct ethtool_rxfh_param *rxfh)
{
	rxfh->hfunc = ETH_RSS_HASH_TOP;
	return 0;
}

static const struct ethtool_ops pvnet_probe_ops = {
	.get_rxfh = pvnet_probe_get_rxfh,
};
