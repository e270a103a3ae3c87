// SPDX-License-Identifier: GPL-2.0
/*
 * Baseline probe, not a feature: it must compile on every kernel.  If it
 * does not, the compiler or its flags do not match the headers and every
 * other probe result would be meaningless, so the build stops here with
 * the compiler's message.
 */
#include <linux/ethtool.h>
#include <linux/etherdevice.h>
#include <linux/module.h>
#include <linux/netdevice.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>

static bool pvnet_probe(struct net_device *dev)
{
	return netif_running(dev);
}
