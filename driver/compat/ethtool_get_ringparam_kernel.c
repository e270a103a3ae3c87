// SPDX-License-Identifier: GPL-2.0
/*
 * ethtool_ops::get_ringparam with the kernel_ethtool_ringparam and extack
 * arguments (5.17 on); before, it took only the ethtool_ringparam.
 */
#include <linux/ethtool.h>
#include <linux/netdevice.h>

static void pvnet_probe_get_ringparam(struct net_device *dev,
				      struct ethtool_ringparam *ring,
				      struct kernel_ethtool_ringparam *kring,
				      struct netlink_ext_ack *extack)
{
}

static const struct ethtool_ops pvnet_probe_ops = {
	.get_ringparam = pvnet_probe_get_ringparam,
};
