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
	tot->tx_errors += atomic_long_read(&priv->tx_timeouts);
}

static void pvnet_refill_enable(struct pvnet_priv *priv)
{
	spin_lock_bh(&priv->refill_lock);
	priv->refill_enabled = true;
	spin_unlock_bh(&priv->refill_lock);
}

static void pvnet_refill_disable(struct pvnet_priv *priv)
{
	spin_lock_bh(&priv->refill_lock);
	priv->refill_enabled = false;
	spin_unlock_bh(&priv->refill_lock);
	cancel_delayed_work_sync(&priv->refill);
}

/*
 * Start the data path: post rx buffers, enable NAPI and the tx queues.
 * Called under RTNL with the vqs set up and the device DRIVER_OK.
 */
static void pvnet_up(struct pvnet_priv *priv)
{
	bool need_refill = false;
	unsigned int i;

	for (i = 0; i < priv->curr_queue_pairs; i++)
		if (!pvnet_rx_refill(&priv->rxq[i], GFP_KERNEL, false))
			need_refill = true;

	for (i = 0; i < priv->curr_queue_pairs; i++) {
		napi_enable(&priv->rxq[i].napi);
		if (priv->napi_tx)
			napi_enable(&priv->txq[i].napi);
	}

	/* NAPI is enabled, so the refill work may run from now on. */
	pvnet_refill_enable(priv);
	if (need_refill)
		pvnet_refill_schedule(priv, 0);

	netif_tx_start_all_queues(priv->dev);
	for (i = 0; i < priv->curr_queue_pairs; i++)
		pvnet_tx_open(&priv->txq[i]);

	/*
	 * Buffers may have been used while NAPI was disabled, and their
	 * interrupt was then lost: poll once to pick them up and re-arm.
	 */
	local_bh_disable();
	for (i = 0; i < priv->curr_queue_pairs; i++) {
		pvnet_vq_napi_schedule(&priv->rxq[i].napi, priv->rxq[i].vq);
		if (priv->napi_tx)
			pvnet_vq_napi_schedule(&priv->txq[i].napi,
					       priv->txq[i].vq);
	}
	local_bh_enable();

	priv->active = true;
}

/* Stop the data path; rx buffers stay posted.  Called under RTNL. */
static void pvnet_down(struct pvnet_priv *priv)
{
	unsigned int i;

	priv->active = false;

	/* The refill work disables NAPI itself: stop it first. */
	pvnet_refill_disable(priv);

	for (i = 0; i < priv->curr_queue_pairs; i++) {
		napi_disable(&priv->rxq[i].napi);
		if (priv->napi_tx)
			napi_disable(&priv->txq[i].napi);
	}

	netif_tx_disable(priv->dev);
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
	/* Rx buffers are always sized for max_mtu: nothing to resize. */
	if (new_mtu < dev->min_mtu || new_mtu > dev->max_mtu)
		return -EINVAL;

	WRITE_ONCE(dev->mtu, new_mtu);
	return 0;
}

static void pvnet_tx_timeout(struct net_device *dev, unsigned int txqueue)
{
	struct pvnet_priv *priv = netdev_priv(dev);
	struct pvnet_txq *txq;

	atomic_long_inc(&priv->tx_timeouts);

	if (txqueue >= priv->curr_queue_pairs || !priv->vqs_ready) {
		netdev_err(dev, "tx timeout on queue %u\n", txqueue);
		return;
	}

	txq = &priv->txq[txqueue];
	netdev_err(dev, "tx timeout on queue %u: %u of %u descriptors free\n",
		   txqueue, txq->vq->num_free,
		   virtqueue_get_vring_size(txq->vq));

	/* In case a completion interrupt got lost, poll the queue. */
	if (priv->napi_tx)
		pvnet_vq_napi_schedule(&txq->napi, txq->vq);
}

static const struct net_device_ops pvnet_netdev_ops = {
	.ndo_open		= pvnet_open,
	.ndo_stop		= pvnet_close,
	.ndo_start_xmit		= pvnet_start_xmit,
	.ndo_get_stats64	= pvnet_get_stats64,
	.ndo_change_mtu		= pvnet_change_mtu,
	.ndo_validate_addr	= eth_validate_addr,
	.ndo_tx_timeout		= pvnet_tx_timeout,
	.ndo_fix_features	= pvnet_tx_fix_features,
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
	pvnet_config_driver_enable(priv->vdev);
}

static void pvnet_config_disable(struct pvnet_priv *priv)
{
	spin_lock_irq(&priv->config_lock);
	priv->config_enabled = false;
	spin_unlock_irq(&priv->config_lock);
	cancel_work_sync(&priv->config_work);
}

static int pvnet_alloc_queues(struct pvnet_priv *priv)
{
	unsigned int i;

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
		pvnet_napi_add(priv->dev, &rxq->napi, pvnet_rx_poll);

		txq->priv = priv;
		u64_stats_init(&txq->stats.syncp);
		snprintf(txq->name, sizeof(txq->name), "output.%u", i);
		if (priv->napi_tx)
			pvnet_napi_add_tx(priv->dev, &txq->napi, pvnet_tx_poll);
	}

	return 0;
}

static void pvnet_free_queues(struct pvnet_priv *priv)
{
	unsigned int i;

	for (i = 0; i < priv->max_queue_pairs; i++) {
		netif_napi_del(&priv->rxq[i].napi);
		if (priv->napi_tx)
			netif_napi_del(&priv->txq[i].napi);
	}
	kfree(priv->txq);
	priv->txq = NULL;
	kfree(priv->rxq);
	priv->rxq = NULL;
}

/* Virtqueue layout (VIRTIO 1.2, 5.1.2): receiveqN = 2N, transmitqN = 2N+1. */
static int pvnet_init_vqs(struct pvnet_priv *priv)
{
	unsigned int nvqs = priv->max_queue_pairs * 2;
	vq_callback_t **callbacks;
	struct virtqueue **vqs;
	const char **names;
	unsigned int i;
	int err = -ENOMEM;

	vqs = kcalloc(nvqs, sizeof(*vqs), GFP_KERNEL);
	callbacks = kcalloc(nvqs, sizeof(*callbacks), GFP_KERNEL);
	names = kcalloc(nvqs, sizeof(*names), GFP_KERNEL);
	if (!vqs || !callbacks || !names)
		goto out;

	for (i = 0; i < priv->max_queue_pairs; i++) {
		callbacks[2 * i] = pvnet_rx_vq_done;
		names[2 * i] = priv->rxq[i].name;
		callbacks[2 * i + 1] = pvnet_tx_vq_done;
		names[2 * i + 1] = priv->txq[i].name;
	}

	err = pvnet_find_vqs(priv->vdev, nvqs, vqs, callbacks, names);
	if (err)
		goto out;

	for (i = 0; i < priv->max_queue_pairs; i++) {
		priv->rxq[i].vq = vqs[2 * i];
		priv->txq[i].vq = vqs[2 * i + 1];
	}
	priv->vqs_ready = true;

out:
	kfree(names);
	kfree(callbacks);
	kfree(vqs);
	return err;
}

/*
 * Reset the device and free everything it still owns.  NAPI and the tx
 * queues must already be stopped.
 */
static void pvnet_del_vqs(struct pvnet_priv *priv)
{
	struct virtio_device *vdev = priv->vdev;
	unsigned int i;

	if (!priv->vqs_ready)
		return;

	/* After the reset the device neither uses buffers nor interrupts. */
	pvnet_reset_device(vdev);

	for (i = 0; i < priv->max_queue_pairs; i++) {
		pvnet_rx_free_unused(&priv->rxq[i]);
		pvnet_tx_free_unused(&priv->txq[i]);
	}

	vdev->config->del_vqs(vdev);

	for (i = 0; i < priv->max_queue_pairs; i++) {
		priv->rxq[i].vq = NULL;
		priv->txq[i].vq = NULL;
	}
	priv->vqs_ready = false;
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
	pvnet_tx_init_features(priv);
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
			pvnet_eth_hw_addr_set(dev, mac);
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

	/* Every rx buffer takes the largest frame the device may send. */
	priv->rx_buf_len = PVNET_HDR_LEN + dev->max_mtu + ETH_HLEN + VLAN_HLEN;
}

static int pvnet_probe(struct virtio_device *vdev)
{
	struct pvnet_priv *priv;
	struct net_device *dev;
	int err;

	BUILD_BUG_ON(PVNET_HDR_LEN != 12);

	dev = alloc_etherdev_mq(sizeof(*priv), 1);
	if (!dev)
		return -ENOMEM;

	SET_NETDEV_DEV(dev, &vdev->dev);
	priv = netdev_priv(dev);
	priv->vdev = vdev;
	priv->dev = dev;
	priv->max_queue_pairs = 1;
	priv->curr_queue_pairs = 1;
	priv->napi_tx = napi_tx;
	priv->has_status = virtio_has_feature(vdev, VIRTIO_NET_F_STATUS);
	spin_lock_init(&priv->refill_lock);
	INIT_DELAYED_WORK(&priv->refill, pvnet_refill_work);
	spin_lock_init(&priv->config_lock);
	INIT_WORK(&priv->config_work, pvnet_config_work);
	atomic_long_set(&priv->tx_timeouts, 0);
	vdev->priv = priv;

	dev->netdev_ops = &pvnet_netdev_ops;
	pvnet_set_ethtool_ops(dev);
	dev->watchdog_timeo = 5 * HZ;
	dev->needed_headroom = PVNET_HDR_LEN;
	pvnet_init_features(priv);
	pvnet_init_addr_mtu(priv);

	err = pvnet_alloc_queues(priv);
	if (err)
		goto err_free_netdev;

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

	err = register_netdev(dev);
	if (err) {
		dev_err(&vdev->dev, "failed to register netdev: %d\n", err);
		goto err_del_vqs;
	}

	if (pvnet_link_is_up(priv))
		netif_carrier_on(dev);
	/* The config work re-reads the status after any concurrent change. */
	pvnet_config_enable(priv);

	dev_info(&vdev->dev,
		 "%s: MAC %pM, mtu %u (max %u), features 0x%llx, napi_tx %d\n",
		 dev->name, dev->dev_addr, dev->mtu, dev->max_mtu,
		 vdev->features, priv->napi_tx);
	return 0;

err_del_vqs:
	pvnet_del_vqs(priv);
err_free_queues:
	pvnet_free_queues(priv);
err_free_netdev:
	vdev->priv = NULL;
	free_netdev(dev);
	return err;
}

static void pvnet_remove(struct virtio_device *vdev)
{
	struct pvnet_priv *priv = vdev->priv;
	struct net_device *dev = priv->dev;

	/* No more link status work from here on. */
	pvnet_config_disable(priv);

	/* Closes the interface: NAPI and tx are stopped, refill cancelled. */
	unregister_netdev(dev);
	cancel_delayed_work_sync(&priv->refill);

	pvnet_del_vqs(priv);
	pvnet_free_queues(priv);
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
	VIRTIO_NET_F_HOST_TSO4,
	VIRTIO_NET_F_HOST_TSO6,
	VIRTIO_NET_F_HOST_ECN,
	PVNET_F_HOST_USO,
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

module_virtio_driver(pvnet_driver);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("pvnet developers");
MODULE_DESCRIPTION("pvnet: paravirtual (virtio-net) network driver");
MODULE_VERSION(PVNET_VERSION);
