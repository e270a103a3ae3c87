// SPDX-License-Identifier: GPL-2.0
/*
 * pvnet: receive path.
 *
 * Every rx buffer is the data area of a pre-allocated skb, large enough
 * for the virtio-net header plus the largest frame (max_mtu + Ethernet +
 * VLAN header); the skb itself is the virtqueue token.  Without
 * VIRTIO_NET_F_MRG_RXBUF or guest GSO every packet fits in one buffer.
 */

#include <linux/etherdevice.h>
#include <linux/netdevice.h>
#include <linux/scatterlist.h>
#include <linux/skbuff.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>

#include "pvnet.h"
#include "pvnet_compat.h"

/* Per-poll counters, folded into the queue stats once per poll. */
struct pvnet_rx_batch {
	u64 packets;
	u64 bytes;
	u64 drops;
	u64 errors;
	u64 csum_valid;
	u64 csum_partial;
};

void pvnet_rx_vq_done(struct virtqueue *vq)
{
	struct pvnet_priv *priv = vq->vdev->priv;

	pvnet_vq_napi_schedule(&priv->rxq[pvnet_rxq_index(vq)].napi, vq);
}

static struct sk_buff *pvnet_rx_alloc(struct pvnet_rxq *rxq, gfp_t gfp,
				      bool in_napi)
{
	struct pvnet_priv *priv = rxq->priv;

	if (in_napi)
		return napi_alloc_skb(&rxq->napi, priv->rx_buf_len);

	return __netdev_alloc_skb_ip_align(priv->dev, priv->rx_buf_len, gfp);
}

/*
 * Post rx buffers until the ring is full.  The caller guarantees that
 * nothing else touches the rx vq: it runs from the queue's NAPI poll, or
 * with NAPI disabled.  Returns false if it ran out of memory, so that
 * the caller can retry later.
 */
bool pvnet_rx_refill(struct pvnet_rxq *rxq, gfp_t gfp, bool in_napi)
{
	unsigned int len = rxq->priv->rx_buf_len;
	struct virtqueue *vq = rxq->vq;
	struct scatterlist sg;
	struct sk_buff *skb;
	unsigned int added = 0;
	bool oom = false;
	int err;

	while (vq->num_free) {
		skb = pvnet_rx_alloc(rxq, gfp, in_napi);
		if (unlikely(!skb)) {
			oom = true;
			break;
		}

		sg_init_one(&sg, skb->data, len);
		err = virtqueue_add_inbuf(vq, &sg, 1, skb, gfp);
		if (unlikely(err)) {
			dev_kfree_skb_any(skb);
			oom = err == -ENOMEM;
			break;
		}
		added++;
	}

	if (added && virtqueue_kick_prepare(vq) && virtqueue_notify(vq)) {
		u64_stats_update_begin(&rxq->stats.syncp);
		u64_stats_inc(&rxq->stats.kicks);
		u64_stats_update_end(&rxq->stats.syncp);
	}

	return !oom;
}

void pvnet_refill_schedule(struct pvnet_priv *priv, unsigned long delay)
{
	spin_lock_bh(&priv->refill_lock);
	if (priv->refill_enabled)
		schedule_delayed_work(&priv->refill, delay);
	spin_unlock_bh(&priv->refill_lock);
}

/* Retry a refill that failed in NAPI context, this time with GFP_KERNEL. */
void pvnet_refill_work(struct work_struct *work)
{
	struct pvnet_priv *priv = container_of(to_delayed_work(work),
					       struct pvnet_priv, refill);
	bool oom = false;
	unsigned int i;

	for (i = 0; i < priv->curr_queue_pairs; i++) {
		struct pvnet_rxq *rxq = &priv->rxq[i];

		napi_disable(&rxq->napi);
		if (!pvnet_rx_refill(rxq, GFP_KERNEL, false))
			oom = true;
		napi_enable(&rxq->napi);

		/* Pick up anything that arrived while NAPI was off. */
		local_bh_disable();
		pvnet_vq_napi_schedule(&rxq->napi, rxq->vq);
		local_bh_enable();
	}

	if (oom)
		pvnet_refill_schedule(priv, PVNET_REFILL_DELAY);
}

static void pvnet_rx_one(struct pvnet_rxq *rxq, struct sk_buff *skb,
			 unsigned int len, struct pvnet_rx_batch *batch)
{
	struct pvnet_priv *priv = rxq->priv;
	struct net_device *dev = priv->dev;
	const struct virtio_net_hdr_v1 *hdr;
	u16 csum_start, csum_offset;
	u8 flags, gso_type;

	if (unlikely(len < PVNET_HDR_LEN + ETH_HLEN || len > priv->rx_buf_len)) {
		net_dbg_ratelimited("%s: bad rx length %u\n", dev->name, len);
		batch->errors++;
		kfree_skb(skb);
		return;
	}

	__skb_put(skb, len);
	hdr = (const struct virtio_net_hdr_v1 *)skb->data;
	flags = hdr->flags;
	gso_type = hdr->gso_type;
	csum_start = virtio16_to_cpu(priv->vdev, hdr->csum_start);
	csum_offset = virtio16_to_cpu(priv->vdev, hdr->csum_offset);
	__skb_pull(skb, PVNET_HDR_LEN);

	/* Guest GSO is not negotiated: the device must not send GSO frames. */
	if (unlikely(gso_type != VIRTIO_NET_HDR_GSO_NONE)) {
		net_dbg_ratelimited("%s: unexpected rx gso_type %u\n",
				    dev->name, gso_type);
		batch->drops++;
		kfree_skb(skb);
		return;
	}

	if (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		batch->csum_partial++;
		/* Offsets are relative to the Ethernet header at skb->data. */
		if (unlikely(!skb_partial_csum_set(skb, csum_start,
						   csum_offset))) {
			net_dbg_ratelimited("%s: bad csum_start %u csum_offset %u\n",
					    dev->name, csum_start, csum_offset);
			batch->drops++;
			kfree_skb(skb);
			return;
		}
	} else if (flags & VIRTIO_NET_HDR_F_DATA_VALID) {
		batch->csum_valid++;
		if (dev->features & NETIF_F_RXCSUM)
			skb->ip_summed = CHECKSUM_UNNECESSARY;
	}

	batch->packets++;
	batch->bytes += skb->len;

	skb_record_rx_queue(skb, rxq - priv->rxq);
	skb->protocol = eth_type_trans(skb, dev);
	napi_gro_receive(&rxq->napi, skb);
}

int pvnet_rx_poll(struct napi_struct *napi, int budget)
{
	struct pvnet_rxq *rxq = container_of(napi, struct pvnet_rxq, napi);
	struct pvnet_rx_batch batch = {};
	struct virtqueue *vq = rxq->vq;
	struct sk_buff *skb;
	unsigned int len;
	int done = 0;

	while (done < budget && (skb = virtqueue_get_buf(vq, &len))) {
		pvnet_rx_one(rxq, skb, len, &batch);
		done++;
	}

	/*
	 * Refill once the ring is half empty.  A zero budget means netpoll,
	 * which may run with interrupts off: no NAPI allocations there.
	 */
	if (budget && vq->num_free > virtqueue_get_vring_size(vq) / 2) {
		if (!pvnet_rx_refill(rxq, GFP_ATOMIC | __GFP_NOWARN, true))
			pvnet_refill_schedule(rxq->priv, 0);
	}

	if (done) {
		u64_stats_update_begin(&rxq->stats.syncp);
		u64_stats_add(&rxq->stats.packets, batch.packets);
		u64_stats_add(&rxq->stats.bytes, batch.bytes);
		u64_stats_add(&rxq->stats.drops, batch.drops);
		u64_stats_add(&rxq->stats.errors, batch.errors);
		u64_stats_add(&rxq->stats.csum_valid, batch.csum_valid);
		u64_stats_add(&rxq->stats.csum_partial, batch.csum_partial);
		u64_stats_update_end(&rxq->stats.syncp);
	}

	if (done < budget)
		pvnet_vq_napi_complete(napi, vq, done);

	return done;
}

/* Free the rx buffers still owned by a reset device. */
/* Release one rx buffer taken back from the device. */
void pvnet_rx_free_buf(struct pvnet_rxq *rxq, void *buf)
{
	dev_kfree_skb(buf);
}

void pvnet_rx_free_unused(struct pvnet_rxq *rxq)
{
	void *buf;

	while ((buf = virtqueue_detach_unused_buf(rxq->vq)))
		pvnet_rx_free_buf(rxq, buf);
}
