// SPDX-License-Identifier: GPL-2.0
/*
 * pvnet: ethtool operations and per-queue statistics.
 */

#include <linux/ethtool.h>
#include <linux/kernel.h>
#include <linux/netdevice.h>
#include <linux/string.h>
#include <linux/virtio.h>

#include "pvnet.h"
#include "pvnet_compat.h"

#define PVNET_RXQ_STAT(idx, field) \
	[idx] = { #field, offsetof(struct pvnet_rxq_stats, field) }
#define PVNET_TXQ_STAT(idx, field) \
	[idx] = { #field, offsetof(struct pvnet_txq_stats, field) }

const struct pvnet_stat_desc pvnet_rxq_stat_descs[PVNET_RXQ_STATS_NUM] = {
	PVNET_RXQ_STAT(PVNET_RXQ_PACKETS, packets),
	PVNET_RXQ_STAT(PVNET_RXQ_BYTES, bytes),
	PVNET_RXQ_STAT(PVNET_RXQ_DROPS, drops),
	PVNET_RXQ_STAT(PVNET_RXQ_KICKS, kicks),
	PVNET_RXQ_STAT(PVNET_RXQ_ERRORS, errors),
	PVNET_RXQ_STAT(PVNET_RXQ_CSUM_VALID, csum_valid),
	PVNET_RXQ_STAT(PVNET_RXQ_CSUM_PARTIAL, csum_partial),
};

const struct pvnet_stat_desc pvnet_txq_stat_descs[PVNET_TXQ_STATS_NUM] = {
	PVNET_TXQ_STAT(PVNET_TXQ_PACKETS, packets),
	PVNET_TXQ_STAT(PVNET_TXQ_BYTES, bytes),
	PVNET_TXQ_STAT(PVNET_TXQ_DROPS, drops),
	PVNET_TXQ_STAT(PVNET_TXQ_KICKS, kicks),
	PVNET_TXQ_STAT(PVNET_TXQ_STOPS, stops),
	PVNET_TXQ_STAT(PVNET_TXQ_WAKES, wakes),
	PVNET_TXQ_STAT(PVNET_TXQ_CSUM_PARTIAL, csum_partial),
	PVNET_TXQ_STAT(PVNET_TXQ_GSO_PACKETS, gso_packets),
	PVNET_TXQ_STAT(PVNET_TXQ_GSO_BYTES, gso_bytes),
	PVNET_TXQ_STAT(PVNET_TXQ_GSO_SEGMENTS, gso_segments),
};

/* Consistent snapshot of one queue's counters, in descriptor order. */
static void pvnet_stats_read(const struct u64_stats_sync *syncp,
			     const void *base,
			     const struct pvnet_stat_desc *descs,
			     unsigned int n, u64 *vals)
{
	unsigned int start, i;

	do {
		start = u64_stats_fetch_begin(syncp);
		for (i = 0; i < n; i++)
			vals[i] = u64_stats_read(base + descs[i].offset);
	} while (u64_stats_fetch_retry(syncp, start));
}

void pvnet_rxq_stats_read(const struct pvnet_rxq_stats *stats, u64 *vals)
{
	pvnet_stats_read(&stats->syncp, stats, pvnet_rxq_stat_descs,
			 PVNET_RXQ_STATS_NUM, vals);
}

void pvnet_txq_stats_read(const struct pvnet_txq_stats *stats, u64 *vals)
{
	pvnet_stats_read(&stats->syncp, stats, pvnet_txq_stat_descs,
			 PVNET_TXQ_STATS_NUM, vals);
}

static void pvnet_get_drvinfo(struct net_device *dev,
			      struct ethtool_drvinfo *info)
{
	struct pvnet_priv *priv = netdev_priv(dev);
	struct virtio_device *vdev = priv->vdev;
	/* Prefer the transport device (e.g. the PCI function) as bus id. */
	struct device *bus_dev = vdev->dev.parent ?: &vdev->dev;

	strscpy(info->driver, PVNET_DRV_NAME, sizeof(info->driver));
	strscpy(info->version, PVNET_VERSION, sizeof(info->version));
	strscpy(info->bus_info, dev_name(bus_dev), sizeof(info->bus_info));
}

static int pvnet_get_sset_count(struct net_device *dev, int sset)
{
	struct pvnet_priv *priv = netdev_priv(dev);

	if (sset != ETH_SS_STATS)
		return -EOPNOTSUPP;

	return priv->curr_queue_pairs *
	       (PVNET_RXQ_STATS_NUM + PVNET_TXQ_STATS_NUM);
}

static void pvnet_get_strings(struct net_device *dev, u32 sset, u8 *data)
{
	struct pvnet_priv *priv = netdev_priv(dev);
	unsigned int q, i;

	if (sset != ETH_SS_STATS)
		return;

	for (q = 0; q < priv->curr_queue_pairs; q++) {
		for (i = 0; i < PVNET_RXQ_STATS_NUM; i++) {
			snprintf(data, ETH_GSTRING_LEN, "rx_queue_%u_%s", q,
				 pvnet_rxq_stat_descs[i].name);
			data += ETH_GSTRING_LEN;
		}
	}

	for (q = 0; q < priv->curr_queue_pairs; q++) {
		for (i = 0; i < PVNET_TXQ_STATS_NUM; i++) {
			snprintf(data, ETH_GSTRING_LEN, "tx_queue_%u_%s", q,
				 pvnet_txq_stat_descs[i].name);
			data += ETH_GSTRING_LEN;
		}
	}
}

static void pvnet_get_ethtool_stats(struct net_device *dev,
				    struct ethtool_stats *stats, u64 *data)
{
	struct pvnet_priv *priv = netdev_priv(dev);
	unsigned int q;

	for (q = 0; q < priv->curr_queue_pairs; q++) {
		pvnet_rxq_stats_read(&priv->rxq[q].stats, data);
		data += PVNET_RXQ_STATS_NUM;
	}

	for (q = 0; q < priv->curr_queue_pairs; q++) {
		pvnet_txq_stats_read(&priv->txq[q].stats, data);
		data += PVNET_TXQ_STATS_NUM;
	}
}

/* Ring sizes are fixed by the device: report them, read-only. */
static void pvnet_ringparam(struct net_device *dev,
			    struct ethtool_ringparam *ring)
{
	struct pvnet_priv *priv = netdev_priv(dev);

	if (!priv->vqs_ready)
		return;

	ring->rx_max_pending = virtqueue_get_vring_size(priv->rxq[0].vq);
	ring->tx_max_pending = virtqueue_get_vring_size(priv->txq[0].vq);
	ring->rx_pending = ring->rx_max_pending;
	ring->tx_pending = ring->tx_max_pending;
}

PVNET_DEFINE_GET_RINGPARAM(pvnet_get_ringparam, pvnet_ringparam)

static void pvnet_get_channels(struct net_device *dev,
			       struct ethtool_channels *channels)
{
	struct pvnet_priv *priv = netdev_priv(dev);

	channels->max_combined = priv->max_queue_pairs;
	channels->combined_count = priv->curr_queue_pairs;
}

static int pvnet_get_link_ksettings(struct net_device *dev,
				    struct ethtool_link_ksettings *cmd)
{
	cmd->base.speed = SPEED_UNKNOWN;
	cmd->base.duplex = DUPLEX_UNKNOWN;
	cmd->base.port = PORT_OTHER;
	cmd->base.autoneg = AUTONEG_DISABLE;
	return 0;
}

static const struct ethtool_ops pvnet_ethtool_ops = {
	.get_drvinfo		= pvnet_get_drvinfo,
	.get_link		= ethtool_op_get_link,
	.get_sset_count		= pvnet_get_sset_count,
	.get_strings		= pvnet_get_strings,
	.get_ethtool_stats	= pvnet_get_ethtool_stats,
	.get_ringparam		= pvnet_get_ringparam,
	.get_channels		= pvnet_get_channels,
	.get_link_ksettings	= pvnet_get_link_ksettings,
};

void pvnet_set_ethtool_ops(struct net_device *dev)
{
	dev->ethtool_ops = &pvnet_ethtool_ops;
}
