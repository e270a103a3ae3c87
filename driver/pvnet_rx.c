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
#include "pvnet_compat.h"

/* Mergeable buffer sizes are multiples of this (token encoding). */
#define PVNET_MRG_ALIGN		256
/* Token bits: (truesize / PVNET_MRG_ALIGN - 1), and the tailroom flag. */
#define PVNET_MRG_SIZE_MASK	0x0fUL
#define PVNET_MRG_ROOM		0x10UL
/* XDP_TX frames collected in one poll before they are sent together. */
#define PVNET_XDP_TX_BULK	16
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
	u64 xdp_packets;
	u64 xdp_drops;
	u64 xdp_tx;
	u64 xdp_tx_drops;
	u64 xdp_redirects;
	u64 xdp_aborted;
	/* The program for this poll (NULL: none attached). */
	struct bpf_prog *prog;
	bool xdp_flush;			/* xdp_do_flush() needed */
	unsigned int n_tx;
	struct xdp_frame *tx[PVNET_XDP_TX_BULK];
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

void pvnet_rx_vq_done(struct virtqueue *vq)
{
	struct pvnet_priv *priv = vq->vdev->priv;

	pvnet_vq_napi_schedule(&priv->rxq[pvnet_rxq_index(vq)].napi, vq);
}

/*
 * Mergeable tokens: buffer address | (truesize / PVNET_MRG_ALIGN - 1),
 * plus PVNET_MRG_ROOM when the buffer was posted with XDP tailroom.
 */
static void *pvnet_mrg_token(void *buf, unsigned int truesize, bool room)
{
	return (void *)((unsigned long)buf |
			(truesize / PVNET_MRG_ALIGN - 1) |
			(room ? PVNET_MRG_ROOM : 0));
}

static void *pvnet_mrg_buf(void *token)
{
	return (void *)((unsigned long)token & ~(PVNET_MRG_ALIGN - 1UL));
}

static unsigned int pvnet_mrg_truesize(void *token)
{
	return (((unsigned long)token & PVNET_MRG_SIZE_MASK) + 1) *
	       PVNET_MRG_ALIGN;
}

static bool pvnet_mrg_has_room(void *token)
{
	return (unsigned long)token & PVNET_MRG_ROOM;
}

/* Bytes the device may have written into the buffer of @token. */
static unsigned int pvnet_mrg_capacity(void *token)
{
	return pvnet_mrg_truesize(token) - PVNET_RX_HEADROOM -
	       (pvnet_mrg_has_room(token) ? PVNET_XDP_TAILROOM : 0);
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
		       (virtio_has_feature(vdev, PVNET_F_GUEST_USO4) ||
			virtio_has_feature(vdev, PVNET_F_GUEST_USO6));
	}
}

/* The packet's virtio-net header at @src, without hash if none came. */
static void pvnet_rx_hdr(const struct pvnet_priv *priv,
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
static void pvnet_rx_deliver(struct pvnet_rxq *rxq, struct sk_buff *skb,
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

/* Give back the @left remaining buffers of a packet from the used ring. */
static void pvnet_rx_mrg_discard(struct pvnet_rxq *rxq, unsigned int left,
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

/* A fresh page-sized rx buffer (from the pool when there is one). */
static void *pvnet_rx_alloc_page_buf(struct pvnet_rxq *rxq)
{
	unsigned int offset;
	struct page *page;

	if (rxq->pool) {
		page = pvnet_page_pool_alloc_frag(rxq->pool, &offset, PAGE_SIZE,
						  GFP_ATOMIC | __GFP_NOWARN);
		return page ? page_address(page) + offset : NULL;
	}
	page = alloc_page(GFP_ATOMIC | __GFP_NOWARN);
	return page ? page_address(page) : NULL;
}

/*
 * Copy a packet's first buffer (@len bytes) into a fresh page laid out for
 * XDP: headroom, then the header and data, then tailroom.  Consumes @buf.
 * Returns the new buffer (truesize PAGE_SIZE), or NULL when allocation
 * failed or @len does not fit.
 */
static void *pvnet_xdp_copy_first(struct pvnet_rxq *rxq, void *buf,
				  unsigned int len)
{
	void *nbuf = NULL;

	if (len <= PVNET_XDP_PAGE_ROOM) {
		nbuf = pvnet_rx_alloc_page_buf(rxq);
		if (nbuf)
			memcpy(nbuf + PVNET_RX_HEADROOM,
			       buf + PVNET_RX_HEADROOM, len);
	}
	pvnet_mrg_put(rxq, buf, true);
	return nbuf;
}

/*
 * For a program that takes frags, the first buffer of a packet, posted
 * without XDP's tailroom, goes into a fresh page laid out for XDP as far as
 * it fits there; the *@rest bytes that do not fit stay in @buf, which then
 * keeps its reference for the frag they become.  Returns the new buffer,
 * or NULL (@buf given back) when no page could be had.
 */
static void *pvnet_xdp_split_first(struct pvnet_rxq *rxq, void *buf,
				   unsigned int len, unsigned int *rest)
{
	unsigned int copy = min_t(unsigned int, len, PVNET_XDP_PAGE_ROOM);
	void *nbuf = pvnet_rx_alloc_page_buf(rxq);

	*rest = 0;
	if (unlikely(!nbuf)) {
		pvnet_mrg_put(rxq, buf, true);
		return NULL;
	}
	memcpy(nbuf + PVNET_RX_HEADROOM, buf + PVNET_RX_HEADROOM, copy);
	if (len > copy)
		*rest = len - copy;
	else
		pvnet_mrg_put(rxq, buf, true);
	return nbuf;
}

/*
 * Copy a whole packet into one such page: a frame spread over several
 * buffers for a program that takes no frags, or in buffers posted before
 * the program was attached.  Consumes the packet's buffers.  Returns the
 * new buffer (*@len updated) or NULL if the frame does not fit.
 */
static void *pvnet_xdp_linearize(struct pvnet_rxq *rxq, void *buf,
				 unsigned int *len, u16 num_buffers,
				 struct pvnet_rx_batch *batch)
{
	unsigned int max = PVNET_XDP_PAGE_ROOM;
	unsigned int total = *len, blen, i;
	void *nbuf, *token;

	nbuf = pvnet_xdp_copy_first(rxq, buf, total);

	for (i = 1; i < num_buffers; i++) {
		token = virtqueue_get_buf(rxq->vq, &blen);
		if (unlikely(!token)) {
			batch->errors++;
			total = max + 1;
			break;
		}
		batch->merged++;
		if (unlikely(blen > pvnet_mrg_capacity(token))) {
			batch->errors++;
			total = max + 1;
		} else if (nbuf && total + blen <= max) {
			memcpy(nbuf + PVNET_RX_HEADROOM + total,
			       pvnet_mrg_buf(token) + PVNET_RX_HEADROOM, blen);
		}
		total += blen;
		pvnet_mrg_put(rxq, pvnet_mrg_buf(token), true);
	}

	if (nbuf && total <= max) {
		*len = total;
		return nbuf;
	}
	if (nbuf)
		pvnet_mrg_put(rxq, nbuf, true);
	return NULL;
}

/* An xdp_buff with its packet's header, for the XDP metadata kfuncs. */
struct pvnet_xdp_buff {
	struct xdp_buff xdp;
	const struct virtio_net_hdr_v1_hash *hdr;
};

#if PVNET_XDP_RX_HASH
static const enum xdp_rss_hash_type pvnet_xdp_rss_types[] = {
	[VIRTIO_NET_HASH_REPORT_NONE]		= XDP_RSS_TYPE_NONE,
	[VIRTIO_NET_HASH_REPORT_IPv4]		= XDP_RSS_TYPE_L3_IPV4,
	[VIRTIO_NET_HASH_REPORT_TCPv4]		= XDP_RSS_TYPE_L4_IPV4_TCP,
	[VIRTIO_NET_HASH_REPORT_UDPv4]		= XDP_RSS_TYPE_L4_IPV4_UDP,
	[VIRTIO_NET_HASH_REPORT_IPv6]		= XDP_RSS_TYPE_L3_IPV6,
	[VIRTIO_NET_HASH_REPORT_TCPv6]		= XDP_RSS_TYPE_L4_IPV6_TCP,
	[VIRTIO_NET_HASH_REPORT_UDPv6]		= XDP_RSS_TYPE_L4_IPV6_UDP,
	[VIRTIO_NET_HASH_REPORT_IPv6_EX]	= XDP_RSS_TYPE_L3_IPV6_EX,
	[VIRTIO_NET_HASH_REPORT_TCPv6_EX]	= XDP_RSS_TYPE_L4_IPV6_TCP_EX,
	[VIRTIO_NET_HASH_REPORT_UDPv6_EX]	= XDP_RSS_TYPE_L4_IPV6_UDP_EX,
};

/* bpf_xdp_metadata_rx_hash(): the hash the device reported, if any. */
static int pvnet_xdp_rx_hash(const struct xdp_md *ctx, u32 *hash,
			     enum xdp_rss_hash_type *rss_type)
{
	/* The program runs on &pvnet_xdp_buff.xdp (pvnet_rx_mrg_xdp()). */
	const struct pvnet_xdp_buff *pxdp = (const void *)ctx;
	u16 report = le16_to_cpu(pxdp->hdr->hash_report);

	BUILD_BUG_ON(offsetof(struct pvnet_xdp_buff, xdp) != 0);
	if (report == VIRTIO_NET_HASH_REPORT_NONE ||
	    report >= ARRAY_SIZE(pvnet_xdp_rss_types))
		return -ENODATA;
	*hash = pvnet_hdr_hash_value(pxdp->hdr);
	*rss_type = pvnet_xdp_rss_types[report];
	return 0;
}

static const struct xdp_metadata_ops pvnet_xdp_metadata_ops = {
	.xmo_rx_hash = pvnet_xdp_rx_hash,
};
#endif

/* Offer the XDP metadata kfuncs the kernel and the device allow. */
void pvnet_rx_init_xdp_metadata(struct pvnet_priv *priv)
{
#if PVNET_XDP_RX_HASH
	if (priv->hash_types)
		priv->dev->xdp_metadata_ops = &pvnet_xdp_metadata_ops;
#endif
}

#if PVNET_XDP_FRAGS
/*
 * Attach the packet's other @n buffers to @xdp as frags (their shared
 * info lives in the first buffer's tailroom), after @lead_len bytes at
 * @lead left over from the first buffer (pvnet_xdp_split_first(), whose
 * buffer has @lead_truesize); their truesizes go to @truesize.  False if
 * the packet must be dropped: every buffer has then been taken off the
 * ring, those not in the frags already given back.
 */
static bool pvnet_xdp_add_frags(struct pvnet_rxq *rxq, struct xdp_buff *xdp,
				void *lead, unsigned int lead_len,
				unsigned int lead_truesize, unsigned int n,
				unsigned int *truesize,
				struct pvnet_rx_batch *batch)
{
	struct skb_shared_info *sinfo = xdp_get_shared_info_from_buff(xdp);
	unsigned int i, len;
	void *token, *fbuf;
	struct page *page;
	bool ok = true;

	sinfo->nr_frags = 0;
	sinfo->xdp_frags_size = 0;
	xdp_buff_set_frags_flag(xdp);

	if (lead_len) {
		page = virt_to_head_page(lead);
		truesize[sinfo->nr_frags] = lead_truesize;
		skb_frag_fill_page_desc(&sinfo->frags[sinfo->nr_frags++], page,
					lead - page_address(page), lead_len);
		sinfo->xdp_frags_size += lead_len;
	}

	for (i = 0; i < n; i++) {
		token = virtqueue_get_buf(rxq->vq, &len);
		if (unlikely(!token)) {
			batch->errors++;
			return false;
		}
		batch->merged++;
		fbuf = pvnet_mrg_buf(token);
		if (unlikely(len > pvnet_mrg_capacity(token))) {
			batch->errors++;
			ok = false;
		} else if (unlikely(sinfo->nr_frags == MAX_SKB_FRAGS)) {
			batch->drops++;
			ok = false;
		}
		if (!ok || !len) {
			pvnet_mrg_put(rxq, fbuf, true);
			continue;
		}
		page = virt_to_head_page(fbuf);
		truesize[sinfo->nr_frags] = pvnet_mrg_truesize(token);
		skb_frag_fill_page_desc(&sinfo->frags[sinfo->nr_frags++], page,
					fbuf - page_address(page) +
					PVNET_RX_HEADROOM, len);
		sinfo->xdp_frags_size += len;
	}
	return ok;
}

static unsigned int pvnet_xdp_nr_frags(struct xdp_buff *xdp)
{
	return xdp_buff_has_frags(xdp) ?
	       xdp_get_shared_info_from_buff(xdp)->nr_frags : 0;
}
#else
static bool pvnet_xdp_add_frags(struct pvnet_rxq *rxq, struct xdp_buff *xdp,
				void *lead, unsigned int lead_len,
				unsigned int lead_truesize, unsigned int n,
				unsigned int *truesize,
				struct pvnet_rx_batch *batch)
{
	/* Not reached: without frags support every frame is linearized. */
	if (lead_len)
		pvnet_mrg_put(rxq, lead, true);
	pvnet_rx_mrg_discard(rxq, n, batch);
	return false;
}

static unsigned int pvnet_xdp_nr_frags(struct xdp_buff *xdp)
{
	return 0;
}
#endif

/* Give back the buffers of a frame XDP did not pass on. */
static void pvnet_xdp_put_buff(struct pvnet_rxq *rxq, struct xdp_buff *xdp,
			       void *buf)
{
	unsigned int i, nr = pvnet_xdp_nr_frags(xdp);
	struct skb_shared_info *sinfo = xdp_get_shared_info_from_buff(xdp);

	for (i = 0; i < nr; i++)
		pvnet_mrg_put(rxq, skb_frag_address(&sinfo->frags[i]), true);
	pvnet_mrg_put(rxq, buf, true);
}

/*
 * XDP_PASS: an skb from what the program left in @xdp (its head, maybe
 * moved or trimmed, and its frags), with the device's header.
 */
static void pvnet_xdp_pass(struct pvnet_rxq *rxq, struct xdp_buff *xdp,
			   void *buf, unsigned int truesize,
			   const unsigned int *frag_truesize,
			   struct virtio_net_hdr_v1_hash *hash_hdr,
			   void *orig_data, struct pvnet_rx_batch *batch)
{
	struct virtio_net_hdr_v1 *hdr = &hash_hdr->hdr;
	struct skb_shared_info *sinfo = xdp_get_shared_info_from_buff(xdp);
	unsigned int i, nr = pvnet_xdp_nr_frags(xdp);
	unsigned int len = xdp->data_end - xdp->data;
	struct page *page = virt_to_head_page(buf);
	struct pvnet_rx_skb rs = {};
	bool used = false;

	/* A partial checksum's start is relative to the frame's start. */
	if (hdr->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
		hdr->csum_start =
			cpu_to_virtio16(rxq->priv->vdev,
					virtio16_to_cpu(rxq->priv->vdev,
							hdr->csum_start) +
					(orig_data - xdp->data));

	if (!pvnet_rx_skb_start(rxq, &rs, xdp->data, len, page,
				xdp->data - page_address(page), truesize,
				&used))
		batch->drops++;

	/* The frags' descriptions live in @buf: read them before it goes. */
	for (i = 0; i < nr; i++) {
		skb_frag_t *frag = &sinfo->frags[i];

		if (rs.head &&
		    unlikely(!pvnet_rx_skb_add(rxq, &rs, skb_frag_page(frag),
					       skb_frag_off(frag),
					       skb_frag_size(frag),
					       frag_truesize[i]))) {
			batch->drops++;
			dev_kfree_skb_any(rs.head);
			rs.head = NULL;
		}
		if (!rs.head)
			pvnet_mrg_put(rxq, skb_frag_address(frag), true);
	}
	if (!used)
		pvnet_mrg_put(rxq, buf, true);
	if (rs.head)
		pvnet_rx_deliver(rxq, rs.head, hash_hdr, batch);
}

/* Send the XDP_TX frames collected in this poll. */
static void pvnet_xdp_tx_flush(struct pvnet_rxq *rxq,
			       struct pvnet_rx_batch *batch)
{
	unsigned int i, sent;

	sent = pvnet_xdp_xmit_frames(rxq->priv, batch->tx, batch->n_tx, true);
	for (i = sent; i < batch->n_tx; i++)
		xdp_return_frame_rx_napi(batch->tx[i]);
	batch->xdp_tx += sent;
	batch->xdp_tx_drops += batch->n_tx - sent;
	batch->n_tx = 0;
}

/*
 * Run the XDP program on a packet in mergeable buffers (header copied to
 * @hdr, first buffer @token with @len bytes).  Frames reach the program
 * with PVNET_RX_HEADROOM in front and PVNET_XDP_TAILROOM behind: buffers
 * posted without that room, and multi-buffer frames for a program that
 * does not take frags, are copied into one page first (for a program that
 * takes frags, only the first buffer, as far as it fits).
 */
static void pvnet_rx_mrg_xdp(struct pvnet_rxq *rxq, void *token,
			     unsigned int len,
			     struct virtio_net_hdr_v1_hash *hdr,
			     u16 num_buffers, struct pvnet_rx_batch *batch)
{
	unsigned int hdr_len = rxq->priv->hdr_len;
	unsigned int frag_truesize[MAX_SKB_FRAGS];
	unsigned int truesize = pvnet_mrg_truesize(token);
	const unsigned int first_truesize = truesize;
	struct bpf_prog *prog = batch->prog;
	struct net_device *dev = rxq->priv->dev;
	void *buf = pvnet_mrg_buf(token);
	void *const first = buf;
	unsigned int rest = 0;
	struct pvnet_xdp_buff pxdp = { .hdr = hdr };
	struct xdp_buff *xdp = &pxdp.xdp;
	struct xdp_frame *xdpf;
	void *orig_data;
	u32 act;

	/* Left from before the guest offloads were turned off for XDP. */
	if (unlikely(hdr->hdr.gso_type != VIRTIO_NET_HDR_GSO_NONE)) {
		batch->drops++;
		pvnet_mrg_put(rxq, buf, true);
		pvnet_rx_mrg_discard(rxq, num_buffers - 1, batch);
		return;
	}

	if (pvnet_prog_has_frags(prog)) {
		/*
		 * The other buffers become frags as they are; only the first
		 * needs the tailroom, for the frags' shared info.
		 */
		if (!pvnet_mrg_has_room(token)) {
			buf = pvnet_xdp_split_first(rxq, buf, len, &rest);
			if (!buf) {
				batch->drops++;
				pvnet_rx_mrg_discard(rxq, num_buffers - 1,
						     batch);
				return;
			}
			len -= rest;
			truesize = PAGE_SIZE;
		}
	} else if (!pvnet_mrg_has_room(token) || num_buffers > 1) {
		buf = pvnet_xdp_linearize(rxq, buf, &len, num_buffers, batch);
		if (!buf) {
			batch->drops++;
			return;
		}
		truesize = PAGE_SIZE;
		num_buffers = 1;
	}

	pvnet_xdp_prepare(xdp, truesize, &rxq->xdp_rxq, buf,
			  PVNET_RX_HEADROOM + hdr_len, len - hdr_len);
	if ((rest || num_buffers > 1) &&
	    !pvnet_xdp_add_frags(rxq, xdp, first + PVNET_RX_HEADROOM + len,
				 rest, first_truesize, num_buffers - 1,
				 frag_truesize, batch)) {
		pvnet_xdp_put_buff(rxq, xdp, buf);
		return;
	}

	batch->xdp_packets++;
	orig_data = xdp->data;
	act = pvnet_run_xdp(prog, xdp);
	switch (act) {
	case XDP_PASS:
		pvnet_xdp_pass(rxq, xdp, buf, truesize, frag_truesize, hdr,
			       orig_data, batch);
		return;
	case XDP_TX:
		xdpf = xdp_convert_buff_to_frame(xdp);
		if (unlikely(!xdpf))
			break;
		batch->tx[batch->n_tx++] = xdpf;
		if (batch->n_tx == PVNET_XDP_TX_BULK)
			pvnet_xdp_tx_flush(rxq, batch);
		return;
	case XDP_REDIRECT:
		if (unlikely(xdp_do_redirect(dev, xdp, prog)))
			break;
		batch->xdp_redirects++;
		batch->xdp_flush = true;
		return;
	case XDP_DROP:
		batch->xdp_drops++;
		pvnet_xdp_put_buff(rxq, xdp, buf);
		return;
	case XDP_ABORTED:
		break;
	default:
		bpf_warn_invalid_xdp_action(dev, prog, act);
		break;
	}

	/* XDP_ABORTED, an unknown action, or an action that failed. */
	trace_xdp_exception(dev, prog, act);
	batch->xdp_aborted++;
	pvnet_xdp_put_buff(rxq, xdp, buf);
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

	if (unlikely(len < priv->hdr_len || len > pvnet_mrg_capacity(token))) {
		net_dbg_ratelimited("%s: bad rx length %u\n",
				    priv->dev->name, len);
		batch->errors++;
		pvnet_mrg_put(rxq, buf, true);
		return;
	}

	pvnet_rx_hdr(priv, &hdr, buf + PVNET_RX_HEADROOM);
	num_buffers = virtio16_to_cpu(priv->vdev, hdr.hdr.num_buffers);
	total = len - priv->hdr_len;

	if (unlikely(!num_buffers)) {
		batch->errors++;
		pvnet_mrg_put(rxq, buf, true);
		return;
	}

	if (batch->prog) {
		pvnet_rx_mrg_xdp(rxq, token, len, &hdr, num_buffers, batch);
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
