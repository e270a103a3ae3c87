// SPDX-License-Identifier: GPL-2.0
/*
 * pvnet: reconfiguration.  Starting and stopping the data path, creating
 * and deleting the virtqueues, and the changes made with the data path
 * paused: queue pairs (ethtool -L, XDP pairs), ring sizes (ethtool -G),
 * tx completion mode (ethtool -C), guest offloads.  The netdev and virtio
 * callbacks (pvnet_main.c), ethtool (pvnet_ethtool.c) and XDP attach
 * (pvnet_xdp.c) call down into this file; it calls none of them.
 */

#include <linux/cpu.h>
#include <linux/cpuhotplug.h>
#include <linux/cpumask.h>
#include <linux/delay.h>
#include <linux/error-injection.h>
#include <linux/netdevice.h>
#include <linux/rtnetlink.h>
#include <linux/slab.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>

#include "pvnet.h"
#include "pvnet_compat.h"

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
void pvnet_up(struct pvnet_priv *priv)
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
void pvnet_down(struct pvnet_priv *priv)
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

/*
 * Stop the data path for a reconfiguration; returns whether it ran.  The
 * netdev is detached meanwhile: a reconfiguration may wait for the device
 * (a control command may take up to its timeout, as long as the tx
 * watchdog's), and the watchdog must not take stopped queues for hung
 * ones.  The stack sees a device that is briefly not present.
 */
bool pvnet_pause(struct pvnet_priv *priv)
{
	bool was_active = priv->active;

	if (was_active) {
		netif_device_detach(priv->dev);
		pvnet_down(priv);
	}
	return was_active;
}

/*
 * Restart what pvnet_pause() stopped.  Attaching wakes every tx queue;
 * one whose ring is still full hands its next skb back (start_xmit) and
 * is stopped again, nothing is dropped.
 */
void pvnet_resume(struct pvnet_priv *priv, bool was_active)
{
	if (was_active) {
		pvnet_up(priv);
		netif_device_attach(priv->dev);
	}
}

/*
 * The CPUs of pair @i of @pairs: CPU c belongs to pair (c's position among
 * the online CPUs) % @pairs, and with fewer CPUs than pairs pair i also
 * gets CPU (i % CPUs), so no pair is left without one.  Under
 * cpus_read_lock(): the online mask holds still.
 */
static void pvnet_pair_cpus(unsigned int i, unsigned int pairs,
			    struct cpumask *mask)
{
	unsigned int cpu, pos = 0, n = num_online_cpus();

	cpumask_clear(mask);
	for_each_online_cpu(cpu) {
		if (pos % pairs == i || (pairs > n && pos == i % n))
			cpumask_set_cpu(cpu, mask);
		pos++;
	}
}

/*
 * Spread the online CPUs over the queue pairs in use (pvnet_pair_cpus()):
 * the pair's rx and tx interrupts get its CPUs as affinity hint and the tx
 * queue gets them as XPS map, so a CPU sends and completes on its own
 * queue.  Called under RTNL whenever the pairs change, and after a CPU
 * came or went (pvnet_cpu_online()/_offline()).  The mask is read under
 * cpus_read_lock() and applied after it (netif_set_xps_queue() takes that
 * lock itself); a CPU that changes state in between schedules another
 * update.
 */
void pvnet_update_affinity(struct pvnet_priv *priv)
{
	cpumask_var_t mask;
	unsigned int i;

	if (!priv->vqs_ready || !zalloc_cpumask_var(&mask, GFP_KERNEL))
		return;

	for (i = 0; i < priv->max_queue_pairs; i++) {
		if (i >= priv->curr_queue_pairs) {
			virtqueue_set_affinity(priv->rxq[i].vq, NULL);
			virtqueue_set_affinity(priv->txq[i].vq, NULL);
			continue;
		}

		cpus_read_lock();
		pvnet_pair_cpus(i, priv->curr_queue_pairs, mask);
		cpus_read_unlock();

		virtqueue_set_affinity(priv->rxq[i].vq, mask);
		virtqueue_set_affinity(priv->txq[i].vq, mask);
		netif_set_xps_queue(priv->dev, mask, i);
	}

	free_cpumask_var(mask);
}

static void pvnet_affinity_work(struct work_struct *work)
{
	struct pvnet_priv *priv = container_of(work, struct pvnet_priv,
					       affinity_work);

	rtnl_lock();
	pvnet_update_affinity(priv);
	rtnl_unlock();
}

/*
 * CPU hotplug: every pvnet device is an instance of one dynamic state;
 * a CPU coming or going re-spreads interrupts and XPS from a work item
 * (the callbacks run with the hotplug lock held, which the update takes).
 */
static enum cpuhp_state pvnet_cpuhp_state;

static int pvnet_cpu_changed(unsigned int cpu, struct hlist_node *node)
{
	struct pvnet_priv *priv = hlist_entry_safe(node, struct pvnet_priv,
						   cpuhp_node);

	schedule_work(&priv->affinity_work);
	return 0;
}

int pvnet_cpuhp_init(void)
{
	int ret = cpuhp_setup_state_multi(CPUHP_AP_ONLINE_DYN,
					  "net/pvnet:online",
					  pvnet_cpu_changed,
					  pvnet_cpu_changed);

	if (ret < 0)
		return ret;
	pvnet_cpuhp_state = ret;
	return 0;
}

void pvnet_cpuhp_exit(void)
{
	cpuhp_remove_multi_state(pvnet_cpuhp_state);
}

void pvnet_cpuhp_add(struct pvnet_priv *priv)
{
	INIT_WORK(&priv->affinity_work, pvnet_affinity_work);
	if (cpuhp_state_add_instance_nocalls(pvnet_cpuhp_state,
					     &priv->cpuhp_node))
		netdev_warn(priv->dev, "CPU hotplug not followed: affinity and XPS stay as set at probe\n");
	else
		priv->cpuhp_added = true;
}

/* Before remove: no affinity update runs after this. */
void pvnet_cpuhp_remove(struct pvnet_priv *priv)
{
	if (priv->cpuhp_added)
		cpuhp_state_remove_instance_nocalls(pvnet_cpuhp_state,
						    &priv->cpuhp_node);
	priv->cpuhp_added = false;
	cancel_work_sync(&priv->affinity_work);
}

int pvnet_set_real_queues(struct pvnet_priv *priv, u16 tx, u16 rx)
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
 * Resize one virtqueue.  Not inlined, and open to the kernel's function
 * error injection (fail_function): the debug lane's tests fail the Nth
 * resize of an ethtool -G to check the rollback.
 */
static noinline int pvnet_vq_resize(struct virtqueue *vq, u32 num, bool rx)
{
	return pvnet_virtqueue_resize(vq, num, rx ? pvnet_rx_recycle :
					       pvnet_tx_recycle);
}
ALLOW_ERROR_INJECTION(pvnet_vq_resize, ERRNO);

/* Bring every rx ring to @rx and every tx ring to @tx entries; stops at an error. */
static int pvnet_resize_each(struct pvnet_priv *priv, u32 rx, u32 tx)
{
	unsigned int i;
	int err;

	for (i = 0; i < 2 * priv->max_queue_pairs; i++) {
		struct virtqueue *vq = i & 1 ? priv->txq[i / 2].vq :
					       priv->rxq[i / 2].vq;
		u32 size = i & 1 ? tx : rx;

		if (virtqueue_get_vring_size(vq) == size)
			continue;
		err = pvnet_vq_resize(vq, size, !(i & 1));
		if (err)
			return err;
	}
	return 0;
}

/*
 * Resize every ring, also those of the pairs not in use, so that all
 * queues have the sizes ethtool reports.  On a failure the rings already
 * resized go back to @old_rx/@old_tx (the vq that failed kept its ring);
 * if that fails too, the device is reset, which recreates every ring.
 * Under RTNL with the data path paused.
 */
static int pvnet_resize_all(struct pvnet_priv *priv, u32 rx, u32 tx,
			    u32 old_rx, u32 old_tx)
{
	int err, undo;

	err = pvnet_resize_each(priv, rx, tx);
	if (!err)
		return 0;

	netdev_err(priv->dev, "ring resize to rx %u tx %u failed: %d; back to rx %u tx %u\n",
		   rx, tx, err, old_rx, old_tx);
	undo = pvnet_resize_each(priv, old_rx, old_tx);
	if (undo) {
		netdev_err(priv->dev, "ring sizes not restored (%d): resetting the device\n",
			   undo);
		pvnet_schedule_reset(priv, "a failed ring resize left rings of mixed sizes");
	}
	return err;
}

/*
 * ethtool -G.  Buffers the device still holds are given back through the
 * recycle callbacks; the data path restarts with freshly posted rx
 * buffers.  Under RTNL.
 */
int pvnet_resize_rings(struct pvnet_priv *priv, u32 rx, u32 tx,
		       struct netlink_ext_ack *extack)
{
	u32 old_rx, old_tx;
	bool was_active;
	int err;

	if (!priv->vqs_ready)
		return -ENODEV;
	old_rx = virtqueue_get_vring_size(priv->rxq[0].vq);
	old_tx = virtqueue_get_vring_size(priv->txq[0].vq);
	if (rx == old_rx && tx == old_tx)
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
	err = pvnet_resize_all(priv, rx, tx, old_rx, old_tx);
	if (err) {
		pvnet_config_err(priv->dev, extack,
				 "virtqueue resize failed; the rings keep their sizes (dmesg has the error)");
	} else {
		priv->rx_ring_size = rx;
		priv->tx_ring_size = tx;
	}
	/* Buffers were recycled: rx is refilled, BQL restarts empty. */
	pvnet_resume(priv, was_active);
	return err;
}

/*
 * After the vqs were created anew (restore, reset), give them the sizes
 * ethtool -G set: find_vqs makes every ring as large as the device allows.
 * The rings are empty then, the device live.  Under RTNL.
 */
int pvnet_apply_ring_sizes(struct pvnet_priv *priv)
{
	u32 rx = priv->rx_ring_size ?: priv->rx_ring_max;
	u32 tx = priv->tx_ring_size ?: priv->tx_ring_max;
	int err;

	if (rx == priv->rx_ring_max && tx == priv->tx_ring_max)
		return 0;
	err = pvnet_resize_all(priv, rx, tx, priv->rx_ring_max,
			       priv->tx_ring_max);
	if (err) {
		netdev_warn(priv->dev, "ring sizes rx %u tx %u lost: %d\n",
			    rx, tx, err);
		priv->rx_ring_size = 0;
		priv->tx_ring_size = 0;
	}
	return err;
}

/*
 * Recovery by device reset: a control command that got no answer, a tx
 * queue that made no progress, rings a failed resize left inconsistent.
 * The reset is a freeze/restore cycle (virtio_device_freeze() and
 * virtio_device_restore() call pvnet's own callbacks): the vqs are
 * recreated and everything the user set is applied again.  It runs from
 * the freezable workqueue (never during a system sleep transition, and
 * outside RTNL, which the callbacks take), at most once every
 * PVNET_RESET_INTERVAL: a device that keeps failing is not reset in a loop.
 */
#define PVNET_RESET_INTERVAL	(10 * HZ)

static void pvnet_reset_work(struct work_struct *work)
{
	struct pvnet_priv *priv = container_of(to_delayed_work(work),
					       struct pvnet_priv, reset_work);
	struct virtio_device *vdev __maybe_unused = priv->vdev;
	const char *reason;
	int err __maybe_unused;

	spin_lock_bh(&priv->reset_lock);
	reason = priv->reset_reason;
	priv->reset_reason = NULL;
	spin_unlock_bh(&priv->reset_lock);

	priv->last_reset = jiffies;
#ifdef CONFIG_PM_SLEEP
	netdev_warn(priv->dev, "resetting the device: %s\n", reason);
	err = virtio_device_freeze(vdev);
	if (!err)
		err = virtio_device_restore(vdev);
	atomic_long_inc(&priv->dev_stats.device_resets);
	if (err)
		netdev_err(priv->dev, "device reset failed: %d\n", err);
#else
	netdev_err(priv->dev, "cannot reset the device (%s): this kernel has no CONFIG_PM_SLEEP, which virtio_device_freeze/restore need; unbind and bind the device\n",
		   reason);
#endif
}

void pvnet_reset_init(struct pvnet_priv *priv)
{
	spin_lock_init(&priv->reset_lock);
	INIT_DELAYED_WORK(&priv->reset_work, pvnet_reset_work);
	priv->last_reset = jiffies - PVNET_RESET_INTERVAL;
}

void pvnet_reset_enable(struct pvnet_priv *priv)
{
	spin_lock_bh(&priv->reset_lock);
	priv->reset_enabled = true;
	spin_unlock_bh(&priv->reset_lock);
}

/* Before remove: no reset is scheduled or running after this. */
void pvnet_reset_disable(struct pvnet_priv *priv)
{
	spin_lock_bh(&priv->reset_lock);
	priv->reset_enabled = false;
	spin_unlock_bh(&priv->reset_lock);
	cancel_delayed_work_sync(&priv->reset_work);
}

/* Ask for a recovery reset (any context); @reason is a string literal. */
void pvnet_schedule_reset(struct pvnet_priv *priv, const char *reason)
{
	unsigned long next = priv->last_reset + PVNET_RESET_INTERVAL;
	unsigned long flags;

	spin_lock_irqsave(&priv->reset_lock, flags);
	if (priv->reset_enabled && !priv->reset_reason) {
		priv->reset_reason = reason;
		queue_delayed_work(system_freezable_wq, &priv->reset_work,
				   time_after(next, jiffies) ? next - jiffies : 0);
	}
	spin_unlock_irqrestore(&priv->reset_lock, flags);
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
		WRITE_ONCE(priv->napi_tx, on);
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

/*
 * Virtqueue layout (VIRTIO 1.2, 5.1.2): receiveqN = 2N, transmitqN =
 * 2N+1, then the control queue (index 2 * max_virtqueue_pairs with MQ,
 * 2 without).
 */
int pvnet_init_vqs(struct pvnet_priv *priv)
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
void pvnet_del_vqs(struct pvnet_priv *priv)
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
