// SPDX-License-Identifier: GPL-2.0
/*
 * pvnet: paravirtual (virtio-net) network driver.
 *
 * Virtio probe/remove/PM, feature negotiation, config changes and the
 * netdev operations.  Written against the VIRTIO 1.2 specification,
 * section 5.1 (Network Device).  Only VIRTIO_F_VERSION_1 devices are
 * supported.
 */

#include <linux/atomic.h>
#include <linux/cpumask.h>
#include <linux/delay.h>
#include <linux/etherdevice.h>
#include <linux/if_vlan.h>
#include <linux/module.h>
#include <linux/netdevice.h>
#include <linux/rtnetlink.h>
#include <linux/slab.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>

#include "pvnet.h"
#include "pvnet_compat.h"

static bool napi_tx = true;
module_param(napi_tx, bool, 0444);
MODULE_PARM_DESC(napi_tx,
		 "Reclaim transmitted buffers from a tx NAPI poll instead of the xmit path (default: true)");

static void pvnet_get_stats64(struct net_device *dev,
			      struct rtnl_link_stats64 *tot)
{
	struct pvnet_priv *priv = netdev_priv(dev);
	u64 rx[PVNET_RXQ_STATS_NUM];
	u64 tx[PVNET_TXQ_STATS_NUM];
	unsigned int i;

	for (i = 0; i < priv->max_queue_pairs; i++) {
		pvnet_rxq_stats_read(&priv->rxq[i].stats, rx);
		tot->rx_packets += rx[PVNET_RXQ_PACKETS];
		tot->rx_bytes += rx[PVNET_RXQ_BYTES];
		tot->rx_dropped += rx[PVNET_RXQ_DROPS];
		tot->rx_length_errors += rx[PVNET_RXQ_ERRORS];
		tot->rx_errors += rx[PVNET_RXQ_ERRORS];

		pvnet_txq_stats_read(&priv->txq[i].stats, tx);
		tot->tx_packets += tx[PVNET_TXQ_PACKETS];
		tot->tx_bytes += tx[PVNET_TXQ_BYTES];
		tot->tx_dropped += tx[PVNET_TXQ_DROPS];
	}
	tot->tx_errors += atomic_long_read(&priv->dev_stats.tx_timeouts);
}

static netdev_features_t pvnet_fix_features(struct net_device *dev,
					    netdev_features_t features)
{
	struct pvnet_priv *priv = netdev_priv(dev);

	/* Merged packets are checksummed by the device: no LRO without it. */
	if (!(features & NETIF_F_RXCSUM))
		features &= ~(NETIF_F_LRO | NETIF_F_GRO_HW);
	/* Nor while an XDP program is attached (it sees single frames). */
	if (rcu_access_pointer(priv->xdp_prog))
		features &= ~(NETIF_F_LRO | NETIF_F_GRO_HW);
	return pvnet_tx_fix_features(dev, features);
}

/* ethtool -K rx / lro / rx-gro-hw / rxhash. */
static int pvnet_set_features(struct net_device *dev,
			      netdev_features_t features)
{
	struct pvnet_priv *priv = netdev_priv(dev);
	int err;

	err = pvnet_sync_guest_offloads(priv, features);
	if (err || !((features ^ dev->features) & NETIF_F_RXHASH))
		return err;

	err = pvnet_ctrl_set_hash(priv, features & NETIF_F_RXHASH);
	if (err)
		/* dev->features stay as they were: so do the offloads. */
		pvnet_sync_guest_offloads(priv, dev->features);
	return err;
}

static int pvnet_open(struct net_device *dev)
{
	struct pvnet_priv *priv = netdev_priv(dev);

	if (!priv->vqs_ready)
		return -ENODEV;

	pvnet_up(priv);
	return 0;
}

static int pvnet_close(struct net_device *dev)
{
	struct pvnet_priv *priv = netdev_priv(dev);

	if (priv->active)
		pvnet_down(priv);
	return 0;
}

static int pvnet_change_mtu(struct net_device *dev, int new_mtu)
{
	struct pvnet_priv *priv = netdev_priv(dev);
	int err;

	err = pvnet_xdp_check_mtu(priv, rtnl_dereference(priv->xdp_prog),
				  new_mtu, NULL);
	if (err)
		return err;
	/*
	 * Rx buffers always take max_mtu (small and big buffers are sized
	 * for it, mergeable ones chain): nothing to repost.
	 */
	if (new_mtu < dev->min_mtu || new_mtu > dev->max_mtu)
		return -EINVAL;

	WRITE_ONCE(dev->mtu, new_mtu);
	return 0;
}

/*
 * The watchdog saw a tx queue stopped for longer than watchdog_timeo.
 * Notify and reap at once (a lost notification or interrupt is cured by
 * that), and reset the device, which a queue the device stopped serving
 * needs: the reset runs from a work item (pvnet_schedule_reset()), not
 * here under the tx lock, and at most every few seconds.
 */
static void pvnet_tx_timeout(struct net_device *dev, unsigned int txqueue)
{
	struct pvnet_priv *priv = netdev_priv(dev);
	struct pvnet_txq *txq;

	atomic_long_inc(&priv->dev_stats.tx_timeouts);

	if (txqueue >= priv->curr_queue_pairs || !priv->vqs_ready) {
		netdev_err(dev, "tx timeout on queue %u\n", txqueue);
		return;
	}

	txq = &priv->txq[txqueue];
	netdev_err(dev, "tx timeout on queue %u: %u of %u descriptors free\n",
		   txqueue, txq->vq->num_free,
		   virtqueue_get_vring_size(txq->vq));

	pvnet_tx_recover(txq);
	pvnet_schedule_reset(priv, "a tx queue made no progress");
}

static const struct net_device_ops pvnet_netdev_ops = {
	.ndo_open		= pvnet_open,
	.ndo_stop		= pvnet_close,
	.ndo_start_xmit		= pvnet_start_xmit,
	.ndo_get_stats64	= pvnet_get_stats64,
	.ndo_change_mtu		= pvnet_change_mtu,
	.ndo_validate_addr	= eth_validate_addr,
	.ndo_tx_timeout		= pvnet_tx_timeout,
	.ndo_fix_features	= pvnet_fix_features,
	.ndo_set_features	= pvnet_set_features,
	.ndo_bpf		= pvnet_ndo_bpf,
	.ndo_xdp_xmit		= pvnet_ndo_xdp_xmit,
};

/* Link state from the config space; always up without VIRTIO_NET_F_STATUS. */
static bool pvnet_link_is_up(struct pvnet_priv *priv)
{
	u16 status;

	if (!priv->has_status)
		return true;

	status = virtio_cread16(priv->vdev,
				offsetof(struct virtio_net_config, status));
	/*
	 * VIRTIO_NET_S_ANNOUNCE is only meaningful with
	 * VIRTIO_NET_F_GUEST_ANNOUNCE, which pvnet does not negotiate.
	 */
	return status & VIRTIO_NET_S_LINK_UP;
}

static void pvnet_config_work(struct work_struct *work)
{
	struct pvnet_priv *priv = container_of(work, struct pvnet_priv,
					       config_work);
	struct net_device *dev = priv->dev;
	bool up = pvnet_link_is_up(priv);

	if (up == netif_carrier_ok(dev))
		return;

	if (up) {
		netif_carrier_on(dev);
		netdev_info(dev, "link up\n");
	} else {
		netif_carrier_off(dev);
		netdev_info(dev, "link down\n");
	}
}

/* May be called in interrupt context: defer the (sleeping) config read. */
static void pvnet_config_changed(struct virtio_device *vdev)
{
	struct pvnet_priv *priv = vdev->priv;
	unsigned long flags;

	spin_lock_irqsave(&priv->config_lock, flags);
	if (priv->config_enabled)
		queue_work(system_freezable_wq, &priv->config_work);
	spin_unlock_irqrestore(&priv->config_lock, flags);
}

static void pvnet_config_enable(struct pvnet_priv *priv)
{
	spin_lock_irq(&priv->config_lock);
	priv->config_enabled = true;
	/* Catch up with any change that happened while disabled. */
	queue_work(system_freezable_wq, &priv->config_work);
	spin_unlock_irq(&priv->config_lock);

	/* Outside config_lock: this may call pvnet_config_changed(). */
	virtio_config_driver_enable(priv->vdev);
}

static void pvnet_config_disable(struct pvnet_priv *priv)
{
	spin_lock_irq(&priv->config_lock);
	priv->config_enabled = false;
	spin_unlock_irq(&priv->config_lock);
	cancel_work_sync(&priv->config_work);
}

static void pvnet_free_queues(struct pvnet_priv *priv);

static int pvnet_alloc_queues(struct pvnet_priv *priv)
{
	unsigned int i;
	int err;

	priv->rxq = kcalloc(priv->max_queue_pairs, sizeof(*priv->rxq),
			    GFP_KERNEL);
	if (!priv->rxq)
		return -ENOMEM;

	priv->txq = kcalloc(priv->max_queue_pairs, sizeof(*priv->txq),
			    GFP_KERNEL);
	if (!priv->txq) {
		kfree(priv->rxq);
		priv->rxq = NULL;
		return -ENOMEM;
	}

	for (i = 0; i < priv->max_queue_pairs; i++) {
		struct pvnet_rxq *rxq = &priv->rxq[i];
		struct pvnet_txq *txq = &priv->txq[i];

		rxq->priv = priv;
		u64_stats_init(&rxq->stats.syncp);
		snprintf(rxq->name, sizeof(rxq->name), "input.%u", i);
		netif_napi_add(priv->dev, &rxq->napi, pvnet_rx_poll);

		txq->priv = priv;
		u64_stats_init(&txq->stats.syncp);
		snprintf(txq->name, sizeof(txq->name), "output.%u", i);
		/* Registered in both modes: ethtool -C switches at run time. */
		netif_napi_add_tx(priv->dev, &txq->napi, pvnet_tx_poll);
	}

	/* Rx buffer allocators; pvnet_rxq_fini() copes with unset ones. */
	for (i = 0; i < priv->max_queue_pairs; i++) {
		err = pvnet_rxq_init(&priv->rxq[i]);
		if (!err)
			err = pvnet_rxq_xdp_reg(&priv->rxq[i]);
		if (err) {
			pvnet_free_queues(priv);
			return err;
		}
	}

	return 0;
}

static void pvnet_free_queues(struct pvnet_priv *priv)
{
	unsigned int i;

	for (i = 0; i < priv->max_queue_pairs; i++) {
		pvnet_rxq_xdp_unreg(&priv->rxq[i]);
		pvnet_rxq_fini(&priv->rxq[i]);
		netif_napi_del(&priv->rxq[i].napi);
		netif_napi_del(&priv->txq[i].napi);
	}
	kfree(priv->txq);
	priv->txq = NULL;
	kfree(priv->rxq);
	priv->rxq = NULL;
}

static int pvnet_validate(struct virtio_device *vdev)
{
	if (!vdev->config->get) {
		dev_err(&vdev->dev, "%s: config space access is required\n",
			__func__);
		return -EINVAL;
	}

	if (!virtio_has_feature(vdev, VIRTIO_F_VERSION_1)) {
		dev_err(&vdev->dev,
			"device does not offer VIRTIO_F_VERSION_1; legacy devices are not supported\n");
		return -ENODEV;
	}

	/* The control queue carries MQ and offload commands (5.1.3.1). */
	if (!virtio_has_feature(vdev, VIRTIO_NET_F_CTRL_VQ)) {
		__virtio_clear_bit(vdev, VIRTIO_NET_F_MQ);
		__virtio_clear_bit(vdev, VIRTIO_NET_F_CTRL_GUEST_OFFLOADS);
		__virtio_clear_bit(vdev, VIRTIO_NET_F_HASH_REPORT);
	}

	pvnet_rx_validate(vdev);

	if (virtio_has_feature(vdev, VIRTIO_NET_F_MTU)) {
		u16 mtu = virtio_cread16(vdev,
					 offsetof(struct virtio_net_config, mtu));

		if (mtu < ETH_MIN_MTU) {
			dev_warn(&vdev->dev,
				 "device mtu %u is below %u, ignoring VIRTIO_NET_F_MTU\n",
				 mtu, ETH_MIN_MTU);
			__virtio_clear_bit(vdev, VIRTIO_NET_F_MTU);
		}
	}

	pvnet_tx_validate(vdev);
	return 0;
}

/*
 * Guest offloads (the device checksumming and merging what it hands us).
 * With VIRTIO_NET_F_CTRL_GUEST_OFFLOADS they are switchable: merging is
 * exposed as LRO (on by default; the stack turns it off for forwarding)
 * and as rx-gro-hw, and the device merges while either is on.  Without
 * it the device merges whatever we do, which ethtool shows as rx-gro-hw
 * and rx-checksumming on [fixed].
 */
static void pvnet_init_rx_offload_features(struct pvnet_priv *priv)
{
	struct virtio_device *vdev = priv->vdev;
	struct net_device *dev = priv->dev;
	u64 capable = 0;
	unsigned int i;

	for (i = 0; i < 64; i++)
		if ((PVNET_GUEST_OFFLOAD_MASK & BIT_ULL(i)) &&
		    __virtio_test_bit(vdev, i))
			capable |= BIT_ULL(i);
	priv->guest_offloads_capable = capable;
	priv->guest_offloads_enabled = capable;

	if (!(capable & PVNET_GUEST_GSO_MASK))
		return;

	if (virtio_has_feature(vdev, VIRTIO_NET_F_CTRL_GUEST_OFFLOADS)) {
		dev->hw_features |= NETIF_F_LRO | NETIF_F_GRO_HW;
		dev->features |= NETIF_F_LRO;
	} else {
		dev->hw_features &= ~NETIF_F_RXCSUM;
		dev->features |= NETIF_F_GRO_HW | NETIF_F_RXCSUM;
	}
}

/* Hash types pvnet asks for: IPv4 and IPv6, with TCP and UDP ports. */
#define PVNET_HASH_TYPES \
	(VIRTIO_NET_RSS_HASH_TYPE_IPv4 | VIRTIO_NET_RSS_HASH_TYPE_TCPv4 | \
	 VIRTIO_NET_RSS_HASH_TYPE_UDPv4 | VIRTIO_NET_RSS_HASH_TYPE_IPv6 | \
	 VIRTIO_NET_RSS_HASH_TYPE_TCPv6 | VIRTIO_NET_RSS_HASH_TYPE_UDPv6)

/*
 * Hash reports (VIRTIO_NET_F_HASH_REPORT): the device puts the Toeplitz
 * hash of each received packet in its header (20 bytes then, both ways);
 * it becomes skb->hash (NETIF_F_RXHASH, used by RPS/RFS) and what the XDP
 * rx-hash kfunc returns.  The key is the kernel's per-boot RSS key, as
 * for any NIC; ethtool -x shows it.
 */
static void pvnet_init_hash(struct pvnet_priv *priv)
{
	struct virtio_device *vdev = priv->vdev;
	u8 key_size;
	u32 types;

	priv->hdr_len = PVNET_HDR_LEN;
	if (!virtio_has_feature(vdev, VIRTIO_NET_F_HASH_REPORT))
		return;
	priv->hdr_len = PVNET_HDR_MAX_LEN;

	key_size = virtio_cread8(vdev, offsetof(struct virtio_net_config,
						rss_max_key_size));
	types = virtio_cread32(vdev, offsetof(struct virtio_net_config,
					      supported_hash_types));
	if (key_size < PVNET_HASH_KEY_LEN || !(types & PVNET_HASH_TYPES)) {
		dev_warn(&vdev->dev,
			 "hash reports unused: key size %u, hash types %#x\n",
			 key_size, types);
		return;
	}
	priv->hash_types = types & PVNET_HASH_TYPES;
	netdev_rss_key_fill(priv->hash_key, PVNET_HASH_KEY_LEN);
	priv->dev->hw_features |= NETIF_F_RXHASH;
	priv->dev->features |= NETIF_F_RXHASH;
}

static void pvnet_init_features(struct pvnet_priv *priv)
{
	struct virtio_device *vdev = priv->vdev;
	struct net_device *dev = priv->dev;

	dev->features = NETIF_F_HIGHDMA;
	if (virtio_has_feature(vdev, VIRTIO_NET_F_CSUM)) {
		dev->hw_features |= NETIF_F_HW_CSUM | NETIF_F_SG;
		dev->features |= NETIF_F_HW_CSUM | NETIF_F_SG;
	}
	if (virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_CSUM)) {
		dev->hw_features |= NETIF_F_RXCSUM;
		dev->features |= NETIF_F_RXCSUM;
	}
	pvnet_init_rx_offload_features(priv);
	pvnet_tx_init_features(priv);
	pvnet_init_hash(priv);
	dev->vlan_features = dev->features;
}

static void pvnet_init_addr_mtu(struct pvnet_priv *priv)
{
	struct virtio_device *vdev = priv->vdev;
	struct net_device *dev = priv->dev;
	u8 mac[ETH_ALEN];

	if (virtio_has_feature(vdev, VIRTIO_NET_F_MAC)) {
		virtio_cread_bytes(vdev, offsetof(struct virtio_net_config, mac),
				   mac, ETH_ALEN);
		if (is_valid_ether_addr(mac)) {
			eth_hw_addr_set(dev, mac);
		} else {
			dev_warn(&vdev->dev,
				 "device MAC %pM is invalid, using a random one\n",
				 mac);
			eth_hw_addr_random(dev);
		}
	} else {
		eth_hw_addr_random(dev);
	}

	dev->min_mtu = ETH_MIN_MTU;
	dev->max_mtu = ETH_DATA_LEN;
	if (virtio_has_feature(vdev, VIRTIO_NET_F_MTU)) {
		/* pvnet_validate() rejected values below ETH_MIN_MTU. */
		dev->max_mtu = virtio_cread16(vdev,
					      offsetof(struct virtio_net_config,
						       mtu));
		dev->mtu = dev->max_mtu;
	}

	/* Rx buffer layout and sizes; may raise max_mtu. */
	pvnet_rx_setup(priv);
}

/* Queue pairs the device has: max_virtqueue_pairs with MQ, else one. */
static u16 pvnet_max_pairs(struct virtio_device *vdev)
{
	u16 pairs;

	if (!virtio_has_feature(vdev, VIRTIO_NET_F_MQ))
		return 1;

	pairs = virtio_cread16(vdev, offsetof(struct virtio_net_config,
					      max_virtqueue_pairs));
	return clamp_t(u16, pairs, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN,
		       VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX);
}

/*
 * After DRIVER_OK the device uses the first pair only (5.1.6.5.5); ask
 * for @pairs, and stay with one if the device refuses.  Before
 * register_netdev, so no RTNL needed.
 */
static void pvnet_start_queue_pairs(struct pvnet_priv *priv, u16 pairs)
{
	if (pairs > 1 && pvnet_ctrl_set_queue_pairs(priv, pairs))
		pairs = 1;
	priv->curr_queue_pairs = pairs;
	/* Cannot fail: at most num_tx_queues and not registered yet. */
	pvnet_set_real_queues(priv, pairs, pairs);
}

static int pvnet_probe(struct virtio_device *vdev)
{
	u16 max_pairs = pvnet_max_pairs(vdev);
	struct pvnet_priv *priv;
	struct net_device *dev;
	int err;

	BUILD_BUG_ON(PVNET_HDR_LEN != 12);
	BUILD_BUG_ON(PVNET_HDR_MAX_LEN != 20);

	dev = alloc_etherdev_mq(sizeof(*priv), max_pairs);
	if (!dev)
		return -ENOMEM;

	SET_NETDEV_DEV(dev, &vdev->dev);
	priv = netdev_priv(dev);
	priv->vdev = vdev;
	priv->dev = dev;
	priv->max_queue_pairs = max_pairs;
	priv->curr_queue_pairs = 1;
	priv->napi_tx = napi_tx;
	priv->has_status = virtio_has_feature(vdev, VIRTIO_NET_F_STATUS);
	spin_lock_init(&priv->refill_lock);
	INIT_DELAYED_WORK(&priv->refill, pvnet_refill_work);
	spin_lock_init(&priv->config_lock);
	INIT_WORK(&priv->config_work, pvnet_config_work);
	pvnet_reset_init(priv);
	vdev->priv = priv;

	dev->netdev_ops = &pvnet_netdev_ops;
	pvnet_set_ethtool_ops(dev);
	dev->watchdog_timeo = 5 * HZ;
	pvnet_init_features(priv);
	dev->needed_headroom = priv->hdr_len;
	pvnet_init_addr_mtu(priv);
	pvnet_xdp_features_init(dev);

	err = pvnet_ctrl_alloc(priv);
	if (err)
		goto err_free_netdev;

	err = pvnet_alloc_queues(priv);
	if (err)
		goto err_free_ctrl;

	err = pvnet_init_vqs(priv);
	if (err) {
		dev_err(&vdev->dev, "failed to set up virtqueues: %d\n", err);
		goto err_free_queues;
	}

	/*
	 * Start with the carrier off and set the real state once registered,
	 * so that the transition is reported and operstate becomes UP.
	 */
	netif_carrier_off(dev);

	/* The device must be live before rx buffers can be posted at open. */
	virtio_device_ready(vdev);

	/* One pair per CPU, up to what the device has. */
	pvnet_start_queue_pairs(priv,
				min_t(unsigned int, priv->max_queue_pairs,
				      num_online_cpus()));

	/* Not registered yet: features can still change. */
	if (priv->hash_types && pvnet_ctrl_set_hash(priv, true)) {
		priv->hash_types = 0;
		dev->hw_features &= ~NETIF_F_RXHASH;
		dev->features &= ~NETIF_F_RXHASH;
	}
	pvnet_xdp_init_metadata(priv);

	err = register_netdev(dev);
	if (err) {
		dev_err(&vdev->dev, "failed to register netdev: %d\n", err);
		goto err_del_vqs;
	}

	rtnl_lock();
	pvnet_update_affinity(priv);
	rtnl_unlock();
	pvnet_cpuhp_add(priv);

	if (pvnet_link_is_up(priv))
		netif_carrier_on(dev);
	/* The config work re-reads the status after any concurrent change. */
	pvnet_config_enable(priv);
	pvnet_reset_enable(priv);

	dev_info(&vdev->dev,
		 "%s: MAC %pM, mtu %u (max %u), queue pairs %u/%u, features 0x%llx, napi_tx %d\n",
		 dev->name, dev->dev_addr, dev->mtu, dev->max_mtu,
		 priv->curr_queue_pairs, priv->max_queue_pairs,
		 vdev->features, priv->napi_tx);
	return 0;

err_del_vqs:
	pvnet_del_vqs(priv);
err_free_queues:
	pvnet_free_queues(priv);
err_free_ctrl:
	pvnet_ctrl_free(priv);
err_free_netdev:
	vdev->priv = NULL;
	free_netdev(dev);
	return err;
}

static void pvnet_remove(struct virtio_device *vdev)
{
	struct pvnet_priv *priv = vdev->priv;
	struct net_device *dev = priv->dev;

	/* No recovery reset, link status or affinity work from here on. */
	pvnet_reset_disable(priv);
	pvnet_config_disable(priv);
	pvnet_cpuhp_remove(priv);

	/* Closes the interface: NAPI and tx are stopped, refill cancelled. */
	unregister_netdev(dev);
	cancel_delayed_work_sync(&priv->refill);

	pvnet_del_vqs(priv);
	pvnet_free_queues(priv);
	pvnet_ctrl_free(priv);
	vdev->priv = NULL;
	free_netdev(dev);
}

#ifdef CONFIG_PM_SLEEP
static int pvnet_freeze(struct virtio_device *vdev)
{
	struct pvnet_priv *priv = vdev->priv;
	struct net_device *dev = priv->dev;

	pvnet_config_disable(priv);

	rtnl_lock();
	netif_tx_lock_bh(dev);
	netif_device_detach(dev);
	netif_tx_unlock_bh(dev);
	if (priv->active)
		pvnet_down(priv);
	pvnet_del_vqs(priv);
	rtnl_unlock();

	return 0;
}

static int pvnet_restore(struct virtio_device *vdev)
{
	struct pvnet_priv *priv = vdev->priv;
	struct net_device *dev = priv->dev;
	int err;

	rtnl_lock();
	err = pvnet_init_vqs(priv);
	if (err) {
		rtnl_unlock();
		dev_err(&vdev->dev, "failed to set up virtqueues: %d\n", err);
		return err;
	}

	virtio_device_ready(vdev);
	pvnet_apply_ring_sizes(priv);

	/* A reset device uses one pair and all negotiated offloads. */
	if (pvnet_rx_pairs(priv) > 1 &&
	    pvnet_ctrl_set_queue_pairs(priv, pvnet_rx_pairs(priv))) {
		pvnet_set_real_queues(priv, 1, 1);
		priv->curr_queue_pairs = 1;
		priv->xdp_queue_pairs = 0;
	}
	if (priv->guest_offloads_enabled != priv->guest_offloads_capable &&
	    pvnet_ctrl_set_guest_offloads(priv, priv->guest_offloads_enabled))
		priv->guest_offloads_enabled = priv->guest_offloads_capable;
	if ((dev->features & NETIF_F_RXHASH) && pvnet_ctrl_set_hash(priv, true))
		netdev_warn(dev, "hash reports lost at restore\n");
	pvnet_update_affinity(priv);

	if (netif_running(dev))
		pvnet_up(priv);

	netif_tx_lock_bh(dev);
	netif_device_attach(dev);
	netif_tx_unlock_bh(dev);
	rtnl_unlock();

	pvnet_config_enable(priv);
	return 0;
}
#endif

static const unsigned int pvnet_features[] = {
	VIRTIO_NET_F_MAC,
	VIRTIO_NET_F_STATUS,
	VIRTIO_NET_F_MTU,
	VIRTIO_NET_F_CSUM,
	VIRTIO_NET_F_GUEST_CSUM,
	VIRTIO_NET_F_CTRL_VQ,
	VIRTIO_NET_F_MQ,
	VIRTIO_NET_F_CTRL_GUEST_OFFLOADS,
	VIRTIO_NET_F_HASH_REPORT,
	VIRTIO_NET_F_MRG_RXBUF,
	VIRTIO_NET_F_GUEST_TSO4,
	VIRTIO_NET_F_GUEST_TSO6,
	VIRTIO_NET_F_GUEST_ECN,
	VIRTIO_NET_F_GUEST_UFO,
#if PVNET_GUEST_USO
	VIRTIO_NET_F_GUEST_USO4,
	VIRTIO_NET_F_GUEST_USO6,
#endif
	VIRTIO_NET_F_HOST_TSO4,
	VIRTIO_NET_F_HOST_TSO6,
	VIRTIO_NET_F_HOST_ECN,
#if PVNET_HOST_USO
	VIRTIO_NET_F_HOST_USO,
#endif
};

static const struct virtio_device_id pvnet_id_table[] = {
	{ VIRTIO_ID_NET, VIRTIO_DEV_ANY_ID },
	{ 0 },
};
MODULE_DEVICE_TABLE(virtio, pvnet_id_table);

static struct virtio_driver pvnet_driver = {
	.driver.name		= PVNET_DRV_NAME,
	.driver.owner		= THIS_MODULE,
	.id_table		= pvnet_id_table,
	.feature_table		= pvnet_features,
	.feature_table_size	= ARRAY_SIZE(pvnet_features),
	.validate		= pvnet_validate,
	.probe			= pvnet_probe,
	.remove			= pvnet_remove,
	.config_changed		= pvnet_config_changed,
#ifdef CONFIG_PM_SLEEP
	.freeze			= pvnet_freeze,
	.restore		= pvnet_restore,
#endif
};

static int __init pvnet_init(void)
{
	int err = pvnet_cpuhp_init();

	if (err)
		return err;
	err = register_virtio_driver(&pvnet_driver);
	if (err)
		pvnet_cpuhp_exit();
	return err;
}
module_init(pvnet_init);

static void __exit pvnet_exit(void)
{
	unregister_virtio_driver(&pvnet_driver);
	pvnet_cpuhp_exit();
}
module_exit(pvnet_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("pvnet developers");
MODULE_DESCRIPTION("pvnet: paravirtual (virtio-net) network driver");
MODULE_VERSION(PVNET_VERSION);
/* The compat probes that compiled for this kernel: `modinfo -F pvnet_probes`. */
MODULE_INFO(pvnet_probes, PVNET_PROBES_PASSED);
