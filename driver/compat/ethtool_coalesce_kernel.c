// SPDX-License-Identifier: GPL-2.0
/*
 * ethtool_ops::get/set_coalesce with the kernel_ethtool_coalesce and
 * extack arguments (5.15 on); before, they took only ethtool_coalesce.
 */
#include <linux/ethtool.h>
#include <linux/netdevice.h>

static int pvnet_probe_coalesce(struct net_device *dev,
				struct ethtool_coalesce *ec,
				struct kernel_ethtool_coalesce *kec,
				struct netlink_ext_ack *extack)
{
	return 0;
}

static const struct ethtool_ops pvnet_probe_ops = {
	.get_coalesce = pvnet_probe_coalesce,
	.set_coalesce = pvnet_probe_coalesce,
};
