// SPDX-License-Identifier: GPL-2.0
/*
 * pvnet: receive path.
 *
 * Three buffer layouts (VIRTIO 1.2, 5.1.6.3), chosen at probe:
 *
 * small      neither VIRTIO_NET_F_MRG_RXBUF nor guest GSO: one buffer per
 *            packet, the data area of a pre-allocated skb sized for the
 *            header plus the largest frame; the skb is the vq token.
 * mergeable  VIRTIO_NET_F_MRG_RXBUF: page fragments whose size follows a
 *            moving average of the queue's packet lengths.  Each starts
 *            with PVNET_RX_HEADROOM bytes the device never sees; the
 *            header's num_buffers says how many buffers a packet took.
 *            The token is the fragment's address with its size (in
 *            PVNET_MRG_ALIGN units) in the low bits.  Fragments come from
 *            a per-queue page_pool where the kernel recycles skb pages
 *            into it, else from a per-queue page_frag.
 * big        no MRG_RXBUF but guest GSO, or an MTU larger than a page: a
 *            chain of pages (linked through page->private) per buffer,
 *            large enough for a 64 KiB packet; the first page is the token.
 *
 * Mergeable and big packets get a small linear skb holding a copy of the
 * headers; the rest of the data stays in the buffers, attached as page
 * fragments (and, past MAX_SKB_FRAGS, in skbs on the frag_list).
 */

#include <linux/bpf.h>
#include <linux/etherdevice.h>
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/netdevice.h>
#include <linux/scatterlist.h>
#include <linux/skbuff.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>
#include <net/sock.h>

#include "pvnet.h"
#include "pvnet_rx.h"
#include "pvnet_compat.h"

/* Clear guest offloads the spec does not allow with the other features. */
void pvnet_rx_validate(struct virtio_device *vdev)
{
	/* GUEST_TSO4/6, GUEST_UFO and GUEST_USO need GUEST_CSUM (5.1.3.1). */
	if (!virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_CSUM)) {
		__virtio_clear_bit(vdev, VIRTIO_NET_F_GUEST_TSO4);
		__virtio_clear_bit(vdev, VIRTIO_NET_F_GUEST_TSO6);
		__virtio_clear_bit(vdev, VIRTIO_NET_F_GUEST_UFO);
		pvnet_clear_guest_uso(vdev);
	}
	/* GUEST_ECN needs GUEST_TSO4 or GUEST_TSO6. */
	if (!virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_TSO4) &&
	    !virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_TSO6))
		__virtio_clear_bit(vdev, VIRTIO_NET_F_GUEST_ECN);
}

/*
 * The largest frame (with the virtio header) the device may hand in: 64 KiB
 * when guest GSO is negotiated, whatever the offloads are switched to now;
 * else one of max_mtu.  Needs rx_buf_len (pvnet_rx_setup()).
 */
static unsigned int pvnet_rx_max_frame(const struct pvnet_priv *priv)
{
	if (priv->guest_offloads_capable & PVNET_GUEST_GSO_MASK)
		return priv->hdr_len + PVNET_RX_MAX_FRAME;
	return priv->rx_buf_len;
}

/*
 * Pick the rx buffer layout and size (from the negotiated guest offloads,
 * see pvnet_init_rx_offload_features()) and raise
 * max_mtu where the buffers allow it.  Called at probe once the features
 * are final and dev->max_mtu holds the device's value (or 1500).
 */
void pvnet_rx_setup(struct pvnet_priv *priv)
{
	struct virtio_device *vdev = priv->vdev;
	struct net_device *dev = priv->dev;
	unsigned int frame;

	frame = priv->hdr_len + ETH_HLEN + VLAN_HLEN + dev->max_mtu;
	if (virtio_has_feature(vdev, VIRTIO_NET_F_MRG_RXBUF))
		priv->rx_mode = PVNET_RX_MERGEABLE;
	else if ((priv->guest_offloads_capable & PVNET_GUEST_GSO_MASK) ||
		 frame > PAGE_SIZE)
		priv->rx_mode = PVNET_RX_BIG;
	else
		priv->rx_mode = PVNET_RX_SMALL;

	/* Without a device limit, take what the buffers can carry. */
	if (priv->rx_mode != PVNET_RX_SMALL &&
	    !virtio_has_feature(vdev, VIRTIO_NET_F_MTU))
		dev->max_mtu = ETH_MAX_MTU - ETH_HLEN - VLAN_HLEN;

	priv->rx_buf_len = priv->hdr_len + dev->max_mtu + ETH_HLEN + VLAN_HLEN;
	priv->rx_big_pages = min_t(unsigned int,
				   DIV_ROUND_UP(pvnet_rx_max_frame(priv), PAGE_SIZE),
				   PVNET_RX_BIG_MAX_PAGES);
}

/*
 * The smallest rx ring that always leaves the device room for the largest
 * frame it may hand in (pvnet_rx_max_frame()).  The rx poll refills only
 * once half the ring is free, so half of it must hold that frame:
 * mergeable buffers carry PVNET_MRG_MIN_LEN bytes or more each, a big-mode
 * chain takes rx_big_pages + 1 descriptors (one with indirect
 * descriptors).  With less, the device waits for buffers that never come
 * and rx stops.
 */
unsigned int pvnet_rx_ring_min(const struct pvnet_priv *priv)
{
	unsigned int per_frame = 1;

	if (priv->rx_mode == PVNET_RX_MERGEABLE)
		per_frame = DIV_ROUND_UP(pvnet_rx_max_frame(priv),
					 PVNET_MRG_MIN_LEN);
	else if (priv->rx_mode == PVNET_RX_BIG &&
		 !virtio_has_feature(priv->vdev, VIRTIO_RING_F_INDIRECT_DESC))
		per_frame = priv->rx_big_pages + 1;
	return max_t(unsigned int, PVNET_RX_RING_MIN,
		     roundup_pow_of_two(2 * per_frame));
}

void pvnet_rx_vq_done(struct virtqueue *vq)
{
	struct pvnet_priv *priv = vq->vdev->priv;

	pvnet_vq_napi_schedule(&priv->rxq[pvnet_rxq_index(vq)].napi, vq);
}

static void pvnet_rx_small(struct pvnet_rxq *rxq, struct sk_buff *skb,
			   unsigned int len, struct pvnet_rx_batch *batch)
{
	struct pvnet_priv *priv = rxq->priv;
	struct virtio_net_hdr_v1_hash hdr;

	if (unlikely(len < priv->hdr_len + ETH_HLEN || len > priv->rx_buf_len)) {
		net_dbg_ratelimited("%s: bad rx length %u\n",
				    priv->dev->name, len);
		batch->errors++;
		dev_kfree_skb_any(skb);
		return;
	}

	__skb_put(skb, len);
	pvnet_rx_hdr(priv, &hdr, skb->data);
	__skb_pull(skb, priv->hdr_len);
	pvnet_rx_deliver(rxq, skb, &hdr, batch);
}

/*
 * The first buffer of a packet is unusable (a used length larger than the
 * buffer, or a num_buffers no ring can hold): drop the packet, and with it
 * the other buffers its header claims when that count is possible, so
 * that they are not parsed as packets of their own.  A length error.
 */
static void pvnet_rx_mrg_bad_head(struct pvnet_rxq *rxq, void *buf,
				  unsigned int len, u16 num_buffers,
				  struct pvnet_rx_batch *batch)
{
	struct pvnet_priv *priv = rxq->priv;

	net_dbg_ratelimited("%s: bad rx head: length %u, num_buffers %u\n",
			    priv->dev->name, len, num_buffers);
	batch->errors++;
	pvnet_mrg_put(rxq, buf, true);
	if (num_buffers > 1 &&
	    num_buffers <= virtqueue_get_vring_size(rxq->vq))
		pvnet_rx_mrg_discard(rxq, num_buffers - 1, batch);
}

/*
 * A packet in mergeable buffers: the first one (@token, @len bytes used)
 * holds the header, whose num_buffers says how many more follow.  Those
 * were used together with the first, so they are on the used ring now;
 * a missing one or a length the buffer cannot hold is a length error.
 * Every buffer of the packet is consumed, even when it is dropped.
 */
static void pvnet_rx_mergeable(struct pvnet_rxq *rxq, void *token,
			       unsigned int len, struct pvnet_rx_batch *batch)
{
	struct pvnet_priv *priv = rxq->priv;
	unsigned int truesize = pvnet_mrg_truesize(token);
	void *buf = pvnet_mrg_buf(token);
	struct virtio_net_hdr_v1_hash hdr;
	struct pvnet_rx_skb rs = {};
	unsigned int total, i;
	u16 num_buffers;
	bool used;

	if (unlikely(len < priv->hdr_len)) {
		/* Not even a header: which buffers follow is unknown. */
		net_dbg_ratelimited("%s: bad rx length %u\n",
				    priv->dev->name, len);
		batch->errors++;
		pvnet_mrg_put(rxq, buf, true);
		return;
	}

	/* The header lies within the buffer whatever @len claims. */
	pvnet_rx_hdr(priv, &hdr, buf + PVNET_RX_HEADROOM);
	num_buffers = virtio16_to_cpu(priv->vdev, hdr.hdr.num_buffers);
	total = len - priv->hdr_len;

	if (unlikely(!num_buffers ||
		     num_buffers > virtqueue_get_vring_size(rxq->vq) ||
		     len > pvnet_mrg_capacity(token))) {
		pvnet_rx_mrg_bad_head(rxq, buf, len, num_buffers, batch);
		return;
	}

	if (batch->prog) {
		pvnet_xdp_rx_mrg(rxq, token, len, &hdr, num_buffers, batch);
		return;
	}

	if (!pvnet_rx_skb_start(rxq, &rs, buf + PVNET_RX_HEADROOM +
				priv->hdr_len, total, virt_to_head_page(buf),
				buf - page_address(virt_to_head_page(buf)) +
				PVNET_RX_HEADROOM + priv->hdr_len, truesize,
				&used)) {
		batch->drops++;
		used = false;
	}
	if (!used)
		pvnet_mrg_put(rxq, buf, true);

	for (i = 1; i < num_buffers; i++) {
		token = virtqueue_get_buf(rxq->vq, &len);
		if (unlikely(!token)) {
			net_dbg_ratelimited("%s: rx num_buffers %u but only %u buffers used\n",
					    priv->dev->name, num_buffers, i);
			batch->errors++;
			goto drop;
		}
		buf = pvnet_mrg_buf(token);
		truesize = pvnet_mrg_truesize(token);
		batch->merged++;

		if (unlikely(len > pvnet_mrg_capacity(token) ||
			     total + len > PVNET_RX_MAX_FRAME)) {
			net_dbg_ratelimited("%s: bad rx length %u (+%u)\n",
					    priv->dev->name, len, total);
			if (rs.head)
				batch->errors++;
			pvnet_mrg_put(rxq, buf, true);
			dev_kfree_skb_any(rs.head);
			rs.head = NULL;
			continue;
		}
		total += len;
		if (rs.head && len &&
		    unlikely(!pvnet_rx_mrg_add(rxq, &rs, buf, len, truesize))) {
			batch->drops++;
			dev_kfree_skb_any(rs.head);
			rs.head = NULL;
		}
		if (!rs.head || !len)
			pvnet_mrg_put(rxq, buf, true);
	}

	if (!rs.head)
		return;

	ewma_pvnet_rx_len_add(&rxq->len_avg, priv->hdr_len + total);
	pvnet_rx_deliver(rxq, rs.head, &hdr, batch);
	return;

drop:
	dev_kfree_skb_any(rs.head);
}

/* A packet in a big-mode page chain starting at @first. */
static void pvnet_rx_big(struct pvnet_rxq *rxq, struct page *first,
			 unsigned int len, struct pvnet_rx_batch *batch)
{
	struct pvnet_priv *priv = rxq->priv;
	struct virtio_net_hdr_v1_hash hdr;
	struct pvnet_rx_skb rs;
	struct page *page, *next;
	unsigned int chunk;
	bool used;

	if (unlikely(len < priv->hdr_len + ETH_HLEN ||
		     len > priv->rx_big_pages * PAGE_SIZE)) {
		net_dbg_ratelimited("%s: bad rx length %u\n",
				    priv->dev->name, len);
		batch->errors++;
		pvnet_big_put(first);
		return;
	}

	pvnet_rx_hdr(priv, &hdr, page_address(first));
	len -= priv->hdr_len;
	chunk = min_t(unsigned int, len, PAGE_SIZE - priv->hdr_len);

	if (!pvnet_rx_skb_start(rxq, &rs, page_address(first) + priv->hdr_len,
				chunk, first, priv->hdr_len, PAGE_SIZE, &used)) {
		batch->drops++;
		pvnet_big_put(first);
		return;
	}

	next = (struct page *)page_private(first);
	set_page_private(first, 0);
	if (!used)
		put_page(first);
	len -= chunk;

	/* rx_big_pages <= MAX_SKB_FRAGS: no frag_list needed here. */
	for (page = next; page && len; page = next, len -= chunk) {
		next = (struct page *)page_private(page);
		set_page_private(page, 0);
		chunk = min_t(unsigned int, len, PAGE_SIZE);
		skb_add_rx_frag(rs.head, skb_shinfo(rs.head)->nr_frags, page,
				0, chunk, PAGE_SIZE);
	}
	pvnet_big_put(page);

	pvnet_rx_deliver(rxq, rs.head, &hdr, batch);
}

int pvnet_rx_poll(struct napi_struct *napi, int budget)
{
	struct pvnet_rxq *rxq = container_of(napi, struct pvnet_rxq, napi);
	enum pvnet_rx_mode mode = rxq->priv->rx_mode;
	struct pvnet_rx_batch batch = {};
	struct virtqueue *vq = rxq->vq;
	unsigned int len;
	void *buf;
	int done = 0;

	BUILD_BUG_ON(PVNET_RX_BIG_MAX_PAGES > MAX_SKB_FRAGS);
	BUILD_BUG_ON(PVNET_MRG_MAX_TRUESIZE / PVNET_MRG_ALIGN >
		     PVNET_MRG_SIZE_MASK + 1);

	/* The program stays valid until rcu_read_unlock() (5.10 needs it). */
	rcu_read_lock();
	batch.prog = rcu_dereference(rxq->priv->xdp_prog);

	while (done < budget && (buf = virtqueue_get_buf(vq, &len))) {
		switch (mode) {
		case PVNET_RX_MERGEABLE:
			pvnet_rx_mergeable(rxq, buf, len, &batch);
			break;
		case PVNET_RX_BIG:
			pvnet_rx_big(rxq, buf, len, &batch);
			break;
		default:
			pvnet_rx_small(rxq, buf, len, &batch);
			break;
		}
		done++;
	}

	if (batch.n_tx)
		pvnet_xdp_tx_flush(rxq, &batch);
	if (batch.xdp_flush)
		xdp_do_flush();
	rcu_read_unlock();

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
		u64_stats_add(&rxq->stats.csum_none, batch.csum_none);
		u64_stats_add(&rxq->stats.gso_packets, batch.gso_packets);
		u64_stats_add(&rxq->stats.gso_bytes, batch.gso_bytes);
		u64_stats_add(&rxq->stats.merged_buffers, batch.merged);
		u64_stats_add(&rxq->stats.xdp_packets, batch.xdp_packets);
		u64_stats_add(&rxq->stats.xdp_drops, batch.xdp_drops);
		u64_stats_add(&rxq->stats.xdp_tx, batch.xdp_tx);
		u64_stats_add(&rxq->stats.xdp_tx_drops, batch.xdp_tx_drops);
		u64_stats_add(&rxq->stats.xdp_redirects, batch.xdp_redirects);
		u64_stats_add(&rxq->stats.xdp_aborted, batch.xdp_aborted);
		u64_stats_update_end(&rxq->stats.syncp);
	}

	/*
	 * A device that returned a used id the ring never posted (out of
	 * range, or a buffer already returned) has had the vq marked broken
	 * by the virtio core: nothing more comes from it until the device
	 * is reset.
	 */
	if (unlikely(done < budget && virtqueue_is_broken(vq)))
		pvnet_schedule_reset(rxq->priv,
				     "the device returned an rx buffer it was never given");

	if (done < budget)
		pvnet_vq_napi_complete(napi, vq, done);

	return done;
}
