// SPDX-License-Identifier: GPL-2.0
/*
 * pvnet: transmit path.
 *
 * The 12-byte virtio-net header is pushed into the skb headroom, so the
 * header and the linear data share one descriptor (VERSION_1 implies
 * VIRTIO_F_ANY_LAYOUT); the skb is the virtqueue token.
 *
 * Completed buffers are reclaimed by a tx NAPI poll when the napi_tx
 * module parameter is set (the default), and otherwise from the xmit
 * path, with the tx interrupt enabled only while the queue is stopped.
 * Byte queue limits are used in NAPI mode only: without it completions
 * are reaped solely from xmit, so a BQL stop could never be undone.
 *
 * All tx vq and tx statistics accesses happen under the netdev tx queue
 * lock.
 */

#include <linux/netdevice.h>
#include <linux/scatterlist.h>
#include <linux/skbuff.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>

#include "pvnet.h"
#include "pvnet_compat.h"

static struct netdev_queue *pvnet_ntxq(struct pvnet_txq *txq)
{
	struct pvnet_priv *priv = txq->priv;

	return netdev_get_tx_queue(priv->dev, txq - priv->txq);
}

void pvnet_tx_vq_done(struct virtqueue *vq)
{
	struct pvnet_priv *priv = vq->vdev->priv;
	struct pvnet_txq *txq = &priv->txq[pvnet_txq_index(vq)];
	struct netdev_queue *ntxq;

	if (priv->napi_tx) {
		pvnet_vq_napi_schedule(&txq->napi, vq);
		return;
	}

	/*
	 * Without tx NAPI the interrupt is enabled only when the queue was
	 * stopped; waking it lets xmit reclaim the used buffers.
	 */
	virtqueue_disable_cb(vq);
	ntxq = pvnet_ntxq(txq);
	/* Not while the data path is paused for a reconfiguration. */
	if (READ_ONCE(priv->active) && netif_tx_queue_stopped(ntxq)) {
		WRITE_ONCE(txq->woken, true);
		netif_tx_wake_queue(ntxq);
	}
}

static void pvnet_tx_kick(struct pvnet_txq *txq)
{
	if (virtqueue_kick_prepare(txq->vq) && virtqueue_notify(txq->vq)) {
		u64_stats_update_begin(&txq->stats.syncp);
		u64_stats_inc(&txq->stats.kicks);
		u64_stats_update_end(&txq->stats.syncp);
	}
}

static void pvnet_tx_count_wake(struct pvnet_txq *txq)
{
	u64_stats_update_begin(&txq->stats.syncp);
	u64_stats_inc(&txq->stats.wakes);
	u64_stats_update_end(&txq->stats.syncp);
}

/* Reclaim the buffers the device has finished with. */
static void pvnet_tx_free_old(struct pvnet_txq *txq, struct netdev_queue *ntxq,
			      int budget)
{
	unsigned int pkts = 0, bytes = 0, len;
	struct sk_buff *skb;

	while ((skb = virtqueue_get_buf(txq->vq, &len))) {
		pkts++;
		bytes += skb->len;
		napi_consume_skb(skb, budget);
	}

	if (pkts && txq->priv->napi_tx)
		netdev_tx_completed_queue(ntxq, pkts, bytes);
}

/* Stop the queue if another maximally fragmented skb might not fit. */
static void pvnet_tx_maybe_stop(struct pvnet_txq *txq,
				struct netdev_queue *ntxq)
{
	struct virtqueue *vq = txq->vq;

	if (likely(vq->num_free >= PVNET_TX_STOP_THRESH))
		return;

	netif_tx_stop_queue(ntxq);
	u64_stats_update_begin(&txq->stats.syncp);
	u64_stats_inc(&txq->stats.stops);
	u64_stats_update_end(&txq->stats.syncp);

	/* With tx NAPI the interrupt is armed and the poll wakes the queue. */
	if (txq->priv->napi_tx)
		return;

	if (unlikely(!virtqueue_enable_cb_delayed(vq))) {
		/* More buffers were used meanwhile: reclaim and re-check. */
		pvnet_tx_free_old(txq, ntxq, 0);
		if (vq->num_free >= PVNET_TX_STOP_THRESH) {
			virtqueue_disable_cb(vq);
			netif_tx_start_queue(ntxq);
			pvnet_tx_count_wake(txq);
		}
	}
}

static int pvnet_tx_add(struct pvnet_txq *txq, struct sk_buff *skb)
{
	struct virtio_device *vdev = txq->priv->vdev;
	struct virtio_net_hdr_v1 *hdr;
	u16 csum_start = 0, csum_offset = 0;
	bool partial;
	int nsg, err;

	/* No TSO/GSO feature is advertised, so this is never expected. */
	if (unlikely(skb_is_gso(skb))) {
		net_warn_ratelimited("%s: dropping unexpected GSO skb\n",
				     txq->priv->dev->name);
		return -EPROTONOSUPPORT;
	}

	err = skb_cow_head(skb, PVNET_HDR_LEN);
	if (unlikely(err))
		return err;

	partial = skb->ip_summed == CHECKSUM_PARTIAL;
	if (partial) {
		/* Relative to the Ethernet header, i.e. before the push. */
		csum_start = skb_checksum_start_offset(skb);
		csum_offset = skb->csum_offset;
	}

	hdr = skb_push(skb, PVNET_HDR_LEN);
	memset(hdr, 0, PVNET_HDR_LEN);
	if (partial) {
		hdr->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
		hdr->csum_start = cpu_to_virtio16(vdev, csum_start);
		hdr->csum_offset = cpu_to_virtio16(vdev, csum_offset);
	}
	hdr->gso_type = VIRTIO_NET_HDR_GSO_NONE;
	/* num_buffers stays zero on transmit (VIRTIO 1.2, 5.1.6.2). */

	sg_init_table(txq->sg, ARRAY_SIZE(txq->sg));
	nsg = skb_to_sgvec(skb, txq->sg, 0, skb->len);
	if (unlikely(nsg < 0)) {
		err = nsg;
		goto err_pull;
	}

	/*
	 * Without tx NAPI the skb may sit in the ring until the next xmit:
	 * do not let it hold socket memory (TCP small queues) or conntrack.
	 */
	if (!txq->priv->napi_tx) {
		skb_orphan(skb);
		nf_reset_ct(skb);
	}

	skb_tx_timestamp(skb);

	err = virtqueue_add_outbuf(txq->vq, txq->sg, nsg, skb, GFP_ATOMIC);
	if (unlikely(err))
		goto err_pull;

	return 0;

err_pull:
	__skb_pull(skb, PVNET_HDR_LEN);
	return err;
}

netdev_tx_t pvnet_start_xmit(struct sk_buff *skb, struct net_device *dev)
{
	struct pvnet_priv *priv = netdev_priv(dev);
	unsigned int qidx = skb_get_queue_mapping(skb);
	struct pvnet_txq *txq = &priv->txq[qidx];
	struct netdev_queue *ntxq = netdev_get_tx_queue(dev, qidx);
	bool more = netdev_xmit_more();
	unsigned int len = skb->len;
	int err;

	/* Reclaim first; without tx NAPI this is the only place it happens. */
	pvnet_tx_free_old(txq, ntxq, 0);

	if (unlikely(READ_ONCE(txq->woken))) {
		WRITE_ONCE(txq->woken, false);
		pvnet_tx_count_wake(txq);
	}

	err = pvnet_tx_add(txq, skb);
	if (unlikely(err)) {
		net_dbg_ratelimited("%s: tx drop on queue %u: %d\n",
				    dev->name, qidx, err);
		u64_stats_update_begin(&txq->stats.syncp);
		u64_stats_inc(&txq->stats.drops);
		u64_stats_update_end(&txq->stats.syncp);
		dev_kfree_skb_any(skb);
	} else {
		u64_stats_update_begin(&txq->stats.syncp);
		u64_stats_inc(&txq->stats.packets);
		u64_stats_add(&txq->stats.bytes, len);
		u64_stats_update_end(&txq->stats.syncp);

		/* The skb cannot complete before we drop the tx lock. */
		if (priv->napi_tx)
			netdev_tx_sent_queue(ntxq, skb->len);

		pvnet_tx_maybe_stop(txq, ntxq);
	}

	/* Kick also after a drop, for buffers an earlier xmit_more deferred. */
	if (!more || netif_xmit_stopped(ntxq))
		pvnet_tx_kick(txq);

	return NETDEV_TX_OK;
}

/* Tx completion NAPI poll (napi_tx mode). */
int pvnet_tx_poll(struct napi_struct *napi, int budget)
{
	struct pvnet_txq *txq = container_of(napi, struct pvnet_txq, napi);
	struct netdev_queue *ntxq = pvnet_ntxq(txq);

	__netif_tx_lock(ntxq, raw_smp_processor_id());
	pvnet_tx_free_old(txq, ntxq, budget);
	if (netif_tx_queue_stopped(ntxq) && netif_running(txq->priv->dev) &&
	    txq->vq->num_free >= PVNET_TX_STOP_THRESH) {
		netif_tx_wake_queue(ntxq);
		pvnet_tx_count_wake(txq);
	}
	__netif_tx_unlock(ntxq);

	pvnet_vq_napi_complete(napi, txq->vq, 0);
	return 0;
}

/* Called at open, after the tx queues were started. */
void pvnet_tx_open(struct pvnet_txq *txq)
{
	struct netdev_queue *ntxq = pvnet_ntxq(txq);

	__netif_tx_lock_bh(ntxq);
	if (!txq->priv->napi_tx)
		virtqueue_disable_cb(txq->vq);
	/* Buffers from before the last stop may still be outstanding. */
	pvnet_tx_free_old(txq, ntxq, 0);
	/* With nothing in flight BQL can safely start over. */
	if (txq->vq->num_free == virtqueue_get_vring_size(txq->vq))
		netdev_tx_reset_queue(ntxq);
	pvnet_tx_maybe_stop(txq, ntxq);
	__netif_tx_unlock_bh(ntxq);
}

/*
 * Reclaim what the device has completed on a stopped queue; true when
 * nothing is left in flight.
 */
bool pvnet_tx_reap(struct pvnet_txq *txq)
{
	struct netdev_queue *ntxq = pvnet_ntxq(txq);
	bool empty;

	__netif_tx_lock_bh(ntxq);
	pvnet_tx_free_old(txq, ntxq, 0);
	empty = txq->vq->num_free == virtqueue_get_vring_size(txq->vq);
	__netif_tx_unlock_bh(ntxq);
	return empty;
}

/* Free the tx skbs still owned by a reset device. */
void pvnet_tx_free_unused(struct pvnet_txq *txq)
{
	struct sk_buff *skb;

	while ((skb = virtqueue_detach_unused_buf(txq->vq)))
		dev_kfree_skb(skb);

	netdev_tx_reset_queue(pvnet_ntxq(txq));
}
