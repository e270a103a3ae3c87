// SPDX-License-Identifier: GPL-2.0
/*
 * net_device.xdp_features and its setters (6.3 on).
 */
#include <linux/netdevice.h>
#include <net/xdp.h>

static void pvnet_probe(struct net_device *dev)
{
	xdp_features_t f = NETDEV_XDP_ACT_BASIC | NETDEV_XDP_ACT_REDIRECT |
			   NETDEV_XDP_ACT_RX_SG;

	xdp_set_features_flag(dev, f);
	xdp_features_set_redirect_target(dev, true);
	xdp_features_clear_redirect_target(dev);
	dev->xdp_features |= NETDEV_XDP_ACT_NDO_XMIT_SG;
}
