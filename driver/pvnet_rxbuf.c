// SPDX-License-Identifier: GPL-2.0
/*
 * pvnet: receive buffers: per-queue allocators, posting (refill) and
 * freeing of the three layouts (see pvnet_rx.c), and building and
 * delivering skbs from them.
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

int pvnet_rxq_init(struct pvnet_rxq *rxq)
{
	struct pvnet_priv *priv = rxq->priv;
	struct page_pool *pool;

	ewma_pvnet_rx_len_init(&rxq->len_avg);
	if (priv->rx_mode != PVNET_RX_MERGEABLE)
		return 0;

	pool = pvnet_page_pool_create(priv->vdev->dev.parent,
				      PVNET_RX_POOL_SIZE);
	if (IS_ERR(pool)) {
		/* No page_pool recycling on this kernel: use page frags. */
		if (PTR_ERR(pool) != -EOPNOTSUPP)
			return PTR_ERR(pool);
		pool = NULL;
	}
	rxq->pool = pool;
	return 0;
}

/*
 * Register the queue with XDP: its memory model says how frames that left
 * it (XDP_TX, redirects) give their pages back.
 */
int pvnet_rxq_xdp_reg(struct pvnet_rxq *rxq)
{
	struct pvnet_priv *priv = rxq->priv;
	int err;

	err = pvnet_xdp_rxq_reg(&rxq->xdp_rxq, priv->dev, rxq - priv->rxq,
				&rxq->napi, 0);
	if (err)
		return err;
	err = xdp_rxq_info_reg_mem_model(&rxq->xdp_rxq,
					 rxq->pool ? MEM_TYPE_PAGE_POOL :
						     MEM_TYPE_PAGE_SHARED,
					 rxq->pool);
	if (err) {
		xdp_rxq_info_unreg(&rxq->xdp_rxq);
		return err;
	}
	rxq->xdp_rxq_reg = true;
	return 0;
}

/* Before the queue's page_pool is destroyed. */
void pvnet_rxq_xdp_unreg(struct pvnet_rxq *rxq)
{
	if (rxq->xdp_rxq_reg)
		xdp_rxq_info_unreg(&rxq->xdp_rxq);
	rxq->xdp_rxq_reg = false;
}

/* Release the allocator state; every buffer must have been freed. */
void pvnet_rxq_fini(struct pvnet_rxq *rxq)
{
	if (rxq->frag.page) {
		put_page(rxq->frag.page);
		rxq->frag.page = NULL;
	}
	if (rxq->pool) {
		pvnet_page_pool_destroy(rxq->pool);
		rxq->pool = NULL;
	}
}

/* Drop the reference a mergeable buffer holds on its page. */
void pvnet_mrg_put(struct pvnet_rxq *rxq, void *buf, bool napi)
{
	struct page *page = virt_to_head_page(buf);

	if (rxq->pool)
		pvnet_page_pool_put(rxq->pool, page, napi);
	else
		put_page(page);
}

/* Free a big-mode page chain starting at @page. */
void pvnet_big_put(struct page *page)
{
	struct page *next;

	for (; page; page = next) {
		next = (struct page *)page_private(page);
		set_page_private(page, 0);
		put_page(page);
	}
}

static void pvnet_rx_put_buf(struct pvnet_rxq *rxq, void *buf, bool napi)
{
	switch (rxq->priv->rx_mode) {
	case PVNET_RX_MERGEABLE:
		pvnet_mrg_put(rxq, pvnet_mrg_buf(buf), napi);
		break;
	case PVNET_RX_BIG:
		pvnet_big_put(buf);
		break;
	default:
		dev_kfree_skb_any(buf);
		break;
	}
}

/* Release one rx buffer token taken back from the vq (process context). */
void pvnet_rx_free_buf(struct pvnet_rxq *rxq, void *buf)
{
	pvnet_rx_put_buf(rxq, buf, false);
}

static int pvnet_rx_add_small(struct pvnet_rxq *rxq, gfp_t gfp, bool in_napi)
{
	struct pvnet_priv *priv = rxq->priv;
	unsigned int len = priv->rx_buf_len;
	struct scatterlist sg;
	struct sk_buff *skb;
	int err;

	if (in_napi)
		skb = napi_alloc_skb(&rxq->napi, len);
	else
		skb = __netdev_alloc_skb_ip_align(priv->dev, len, gfp);
	if (unlikely(!skb))
		return -ENOMEM;

	sg_init_one(&sg, skb->data, len);
	err = virtqueue_add_inbuf(rxq->vq, &sg, 1, skb, gfp);
	if (unlikely(err))
		dev_kfree_skb_any(skb);
	return err;
}

/*
 * Buffer size for the next mergeable buffer, from the average packet;
 * with XDP, plus the tailroom, and a whole frame for a program that
 * cannot take frags (pvnet_xdp_check_mtu() keeps that within a page).
 */
static unsigned int pvnet_mrg_next_truesize(struct pvnet_rxq *rxq,
					    unsigned int tailroom)
{
	struct pvnet_priv *priv = rxq->priv;
	unsigned int len = ewma_pvnet_rx_len_read(&rxq->len_avg);

	if (tailroom && READ_ONCE(priv->rx_linear))
		len = max(len, priv->hdr_len + ETH_HLEN + VLAN_HLEN +
			  READ_ONCE(priv->dev->mtu));
	len = clamp_t(unsigned int, len, PVNET_MRG_MIN_LEN,
		      PVNET_MRG_MAX_TRUESIZE - PVNET_RX_HEADROOM - tailroom);
	return ALIGN(PVNET_RX_HEADROOM + len + tailroom, PVNET_MRG_ALIGN);
}

static void *pvnet_mrg_alloc(struct pvnet_rxq *rxq, unsigned int truesize,
			     gfp_t gfp)
{
	struct page_frag *frag = &rxq->frag;
	unsigned int offset;
	struct page *page;
	void *buf;

	if (rxq->pool) {
		page = pvnet_page_pool_alloc_frag(rxq->pool, &offset, truesize,
						  gfp);
		if (unlikely(!page))
			return NULL;
		/* A fragment at offset 0 starts a page taken from the pool. */
		if (!offset)
			rxq->pool_pages++;
		return page_address(page) + offset;
	}

	/* Offsets stay multiples of PVNET_MRG_ALIGN: every size is one. */
	if (unlikely(!skb_page_frag_refill(truesize, frag, gfp)))
		return NULL;
	buf = page_address(frag->page) + frag->offset;
	get_page(frag->page);
	frag->offset += truesize;
	return buf;
}

static int pvnet_rx_add_mergeable(struct pvnet_rxq *rxq, gfp_t gfp,
				  bool in_napi)
{
	unsigned int tailroom = READ_ONCE(rxq->priv->rx_tailroom);
	unsigned int truesize = pvnet_mrg_next_truesize(rxq, tailroom);
	struct scatterlist sg;
	void *buf;
	int err;

	buf = pvnet_mrg_alloc(rxq, truesize, gfp);
	if (unlikely(!buf))
		return -ENOMEM;

	sg_init_one(&sg, buf + PVNET_RX_HEADROOM,
		    truesize - PVNET_RX_HEADROOM - tailroom);
	err = virtqueue_add_inbuf(rxq->vq, &sg, 1,
				  pvnet_mrg_token(buf, truesize, tailroom),
				  gfp);
	if (unlikely(err))
		pvnet_mrg_put(rxq, buf, in_napi);
	return err;
}

static int pvnet_rx_add_big(struct pvnet_rxq *rxq, gfp_t gfp)
{
	unsigned int i, n = rxq->priv->rx_big_pages;
	struct scatterlist *sg = rxq->big_sg;
	struct page *first = NULL, *page;
	int err;

	/* Built back to front, so that the chain starts at sg[0]'s page. */
	sg_init_table(sg, n);
	for (i = n; i-- > 0;) {
		page = alloc_page(gfp);
		if (unlikely(!page)) {
			pvnet_big_put(first);
			return -ENOMEM;
		}
		set_page_private(page, (unsigned long)first);
		first = page;
		sg_set_page(&sg[i], page, PAGE_SIZE, 0);
	}

	err = virtqueue_add_inbuf(rxq->vq, sg, n, first, gfp);
	if (unlikely(err))
		pvnet_big_put(first);
	return err;
}

/*
 * Account pool pages that were reused instead of freshly allocated: the
 * pool's own recycle counters where the kernel has them, else the pages
 * this queue started (rx buffers and XDP copies, rxq->pool_pages) minus
 * those the pool took fresh from the page allocator.
 */
static void pvnet_rx_count_recycled(struct pvnet_rxq *rxq)
{
	u64 recycled;
	s32 reused;

	if (!rxq->pool)
		return;

	if (pvnet_page_pool_recycled(rxq->pool, &recycled)) {
		if (recycled <= rxq->pool_recycled)
			return;
		u64_stats_update_begin(&rxq->stats.syncp);
		u64_stats_add(&rxq->stats.recycled,
			      recycled - rxq->pool_recycled);
		u64_stats_update_end(&rxq->stats.syncp);
		rxq->pool_recycled = recycled;
		return;
	}

	/*
	 * The pool allocates fresh pages in bulk, so this may lag by up
	 * to one bulk; it never counts a fresh page as reused.
	 */
	reused = (s32)(rxq->pool_pages -
		       pvnet_page_pool_fresh_pages(rxq->pool));
	if (reused <= rxq->pool_reused)
		return;

	u64_stats_update_begin(&rxq->stats.syncp);
	u64_stats_add(&rxq->stats.recycled, reused - rxq->pool_reused);
	u64_stats_update_end(&rxq->stats.syncp);
	rxq->pool_reused = reused;
}

/*
 * Post rx buffers until the ring is full.  The caller guarantees that
 * nothing else touches the rx vq or the queue's allocator: it runs from
 * the queue's NAPI poll, or with NAPI disabled.  Returns false if it ran
 * out of memory, so that the caller can retry later.
 */
bool pvnet_rx_refill(struct pvnet_rxq *rxq, gfp_t gfp, bool in_napi)
{
	struct virtqueue *vq = rxq->vq;
	unsigned int added = 0;
	bool oom = false;
	bool kicked;
	int err;

	while (vq->num_free) {
		switch (rxq->priv->rx_mode) {
		case PVNET_RX_MERGEABLE:
			err = pvnet_rx_add_mergeable(rxq, gfp, in_napi);
			break;
		case PVNET_RX_BIG:
			err = pvnet_rx_add_big(rxq, gfp);
			break;
		default:
			err = pvnet_rx_add_small(rxq, gfp, in_napi);
			break;
		}
		if (unlikely(err)) {
			/* -ENOSPC: a big chain did not fit in the rest. */
			oom = err == -ENOMEM;
			break;
		}
		added++;
	}

	kicked = added && virtqueue_kick_prepare(vq) && virtqueue_notify(vq);
	if (kicked || oom) {
		u64_stats_update_begin(&rxq->stats.syncp);
		if (kicked)
			u64_stats_inc(&rxq->stats.kicks);
		if (oom)
			u64_stats_inc(&rxq->stats.refill_failures);
		u64_stats_update_end(&rxq->stats.syncp);
	}
	pvnet_rx_count_recycled(rxq);

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

	for (i = 0; i < pvnet_rx_pairs(priv); i++) {
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

/* May the device send this gso_type with the negotiated features? */
static bool pvnet_rx_gso_ok(const struct pvnet_priv *priv, u8 gso_type)
{
	struct virtio_device *vdev = priv->vdev;

	if ((gso_type & VIRTIO_NET_HDR_GSO_ECN) &&
	    !virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_ECN))
		return false;

	gso_type &= ~VIRTIO_NET_HDR_GSO_ECN;
	switch (gso_type) {
	case VIRTIO_NET_HDR_GSO_NONE:
		return true;
	case VIRTIO_NET_HDR_GSO_TCPV4:
		return virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_TSO4);
	case VIRTIO_NET_HDR_GSO_TCPV6:
		return virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_TSO6);
	case VIRTIO_NET_HDR_GSO_UDP:
		return virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_UFO);
	default:
		return pvnet_gso_is_udp_l4(gso_type) &&
		       pvnet_has_guest_uso(vdev);
	}
}

/* The packet's virtio-net header at @src, without hash if none came. */
void pvnet_rx_hdr(const struct pvnet_priv *priv,
		  struct virtio_net_hdr_v1_hash *hdr, const void *src)
{
	memcpy(hdr, src, priv->hdr_len);
	if (priv->hdr_len < sizeof(*hdr)) {
		pvnet_hdr_hash_clear(hdr);
		hdr->hash_report = cpu_to_le16(VIRTIO_NET_HASH_REPORT_NONE);
		hdr->padding = 0;
	}
}

/* skb hash type of a VIRTIO_NET_HASH_REPORT_* (not NONE). */
static enum pkt_hash_types pvnet_hash_level(u16 report)
{
	switch (report) {
	case VIRTIO_NET_HASH_REPORT_IPv4:
	case VIRTIO_NET_HASH_REPORT_IPv6:
	case VIRTIO_NET_HASH_REPORT_IPv6_EX:
		return PKT_HASH_TYPE_L3;
	default:
		return PKT_HASH_TYPE_L4;
	}
}

/*
 * Apply the virtio-net header to a complete packet (skb->data at the
 * Ethernet header) and hand it to GRO.  Consumes the skb.
 */
void pvnet_rx_deliver(struct pvnet_rxq *rxq, struct sk_buff *skb,
		      const struct virtio_net_hdr_v1_hash *hash_hdr,
		      struct pvnet_rx_batch *batch)
{
	const struct virtio_net_hdr_v1 *hdr = &hash_hdr->hdr;
	u16 report = le16_to_cpu(hash_hdr->hash_report);
	struct pvnet_priv *priv = rxq->priv;
	struct net_device *dev = priv->dev;

	if (unlikely(skb->len < ETH_HLEN)) {
		net_dbg_ratelimited("%s: short rx packet (%u bytes)\n",
				    dev->name, skb->len);
		batch->errors++;
		goto drop;
	}

	if (unlikely(!pvnet_rx_gso_ok(priv, hdr->gso_type))) {
		net_dbg_ratelimited("%s: unexpected rx gso_type %u\n",
				    dev->name, hdr->gso_type);
		batch->drops++;
		goto drop;
	}

	if (unlikely(!pskb_may_pull(skb, ETH_HLEN) ||
		     virtio_net_hdr_to_skb(skb,
					   (const struct virtio_net_hdr *)hdr,
					   virtio_is_little_endian(priv->vdev)))) {
		net_dbg_ratelimited("%s: bad rx header: flags %#x gso_type %u csum_start %u csum_offset %u\n",
				    dev->name, hdr->flags, hdr->gso_type,
				    virtio16_to_cpu(priv->vdev, hdr->csum_start),
				    virtio16_to_cpu(priv->vdev, hdr->csum_offset));
		batch->drops++;
		goto drop;
	}

	if (hdr->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		batch->csum_partial++;
	} else if (hdr->flags & VIRTIO_NET_HDR_F_DATA_VALID) {
		batch->csum_valid++;
		if (dev->features & NETIF_F_RXCSUM)
			skb->ip_summed = CHECKSUM_UNNECESSARY;
	} else {
		batch->csum_none++;
	}

	if (skb_is_gso(skb)) {
		batch->gso_packets++;
		batch->gso_bytes += skb->len;
	}
	batch->packets++;
	batch->bytes += skb->len;

	if (report != VIRTIO_NET_HASH_REPORT_NONE &&
	    report <= VIRTIO_NET_HASH_REPORT_UDPv6_EX &&
	    (dev->features & NETIF_F_RXHASH))
		skb_set_hash(skb, pvnet_hdr_hash_value(hash_hdr),
			     pvnet_hash_level(report));

	skb_record_rx_queue(skb, rxq - priv->rxq);
	skb->protocol = eth_type_trans(skb, dev);
	napi_gro_receive(&rxq->napi, skb);
	return;

drop:
	dev_kfree_skb_any(skb);
}

/*
 * Start an skb with @len bytes of packet data at @data, which lies at
 * @offset in @page.  The headers (or a short packet whole) are copied;
 * the rest becomes the first fragment, holding the buffer's reference
 * (*@used = true).  Otherwise the caller still owns the buffer.
 */
bool pvnet_rx_skb_start(struct pvnet_rxq *rxq, struct pvnet_rx_skb *rs,
			void *data, unsigned int len, struct page *page,
			unsigned int offset, unsigned int truesize,
			bool *used)
{
	unsigned int copy = len;
	struct sk_buff *skb;

	*used = false;
	if (len > PVNET_RX_COPYBREAK)
		copy = eth_get_headlen(rxq->priv->dev, data,
				       min_t(unsigned int, len,
					     PVNET_RX_MAX_PULL));

	skb = napi_alloc_skb(&rxq->napi, copy);
	if (unlikely(!skb))
		return false;

	skb_put_data(skb, data, copy);
	if (len > copy) {
		skb_add_rx_frag(skb, 0, page, offset + copy, len - copy,
				truesize);
		*used = true;
	}
	if (rxq->pool)
		pvnet_skb_mark_for_recycle(skb);
	rs->head = skb;
	rs->tail = skb;
	return true;
}

/*
 * Append a fragment to the packet; once the current skb holds
 * MAX_SKB_FRAGS, continue in a new skb on the head's frag_list.  On
 * failure the caller still owns the fragment's reference.
 */
bool pvnet_rx_skb_add(struct pvnet_rxq *rxq, struct pvnet_rx_skb *rs,
		      struct page *page, unsigned int offset,
		      unsigned int len, unsigned int truesize)
{
	struct sk_buff *head = rs->head, *tail = rs->tail;

	if (unlikely(skb_shinfo(tail)->nr_frags == MAX_SKB_FRAGS)) {
		struct sk_buff *nskb = napi_alloc_skb(&rxq->napi, 0);

		if (unlikely(!nskb))
			return false;
		if (rxq->pool)
			pvnet_skb_mark_for_recycle(nskb);
		if (tail == head)
			skb_shinfo(head)->frag_list = nskb;
		else
			tail->next = nskb;
		rs->tail = nskb;
		tail = nskb;
	}

	skb_add_rx_frag(tail, skb_shinfo(tail)->nr_frags, page, offset, len,
			truesize);
	if (tail != head) {
		head->len += len;
		head->data_len += len;
		head->truesize += truesize;
	}
	return true;
}

/* Add mergeable buffer @buf (@len bytes of data) to the packet. */
bool pvnet_rx_mrg_add(struct pvnet_rxq *rxq, struct pvnet_rx_skb *rs,
		      void *buf, unsigned int len, unsigned int truesize)
{
	struct page *page = virt_to_head_page(buf);
	unsigned int offset = buf - page_address(page) + PVNET_RX_HEADROOM;

	return pvnet_rx_skb_add(rxq, rs, page, offset, len, truesize);
}

/* Give back the @left remaining buffers of a packet from the used ring. */
void pvnet_rx_mrg_discard(struct pvnet_rxq *rxq, unsigned int left,
			  struct pvnet_rx_batch *batch)
{
	unsigned int len;
	void *token;

	while (left--) {
		token = virtqueue_get_buf(rxq->vq, &len);
		if (unlikely(!token)) {
			batch->errors++;
			return;
		}
		pvnet_mrg_put(rxq, pvnet_mrg_buf(token), true);
	}
}

/* Free the rx buffers still owned by a reset device. */
void pvnet_rx_free_unused(struct pvnet_rxq *rxq)
{
	void *buf;

	while ((buf = virtqueue_detach_unused_buf(rxq->vq)))
		pvnet_rx_free_buf(rxq, buf);
}
