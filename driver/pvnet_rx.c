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
#include <linux/mm.h>
#include <linux/netdevice.h>
#include <linux/scatterlist.h>
#include <linux/skbuff.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <net/sock.h>

#include "pvnet.h"
#include "pvnet_compat.h"

/* Room kept in front of every mergeable buffer, for XDP. */
#define PVNET_RX_HEADROOM	XDP_PACKET_HEADROOM
/* Mergeable buffer sizes are multiples of this (token encoding). */
#define PVNET_MRG_ALIGN		256
/* Smallest and largest data area of a mergeable buffer. */
#define PVNET_MRG_MIN_LEN	1536
#define PVNET_MRG_MAX_TRUESIZE	PAGE_SIZE
/* Packets up to this length are copied whole into the skb. */
#define PVNET_RX_COPYBREAK	128
/* At most this many header bytes are copied into the skb. */
#define PVNET_RX_MAX_PULL	256
/* Largest frame accepted: 64 KiB GSO packet or max MTU, plus L2 headers. */
#define PVNET_RX_MAX_FRAME	(ETH_MAX_MTU + ETH_HLEN + VLAN_HLEN)
/* Recycling ring of each queue's page_pool. */
#define PVNET_RX_POOL_SIZE	1024

/* Per-poll counters, folded into the queue stats once per poll. */
struct pvnet_rx_batch {
	u64 packets;
	u64 bytes;
	u64 drops;
	u64 errors;
	u64 csum_valid;
	u64 csum_partial;
	u64 csum_none;
	u64 gso_packets;
	u64 gso_bytes;
	u64 merged;
};

/* An skb under construction from mergeable or big buffers. */
struct pvnet_rx_skb {
	struct sk_buff *head;
	struct sk_buff *tail;	/* where fragments go: head or frag_list */
};

/* Clear guest offloads the spec does not allow with the other features. */
void pvnet_rx_validate(struct virtio_device *vdev)
{
	/* GUEST_TSO4/6, GUEST_UFO and GUEST_USO need GUEST_CSUM (5.1.3.1). */
	if (!virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_CSUM)) {
		__virtio_clear_bit(vdev, VIRTIO_NET_F_GUEST_TSO4);
		__virtio_clear_bit(vdev, VIRTIO_NET_F_GUEST_TSO6);
		__virtio_clear_bit(vdev, VIRTIO_NET_F_GUEST_UFO);
		__virtio_clear_bit(vdev, PVNET_F_GUEST_USO4);
		__virtio_clear_bit(vdev, PVNET_F_GUEST_USO6);
	}
	/* GUEST_ECN needs GUEST_TSO4 or GUEST_TSO6. */
	if (!virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_TSO4) &&
	    !virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_TSO6))
		__virtio_clear_bit(vdev, VIRTIO_NET_F_GUEST_ECN);
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

	frame = PVNET_HDR_LEN + ETH_HLEN + VLAN_HLEN + dev->max_mtu;
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

	priv->rx_buf_len = PVNET_HDR_LEN + dev->max_mtu + ETH_HLEN + VLAN_HLEN;
	if (priv->guest_offloads_capable & PVNET_GUEST_GSO_MASK)
		frame = PVNET_HDR_LEN + PVNET_RX_MAX_FRAME;
	else
		frame = priv->rx_buf_len;
	priv->rx_big_pages = min_t(unsigned int, DIV_ROUND_UP(frame, PAGE_SIZE),
				   PVNET_RX_BIG_MAX_PAGES);
}

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

void pvnet_rx_vq_done(struct virtqueue *vq)
{
	struct pvnet_priv *priv = vq->vdev->priv;

	pvnet_vq_napi_schedule(&priv->rxq[pvnet_rxq_index(vq)].napi, vq);
}

/* Mergeable tokens: buffer address | (truesize / PVNET_MRG_ALIGN - 1). */
static void *pvnet_mrg_token(void *buf, unsigned int truesize)
{
	return (void *)((unsigned long)buf |
			(truesize / PVNET_MRG_ALIGN - 1));
}

static void *pvnet_mrg_buf(void *token)
{
	return (void *)((unsigned long)token & ~(PVNET_MRG_ALIGN - 1UL));
}

static unsigned int pvnet_mrg_truesize(void *token)
{
	return (((unsigned long)token & (PVNET_MRG_ALIGN - 1)) + 1) *
	       PVNET_MRG_ALIGN;
}

/* Drop the reference a mergeable buffer holds on its page. */
static void pvnet_mrg_put(struct pvnet_rxq *rxq, void *buf, bool napi)
{
	struct page *page = virt_to_head_page(buf);

	if (rxq->pool)
		pvnet_page_pool_put(rxq->pool, page, napi);
	else
		put_page(page);
}

/* Free a big-mode page chain starting at @page. */
static void pvnet_big_put(struct page *page)
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

/* Buffer size for the next mergeable buffer, from the average packet. */
static unsigned int pvnet_mrg_next_truesize(struct pvnet_rxq *rxq)
{
	unsigned int len = ewma_pvnet_rx_len_read(&rxq->len_avg);

	len = clamp_t(unsigned int, len, PVNET_MRG_MIN_LEN,
		      PVNET_MRG_MAX_TRUESIZE - PVNET_RX_HEADROOM);
	return ALIGN(PVNET_RX_HEADROOM + len, PVNET_MRG_ALIGN);
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
	unsigned int truesize = pvnet_mrg_next_truesize(rxq);
	struct scatterlist sg;
	void *buf;
	int err;

	buf = pvnet_mrg_alloc(rxq, truesize, gfp);
	if (unlikely(!buf))
		return -ENOMEM;

	sg_init_one(&sg, buf + PVNET_RX_HEADROOM,
		    truesize - PVNET_RX_HEADROOM);
	err = virtqueue_add_inbuf(rxq->vq, &sg, 1,
				  pvnet_mrg_token(buf, truesize), gfp);
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

/* Account pool pages that were reused instead of freshly allocated. */
static void pvnet_rx_count_recycled(struct pvnet_rxq *rxq)
{
	s32 reused;

	if (!rxq->pool)
		return;

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
		       (virtio_has_feature(vdev, PVNET_F_GUEST_USO4) ||
			virtio_has_feature(vdev, PVNET_F_GUEST_USO6));
	}
}

/*
 * Apply the virtio-net header to a complete packet (skb->data at the
 * Ethernet header) and hand it to GRO.  Consumes the skb.
 */
static void pvnet_rx_deliver(struct pvnet_rxq *rxq, struct sk_buff *skb,
			     const struct virtio_net_hdr_v1 *hdr,
			     struct pvnet_rx_batch *batch)
{
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

	skb_record_rx_queue(skb, rxq - priv->rxq);
	skb->protocol = eth_type_trans(skb, dev);
	napi_gro_receive(&rxq->napi, skb);
	return;

drop:
	dev_kfree_skb_any(skb);
}

static void pvnet_rx_small(struct pvnet_rxq *rxq, struct sk_buff *skb,
			   unsigned int len, struct pvnet_rx_batch *batch)
{
	struct pvnet_priv *priv = rxq->priv;
	struct virtio_net_hdr_v1 hdr;

	if (unlikely(len < PVNET_HDR_LEN + ETH_HLEN || len > priv->rx_buf_len)) {
		net_dbg_ratelimited("%s: bad rx length %u\n",
				    priv->dev->name, len);
		batch->errors++;
		dev_kfree_skb_any(skb);
		return;
	}

	__skb_put(skb, len);
	memcpy(&hdr, skb->data, sizeof(hdr));
	__skb_pull(skb, PVNET_HDR_LEN);
	pvnet_rx_deliver(rxq, skb, &hdr, batch);
}

/*
 * Start an skb with @len bytes of packet data at @data, which lies at
 * @offset in @page.  The headers (or a short packet whole) are copied;
 * the rest becomes the first fragment, holding the buffer's reference
 * (*@used = true).  Otherwise the caller still owns the buffer.
 */
static bool pvnet_rx_skb_start(struct pvnet_rxq *rxq, struct pvnet_rx_skb *rs,
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
static bool pvnet_rx_skb_add(struct pvnet_rxq *rxq, struct pvnet_rx_skb *rs,
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
static bool pvnet_rx_mrg_add(struct pvnet_rxq *rxq, struct pvnet_rx_skb *rs,
			     void *buf, unsigned int len, unsigned int truesize)
{
	struct page *page = virt_to_head_page(buf);
	unsigned int offset = buf - page_address(page) + PVNET_RX_HEADROOM;

	return pvnet_rx_skb_add(rxq, rs, page, offset, len, truesize);
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
	struct virtio_net_hdr_v1 hdr;
	struct pvnet_rx_skb rs = {};
	unsigned int total, i;
	u16 num_buffers;
	bool used;

	if (unlikely(len < PVNET_HDR_LEN ||
		     len > truesize - PVNET_RX_HEADROOM)) {
		net_dbg_ratelimited("%s: bad rx length %u\n",
				    priv->dev->name, len);
		batch->errors++;
		pvnet_mrg_put(rxq, buf, true);
		return;
	}

	memcpy(&hdr, buf + PVNET_RX_HEADROOM, sizeof(hdr));
	num_buffers = virtio16_to_cpu(priv->vdev, hdr.num_buffers);
	total = len - PVNET_HDR_LEN;

	if (unlikely(!num_buffers)) {
		batch->errors++;
		pvnet_mrg_put(rxq, buf, true);
		return;
	}

	if (!pvnet_rx_skb_start(rxq, &rs, buf + PVNET_RX_HEADROOM +
				PVNET_HDR_LEN, total, virt_to_head_page(buf),
				buf - page_address(virt_to_head_page(buf)) +
				PVNET_RX_HEADROOM + PVNET_HDR_LEN, truesize,
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

		if (unlikely(len > truesize - PVNET_RX_HEADROOM ||
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

	ewma_pvnet_rx_len_add(&rxq->len_avg, PVNET_HDR_LEN + total);
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
	struct virtio_net_hdr_v1 hdr;
	struct pvnet_rx_skb rs;
	struct page *page, *next;
	unsigned int chunk;
	bool used;

	if (unlikely(len < PVNET_HDR_LEN + ETH_HLEN ||
		     len > priv->rx_big_pages * PAGE_SIZE)) {
		net_dbg_ratelimited("%s: bad rx length %u\n",
				    priv->dev->name, len);
		batch->errors++;
		pvnet_big_put(first);
		return;
	}

	memcpy(&hdr, page_address(first), sizeof(hdr));
	len -= PVNET_HDR_LEN;
	chunk = min_t(unsigned int, len, PAGE_SIZE - PVNET_HDR_LEN);

	if (!pvnet_rx_skb_start(rxq, &rs, page_address(first) + PVNET_HDR_LEN,
				chunk, first, PVNET_HDR_LEN, PAGE_SIZE, &used)) {
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
		     PVNET_MRG_ALIGN);

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
		u64_stats_update_end(&rxq->stats.syncp);
	}

	if (done < budget)
		pvnet_vq_napi_complete(napi, vq, done);

	return done;
}

/* Free the rx buffers still owned by a reset device. */
void pvnet_rx_free_unused(struct pvnet_rxq *rxq)
{
	void *buf;

	while ((buf = virtqueue_detach_unused_buf(rxq->vq)))
		pvnet_rx_free_buf(rxq, buf);
}
