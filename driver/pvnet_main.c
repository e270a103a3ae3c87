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
	unsigned int rx_pairs = pvnet_rx_pairs(priv);
	bool need_refill = false;
	unsigned int i;

	for (i = 0; i < rx_pairs; i++) {
		if (!pvnet_rx_refill(&priv->rxq[i], GFP_KERNEL, false))
			need_refill = true;
		/*
		 * A device that ran out of buffers while the queue was paused
		 * (or its pair disabled) may wait for a notification that a
		 * refill of an already full ring would not send.
		 */
		virtqueue_notify(priv->rxq[i].vq);
	}

	for (i = 0; i < rx_pairs; i++)
		napi_enable(&priv->rxq[i].napi);
	for (i = 0; i < priv->curr_queue_pairs && priv->napi_tx; i++)
		napi_enable(&priv->txq[i].napi);

	/* NAPI is enabled, so the refill work may run from now on. */
	pvnet_refill_enable(priv);
	if (need_refill)
		pvnet_refill_schedule(priv, 0);

	/* Each stack queue is woken there, its qdisc run again. */
	for (i = 0; i < priv->curr_queue_pairs; i++)
		pvnet_tx_open(&priv->txq[i]);
	for (; i < rx_pairs; i++)
		pvnet_tx_open_xdp(&priv->txq[i]);
	/*
	 * The stack does not send on the others (XDP-only or unused), but
	 * the tx watchdog checks every queue: none may stay stopped.
	 */
	for (i = priv->curr_queue_pairs; i < priv->dev->num_tx_queues; i++)
		netif_tx_start_queue(netdev_get_tx_queue(priv->dev, i));

	/*
	 * Buffers may have been used while NAPI was disabled, and their
	 * interrupt was then lost: poll once to pick them up and re-arm.
	 */
	local_bh_disable();
	for (i = 0; i < rx_pairs; i++)
		pvnet_vq_napi_schedule(&priv->rxq[i].napi, priv->rxq[i].vq);
	for (i = 0; i < priv->curr_queue_pairs && priv->napi_tx; i++)
		pvnet_vq_napi_schedule(&priv->txq[i].napi, priv->txq[i].vq);
	local_bh_enable();

	WRITE_ONCE(priv->active, true);
}

/* Stop the data path; rx buffers stay posted.  Called under RTNL. */
static void pvnet_down(struct pvnet_priv *priv)
{
	unsigned int i;

	WRITE_ONCE(priv->active, false);
	/* Frames redirected from other devices check ->active under RCU. */
	synchronize_net();

	/* The refill work disables NAPI itself: stop it first. */
	pvnet_refill_disable(priv);

	for (i = 0; i < pvnet_rx_pairs(priv); i++)
		napi_disable(&priv->rxq[i].napi);
	for (i = 0; i < priv->curr_queue_pairs && priv->napi_tx; i++)
		napi_disable(&priv->txq[i].napi);

	netif_tx_disable(priv->dev);
}

/* Stop the data path for a reconfiguration; returns whether it ran. */
bool pvnet_pause(struct pvnet_priv *priv)
{
	bool was_active = priv->active;

	if (was_active)
		pvnet_down(priv);
	return was_active;
}

void pvnet_resume(struct pvnet_priv *priv, bool was_active)
{
	if (was_active)
		pvnet_up(priv);
}

/*
 * Spread the online CPUs over the queue pairs in use: CPU c belongs to
 * pair (c's position among online CPUs) % pairs.  The pair's rx and tx
 * interrupts get that CPU set as affinity hint and the tx queue gets it
 * as XPS map, so a CPU sends and completes on its own queue.
 */
void pvnet_update_affinity(struct pvnet_priv *priv)
{
	unsigned int i, cpu, pos;
	cpumask_var_t mask;

	if (!priv->vqs_ready || !zalloc_cpumask_var(&mask, GFP_KERNEL))
		return;

	for (i = 0; i < priv->max_queue_pairs; i++) {
		if (i >= priv->curr_queue_pairs) {
			virtqueue_set_affinity(priv->rxq[i].vq, NULL);
			virtqueue_set_affinity(priv->txq[i].vq, NULL);
			continue;
		}

		cpumask_clear(mask);
		pos = 0;
		for_each_online_cpu(cpu)
			if (pos++ % priv->curr_queue_pairs == i)
				cpumask_set_cpu(cpu, mask);

		virtqueue_set_affinity(priv->rxq[i].vq, mask);
		virtqueue_set_affinity(priv->txq[i].vq, mask);
		netif_set_xps_queue(priv->dev, mask, i);
	}

	free_cpumask_var(mask);
}

static int pvnet_set_real_queues(struct pvnet_priv *priv, u16 tx, u16 rx)
{
	int err;

	err = netif_set_real_num_tx_queues(priv->dev, tx);
	if (err)
		return err;
	return netif_set_real_num_rx_queues(priv->dev, rx);
}

/*
 * XDP-only pairs for @pairs stack pairs while a program is attached: one
 * per possible CPU if the device has that many more, else none (XDP
 * frames then share the stack's tx queues under their lock).
 */
u16 pvnet_xdp_pairs_for(const struct pvnet_priv *priv, u16 pairs)
{
	if (!rcu_access_pointer(priv->xdp_prog) ||
	    pairs + nr_cpu_ids > priv->max_queue_pairs)
		return 0;
	return nr_cpu_ids;
}

/*
 * Use @pairs queue pairs for the stack and @xdp_pairs more for XDP: the
 * device gets the sum, the netdev @pairs tx and the sum as rx queues.
 * Under RTNL with the data path paused; on failure nothing changed.
 */
int pvnet_apply_pairs(struct pvnet_priv *priv, u16 pairs, u16 xdp_pairs)
{
	u16 old = priv->curr_queue_pairs, old_xdp = priv->xdp_queue_pairs;
	int err = 0;

	if (pairs + xdp_pairs != old + old_xdp)
		err = pvnet_ctrl_set_queue_pairs(priv, pairs + xdp_pairs);
	if (err)
		return err;

	err = pvnet_set_real_queues(priv, pairs, pairs + xdp_pairs);
	if (err) {
		/* Back to what the stack still uses. */
		if ((pairs + xdp_pairs != old + old_xdp &&
		     pvnet_ctrl_set_queue_pairs(priv, old + old_xdp)) ||
		    pvnet_set_real_queues(priv, old, old + old_xdp))
			netdev_err(priv->dev,
				   "could not restore %u queue pairs\n", old);
		return err;
	}
	priv->curr_queue_pairs = pairs;
	priv->xdp_queue_pairs = xdp_pairs;
	return 0;
}

/* ethtool -L: change the number of queue pairs in use.  Under RTNL. */
int pvnet_set_queue_pairs(struct pvnet_priv *priv, u16 pairs,
			  struct netlink_ext_ack *extack)
{
	bool was_active;
	int err;

	if (pairs == priv->curr_queue_pairs)
		return 0;
	if (!virtio_has_feature(priv->vdev, VIRTIO_NET_F_MQ)) {
		pvnet_config_err(priv->dev, extack,
				 "the device has one queue pair (no VIRTIO_NET_F_MQ)");
		return -EOPNOTSUPP;
	}
	if (pairs < 1 || pairs > priv->max_queue_pairs) {
		pvnet_config_err(priv->dev, extack,
				 "queue pair count out of range");
		return -EINVAL;
	}
	if (!priv->vqs_ready)
		return -ENODEV;

	was_active = pvnet_pause(priv);

	err = pvnet_apply_pairs(priv, pairs, pvnet_xdp_pairs_for(priv, pairs));
	if (err)
		pvnet_config_err(priv->dev, extack,
				 "the device refused the queue pair count");

	pvnet_resume(priv, was_active);
	pvnet_update_affinity(priv);
	return err;
}

static void pvnet_rx_recycle(struct virtqueue *vq, void *buf)
{
	struct pvnet_priv *priv = vq->vdev->priv;

	pvnet_rx_free_buf(&priv->rxq[pvnet_rxq_index(vq)], buf);
}

static void pvnet_tx_recycle(struct virtqueue *vq, void *buf)
{
	pvnet_tx_free_token(buf);
}

static int pvnet_check_ring_size(struct net_device *dev, u32 size, u32 min,
				 u32 max, const char *what,
				 struct netlink_ext_ack *extack)
{
	if (size < min || size > max || !is_power_of_2(size)) {
		NL_SET_ERR_MSG(extack,
			       "pvnet: ring sizes must be powers of 2, at most what ethtool -g shows, rx large enough for a maximal frame (dmesg has the limits)");
		netdev_info(dev, "%s ring size must be a power of 2 from %u to %u\n",
			    what, min, max);
		return -EINVAL;
	}
	return 0;
}

/*
 * ethtool -G: resize every rx and tx virtqueue, also the pairs not in
 * use, so that all queues have the sizes ethtool reports.  Buffers the
 * device still holds are given back through the recycle callbacks; the
 * data path restarts with freshly posted rx buffers.  Under RTNL.
 */
int pvnet_resize_rings(struct pvnet_priv *priv, u32 rx, u32 tx,
		       struct netlink_ext_ack *extack)
{
	bool was_active;
	unsigned int i;
	int err;

	if (!priv->vqs_ready)
		return -ENODEV;
	if (rx == virtqueue_get_vring_size(priv->rxq[0].vq) &&
	    tx == virtqueue_get_vring_size(priv->txq[0].vq))
		return 0;
	if (!pvnet_can_resize_vq()) {
		pvnet_config_err(priv->dev, extack,
				 "this kernel cannot resize virtqueues (virtqueue_resize needs Linux 6.0 or later)");
		return -EOPNOTSUPP;
	}
	if (!pvnet_has_ring_reset(priv->vdev)) {
		pvnet_config_err(priv->dev, extack,
				 "the device cannot reset single queues (no VIRTIO_F_RING_RESET)");
		return -EOPNOTSUPP;
	}
	err = pvnet_check_ring_size(priv->dev, rx, pvnet_rx_ring_min(priv),
				    priv->rx_ring_max, "rx", extack);
	if (!err)
		err = pvnet_check_ring_size(priv->dev, tx, PVNET_TX_RING_MIN,
					    priv->tx_ring_max, "tx", extack);
	if (err)
		return err;

	was_active = pvnet_pause(priv);

	for (i = 0; i < priv->max_queue_pairs && !err; i++) {
		if (virtqueue_get_vring_size(priv->rxq[i].vq) != rx)
			err = pvnet_virtqueue_resize(priv->rxq[i].vq, rx,
						     pvnet_rx_recycle);
		if (!err && virtqueue_get_vring_size(priv->txq[i].vq) != tx)
			err = pvnet_virtqueue_resize(priv->txq[i].vq, tx,
						     pvnet_tx_recycle);
	}
	if (err) {
		netdev_err(priv->dev, "ring resize to rx %u tx %u failed: %d\n",
			   rx, tx, err);
		pvnet_config_err(priv->dev, extack,
				 "virtqueue resize failed");
	}

	/* Buffers were recycled: rx is refilled, BQL restarts empty. */
	pvnet_resume(priv, was_active);
	return err;
}

/*
 * ethtool -C tx-frames 1|0: reclaim tx buffers from a NAPI poll (with
 * BQL) or from the xmit path.  BQL must not see a completion for a send
 * it did not count, so the tx rings are drained before the switch.
 */
int pvnet_set_napi_tx(struct pvnet_priv *priv, bool on,
		      struct netlink_ext_ack *extack)
{
	unsigned long deadline = jiffies + 2 * HZ;
	bool was_active, drained;
	unsigned int i;
	int err = 0;

	if (on == priv->napi_tx)
		return 0;
	if (!priv->vqs_ready)
		return -ENODEV;

	was_active = pvnet_pause(priv);

	do {
		drained = true;
		for (i = 0; i < priv->max_queue_pairs; i++)
			drained &= pvnet_tx_reap(&priv->txq[i]);
		if (!drained)
			usleep_range(500, 1000);
	} while (!drained && time_before(jiffies, deadline));

	if (drained) {
		priv->napi_tx = on;
	} else {
		pvnet_config_err(priv->dev, extack,
				 "the device did not complete pending transmits; tx mode unchanged");
		err = -EBUSY;
	}

	pvnet_resume(priv, was_active);
	return err;
}

static u64 pvnet_guest_offloads_for(struct pvnet_priv *priv,
				    netdev_features_t features)
{
	u64 offloads = priv->guest_offloads_capable;

	/* XDP sees whole, checksummed frames: no guest offloads at all. */
	if (rcu_access_pointer(priv->xdp_prog))
		return 0;
	if (!(features & NETIF_F_RXCSUM))
		offloads &= ~BIT_ULL(VIRTIO_NET_F_GUEST_CSUM);
	/* pvnet_fix_features() already drops LRO/GRO_HW without RXCSUM. */
	if (!(features & (NETIF_F_LRO | NETIF_F_GRO_HW)))
		offloads &= ~PVNET_GUEST_GSO_MASK;
	return offloads;
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

/*
 * Tell the device which guest offloads @features (and an attached XDP
 * program) leave on, through VIRTIO_NET_CTRL_GUEST_OFFLOADS.  Under RTNL.
 */
int pvnet_sync_guest_offloads(struct pvnet_priv *priv,
			      netdev_features_t features)
{
	u64 offloads;
	int err;

	if (!virtio_has_feature(priv->vdev, VIRTIO_NET_F_CTRL_GUEST_OFFLOADS))
		return 0;

	offloads = pvnet_guest_offloads_for(priv, features);
	if (offloads == priv->guest_offloads_enabled)
		return 0;

	err = pvnet_ctrl_set_guest_offloads(priv, offloads);
	if (err)
		return err;
	priv->guest_offloads_enabled = offloads;
	return 0;
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

	/* In case a notification or an interrupt got lost. */
	pvnet_tx_recover(txq);
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

/*
 * Virtqueue layout (VIRTIO 1.2, 5.1.2): receiveqN = 2N, transmitqN =
 * 2N+1, then the control queue (index 2 * max_virtqueue_pairs with MQ,
 * 2 without).
 */
static int pvnet_init_vqs(struct pvnet_priv *priv)
{
	unsigned int nvqs = priv->max_queue_pairs * 2 + !!priv->ctrl;
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
	if (priv->ctrl) {
		/* Polled: no callback. */
		callbacks[nvqs - 1] = NULL;
		names[nvqs - 1] = "control";
	}

	err = pvnet_find_vqs(priv->vdev, nvqs, vqs, callbacks, names);
	if (err)
		goto out;

	for (i = 0; i < priv->max_queue_pairs; i++) {
		priv->rxq[i].vq = vqs[2 * i];
		priv->txq[i].vq = vqs[2 * i + 1];
	}
	if (priv->ctrl)
		pvnet_ctrl_set_vq(priv, vqs[nvqs - 1]);
	/* find_vqs creates the rings at the largest size the device allows. */
	if (!priv->rx_ring_max) {
		priv->rx_ring_max = virtqueue_get_vring_size(priv->rxq[0].vq);
		priv->tx_ring_max = virtqueue_get_vring_size(priv->txq[0].vq);
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
	virtio_reset_device(vdev);

	for (i = 0; i < priv->max_queue_pairs; i++) {
		pvnet_rx_free_unused(&priv->rxq[i]);
		pvnet_tx_free_unused(&priv->txq[i]);
	}

	vdev->config->del_vqs(vdev);

	for (i = 0; i < priv->max_queue_pairs; i++) {
		priv->rxq[i].vq = NULL;
		priv->txq[i].vq = NULL;
	}
	pvnet_ctrl_set_vq(priv, NULL);
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
	atomic_long_set(&priv->tx_timeouts, 0);
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
	pvnet_rx_init_xdp_metadata(priv);

	err = register_netdev(dev);
	if (err) {
		dev_err(&vdev->dev, "failed to register netdev: %d\n", err);
		goto err_del_vqs;
	}

	rtnl_lock();
	pvnet_update_affinity(priv);
	rtnl_unlock();

	if (pvnet_link_is_up(priv))
		netif_carrier_on(dev);
	/* The config work re-reads the status after any concurrent change. */
	pvnet_config_enable(priv);

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

	/* No more link status work from here on. */
	pvnet_config_disable(priv);

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
	PVNET_F_GUEST_USO4,
	PVNET_F_GUEST_USO6,
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
/* The compat probes that compiled for this kernel: `modinfo -F pvnet_probes`. */
MODULE_INFO(pvnet_probes, PVNET_PROBES_PASSED);
