// SPDX-License-Identifier: GPL-2.0
/*
 * pvnet: XDP.  Program attach (ndo_bpf), running the program on received
 * packets and what follows from its verdict (XDP_PASS into an skb,
 * XDP_TX, redirects), and XDP frame transmit (XDP_TX, ndo_xdp_xmit).  The
 * rx poll (pvnet_rx.c) calls in here; this file calls down into the rx
 * buffers (pvnet_rxbuf.c), the tx queue primitives (pvnet_tx.c) and the
 * reconfiguration (pvnet_reconfig.c).
 *
 * XDP runs on mergeable rx buffers only.  While a program is attached:
 * - the guest offloads are off (CTRL_GUEST_OFFLOADS), so that the program
 *   sees whole frames with complete checksums; LRO and rx-gro-hw show off;
 * - rx buffers keep PVNET_XDP_TAILROOM free at their end (frags' shared
 *   info, bpf_xdp_adjust_tail growth) and, for a program without frags
 *   support, hold a whole frame, which bounds the MTU by a page;
 * - XDP frames go out on XDP-only queue pairs, one per CPU, when the
 *   device has that many pairs beyond those the stack uses, else on the
 *   stack's queues under their tx lock.
 *
 * ndo_xdp_xmit works with or without a program attached to this device:
 * frames redirected here use the same queues as XDP_TX (in-tree
 * virtio_net refuses them with -ENXIO unless a program is attached).
 */

#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/mm.h>
#include <linux/netdevice.h>
#include <linux/rtnetlink.h>
#include <linux/skbuff.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <net/xdp.h>

#include "pvnet.h"
#include "pvnet_compat.h"
#include "pvnet_rx.h"

/*
 * Largest MTU whose frames fit one rx buffer with XDP's head and tail room
 * (and a header of @hdr_len bytes).
 */
#define PVNET_XDP_MAX_MTU(hdr_len) \
	(PVNET_XDP_PAGE_ROOM - (hdr_len) - ETH_HLEN - VLAN_HLEN)

/* Can @prog (NULL: none) run with @mtu? */
int pvnet_xdp_check_mtu(struct pvnet_priv *priv, const struct bpf_prog *prog,
			unsigned int mtu, struct netlink_ext_ack *extack)
{
	if (!prog || mtu <= PVNET_XDP_MAX_MTU(priv->hdr_len) ||
	    pvnet_prog_has_frags(prog))
		return 0;

	if (PVNET_XDP_FRAGS)
		pvnet_config_err(priv->dev, extack,
				 "MTU too large for an XDP program without frags support: load it as xdp.frags (BPF_F_XDP_HAS_FRAGS) or lower the MTU");
	else
		pvnet_config_err(priv->dev, extack,
				 "MTU too large for XDP on this kernel (no multi-buffer XDP before Linux 5.18): lower the MTU");
	netdev_info(priv->dev, "XDP without frags needs an MTU of at most %lu\n",
		    (unsigned long)PVNET_XDP_MAX_MTU(priv->hdr_len));
	return -EINVAL;
}

/* Whether @prog can be attached at all; sets the extack if not. */
static int pvnet_xdp_check(struct pvnet_priv *priv, struct bpf_prog *prog,
			   struct netlink_ext_ack *extack)
{
	struct virtio_device *vdev = priv->vdev;

	if (priv->rx_mode != PVNET_RX_MERGEABLE) {
		pvnet_config_err(priv->dev, extack,
				 "XDP needs mergeable rx buffers: the device did not offer VIRTIO_NET_F_MRG_RXBUF");
		return -EOPNOTSUPP;
	}
	if (priv->guest_offloads_capable &&
	    !virtio_has_feature(vdev, VIRTIO_NET_F_CTRL_GUEST_OFFLOADS)) {
		pvnet_config_err(priv->dev, extack,
				 "XDP needs the guest offloads (LRO, rx checksum) off, and the device cannot turn them off (no VIRTIO_NET_F_CTRL_GUEST_OFFLOADS)");
		return -EOPNOTSUPP;
	}
	return pvnet_xdp_check_mtu(priv, prog, priv->dev->mtu, extack);
}

/*
 * Rx buffers for @prog: tailroom while any program is attached, and a
 * whole frame per buffer for one without frags.  New buffers follow at
 * once; each buffer's token says how it was posted.
 */
static void pvnet_xdp_set_rx_layout(struct pvnet_priv *priv,
				    const struct bpf_prog *prog)
{
	WRITE_ONCE(priv->rx_tailroom,
		   prog ? PVNET_XDP_TAILROOM : 0);
	WRITE_ONCE(priv->rx_linear, prog && !pvnet_prog_has_frags(prog));
}

/*
 * Attach, replace or detach.  Replacing one program by another is a
 * pointer swap: the rx poll reads the pointer once per poll under RCU, and
 * the old program is freed only after a grace period (bpf_prog_put).
 * Going from none to one or back changes the buffer layout, the guest
 * offloads and the queue pairs, with the data path paused.
 */
static int pvnet_xdp_set(struct pvnet_priv *priv, struct bpf_prog *prog,
			 struct netlink_ext_ack *extack)
{
	struct bpf_prog *old = rtnl_dereference(priv->xdp_prog);
	struct net_device *dev = priv->dev;
	bool was_active;
	int err;

	if (prog) {
		err = pvnet_xdp_check(priv, prog, extack);
		if (err)
			return err;
	}

	if (!!old == !!prog) {
		rcu_assign_pointer(priv->xdp_prog, prog);
		pvnet_xdp_set_rx_layout(priv, prog);
		if (old)
			bpf_prog_put(old);
		return 0;
	}

	if (!priv->vqs_ready)
		return -ENODEV;

	was_active = pvnet_pause(priv);

	rcu_assign_pointer(priv->xdp_prog, prog);
	/* Guest offloads follow the program (none while one is attached). */
	err = pvnet_sync_guest_offloads(priv, dev->features);
	if (err) {
		pvnet_config_err(dev, extack,
				 "the device refused to change its guest offloads");
		goto err_undo;
	}
	err = pvnet_apply_pairs(priv, priv->curr_queue_pairs,
				pvnet_xdp_pairs_for(priv,
						    priv->curr_queue_pairs));
	if (err) {
		pvnet_config_err(dev, extack,
				 "the device refused the XDP queue pairs");
		goto err_undo;
	}
	pvnet_xdp_set_rx_layout(priv, prog);

	pvnet_resume(priv, was_active);
	pvnet_update_affinity(priv);
	/* LRO and rx-gro-hw go off (or back to what was asked for). */
	netdev_update_features(dev);
	if (old)
		bpf_prog_put(old);
	netdev_info(dev, "XDP program %s, %u XDP tx queue pairs\n",
		    prog ? "attached" : "detached", priv->xdp_queue_pairs);
	return 0;

err_undo:
	/* Sends nothing if the offloads never changed. */
	rcu_assign_pointer(priv->xdp_prog, old);
	if (pvnet_sync_guest_offloads(priv, dev->features))
		netdev_err(dev, "could not restore the guest offloads\n");
	pvnet_resume(priv, was_active);
	return err;
}

int pvnet_ndo_bpf(struct net_device *dev, struct netdev_bpf *bpf)
{
	struct pvnet_priv *priv = netdev_priv(dev);

	switch (bpf->command) {
	case XDP_SETUP_PROG:
		return pvnet_xdp_set(priv, bpf->prog, bpf->extack);
	default:
		return -EINVAL;
	}
}

/*
 * Frames redirected to this device (devmap, or XDP_REDIRECT by ifindex),
 * from NAPI context of the device they came from.
 */
int pvnet_ndo_xdp_xmit(struct net_device *dev, int n,
		       struct xdp_frame **frames, u32 flags)
{
	struct pvnet_priv *priv = netdev_priv(dev);
	int sent;

	if (unlikely(flags & ~XDP_XMIT_FLAGS_MASK))
		return -EINVAL;
	/* pvnet_down() waits for a grace period after clearing ->active. */
	if (unlikely(!READ_ONCE(priv->active)))
		return -ENETDOWN;

	sent = pvnet_xdp_xmit_frames(priv, frames, n,
				     flags & XDP_XMIT_FLUSH);
	return pvnet_xdp_xmit_ret(frames, sent, n);
}

/* A fresh page-sized rx buffer (from the pool when there is one). */
static void *pvnet_rx_alloc_page_buf(struct pvnet_rxq *rxq)
{
	unsigned int offset;
	struct page *page;

	if (rxq->pool) {
		page = pvnet_page_pool_alloc_frag(rxq->pool, &offset, PAGE_SIZE,
						  GFP_ATOMIC | __GFP_NOWARN);
		if (!page)
			return NULL;
		/* Counted like rx buffers, for the recycled counter. */
		if (!offset)
			rxq->pool_pages++;
		return page_address(page) + offset;
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
	/* The program runs on &pvnet_xdp_buff.xdp (pvnet_xdp_rx_mrg()). */
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
void pvnet_xdp_init_metadata(struct pvnet_priv *priv)
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
 * Metadata the program put in front of the frame (bpf_xdp_adjust_meta(),
 * at most 32 bytes) goes in front of the skb's data, where tc programs
 * find it (__sk_buff->data_meta).  The skb's headroom always has room for
 * it (NET_SKB_PAD).
 */
static void pvnet_xdp_pass_meta(struct sk_buff *skb, const struct xdp_buff *xdp)
{
	unsigned int metasize = xdp->data - xdp->data_meta;

	if (!metasize || WARN_ON_ONCE(skb_headroom(skb) < metasize))
		return;
	memcpy(skb->data - metasize, xdp->data_meta, metasize);
	skb_metadata_set(skb, metasize);
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
	else
		pvnet_xdp_pass_meta(rs.head, xdp);

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
void pvnet_xdp_tx_flush(struct pvnet_rxq *rxq, struct pvnet_rx_batch *batch)
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
void pvnet_xdp_rx_mrg(struct pvnet_rxq *rxq, void *token, unsigned int len,
		      struct virtio_net_hdr_v1_hash *hdr, u16 num_buffers,
		      struct pvnet_rx_batch *batch)
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
 * On a tx queue the stack also uses, XDP frames may hold at most half of
 * the ring, and never the last PVNET_TX_STOP_THRESH descriptors: the
 * stack's queue is awake only while a maximal skb fits, so an XDP flood
 * (a reflector, a redirecting filter) can neither make the stack drop an
 * skb nor take its whole share of the device.  Frames beyond the share
 * are refused and counted as xdp_tx_drops, as for a full ring.
 */
#define PVNET_XDP_SHARE(vq)	(virtqueue_get_vring_size(vq) / 2)

/*
 * Queue one XDP frame: the virtio-net header (all zero: no offloads) goes
 * into the frame's headroom, the data and any fragments follow.  @shared:
 * the stack sends on this queue too (PVNET_XDP_SHARE applies).
 */
static int pvnet_tx_add_xdp(struct pvnet_txq *txq, struct xdp_frame *xdpf,
			    bool shared)
{
	unsigned int i, nr_frags = 0, hdr_len = txq->priv->hdr_len;
	struct skb_shared_info *sinfo = NULL;
	struct scatterlist *sg = txq->sg;
	int err;

	if (pvnet_xdp_frame_has_frags(xdpf)) {
		sinfo = xdp_get_shared_info_from_frame(xdpf);
		nr_frags = sinfo->nr_frags;
	}
	if (unlikely(xdpf->headroom < hdr_len ||
		     nr_frags + 1 > ARRAY_SIZE(txq->sg)))
		return -EOVERFLOW;
	if (unlikely(txq->vq->num_free < nr_frags + 1 +
		     (shared ? PVNET_TX_STOP_THRESH : 0)))
		return -ENOSPC;
	if (shared && txq->xdp_inflight >= PVNET_XDP_SHARE(txq->vq))
		return -ENOBUFS;

	xdpf->data -= hdr_len;
	xdpf->len += hdr_len;
	xdpf->headroom -= hdr_len;
	memset(xdpf->data, 0, hdr_len);

	sg_init_table(sg, nr_frags + 1);
	sg_set_buf(&sg[0], xdpf->data, xdpf->len);
	for (i = 0; i < nr_frags; i++) {
		skb_frag_t *frag = &sinfo->frags[i];

		sg_set_page(&sg[i + 1], skb_frag_page(frag),
			    skb_frag_size(frag), skb_frag_off(frag));
	}

	err = virtqueue_add_outbuf(txq->vq, sg, nr_frags + 1,
				   (void *)((unsigned long)xdpf | PVNET_TX_XDP),
				   GFP_ATOMIC);
	if (!err)
		txq->xdp_inflight++;
	return err;
}

/*
 * Send XDP frames (XDP_TX or redirected here) on this CPU's XDP tx queue:
 * its own pair when there are XDP pairs, else one of the stack's queues.
 * Either way under that queue's tx lock, which also serializes with the
 * stack's xmit and the tx NAPI.  Returns how many frames were queued; the
 * caller owns the rest.  Called with BH disabled.
 */
int pvnet_xdp_xmit_frames(struct pvnet_priv *priv, struct xdp_frame **frames,
			  int n, bool kick)
{
	unsigned int cpu = smp_processor_id();
	struct netdev_queue *ntxq;
	struct pvnet_txq *txq;
	unsigned int q;
	int sent = 0;

	if (priv->xdp_queue_pairs)
		q = priv->curr_queue_pairs + cpu % priv->xdp_queue_pairs;
	else
		q = cpu % priv->curr_queue_pairs;
	txq = &priv->txq[q];
	ntxq = netdev_get_tx_queue(priv->dev, q);

	__netif_tx_lock(ntxq, cpu);
	/* XDP-only queues are reaped here, and nowhere else while in use. */
	pvnet_tx_free_old(txq, ntxq, 0);
	while (sent < n &&
	       !pvnet_tx_add_xdp(txq, frames[sent], !priv->xdp_queue_pairs))
		sent++;

	u64_stats_update_begin(&txq->stats.syncp);
	u64_stats_add(&txq->stats.xdp_tx, sent);
	u64_stats_add(&txq->stats.xdp_tx_drops, n - sent);
	u64_stats_update_end(&txq->stats.syncp);

	if (kick && sent)
		pvnet_tx_kick(txq);
	__netif_tx_unlock(ntxq);
	return sent;
}
