// SPDX-License-Identifier: GPL-2.0
/*
 * pvnet: transmit path.
 *
 * The virtio-net header (12 or 20 bytes) is pushed into the skb headroom, so the
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
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>

#include "pvnet.h"
#include "pvnet_compat.h"

struct netdev_queue *pvnet_ntxq(struct pvnet_txq *txq)
{
	struct pvnet_priv *priv = txq->priv;

	return netdev_get_tx_queue(priv->dev, txq - priv->txq);
}

void pvnet_tx_vq_done(struct virtqueue *vq)
{
	struct pvnet_priv *priv = vq->vdev->priv;
	struct pvnet_txq *txq = &priv->txq[pvnet_txq_index(vq)];
	struct netdev_queue *ntxq;

	/* Switched by ethtool -C with the data path paused (and drained). */
	if (READ_ONCE(priv->napi_tx)) {
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

void pvnet_tx_kick(struct pvnet_txq *txq)
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

/* Free a tx token the device no longer owns (process or BH context). */
void pvnet_tx_free_token(void *token)
{
	if (pvnet_tx_token_is_xdp(token))
		xdp_return_frame(pvnet_tx_token_frame(token));
	else
		dev_kfree_skb_any(token);
}

/* Reclaim the buffers the device has finished with. */
void pvnet_tx_free_old(struct pvnet_txq *txq, struct netdev_queue *ntxq,
		       int budget)
{
	unsigned int pkts = 0, bytes = 0, len;
	struct sk_buff *skb;
	void *token;

	while ((token = virtqueue_get_buf(txq->vq, &len))) {
		if (pvnet_tx_token_is_xdp(token)) {
			/* Not counted by BQL: only skbs are. */
			xdp_return_frame(pvnet_tx_token_frame(token));
			txq->xdp_inflight--;
			continue;
		}
		skb = token;
		pkts++;
		bytes += skb->len;
		napi_consume_skb(skb, budget);
	}

	if (pkts && txq->priv->napi_tx)
		netdev_tx_completed_queue(ntxq, pkts, bytes);
}

/*
 * Stop the stack's queue for lack of descriptors and make sure something
 * wakes it: with tx NAPI the armed interrupt runs the poll, which wakes
 * it; without, the interrupt is armed here (delayed, for a batch of
 * completions) and wakes it.  Buffers used meanwhile are reclaimed at
 * once, which may restart the queue straight away.
 */
static void pvnet_tx_stop(struct pvnet_txq *txq, struct netdev_queue *ntxq)
{
	struct virtqueue *vq = txq->vq;

	netif_tx_stop_queue(ntxq);
	u64_stats_update_begin(&txq->stats.syncp);
	u64_stats_inc(&txq->stats.stops);
	u64_stats_update_end(&txq->stats.syncp);

	if (txq->priv->napi_tx)
		return;

	if (unlikely(!virtqueue_enable_cb_delayed(vq))) {
		pvnet_tx_free_old(txq, ntxq, 0);
		if (vq->num_free >= PVNET_TX_STOP_THRESH) {
			virtqueue_disable_cb(vq);
			netif_tx_start_queue(ntxq);
			pvnet_tx_count_wake(txq);
		}
	}
}

/* Stop the queue if another maximally fragmented skb might not fit. */
void pvnet_tx_maybe_stop(struct pvnet_txq *txq, struct netdev_queue *ntxq)
{
	if (unlikely(txq->vq->num_free < PVNET_TX_STOP_THRESH))
		pvnet_tx_stop(txq, ntxq);
}

/*
 * Descriptors @skb may take: the header and linear part share one, each
 * page fragment takes one (one in all with indirect descriptors).
 */
static unsigned int pvnet_tx_descs(const struct sk_buff *skb)
{
	return skb_shinfo(skb)->nr_frags + 1;
}

/* What one queued skb stands for, for the statistics. */
struct pvnet_tx_info {
	bool partial;
	bool gso;
	unsigned int segs;
};

/*
 * Fill the GSO part of the header (VIRTIO 1.2, 5.1.6.2): gso_type,
 * gso_size and hdr_len, the length of the headers up to and including
 * the transport header.  Returns the number of segments the skb stands
 * for, or 0 if the device cannot segment it.
 */
static unsigned int pvnet_tx_gso(const struct pvnet_priv *priv,
				 const struct sk_buff *skb,
				 struct virtio_net_hdr_v1 *hdr)
{
	const struct skb_shared_info *shinfo = skb_shinfo(skb);
	unsigned int type = shinfo->gso_type & ~SKB_GSO_DODGY;
	struct virtio_device *vdev = priv->vdev;
	unsigned int hdr_len;
	u8 gso_type;

	/* GSO implies CHECKSUM_PARTIAL: the device must complete it. */
	if (type & ~priv->tx_gso_types || !shinfo->gso_size ||
	    skb->ip_summed != CHECKSUM_PARTIAL)
		return 0;

	if (type & SKB_GSO_TCPV4) {
		gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
	} else if (type & SKB_GSO_TCPV6) {
		gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
	} else if (type & SKB_GSO_UDP_L4) {
		gso_type = pvnet_hdr_gso_udp_l4();
		if (gso_type == VIRTIO_NET_HDR_GSO_NONE)
			return 0;
	} else {
		return 0;
	}

	if (type & SKB_GSO_UDP_L4) {
		hdr_len = skb_transport_offset(skb) + sizeof(struct udphdr);
	} else {
		hdr_len = skb_transport_offset(skb) + tcp_hdrlen(skb);
		/* CWR in the first segment only (VIRTIO 1.2, 5.1.6.2). */
		if (type & SKB_GSO_TCP_ECN)
			gso_type |= VIRTIO_NET_HDR_GSO_ECN;
	}
	if (unlikely(hdr_len >= skb->len))
		return 0;

	hdr->gso_type = gso_type;
	hdr->gso_size = cpu_to_virtio16(vdev, shinfo->gso_size);
	hdr->hdr_len = cpu_to_virtio16(vdev, hdr_len);

	/* Untrusted (DODGY) skbs may come without a segment count. */
	return shinfo->gso_segs ?:
	       DIV_ROUND_UP(skb->len - hdr_len, shinfo->gso_size);
}

static int pvnet_tx_add(struct pvnet_txq *txq, struct sk_buff *skb,
			struct pvnet_tx_info *info)
{
	struct pvnet_priv *priv = txq->priv;
	struct virtio_device *vdev = priv->vdev;
	struct virtio_net_hdr_v1_hash hash_hdr = {};
	struct virtio_net_hdr_v1 *hdr = &hash_hdr.hdr;
	unsigned int hdr_len = priv->hdr_len;
	int nsg, err;

	info->partial = skb->ip_summed == CHECKSUM_PARTIAL;
	info->gso = skb_is_gso(skb);
	info->segs = 1;

	if (info->partial) {
		/* Relative to the Ethernet header, i.e. before the push. */
		hdr->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
		hdr->csum_start = cpu_to_virtio16(vdev,
						  skb_checksum_start_offset(skb));
		hdr->csum_offset = cpu_to_virtio16(vdev, skb->csum_offset);
	}
	hdr->gso_type = VIRTIO_NET_HDR_GSO_NONE;
	if (info->gso) {
		info->segs = pvnet_tx_gso(priv, skb, hdr);
		if (unlikely(!info->segs)) {
			net_warn_ratelimited("%s: dropping GSO skb of type %#x the device cannot segment\n",
					     priv->dev->name,
					     skb_shinfo(skb)->gso_type);
			return -EPROTONOSUPPORT;
		}
	}
	/*
	 * num_buffers stays zero on transmit (VIRTIO 1.2, 5.1.6.2), and so
	 * do the hash fields of a 20-byte header.
	 */
	err = skb_cow_head(skb, hdr_len);
	if (unlikely(err))
		return err;
	memcpy(skb_push(skb, hdr_len), &hash_hdr, hdr_len);

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
	if (!priv->napi_tx) {
		skb_orphan(skb);
		nf_reset_ct(skb);
	}

	skb_tx_timestamp(skb);

	err = virtqueue_add_outbuf(txq->vq, txq->sg, nsg, skb, GFP_ATOMIC);
	if (unlikely(err))
		goto err_pull;

	return 0;

err_pull:
	__skb_pull(skb, hdr_len);
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
	struct pvnet_tx_info info;
	int err;

	/* Reclaim first; without tx NAPI this is the only place it happens. */
	pvnet_tx_free_old(txq, ntxq, 0);

	/*
	 * The queue is awake only with room for a maximal skb (XDP frames
	 * on a shared queue leave that room too), but a wake may race a
	 * ring that filled meanwhile: hand the skb back instead of dropping
	 * it; the qdisc sends it again once the queue is woken.
	 */
	if (unlikely(txq->vq->num_free < pvnet_tx_descs(skb))) {
		pvnet_tx_stop(txq, ntxq);
		if (netif_tx_queue_stopped(ntxq)) {
			u64_stats_update_begin(&txq->stats.syncp);
			u64_stats_inc(&txq->stats.requeues);
			u64_stats_update_end(&txq->stats.syncp);
			pvnet_tx_kick(txq);
			return NETDEV_TX_BUSY;
		}
	}

	if (unlikely(READ_ONCE(txq->woken))) {
		WRITE_ONCE(txq->woken, false);
		pvnet_tx_count_wake(txq);
	}

	err = pvnet_tx_add(txq, skb, &info);
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
		if (info.partial)
			u64_stats_inc(&txq->stats.csum_partial);
		if (info.gso) {
			u64_stats_inc(&txq->stats.gso_packets);
			u64_stats_add(&txq->stats.gso_bytes, len);
			u64_stats_add(&txq->stats.gso_segments, info.segs);
		}
		u64_stats_update_end(&txq->stats.syncp);

		/*
		 * The skb cannot complete before we drop the tx lock.  BQL
		 * counts what completion reports: skb->len, header included,
		 * one GSO skb as one entry however many segments it makes.
		 */
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

	/*
	 * The tx vq is shared with start_xmit and XDP transmit: reaping,
	 * re-arming and completing all happen under the tx queue lock.
	 */
	__netif_tx_lock(ntxq, raw_smp_processor_id());
	pvnet_tx_free_old(txq, ntxq, budget);
	/* See pvnet_rx_poll(): a broken vq takes a device reset. */
	if (unlikely(virtqueue_is_broken(txq->vq)))
		pvnet_schedule_reset(txq->priv,
				     "the device returned a tx buffer it was never given");
	if (netif_tx_queue_stopped(ntxq) && netif_running(txq->priv->dev) &&
	    txq->vq->num_free >= PVNET_TX_STOP_THRESH) {
		netif_tx_wake_queue(ntxq);
		pvnet_tx_count_wake(txq);
	}
	pvnet_vq_napi_complete(napi, txq->vq, 0);
	__netif_tx_unlock(ntxq);
	return 0;
}

/*
 * Called at open and when the data path resumes: start the stack's tx
 * queue @txq.
 */
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
	else
		/*
		 * Buffers added before the pause may never have been
		 * announced (an xmit_more batch cut short), or the device
		 * may have set them aside while their queue pair was
		 * disabled: tell it again.
		 */
		virtqueue_notify(txq->vq);
	/*
	 * Wake, not just start: the qdisc may hold packets from before the
	 * pause, and starting the queue would not run it again.  TCP then
	 * waits for those packets to leave (TSQ, and no retransmit of an
	 * skb still queued in the host) and the flow stalls for good.  The
	 * qdisc runs once the lock is dropped.
	 */
	netif_tx_wake_queue(ntxq);
	pvnet_tx_maybe_stop(txq, ntxq);
	__netif_tx_unlock_bh(ntxq);
}

/*
 * Called at open for a tx queue that carries only XDP frames: it is
 * reaped by the XDP transmit path, so its interrupt stays off.
 */
void pvnet_tx_open_xdp(struct pvnet_txq *txq)
{
	struct netdev_queue *ntxq = pvnet_ntxq(txq);

	__netif_tx_lock_bh(ntxq);
	virtqueue_disable_cb(txq->vq);
	pvnet_tx_free_old(txq, ntxq, 0);
	if (txq->vq->num_free != virtqueue_get_vring_size(txq->vq))
		virtqueue_notify(txq->vq);
	__netif_tx_unlock_bh(ntxq);
}

/*
 * Watchdog recovery for a queue that stopped making progress: notify the
 * device of what is queued and reclaim what it has completed, through
 * NAPI or here.
 */
void pvnet_tx_recover(struct pvnet_txq *txq)
{
	struct netdev_queue *ntxq = pvnet_ntxq(txq);
	struct pvnet_priv *priv = txq->priv;

	__netif_tx_lock_bh(ntxq);
	virtqueue_notify(txq->vq);
	if (priv->napi_tx) {
		pvnet_vq_napi_schedule(&txq->napi, txq->vq);
	} else {
		pvnet_tx_free_old(txq, ntxq, 0);
		if (netif_tx_queue_stopped(ntxq) &&
		    txq->vq->num_free >= PVNET_TX_STOP_THRESH) {
			virtqueue_disable_cb(txq->vq);
			netif_tx_wake_queue(ntxq);
			pvnet_tx_count_wake(txq);
		}
	}
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

/* Free the tx buffers still owned by a reset device. */
void pvnet_tx_free_unused(struct pvnet_txq *txq)
{
	void *token;

	while ((token = virtqueue_detach_unused_buf(txq->vq)))
		pvnet_tx_free_token(token);
	txq->xdp_inflight = 0;

	netdev_tx_reset_queue(pvnet_ntxq(txq));
}

/*
 * Segmentation offloads need checksum offload (VIRTIO 1.2, 5.1.3.1):
 * without VIRTIO_NET_F_CSUM the device must not see them negotiated, and
 * HOST_ECN needs HOST_TSO4 or HOST_TSO6.  Called from .validate.
 */
void pvnet_tx_validate(struct virtio_device *vdev)
{
	if (!virtio_has_feature(vdev, VIRTIO_NET_F_CSUM)) {
		__virtio_clear_bit(vdev, VIRTIO_NET_F_HOST_TSO4);
		__virtio_clear_bit(vdev, VIRTIO_NET_F_HOST_TSO6);
		pvnet_clear_host_uso(vdev);
	}
	if (!virtio_has_feature(vdev, VIRTIO_NET_F_HOST_TSO4) &&
	    !virtio_has_feature(vdev, VIRTIO_NET_F_HOST_TSO6))
		__virtio_clear_bit(vdev, VIRTIO_NET_F_HOST_ECN);
}

/*
 * Transmit netdev features from the negotiated virtio features.  Called
 * after the checksum features were set in dev->hw_features.  Software
 * GSO (NETIF_F_GSO) is added by the core for everything else.
 */
void pvnet_tx_init_features(struct pvnet_priv *priv)
{
	struct virtio_device *vdev = priv->vdev;
	struct net_device *dev = priv->dev;
	netdev_features_t tso = 0;

	priv->tx_gso_types = 0;
	if (virtio_has_feature(vdev, VIRTIO_NET_F_HOST_TSO4)) {
		tso |= NETIF_F_TSO;
		/*
		 * The core makes TSO_MANGLEID toggleable along with TSO; when
		 * it is on the stack may hand over FIXEDID skbs, whose IPv4
		 * id the device is then allowed to increment.
		 */
		priv->tx_gso_types |= SKB_GSO_TCPV4 | SKB_GSO_TCP_FIXEDID;
	}
	if (virtio_has_feature(vdev, VIRTIO_NET_F_HOST_TSO6)) {
		tso |= NETIF_F_TSO6;
		priv->tx_gso_types |= SKB_GSO_TCPV6;
	}
	if (virtio_has_feature(vdev, VIRTIO_NET_F_HOST_ECN)) {
		tso |= NETIF_F_TSO_ECN;
		priv->tx_gso_types |= SKB_GSO_TCP_ECN;
	}
	if (pvnet_has_host_uso(vdev)) {
		tso |= NETIF_F_GSO_UDP_L4;
		priv->tx_gso_types |= SKB_GSO_UDP_L4;
	}

	dev->hw_features |= tso;
	dev->features |= tso;
}

/*
 * The core drops TSO when tx checksumming goes off, but not
 * GSO_UDP_L4: USO needs checksum offload just the same.
 */
netdev_features_t pvnet_tx_fix_features(struct net_device *dev,
					netdev_features_t features)
{
	if (!(features & NETIF_F_HW_CSUM))
		features &= ~NETIF_F_GSO_UDP_L4;
	return features;
}
