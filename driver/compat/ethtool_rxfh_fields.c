// SPDX-License-Identifier: GPL-2.0
/*
 * ethtool_ops.get_rxfh_fields(dev, struct ethtool_rxfh_fields *): the
 * hash fields of a flow type (`ethtool -n DEV rx-flow-hash TYPE`) through
 * their own op instead of get_rxnfc(ETHTOOL_GRXFH) (Debian's 6.12.118 and
 * 7.3 have it).
 */
#include <linux/ethtool.h>
#include <linux/netdevice.h>

static int pvnet_probe_fields(struct net_device *dev,
			      struct ethtool_rxfh_fields *fields)
{
	fields->data = fields->flow_type == TCP_V4_FLOW ? RXH_IP_SRC : 0;
	return 0;
}

static const struct ethtool_ops pvnet_probe_ops = {
	.get_rxfh_fields = pvnet_probe_fields,
};
