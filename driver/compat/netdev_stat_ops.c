// SPDX-License-Identifier: GPL-2.0
/*
 * Per-queue statistics over netdev netlink (qstats-get): struct
 * netdev_stat_ops and net_device::stat_ops (6.10 on).
 */
#include <linux/netdevice.h>
#include <net/netdev_queues.h>

static const struct netdev_stat_ops pvnet_probe_ops;

static void pvnet_probe(struct net_device *dev)
{
	dev->stat_ops = &pvnet_probe_ops;
}
