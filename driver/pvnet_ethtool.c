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
	PVNET_RXQ_STAT(PVNET_RXQ_CSUM_NONE, csum_none),
	PVNET_RXQ_STAT(PVNET_RXQ_GSO_PACKETS, gso_packets),
	PVNET_RXQ_STAT(PVNET_RXQ_GSO_BYTES, gso_bytes),
	PVNET_RXQ_STAT(PVNET_RXQ_MERGED_BUFFERS, merged_buffers),
	PVNET_RXQ_STAT(PVNET_RXQ_REFILL_FAILURES, refill_failures),
	PVNET_RXQ_STAT(PVNET_RXQ_RECYCLED, recycled),
	PVNET_RXQ_STAT(PVNET_RXQ_XDP_PACKETS, xdp_packets),
	PVNET_RXQ_STAT(PVNET_RXQ_XDP_DROPS, xdp_drops),
	PVNET_RXQ_STAT(PVNET_RXQ_XDP_TX, xdp_tx),
	PVNET_RXQ_STAT(PVNET_RXQ_XDP_TX_DROPS, xdp_tx_drops),
	PVNET_RXQ_STAT(PVNET_RXQ_XDP_REDIRECTS, xdp_redirects),
	PVNET_RXQ_STAT(PVNET_RXQ_XDP_ABORTED, xdp_aborted),
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
	PVNET_TXQ_STAT(PVNET_TXQ_XDP_TX, xdp_tx),
	PVNET_TXQ_STAT(PVNET_TXQ_XDP_TX_DROPS, xdp_tx_drops),
	PVNET_TXQ_STAT(PVNET_TXQ_REQUEUES, requeues),
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

/* Device-wide counters, listed before the per-queue ones. */
#define PVNET_DEV_STAT(field) \
	{ #field, offsetof(struct pvnet_dev_stats, field) }

static const struct pvnet_stat_desc pvnet_dev_stat_descs[] = {
	PVNET_DEV_STAT(tx_timeouts),
	PVNET_DEV_STAT(device_resets),
	PVNET_DEV_STAT(ctrl_cmds),
	PVNET_DEV_STAT(ctrl_fails),
	PVNET_DEV_STAT(ctrl_timeouts),
};

static int pvnet_get_sset_count(struct net_device *dev, int sset)
{
	struct pvnet_priv *priv = netdev_priv(dev);

	if (sset != ETH_SS_STATS)
		return -EOPNOTSUPP;

	/*
	 * Every pair the device has, also those not in use now, so that the
	 * per-queue counters always add up to the device totals; with
	 * page_pools, each rx queue also has its pool_pages gauge.
	 */
	return ARRAY_SIZE(pvnet_dev_stat_descs) + priv->max_queue_pairs *
	       (PVNET_RXQ_STATS_NUM + PVNET_TXQ_STATS_NUM +
		(pvnet_rx_has_pools(priv) ? 1 : 0));
}

static void pvnet_get_strings(struct net_device *dev, u32 sset, u8 *data)
{
	struct pvnet_priv *priv = netdev_priv(dev);
	unsigned int q, i;

	if (sset != ETH_SS_STATS)
		return;

	for (i = 0; i < ARRAY_SIZE(pvnet_dev_stat_descs); i++) {
		strscpy(data, pvnet_dev_stat_descs[i].name, ETH_GSTRING_LEN);
		data += ETH_GSTRING_LEN;
	}

	for (q = 0; q < priv->max_queue_pairs; q++) {
		for (i = 0; i < PVNET_RXQ_STATS_NUM; i++) {
			snprintf(data, ETH_GSTRING_LEN, "rx_queue_%u_%s", q,
				 pvnet_rxq_stat_descs[i].name);
			data += ETH_GSTRING_LEN;
		}
		if (pvnet_rx_has_pools(priv)) {
			snprintf(data, ETH_GSTRING_LEN,
				 "rx_queue_%u_pool_pages", q);
			data += ETH_GSTRING_LEN;
		}
	}

	for (q = 0; q < priv->max_queue_pairs; q++) {
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
	const void *base = &priv->dev_stats;
	unsigned int q, i;

	for (i = 0; i < ARRAY_SIZE(pvnet_dev_stat_descs); i++)
		*data++ = atomic_long_read(base + pvnet_dev_stat_descs[i].offset);

	for (q = 0; q < priv->max_queue_pairs; q++) {
		pvnet_rxq_stats_read(&priv->rxq[q].stats, data);
		data += PVNET_RXQ_STATS_NUM;
		/* A gauge, not a counter: see pvnet_page_pool_pages(). */
		if (pvnet_rx_has_pools(priv))
			*data++ = pvnet_page_pool_pages(priv->rxq[q].pool);
	}

	for (q = 0; q < priv->max_queue_pairs; q++) {
		pvnet_txq_stats_read(&priv->txq[q].stats, data);
		data += PVNET_TXQ_STATS_NUM;
	}
}

/* Maximum: what the device offered; current: the rings' sizes now. */
static void pvnet_ringparam(struct net_device *dev,
			    struct ethtool_ringparam *ring)
{
	struct pvnet_priv *priv = netdev_priv(dev);

	ring->rx_max_pending = priv->rx_ring_max;
	ring->tx_max_pending = priv->tx_ring_max;
	if (!priv->vqs_ready)
		return;

	ring->rx_pending = virtqueue_get_vring_size(priv->rxq[0].vq);
	ring->tx_pending = virtqueue_get_vring_size(priv->txq[0].vq);
}

PVNET_DEFINE_GET_RINGPARAM(pvnet_get_ringparam, pvnet_ringparam)

static int pvnet_ringparam_set(struct net_device *dev,
			       struct ethtool_ringparam *ring,
			       struct netlink_ext_ack *extack)
{
	struct pvnet_priv *priv = netdev_priv(dev);

	if (ring->rx_mini_pending || ring->rx_jumbo_pending) {
		pvnet_config_err(dev, extack, "only rx and tx rings exist");
		return -EINVAL;
	}

	return pvnet_resize_rings(priv, ring->rx_pending, ring->tx_pending,
				  extack);
}

PVNET_DEFINE_SET_RINGPARAM(pvnet_ringparam_set)

/* tx-frames 1: tx completions from NAPI (napi_tx); 0: from xmit. */
static int pvnet_coalesce_get(struct net_device *dev,
			      struct ethtool_coalesce *ec,
			      struct netlink_ext_ack *extack)
{
	struct pvnet_priv *priv = netdev_priv(dev);

	ec->tx_max_coalesced_frames = priv->napi_tx;
	return 0;
}

PVNET_DEFINE_COALESCE_OP(pvnet_coalesce_get)

static int pvnet_coalesce_set(struct net_device *dev,
			      struct ethtool_coalesce *ec,
			      struct netlink_ext_ack *extack)
{
	struct pvnet_priv *priv = netdev_priv(dev);

	if (ec->tx_max_coalesced_frames > 1) {
		pvnet_config_err(dev, extack,
				 "tx-frames is 1 (tx NAPI) or 0 (reclaim in xmit)");
		return -EINVAL;
	}

	return pvnet_set_napi_tx(priv, ec->tx_max_coalesced_frames, extack);
}

PVNET_DEFINE_COALESCE_OP(pvnet_coalesce_set)

static void pvnet_get_channels(struct net_device *dev,
			       struct ethtool_channels *channels)
{
	struct pvnet_priv *priv = netdev_priv(dev);

	channels->max_combined = priv->max_queue_pairs;
	channels->combined_count = priv->curr_queue_pairs;
}

static int pvnet_set_channels(struct net_device *dev,
			      struct ethtool_channels *channels)
{
	struct pvnet_priv *priv = netdev_priv(dev);

	/* The ethtool core already rejects counts above the maxima. */
	if (channels->rx_count || channels->tx_count || channels->other_count ||
	    !channels->combined_count)
		return -EINVAL;

	return pvnet_set_queue_pairs(priv, channels->combined_count, NULL);
}

/*
 * ethtool -x: the Toeplitz key of the device's hash reports (no
 * indirection table: pvnet does not negotiate VIRTIO_NET_F_RSS).
 */
static u32 pvnet_get_rxfh_key_size(struct net_device *dev)
{
	struct pvnet_priv *priv = netdev_priv(dev);

	return priv->hash_types ? PVNET_HASH_KEY_LEN : 0;
}

static int pvnet_rxfh_get(struct net_device *dev, u32 *indir, u8 *key,
			  u8 *hfunc)
{
	struct pvnet_priv *priv = netdev_priv(dev);

	if (hfunc)
		*hfunc = ETH_RSS_HASH_TOP;
	if (key && priv->hash_types)
		memcpy(key, priv->hash_key, PVNET_HASH_KEY_LEN);
	return 0;
}

PVNET_DEFINE_GET_RXFH(pvnet_rxfh_get)

/* ethtool -n DEV rx-flow-hash TYPE: the fields the reported hash covers. */
static const struct {
	u32 flow_type;
	u32 l4_type;	/* hash type covering addresses and ports, 0: none */
	u32 l3_type;	/* hash type covering the addresses */
} pvnet_rxfh_types[] = {
	{ TCP_V4_FLOW, VIRTIO_NET_RSS_HASH_TYPE_TCPv4, VIRTIO_NET_RSS_HASH_TYPE_IPv4 },
	{ UDP_V4_FLOW, VIRTIO_NET_RSS_HASH_TYPE_UDPv4, VIRTIO_NET_RSS_HASH_TYPE_IPv4 },
	{ IPV4_FLOW, 0, VIRTIO_NET_RSS_HASH_TYPE_IPv4 },
	{ TCP_V6_FLOW, VIRTIO_NET_RSS_HASH_TYPE_TCPv6, VIRTIO_NET_RSS_HASH_TYPE_IPv6 },
	{ UDP_V6_FLOW, VIRTIO_NET_RSS_HASH_TYPE_UDPv6, VIRTIO_NET_RSS_HASH_TYPE_IPv6 },
	{ IPV6_FLOW, 0, VIRTIO_NET_RSS_HASH_TYPE_IPv6 },
};

static u64 pvnet_rxfh_fields(const struct pvnet_priv *priv, u32 flow_type)
{
	const u64 ip = RXH_IP_SRC | RXH_IP_DST;
	u32 types = priv->hash_types;
	unsigned int i;

	if (!(priv->dev->features & NETIF_F_RXHASH))
		return 0;
	for (i = 0; i < ARRAY_SIZE(pvnet_rxfh_types); i++) {
		if (pvnet_rxfh_types[i].flow_type != flow_type)
			continue;
		if (types & pvnet_rxfh_types[i].l4_type)
			return ip | RXH_L4_B_0_1 | RXH_L4_B_2_3;
		return types & pvnet_rxfh_types[i].l3_type ? ip : 0;
	}
	return 0;
}

/* ethtool -x asks how many rx rings the indirection table may name. */
static u32 pvnet_get_rx_ring_count(struct net_device *dev)
{
	struct pvnet_priv *priv = netdev_priv(dev);

	return priv->curr_queue_pairs;
}

static int pvnet_get_rxfh_fields(struct net_device *dev,
				 struct ethtool_rxfh_fields *fields)
{
	fields->data = pvnet_rxfh_fields(netdev_priv(dev), fields->flow_type);
	return 0;
}

/*
 * Kernels that still route ring count and hash fields through get_rxnfc;
 * newer ones call the two ops above (pvnet_compat.h says which).
 */
static int pvnet_get_rxnfc(struct net_device *dev, struct ethtool_rxnfc *info,
			   u32 *rule_locs)
{
	struct ethtool_rxfh_fields fields = { .flow_type = info->flow_type };

	switch (info->cmd) {
	case ETHTOOL_GRXRINGS:
		info->data = pvnet_get_rx_ring_count(dev);
		return 0;
	case ETHTOOL_GRXFH:
		pvnet_get_rxfh_fields(dev, &fields);
		info->data = fields.data;
		return 0;
	default:
		return -EOPNOTSUPP;
	}
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
	.supported_coalesce_params = ETHTOOL_COALESCE_TX_MAX_FRAMES,
	.get_drvinfo		= pvnet_get_drvinfo,
	.get_link		= ethtool_op_get_link,
	.get_sset_count		= pvnet_get_sset_count,
	.get_strings		= pvnet_get_strings,
	.get_ethtool_stats	= pvnet_get_ethtool_stats,
	.get_ringparam		= pvnet_get_ringparam,
	.set_ringparam		= pvnet_ringparam_set_op,
	.get_coalesce		= pvnet_coalesce_get_op,
	.set_coalesce		= pvnet_coalesce_set_op,
	.get_channels		= pvnet_get_channels,
	.set_channels		= pvnet_set_channels,
	.get_link_ksettings	= pvnet_get_link_ksettings,
	.get_rxfh_key_size	= pvnet_get_rxfh_key_size,
	.get_rxfh		= pvnet_rxfh_get_op,
#ifdef PVNET_CAN_RX_RING_COUNT
	.get_rx_ring_count	= pvnet_get_rx_ring_count,
#endif
#ifdef PVNET_CAN_RXFH_FIELDS
	.get_rxfh_fields	= pvnet_get_rxfh_fields,
#endif
	.get_rxnfc		= pvnet_get_rxnfc,
};

#ifdef PVNET_CAN_QSTATS
/*
 * The netdev netlink queue statistics (qstats-get).  Only the fields
 * pvnet counts are set; the core leaves the others out.
 */
static void pvnet_qstats_rx(const u64 *v, struct netdev_queue_stats_rx *rx)
{
	rx->packets = v[PVNET_RXQ_PACKETS];
	rx->bytes = v[PVNET_RXQ_BYTES];
	rx->csum_unnecessary = v[PVNET_RXQ_CSUM_VALID];
	rx->csum_none = v[PVNET_RXQ_CSUM_NONE];
	rx->alloc_fail = v[PVNET_RXQ_REFILL_FAILURES];
	rx->hw_gro_packets = v[PVNET_RXQ_GSO_PACKETS];
	rx->hw_gro_bytes = v[PVNET_RXQ_GSO_BYTES];
}

static void pvnet_qstats_tx(const u64 *v, struct netdev_queue_stats_tx *tx)
{
	tx->packets = v[PVNET_TXQ_PACKETS];
	tx->bytes = v[PVNET_TXQ_BYTES];
	tx->stop = v[PVNET_TXQ_STOPS];
	tx->wake = v[PVNET_TXQ_WAKES];
	tx->needs_csum = v[PVNET_TXQ_CSUM_PARTIAL];
	tx->hw_gso_packets = v[PVNET_TXQ_GSO_PACKETS];
	tx->hw_gso_bytes = v[PVNET_TXQ_GSO_BYTES];
	tx->hw_gso_wire_packets = v[PVNET_TXQ_GSO_SEGMENTS];
}

static void pvnet_get_queue_stats_rx(struct net_device *dev, int idx,
				     struct netdev_queue_stats_rx *rx)
{
	struct pvnet_priv *priv = netdev_priv(dev);
	u64 v[PVNET_RXQ_STATS_NUM];

	pvnet_rxq_stats_read(&priv->rxq[idx].stats, v);
	pvnet_qstats_rx(v, rx);
}

static void pvnet_get_queue_stats_tx(struct net_device *dev, int idx,
				     struct netdev_queue_stats_tx *tx)
{
	struct pvnet_priv *priv = netdev_priv(dev);
	u64 v[PVNET_TXQ_STATS_NUM];

	pvnet_txq_stats_read(&priv->txq[idx].stats, v);
	pvnet_qstats_tx(v, tx);
}

/*
 * Queues not in use now still count towards the device totals: their
 * counters are summed and mapped like a single queue's.  The rx queues
 * of XDP-only pairs are in use (the stack lists them), their tx queues
 * are not netdev queues.
 */
static void pvnet_get_base_stats(struct net_device *dev,
				 struct netdev_queue_stats_rx *rx,
				 struct netdev_queue_stats_tx *tx)
{
	struct pvnet_priv *priv = netdev_priv(dev);
	u64 rx_sum[PVNET_RXQ_STATS_NUM] = {}, tx_sum[PVNET_TXQ_STATS_NUM] = {};
	u64 rx_v[PVNET_RXQ_STATS_NUM], tx_v[PVNET_TXQ_STATS_NUM];
	unsigned int q, i;

	for (q = priv->curr_queue_pairs; q < priv->max_queue_pairs; q++) {
		if (q >= pvnet_rx_pairs(priv)) {
			pvnet_rxq_stats_read(&priv->rxq[q].stats, rx_v);
			for (i = 0; i < PVNET_RXQ_STATS_NUM; i++)
				rx_sum[i] += rx_v[i];
		}
		pvnet_txq_stats_read(&priv->txq[q].stats, tx_v);
		for (i = 0; i < PVNET_TXQ_STATS_NUM; i++)
			tx_sum[i] += tx_v[i];
	}
	pvnet_qstats_rx(rx_sum, rx);
	pvnet_qstats_tx(tx_sum, tx);
}

static const struct netdev_stat_ops pvnet_stat_ops = {
	.get_queue_stats_rx	= pvnet_get_queue_stats_rx,
	.get_queue_stats_tx	= pvnet_get_queue_stats_tx,
	.get_base_stats		= pvnet_get_base_stats,
};
#endif

void pvnet_set_ethtool_ops(struct net_device *dev)
{
	dev->ethtool_ops = &pvnet_ethtool_ops;
#ifdef PVNET_CAN_QSTATS
	dev->stat_ops = &pvnet_stat_ops;
#endif
}
