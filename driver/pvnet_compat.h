/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pvnet: kernel API compatibility helpers.
 *
 * Every call whose signature or name differs between the kernels pvnet
 * supports (Debian's 5.10, 6.1, 6.12 and 7.x) goes through this file:
 * where upstream renamed an API, the new name is backfilled here for
 * older kernels, so the driver body reads like current upstream; where
 * the shape differs, a small pvnet_ helper hides it.  The
 * variant is chosen by compile probes, never by version number: Kbuild
 * compiles each driver/compat/<name>.c against the target headers and
 * the generated pvnet_compat_probed.h defines PVNET_HAVE_<NAME> for the
 * probes that compiled (distribution kernels backport APIs, so a version
 * number does not say which API a kernel has).  pvnet_run_xdp() works
 * around a kernel bug no header shows (see there).
 */
#ifndef _PVNET_COMPAT_H
#define _PVNET_COMPAT_H

#include <linux/etherdevice.h>
#include <linux/ethtool.h>
#include <linux/netdevice.h>
#include <linux/slab.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>

#include "pvnet_compat_probed.h"

#ifdef PVNET_HAVE_PAGE_POOL_HELPERS_H
#include <net/page_pool/helpers.h>
#elif defined(PVNET_HAVE_PAGE_POOL_FRAG)
#include <net/page_pool.h>
#endif

/*
 * netif_napi_add() lost its weight argument in 6.1 (the 3-argument call
 * is upstream's); a function-like macro of the same name is not expanded
 * again inside itself, so this calls the 4-argument function.
 */
#ifndef PVNET_HAVE_NETIF_NAPI_ADD_NO_WEIGHT
#define netif_napi_add(dev, napi, poll) \
	netif_napi_add(dev, napi, poll, NAPI_POLL_WEIGHT)
#endif

/* netif_tx_napi_add(..., weight) became netif_napi_add_tx() in 5.19. */
#ifndef PVNET_HAVE_NETIF_NAPI_ADD_TX
#define netif_napi_add_tx(dev, napi, poll) \
	netif_tx_napi_add(dev, napi, poll, NAPI_POLL_WEIGHT)
#endif

/* virtio_reset_device() appeared in 5.17; older kernels call the op. */
#ifndef PVNET_HAVE_VIRTIO_RESET_DEVICE
static inline void virtio_reset_device(struct virtio_device *vdev)
{
	vdev->config->reset(vdev);
}
#endif

/*
 * From 6.11 config change callbacks also have a driver-level switch, and
 * it is kept in the virtio_device, not in the driver: virtio_net turns it
 * off in probe and on only in ndo_open, so on a device virtio_net had
 * before (loaded first, or sysfs unbind/bind) pvnet would never hear of a
 * link change.  Turn it on; older kernels have no such switch, and their
 * core delivers config changes to every bound driver.
 *
 * Calls the driver's config_changed op if a change is pending: do not
 * hold a lock that op takes.  Process context only.
 */
#ifndef PVNET_HAVE_VIRTIO_CONFIG_DRIVER_ENABLE
static inline void virtio_config_driver_enable(struct virtio_device *vdev)
{
}
#endif

/*
 * virtio_find_vqs() takes one struct virtqueue_info array from 6.11 on,
 * separate callbacks[] and names[] arrays before.  May sleep.
 */
static inline int pvnet_find_vqs(struct virtio_device *vdev, unsigned int nvqs,
				 struct virtqueue *vqs[],
				 vq_callback_t *callbacks[],
				 const char * const names[])
{
#ifdef PVNET_HAVE_VIRTIO_FIND_VQS_INFO
	struct virtqueue_info *info;
	unsigned int i;
	int err;

	info = kcalloc(nvqs, sizeof(*info), GFP_KERNEL);
	if (!info)
		return -ENOMEM;

	for (i = 0; i < nvqs; i++) {
		info[i].name = names[i];
		info[i].callback = callbacks[i];
	}
	err = virtio_find_vqs(vdev, nvqs, vqs, info, NULL);
	kfree(info);
	return err;
#else
	return virtio_find_vqs(vdev, nvqs, vqs, callbacks, names, NULL);
#endif
}

/*
 * dev->dev_addr became const in 5.17; eth_hw_addr_set() appeared in 5.15
 * and was backported to Debian's 5.10.
 */
#ifndef PVNET_HAVE_ETH_HW_ADDR_SET
static inline void eth_hw_addr_set(struct net_device *dev, const u8 *addr)
{
	ether_addr_copy(dev->dev_addr, addr);
}
#endif

/*
 * ethtool_ops::get_ringparam gained the kernel_ethtool_ringparam and
 * extack arguments in 5.17.  PVNET_DEFINE_GET_RINGPARAM(name, impl)
 * defines an op called @name with the right signature that calls
 * impl(dev, ring).
 */
#ifdef PVNET_HAVE_ETHTOOL_GET_RINGPARAM_KERNEL
#define PVNET_DEFINE_GET_RINGPARAM(name, impl)				\
static void name(struct net_device *dev,				\
		 struct ethtool_ringparam *ring,			\
		 struct kernel_ethtool_ringparam *kring,		\
		 struct netlink_ext_ack *extack)			\
{									\
	impl(dev, ring);						\
}
#else
#define PVNET_DEFINE_GET_RINGPARAM(name, impl)				\
static void name(struct net_device *dev,				\
		 struct ethtool_ringparam *ring)			\
{									\
	impl(dev, ring);						\
}
#endif

/*
 * Rx page recycling.  A page_pool is used only where the kernel can hand
 * out pool page fragments and recycle an skb's pool pages when the skb is
 * freed (skb_mark_for_recycle, 5.15 on); elsewhere pvnet_page_pool_create()
 * fails with -EOPNOTSUPP and the caller falls back to plain page frags.
 * The pool does no DMA mapping: the virtio core maps every buffer it is
 * given.
 */
static inline struct page_pool *
pvnet_page_pool_create(struct device *dev, unsigned int size)
{
#ifdef PVNET_HAVE_PAGE_POOL_FRAG
	struct page_pool_params pp = {
		.order		= 0,
		.pool_size	= size,
		.nid		= NUMA_NO_NODE,
		.dev		= dev,
		.dma_dir	= DMA_FROM_DEVICE,
	};

#ifdef PVNET_HAVE_PP_FLAG_PAGE_FRAG
	pp.flags = PP_FLAG_PAGE_FRAG;
#endif
	return page_pool_create(&pp);
#else
	return ERR_PTR(-EOPNOTSUPP);
#endif
}

static inline void pvnet_page_pool_destroy(struct page_pool *pool)
{
#ifdef PVNET_HAVE_PAGE_POOL_FRAG
	page_pool_destroy(pool);
#endif
}

/* A fragment of @size bytes at *@offset in the returned page, or NULL. */
static inline struct page *pvnet_page_pool_alloc_frag(struct page_pool *pool,
						      unsigned int *offset,
						      unsigned int size,
						      gfp_t gfp)
{
#ifdef PVNET_HAVE_PAGE_POOL_FRAG
	return page_pool_alloc_frag(pool, offset, size, gfp);
#else
	return NULL;
#endif
}

/*
 * Give back one fragment reference of a pool page.  @napi: called from
 * the NAPI poll that allocates from @pool (lockless recycling allowed).
 */
static inline void pvnet_page_pool_put(struct page_pool *pool,
				       struct page *page, bool napi)
{
#ifdef PVNET_HAVE_PAGE_POOL_FRAG
	page_pool_put_full_page(pool, page, napi);
#endif
}

/*
 * Pages given back to @pool for reuse so far (its recycle_stats: into the
 * per-CPU cache or the ring), from page_pool_get_stats() where the kernel
 * keeps page_pool stats; false where it does not, and the caller counts
 * reuse itself (pvnet_page_pool_fresh_pages()).
 */
static inline bool pvnet_page_pool_recycled(const struct page_pool *pool,
					    u64 *recycled)
{
#ifdef PVNET_HAVE_PAGE_POOL_STATS
	struct page_pool_stats stats = {};

	page_pool_get_stats(pool, &stats);
	*recycled = stats.recycle_stats.cached + stats.recycle_stats.ring;
	return true;
#else
	return false;
#endif
}

/*
 * Pages @pool took from the page allocator so far (wraps at 2^32): read
 * from the pool itself where the kernel keeps no page_pool stats.
 */
static inline u32 pvnet_page_pool_fresh_pages(const struct page_pool *pool)
{
#ifdef PVNET_HAVE_PAGE_POOL_FRAG
	return pool->pages_state_hold_cnt;
#else
	return 0;
#endif
}

/*
 * Pages @pool has taken from the page allocator and not given back: in its
 * caches, posted to the ring, or held by the stack and XDP frames.
 */
static inline u32 pvnet_page_pool_pages(const struct page_pool *pool)
{
#ifdef PVNET_HAVE_PAGE_POOL_FRAG
	return READ_ONCE(pool->pages_state_hold_cnt) -
	       (u32)atomic_read(&pool->pages_state_release_cnt);
#else
	return 0;
#endif
}

static inline void pvnet_skb_mark_for_recycle(struct sk_buff *skb)
{
#ifdef PVNET_HAVE_PAGE_POOL_FRAG
	skb_mark_for_recycle(skb);
#endif
}

/*
 * Guest USO (VIRTIO_NET_F_GUEST_USO4/6, VIRTIO_NET_HDR_GSO_UDP_L4) where
 * the headers define it and virtio_net_hdr_to_skb() understands it.
 * Elsewhere there is no name for the bits at all: the feature table lists
 * them only where PVNET_GUEST_USO is 1, and the helpers answer "absent",
 * so no code can test or clear another feature by mistake.
 */
#ifdef PVNET_HAVE_VIRTIO_NET_GUEST_USO
#define PVNET_GUEST_USO		1
#define PVNET_GUEST_USO_MASK	(BIT_ULL(VIRTIO_NET_F_GUEST_USO4) | \
				 BIT_ULL(VIRTIO_NET_F_GUEST_USO6))

static inline bool pvnet_has_guest_uso(struct virtio_device *vdev)
{
	return virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_USO4) ||
	       virtio_has_feature(vdev, VIRTIO_NET_F_GUEST_USO6);
}

static inline void pvnet_clear_guest_uso(struct virtio_device *vdev)
{
	__virtio_clear_bit(vdev, VIRTIO_NET_F_GUEST_USO4);
	__virtio_clear_bit(vdev, VIRTIO_NET_F_GUEST_USO6);
}
#else
#define PVNET_GUEST_USO		0
#define PVNET_GUEST_USO_MASK	0ULL

static inline bool pvnet_has_guest_uso(struct virtio_device *vdev)
{
	return false;
}

static inline void pvnet_clear_guest_uso(struct virtio_device *vdev)
{
}
#endif

static inline bool pvnet_gso_is_udp_l4(u8 gso_type)
{
#ifdef PVNET_HAVE_VIRTIO_NET_GUEST_USO
	return gso_type == VIRTIO_NET_HDR_GSO_UDP_L4;
#else
	return false;
#endif
}

/*
 * ethtool_ops::set_ringparam changed with get_ringparam (5.17).
 * PVNET_DEFINE_SET_RINGPARAM(impl) defines impl##_op with the right
 * signature; impl(dev, ring, extack) gets a NULL extack before 5.17.
 */
#ifdef PVNET_HAVE_ETHTOOL_GET_RINGPARAM_KERNEL
#define PVNET_DEFINE_SET_RINGPARAM(impl)				\
static int impl##_op(struct net_device *dev,				\
		     struct ethtool_ringparam *ring,			\
		     struct kernel_ethtool_ringparam *kring,		\
		     struct netlink_ext_ack *extack)			\
{									\
	return impl(dev, ring, extack);					\
}
#else
#define PVNET_DEFINE_SET_RINGPARAM(impl)				\
static int impl##_op(struct net_device *dev,				\
		     struct ethtool_ringparam *ring)			\
{									\
	return impl(dev, ring, NULL);					\
}
#endif

/*
 * ethtool_ops::get/set_coalesce gained kernel_ethtool_coalesce and an
 * extack in 5.15.  PVNET_DEFINE_COALESCE_OP(impl) defines impl##_op;
 * impl(dev, ec, extack) gets a NULL extack before 5.15.
 */
#ifdef PVNET_HAVE_ETHTOOL_COALESCE_KERNEL
#define PVNET_DEFINE_COALESCE_OP(impl)					\
static int impl##_op(struct net_device *dev,				\
		     struct ethtool_coalesce *ec,			\
		     struct kernel_ethtool_coalesce *kec,		\
		     struct netlink_ext_ack *extack)			\
{									\
	return impl(dev, ec, extack);					\
}
#else
#define PVNET_DEFINE_COALESCE_OP(impl)					\
static int impl##_op(struct net_device *dev,				\
		     struct ethtool_coalesce *ec)			\
{									\
	return impl(dev, ec, NULL);					\
}
#endif

/*
 * virtqueue_resize() appeared in 6.0 and took a recycle_done callback
 * from 6.11.  Without it rings keep the size the device gave them.
 */
static inline bool pvnet_can_resize_vq(void)
{
#if defined(PVNET_HAVE_VIRTQUEUE_RESIZE) || defined(PVNET_HAVE_VIRTQUEUE_RESIZE_DONE)
	return true;
#else
	return false;
#endif
}

#ifdef PVNET_HAVE_VIRTQUEUE_RESIZE_DONE
static inline void pvnet_recycle_done(struct virtqueue *vq)
{
}
#endif

static inline int pvnet_virtqueue_resize(struct virtqueue *vq, u32 num,
					 void (*recycle)(struct virtqueue *vq,
							 void *buf))
{
#if defined(PVNET_HAVE_VIRTQUEUE_RESIZE_DONE)
	return virtqueue_resize(vq, num, recycle, pvnet_recycle_done);
#elif defined(PVNET_HAVE_VIRTQUEUE_RESIZE)
	return virtqueue_resize(vq, num, recycle);
#else
	return -EOPNOTSUPP;
#endif
}

/*
 * The reported hash of a virtio_net_hdr_v1_hash: one __le32 hash_value
 * until 6.12, two __le16 halves (hash_value_lo/hi) in 7.x.
 */
static inline u32 pvnet_hdr_hash_value(const struct virtio_net_hdr_v1_hash *h)
{
#ifdef PVNET_HAVE_VIRTIO_NET_HASH_VALUE_SPLIT
	return le16_to_cpu(h->hash_value_lo) |
	       (u32)le16_to_cpu(h->hash_value_hi) << 16;
#else
	return le32_to_cpu(h->hash_value);
#endif
}

static inline void pvnet_hdr_hash_clear(struct virtio_net_hdr_v1_hash *h)
{
#ifdef PVNET_HAVE_VIRTIO_NET_HASH_VALUE_SPLIT
	h->hash_value_lo = 0;
	h->hash_value_hi = 0;
#else
	h->hash_value = 0;
#endif
}

/* Per-queue reset (VIRTIO_F_RING_RESET, bit 40) is defined from 6.0. */
static inline bool pvnet_has_ring_reset(struct virtio_device *vdev)
{
#ifdef VIRTIO_F_RING_RESET
	return virtio_has_feature(vdev, VIRTIO_F_RING_RESET);
#else
	return false;
#endif
}

/* The offloads that make the device merge packets (LRO / rx-gro-hw). */
#define PVNET_GUEST_GSO_MASK	(BIT_ULL(VIRTIO_NET_F_GUEST_TSO4) |	\
				 BIT_ULL(VIRTIO_NET_F_GUEST_TSO6) |	\
				 BIT_ULL(VIRTIO_NET_F_GUEST_ECN) |	\
				 BIT_ULL(VIRTIO_NET_F_GUEST_UFO) |	\
				 PVNET_GUEST_USO_MASK)

/* Everything VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET may switch. */
#define PVNET_GUEST_OFFLOAD_MASK (BIT_ULL(VIRTIO_NET_F_GUEST_CSUM) |	\
				  PVNET_GUEST_GSO_MASK)

/*
 * UDP segmentation offload (VIRTIO_NET_F_HOST_USO, gso_type
 * VIRTIO_NET_HDR_GSO_UDP_L4) is offered only on kernels whose uapi
 * header names it.  Elsewhere the feature table does not list it
 * (PVNET_HOST_USO is 0) and the helpers report USO as absent, so
 * GSO_UDP_L4 is never advertised.
 */
#ifdef PVNET_HAVE_VIRTIO_NET_HOST_USO
#define PVNET_HOST_USO		1

static inline bool pvnet_has_host_uso(struct virtio_device *vdev)
{
	return virtio_has_feature(vdev, VIRTIO_NET_F_HOST_USO);
}

static inline void pvnet_clear_host_uso(struct virtio_device *vdev)
{
	__virtio_clear_bit(vdev, VIRTIO_NET_F_HOST_USO);
}

/* The virtio gso_type for a UDP_L4 GSO skb. */
static inline u8 pvnet_hdr_gso_udp_l4(void)
{
	return VIRTIO_NET_HDR_GSO_UDP_L4;
}
#else
#define PVNET_HOST_USO		0

static inline bool pvnet_has_host_uso(struct virtio_device *vdev)
{
	return false;
}

static inline void pvnet_clear_host_uso(struct virtio_device *vdev)
{
}

static inline u8 pvnet_hdr_gso_udp_l4(void)
{
	return VIRTIO_NET_HDR_GSO_NONE;
}
#endif

/*
 * The netdev netlink queue statistics (struct netdev_stat_ops, 6.10 on).
 * pvnet_ethtool.c implements them when PVNET_CAN_QSTATS is set.
 */
#ifdef PVNET_HAVE_NETDEV_STAT_OPS
#include <net/netdev_queues.h>
#define PVNET_CAN_QSTATS	1
#endif

/*
 * XDP.  <net/xdp.h> must be included explicitly: on 6.12 it holds
 * bpf_prog_run_xdp() and netdevice.h no longer pulls it in.
 */
#include <linux/bpf.h>
#include <linux/bpf_trace.h>
#include <linux/filter.h>
#include <net/xdp.h>

/* bpf_prog_run() replaced the BPF_PROG_RUN() macro in 5.15; 7.x has only the function. */
#ifndef PVNET_HAVE_BPF_PROG_RUN
#define bpf_prog_run(prog, ctx)	BPF_PROG_RUN(prog, ctx)
#endif

static inline int pvnet_xdp_rxq_reg(struct xdp_rxq_info *rxq,
				    struct net_device *dev, u32 queue,
				    struct napi_struct *napi, u32 frag_size)
{
#ifdef PVNET_HAVE_XDP_RXQ_INFO_REG_FRAG_SIZE
	return __xdp_rxq_info_reg(rxq, dev, queue, napi->napi_id, frag_size);
#else
	return xdp_rxq_info_reg(rxq, dev, queue);
#endif
}

static inline void pvnet_xdp_prepare(struct xdp_buff *xdp, u32 frame_sz,
				     struct xdp_rxq_info *rxq,
				     unsigned char *hard_start, int headroom,
				     int len)
{
#ifdef PVNET_HAVE_XDP_INIT_BUFF
	xdp_init_buff(xdp, frame_sz, rxq);
	xdp_prepare_buff(xdp, hard_start, headroom, len, true);
#else
	xdp->frame_sz = frame_sz;
	xdp->rxq = rxq;
	xdp->data_hard_start = hard_start;
	xdp->data = hard_start + headroom;
	xdp->data_end = xdp->data + len;
	xdp->data_meta = xdp->data;
#endif
}

/* bpf_warn_invalid_xdp_action() took the device and program in 5.17. */
#ifndef PVNET_HAVE_BPF_WARN_INVALID_XDP_ACTION_DEV
static inline void pvnet_bpf_warn_invalid_xdp_action(struct net_device *dev,
						     struct bpf_prog *prog,
						     u32 act)
{
	bpf_warn_invalid_xdp_action(act);
}

#define bpf_warn_invalid_xdp_action pvnet_bpf_warn_invalid_xdp_action
#endif

/*
 * Multi-buffer XDP (frags), 5.18 on.  PVNET_XDP_FRAGS says whether the
 * kernel has it; the helpers compile to nothing elsewhere.
 */
#ifdef PVNET_HAVE_XDP_BUFF_FRAGS
#define PVNET_XDP_FRAGS	1

static inline bool pvnet_prog_has_frags(const struct bpf_prog *prog)
{
	return prog->aux->xdp_has_frags;
}

static inline bool pvnet_xdp_frame_has_frags(const struct xdp_frame *xdpf)
{
	return xdp_frame_has_frags((struct xdp_frame *)xdpf);
}

/* skb_frag_fill_page_desc() (6.5) replaced the three setters. */
#ifndef PVNET_HAVE_SKB_FRAG_FILL_PAGE_DESC
static inline void skb_frag_fill_page_desc(skb_frag_t *frag,
					   struct page *page,
					   int off, int size)
{
	__skb_frag_set_page(frag, page);
	skb_frag_off_set(frag, off);
	skb_frag_size_set(frag, size);
}
#endif
#else
#define PVNET_XDP_FRAGS	0

static inline bool pvnet_prog_has_frags(const struct bpf_prog *prog)
{
	return false;
}

static inline bool pvnet_xdp_frame_has_frags(const struct xdp_frame *xdpf)
{
	return false;
}
#endif

/*
 * XDP rx metadata kfuncs (xdp_metadata_ops with an RSS hash type, 6.4 on):
 * PVNET_XDP_RX_HASH says whether pvnet can offer bpf_xdp_metadata_rx_hash.
 */
#ifdef PVNET_HAVE_XDP_METADATA_RX_HASH
#define PVNET_XDP_RX_HASH	1
#else
#define PVNET_XDP_RX_HASH	0
#endif

/*
 * ethtool -x.  PVNET_DEFINE_GET_RXFH(impl) defines impl##_op with the
 * kernel's signature, which calls impl(dev, indir, key, hfunc) (any of
 * the three may be NULL).
 */
#ifdef PVNET_HAVE_ETHTOOL_RXFH_PARAM
#define PVNET_DEFINE_GET_RXFH(impl)					\
static int impl##_op(struct net_device *dev,				\
		     struct ethtool_rxfh_param *rxfh)			\
{									\
	return impl(dev, rxfh->indir, rxfh->key, &rxfh->hfunc);	\
}
#else
#define PVNET_DEFINE_GET_RXFH(impl)					\
static int impl##_op(struct net_device *dev, u32 *indir, u8 *key,	\
		     u8 *hfunc)						\
{									\
	return impl(dev, indir, key, hfunc);				\
}
#endif

/*
 * ethtool_ops.get_rx_ring_count and .get_rxfh_fields: newer kernels ask
 * these instead of get_rxnfc(ETHTOOL_GRXRINGS / ETHTOOL_GRXFH) (7.3 no
 * longer asks get_rxnfc for the ring count at all).  Where the kernel has
 * no such op, struct ethtool_rxfh_fields is backfilled for the driver's
 * own use and get_rxnfc answers both commands.
 */
#ifdef PVNET_HAVE_ETHTOOL_GET_RX_RING_COUNT
#define PVNET_CAN_RX_RING_COUNT	1
#endif

#ifdef PVNET_HAVE_ETHTOOL_RXFH_FIELDS
#define PVNET_CAN_RXFH_FIELDS	1
#else
struct ethtool_rxfh_fields {
	u32 data;
	u32 flow_type;
	u32 rss_context;
};
#endif

/*
 * Run an XDP program.  Kernels without upstream commit "bpf: Synchronize
 * dispatcher update with bpf_dispatcher_xdp_func" (6.2, backported to
 * 6.1.y; Debian's 6.1 changelog lists it, its 5.10 changelog does not)
 * rewrite the XDP dispatcher, the trampoline bpf_prog_run_xdp() jumps
 * through, on every program attach or detach without waiting for CPUs
 * still running the old image.  A NAPI poll can then execute a
 * half-rewritten image and never return: seen on 5.10 as a soft lockup
 * at bpf_dispatcher_xdp_func+0x0 under pvnet_rx_poll while programs were
 * attached and detached under traffic.  The fix is in
 * kernel/bpf/dispatcher.c only, so no probe can see it.  Of the kernels
 * pvnet supports, the one without the fix (5.10) is also the one without
 * multi-buffer XDP (5.18), and those with multi-buffer XDP (6.1 on)
 * have the fix: without frags the program is called directly, an
 * indirect call instead of the dispatcher's direct one.
 */
static __always_inline u32 pvnet_run_xdp(const struct bpf_prog *prog,
					 struct xdp_buff *xdp)
{
#if PVNET_XDP_FRAGS
	return bpf_prog_run_xdp(prog, xdp);
#else
	return bpf_prog_run(prog, xdp);
#endif
}

/* net_device.xdp_features (6.3 on): what pvnet can do with XDP. */
static inline void pvnet_xdp_features_init(struct net_device *dev)
{
#ifdef PVNET_HAVE_XDP_FEATURES
	dev->xdp_features = NETDEV_XDP_ACT_BASIC | NETDEV_XDP_ACT_REDIRECT |
			    NETDEV_XDP_ACT_NDO_XMIT | NETDEV_XDP_ACT_RX_SG |
			    NETDEV_XDP_ACT_NDO_XMIT_SG;
#endif
}

/*
 * ndo_xdp_xmit sent frames[0..sent).  From 5.13 the core frees the rest;
 * before, the driver had to.
 */
static inline int pvnet_xdp_xmit_ret(struct xdp_frame **frames, int sent,
				     int n)
{
#ifndef PVNET_HAVE_XDP_XMIT_CORE_FREES_TAIL
	int i;

	for (i = sent; i < n; i++)
		xdp_return_frame(frames[i]);
#endif
	return sent;
}

#endif /* _PVNET_COMPAT_H */
