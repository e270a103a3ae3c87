// SPDX-License-Identifier: GPL-2.0
/*
 * eth_hw_addr_set() (5.15 upstream, backported to Debian's 5.10); without
 * it the address is copied into dev->dev_addr, which is const from 5.17.
 */
#include <linux/etherdevice.h>
#include <linux/netdevice.h>

static void pvnet_probe(struct net_device *dev, const u8 *addr)
{
	eth_hw_addr_set(dev, addr);
}
