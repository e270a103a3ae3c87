// SPDX-License-Identifier: GPL-2.0
/*
 * ethtool_ops.get_rx_ring_count (newer than 6.12; Debian's 7.3 has it).
 * There the core answers ETHTOOL_GRXRINGS (`ethtool -x` asks it first)
 * only through this op, not through get_rxnfc: without it `ethtool -x`
 * fails with "Cannot get RX ring count" (seen on 7.3).
 */
#include <linux/ethtool.h>
#include <linux/netdevice.h>

static u32 pvnet_probe_rings(struct net_device *dev)
{
	return 1;
}

static const struct ethtool_ops pvnet_probe_ops = {
	.get_rx_ring_count = pvnet_probe_rings,
};
