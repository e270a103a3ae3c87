/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pvnet: paravirtual (virtio-net) network driver - shared definitions.
 */
#ifndef _PVNET_H
#define _PVNET_H

#include <linux/average.h>
#include <linux/if_vlan.h>
#include <linux/mm_types.h>
#include <linux/netdevice.h>
#include <linux/scatterlist.h>
#include <linux/skbuff.h>
#include <linux/spinlock.h>
#include <linux/u64_stats_sync.h>
#include <linux/virtio.h>
#include <linux/virtio_net.h>
#include <linux/workqueue.h>
#include <net/xdp.h>

#define PVNET_DRV_NAME		"pvnet"

#ifndef PVNET_VERSION
#define PVNET_VERSION		"unknown"
#endif

/*
 * With VIRTIO_F_VERSION_1 the header always carries num_buffers, so it is
 * 12 bytes (struct virtio_net_hdr_v1) whether or not MRG_RXBUF is
 * negotiated; with VIRTIO_NET_F_HASH_REPORT it is struct
 * virtio_net_hdr_v1_hash, 20 bytes, in both directions (VIRTIO 1.2,
 * 5.1.6).  priv->hdr_len is the one in use.
 */
#define PVNET_HDR_LEN		sizeof(struct virtio_net_hdr_v1)
#define PVNET_HDR_MAX_LEN	sizeof(struct virtio_net_hdr_v1_hash)

/* Toeplitz key pvnet gives the device for hash reports (its minimum). */
#define PVNET_HASH_KEY_LEN	40

/*
 * Worst case descriptors for one tx packet: header plus linear part (one
 * entry, the header is pushed in front of the data) and one entry per
 * page fragment, plus one spare.
 */
#define PVNET_TX_MAX_SG		(MAX_SKB_FRAGS + 2)
/* Stop the tx queue when fewer descriptors than this are free. */
#define PVNET_TX_STOP_THRESH	(MAX_SKB_FRAGS + 2)

/*
 * Smallest rings ethtool -G accepts (tx: room for a maximal skb; rx: more
 * where a maximal frame needs it, see pvnet_rx_ring_min()).
 */
#define PVNET_RX_RING_MIN	16
#define PVNET_TX_RING_MIN	32

/* Delay before retrying an rx refill that failed for lack of memory. */
#define PVNET_REFILL_DELAY	(HZ / 2)

/*
 * Pages per big-mode rx buffer chain: enough for the virtio-net header
 * plus the largest frame (64 KiB GSO or max MTU, Ethernet and VLAN header).
 */
#define PVNET_RX_BIG_MAX_PAGES \
	DIV_ROUND_UP(PVNET_HDR_MAX_LEN + ETH_HLEN + VLAN_HLEN + ETH_MAX_MTU, \
		     PAGE_SIZE)

struct page_pool;
struct pvnet_priv;
struct pvnet_ctrl;

/*
 * How rx buffers are laid out (chosen at probe from the features):
 * small: one buffer per packet sized for the MTU (an skb's data area);
 * mergeable: page fragments, a packet may span several (MRG_RXBUF);
 * big: a chain of pages large enough for a 64 KiB GSO packet.
 */
enum pvnet_rx_mode {
	PVNET_RX_SMALL,
	PVNET_RX_MERGEABLE,
	PVNET_RX_BIG,
};

/* Moving average of received packet lengths, sizes mergeable buffers. */
DECLARE_EWMA(pvnet_rx_len, 0, 64)

struct pvnet_rxq_stats {
	struct u64_stats_sync syncp;
	u64_stats_t packets;
	u64_stats_t bytes;
	u64_stats_t drops;
	u64_stats_t kicks;
	u64_stats_t errors;		/* length errors */
	u64_stats_t csum_valid;		/* VIRTIO_NET_HDR_F_DATA_VALID seen */
	u64_stats_t csum_partial;	/* VIRTIO_NET_HDR_F_NEEDS_CSUM seen */
	u64_stats_t csum_none;		/* neither flag set */
	u64_stats_t gso_packets;	/* packets with GSO metadata */
	u64_stats_t gso_bytes;
	u64_stats_t merged_buffers;	/* extra buffers merged into a packet */
	u64_stats_t refill_failures;	/* refills that ran out of memory */
	u64_stats_t recycled;		/* rx pages reused through the pool */
	u64_stats_t xdp_packets;	/* packets run through an XDP program */
	u64_stats_t xdp_drops;		/* XDP_DROP (and XDP_ABORTED) */
	u64_stats_t xdp_tx;		/* XDP_TX frames queued for sending */
	u64_stats_t xdp_tx_drops;	/* XDP_TX frames that found no room */
	u64_stats_t xdp_redirects;	/* XDP_REDIRECT done */
	u64_stats_t xdp_aborted;	/* XDP_ABORTED, invalid actions, errors */
};

struct pvnet_txq_stats {
	struct u64_stats_sync syncp;
	u64_stats_t packets;
	u64_stats_t bytes;
	u64_stats_t drops;
	u64_stats_t kicks;
	u64_stats_t stops;
	u64_stats_t wakes;
	u64_stats_t csum_partial;	/* sent with VIRTIO_NET_HDR_F_NEEDS_CSUM */
	u64_stats_t gso_packets;	/* GSO skbs handed to the device */
	u64_stats_t gso_bytes;		/* their bytes (without virtio header) */
	u64_stats_t gso_segments;	/* segments they stand for */
	u64_stats_t xdp_tx;		/* XDP frames queued (XDP_TX, redirects) */
	u64_stats_t xdp_tx_drops;	/* XDP frames refused: ring or share full */
	u64_stats_t requeues;		/* skbs handed back: ring full when awake */
};

/*
 * Device-wide event counters (the first entries of ethtool -S); atomic:
 * written from any context.
 */
struct pvnet_dev_stats {
	atomic_long_t tx_timeouts;	/* watchdog: a tx queue made no progress */
	atomic_long_t device_resets;	/* device resets done for recovery */
	atomic_long_t ctrl_cmds;	/* control commands sent */
	atomic_long_t ctrl_fails;	/* ... refused (VIRTIO_NET_ERR, bad ack) */
	atomic_long_t ctrl_timeouts;	/* ... not answered in time */
};

/* One entry of the per-queue ethtool statistics tables. */
struct pvnet_stat_desc {
	const char *name;
	size_t offset;
};

/* Order of the per-queue statistics as read by pvnet_*q_stats_read(). */
enum {
	PVNET_RXQ_PACKETS,
	PVNET_RXQ_BYTES,
	PVNET_RXQ_DROPS,
	PVNET_RXQ_KICKS,
	PVNET_RXQ_ERRORS,
	PVNET_RXQ_CSUM_VALID,
	PVNET_RXQ_CSUM_PARTIAL,
	PVNET_RXQ_CSUM_NONE,
	PVNET_RXQ_GSO_PACKETS,
	PVNET_RXQ_GSO_BYTES,
	PVNET_RXQ_MERGED_BUFFERS,
	PVNET_RXQ_REFILL_FAILURES,
	PVNET_RXQ_RECYCLED,
	PVNET_RXQ_XDP_PACKETS,
	PVNET_RXQ_XDP_DROPS,
	PVNET_RXQ_XDP_TX,
	PVNET_RXQ_XDP_TX_DROPS,
	PVNET_RXQ_XDP_REDIRECTS,
	PVNET_RXQ_XDP_ABORTED,
	PVNET_RXQ_STATS_NUM
};

enum {
	PVNET_TXQ_PACKETS,
	PVNET_TXQ_BYTES,
	PVNET_TXQ_DROPS,
	PVNET_TXQ_KICKS,
	PVNET_TXQ_STOPS,
	PVNET_TXQ_WAKES,
	PVNET_TXQ_CSUM_PARTIAL,
	PVNET_TXQ_GSO_PACKETS,
	PVNET_TXQ_GSO_BYTES,
	PVNET_TXQ_GSO_SEGMENTS,
	PVNET_TXQ_XDP_TX,
	PVNET_TXQ_XDP_TX_DROPS,
	PVNET_TXQ_REQUEUES,
	PVNET_TXQ_STATS_NUM
};

extern const struct pvnet_stat_desc pvnet_rxq_stat_descs[PVNET_RXQ_STATS_NUM];
extern const struct pvnet_stat_desc pvnet_txq_stat_descs[PVNET_TXQ_STATS_NUM];

struct pvnet_rxq {
	struct pvnet_priv *priv;
	struct virtqueue *vq;
	struct napi_struct napi;
	/* Written only from this queue's NAPI poll or with NAPI disabled. */
	struct pvnet_rxq_stats stats;
	char name[16];

	/*
	 * Buffer allocator state, used like the stats: from NAPI or with
	 * NAPI disabled.  Mergeable buffers come from @pool when the kernel
	 * can recycle skb pages into a page_pool, else from @frag.
	 */
	struct page_pool *pool;
	struct page_frag frag;
	struct ewma_pvnet_rx_len len_avg;
	u32 pool_pages;			/* pool pages started (buffers, XDP copies) */
	s32 pool_reused;		/* of those, not fresh from the allocator */
	u64 pool_recycled;		/* recycle count last read from the pool */
	struct scatterlist big_sg[PVNET_RX_BIG_MAX_PAGES];
	/* XDP memory model of this queue (registered with the queue). */
	struct xdp_rxq_info xdp_rxq;
	bool xdp_rxq_reg;
};

struct pvnet_txq {
	struct pvnet_priv *priv;
	struct virtqueue *vq;
	struct napi_struct napi;	/* used only when priv->napi_tx */
	/* Written only under the netdev tx queue lock. */
	struct pvnet_txq_stats stats;
	/* Set by the tx interrupt when it woke the queue (non-NAPI mode). */
	bool woken;
	/* XDP frames in the ring (under the tx queue lock, like the stats). */
	unsigned int xdp_inflight;
	struct scatterlist sg[PVNET_TX_MAX_SG];
	char name[16];
};

struct pvnet_priv {
	struct virtio_device *vdev;
	struct net_device *dev;

	struct pvnet_rxq *rxq;
	struct pvnet_txq *txq;
	/* Pairs the device has (MQ) and pairs in use; changed under RTNL. */
	u16 max_queue_pairs;
	u16 curr_queue_pairs;
	/*
	 * Pairs after those used by the stack that carry only XDP frames (one
	 * per CPU, tx side), while a program is attached and the device has
	 * enough; 0 means XDP frames share the stack's tx queues.  Their rx
	 * queues are serviced like the others: the device may steer to them.
	 */
	u16 xdp_queue_pairs;

	/* Attached XDP program (RTNL to change, RCU in the rx poll). */
	struct bpf_prog __rcu *xdp_prog;
	/* Bytes kept free after mergeable rx buffers for XDP (0 without). */
	unsigned int rx_tailroom;
	/* Mergeable buffers must hold a whole frame (program without frags). */
	bool rx_linear;

	/* Control virtqueue (NULL without VIRTIO_NET_F_CTRL_VQ). */
	struct pvnet_ctrl *ctrl;
	/* VIRTIO_NET_F_GUEST_* offloads negotiated, and those enabled now. */
	u64 guest_offloads_capable;
	u64 guest_offloads_enabled;

	/* Bytes of virtio-net header per buffer: PVNET_HDR_LEN or _MAX_LEN. */
	unsigned int hdr_len;
	/*
	 * VIRTIO_NET_RSS_HASH_TYPE_* the device reports with HASH_REPORT while
	 * NETIF_F_RXHASH is on (0: no hash reports), and the Toeplitz key.
	 */
	u32 hash_types;
	u8 hash_key[PVNET_HASH_KEY_LEN];

	/* Ring sizes the device offered (upper bound for ethtool -G). */
	u32 rx_ring_max;
	u32 tx_ring_max;

	enum pvnet_rx_mode rx_mode;
	/* Small mode: bytes posted per rx buffer, header plus largest frame. */
	unsigned int rx_buf_len;
	/* Big mode: pages per rx buffer chain. */
	unsigned int rx_big_pages;

	bool napi_tx;
	bool has_status;
	/* SKB_GSO_* types the device segments (negotiated HOST_* features). */
	unsigned int tx_gso_types;
	/* vqs exist (false after a failed restore). */
	bool vqs_ready;
	/* Queues and NAPI are running (between pvnet_up and pvnet_down). */
	bool active;

	/* Rx refill retry work; only scheduled while refill_enabled. */
	struct delayed_work refill;
	spinlock_t refill_lock;		/* protects refill_enabled */
	bool refill_enabled;

	/* Config change (link status) work. */
	struct work_struct config_work;
	spinlock_t config_lock;		/* protects config_enabled */
	bool config_enabled;

	/*
	 * Device reset for recovery (pvnet_schedule_reset()): delayed work on
	 * the freezable workqueue; reset_lock protects reset_enabled and
	 * reset_reason, last_reset is written by the work only.
	 */
	struct delayed_work reset_work;
	spinlock_t reset_lock;		/* reset_enabled, reset_reason */
	bool reset_enabled;
	const char *reset_reason;
	unsigned long last_reset;

	/* Ring sizes ethtool -G set (0: the device's), kept across resets. */
	u32 rx_ring_size;
	u32 tx_ring_size;

	/* CPU hotplug instance (pvnet_cpuhp_add()) and its affinity work. */
	struct hlist_node cpuhp_node;
	bool cpuhp_added;
	struct work_struct affinity_work;

	struct pvnet_dev_stats dev_stats;
};

/*
 * Report a refused configuration: in the extack when the caller has one
 * (ethtool netlink on newer kernels), otherwise in the kernel log.
 * @msg must be a string literal.
 */
#define pvnet_config_err(dev, extack, msg)				\
	do {								\
		static const char __pv_msg[] = "pvnet: " msg;		\
		struct netlink_ext_ack *__pv_extack = (extack);	\
									\
		if (__pv_extack)					\
			__pv_extack->_msg = __pv_msg;			\
		else							\
			netdev_err(dev, "%s\n", __pv_msg);		\
	} while (0)

static inline unsigned int pvnet_rxq_index(const struct virtqueue *vq)
{
	return vq->index / 2;
}

static inline unsigned int pvnet_txq_index(const struct virtqueue *vq)
{
	return (vq->index - 1) / 2;
}

/* Schedule @napi from a virtqueue callback and mute further callbacks. */
static inline void pvnet_vq_napi_schedule(struct napi_struct *napi,
					  struct virtqueue *vq)
{
	if (napi_schedule_prep(napi)) {
		virtqueue_disable_cb(vq);
		__napi_schedule(napi);
	}
}

/*
 * Finish a NAPI poll that did less than its budget.  The vq callback is
 * armed before NAPI completes: once napi_complete_done() returns, another
 * CPU may schedule and run the poll (an interrupt, busy polling, the
 * refill work), and the vq must not be touched from here after that.  A
 * buffer used between arming and completing is caught by virtqueue_poll().
 * If NAPI did not complete (it was rescheduled, or busy polling owns it),
 * the callback is muted again: the next poll will run anyway.
 *
 * The caller serialises this with every other user of @vq (the rx vq
 * belongs to its NAPI poll; a tx vq is used under its tx queue lock).
 */
static inline void pvnet_vq_napi_complete(struct napi_struct *napi,
					  struct virtqueue *vq, int done)
{
	unsigned int opaque = virtqueue_enable_cb_prepare(vq);

	if (!napi_complete_done(napi, done)) {
		virtqueue_disable_cb(vq);
		return;
	}
	if (unlikely(virtqueue_poll(vq, opaque)))
		pvnet_vq_napi_schedule(napi, vq);
}

/* Room kept in front of every mergeable buffer, for XDP. */
#define PVNET_RX_HEADROOM	XDP_PACKET_HEADROOM
/* Room an XDP buffer keeps at its end for the frags' shared info. */
#define PVNET_XDP_TAILROOM	SKB_DATA_ALIGN(sizeof(struct skb_shared_info))
/* Bytes of frame (with the virtio header) a page-sized XDP buffer holds. */
#define PVNET_XDP_PAGE_ROOM \
	(PAGE_SIZE - PVNET_RX_HEADROOM - PVNET_XDP_TAILROOM)

/* Rx queues in use: the stack's pairs plus the XDP-only pairs. */
static inline unsigned int pvnet_rx_pairs(const struct pvnet_priv *priv)
{
	return priv->curr_queue_pairs + priv->xdp_queue_pairs;
}

/*
 * Whether the rx queues recycle through page_pools (mergeable buffers on a
 * kernel that can, see pvnet_page_pool_create()): all of them or none.
 */
static inline bool pvnet_rx_has_pools(const struct pvnet_priv *priv)
{
	return priv->rxq && priv->rxq[0].pool;
}

/*
 * Tx vq tokens: an skb, or an xdp_frame with bit 0 set (both are at least
 * word aligned).
 */
#define PVNET_TX_XDP		1UL

static inline bool pvnet_tx_token_is_xdp(const void *token)
{
	return (unsigned long)token & PVNET_TX_XDP;
}

static inline struct xdp_frame *pvnet_tx_token_frame(void *token)
{
	return (struct xdp_frame *)((unsigned long)token & ~PVNET_TX_XDP);
}

/* pvnet_rx.c */
void pvnet_rx_vq_done(struct virtqueue *vq);
int pvnet_rx_poll(struct napi_struct *napi, int budget);
void pvnet_rx_validate(struct virtio_device *vdev);
void pvnet_rx_setup(struct pvnet_priv *priv);
unsigned int pvnet_rx_ring_min(const struct pvnet_priv *priv);

/* pvnet_rxbuf.c */
bool pvnet_rx_refill(struct pvnet_rxq *rxq, gfp_t gfp, bool in_napi);
void pvnet_refill_work(struct work_struct *work);
void pvnet_refill_schedule(struct pvnet_priv *priv, unsigned long delay);
void pvnet_rx_free_unused(struct pvnet_rxq *rxq);
void pvnet_rx_free_buf(struct pvnet_rxq *rxq, void *buf);
int pvnet_rxq_init(struct pvnet_rxq *rxq);
void pvnet_rxq_fini(struct pvnet_rxq *rxq);
int pvnet_rxq_xdp_reg(struct pvnet_rxq *rxq);
void pvnet_rxq_xdp_unreg(struct pvnet_rxq *rxq);

/* pvnet_tx.c */
struct netdev_queue *pvnet_ntxq(struct pvnet_txq *txq);
void pvnet_tx_kick(struct pvnet_txq *txq);
void pvnet_tx_free_old(struct pvnet_txq *txq, struct netdev_queue *ntxq,
		       int budget);
void pvnet_tx_maybe_stop(struct pvnet_txq *txq, struct netdev_queue *ntxq);
void pvnet_tx_vq_done(struct virtqueue *vq);
int pvnet_tx_poll(struct napi_struct *napi, int budget);
netdev_tx_t pvnet_start_xmit(struct sk_buff *skb, struct net_device *dev);
void pvnet_tx_open(struct pvnet_txq *txq);
void pvnet_tx_open_xdp(struct pvnet_txq *txq);
void pvnet_tx_free_unused(struct pvnet_txq *txq);
bool pvnet_tx_reap(struct pvnet_txq *txq);
void pvnet_tx_recover(struct pvnet_txq *txq);
void pvnet_tx_free_token(void *token);
void pvnet_tx_validate(struct virtio_device *vdev);
void pvnet_tx_init_features(struct pvnet_priv *priv);
netdev_features_t pvnet_tx_fix_features(struct net_device *dev,
					netdev_features_t features);

/* pvnet_xdp.c */
int pvnet_xdp_xmit_frames(struct pvnet_priv *priv, struct xdp_frame **frames,
			  int n, bool kick);
int pvnet_ndo_xdp_xmit(struct net_device *dev, int n,
		       struct xdp_frame **frames, u32 flags);
int pvnet_ndo_bpf(struct net_device *dev, struct netdev_bpf *bpf);
int pvnet_xdp_check_mtu(struct pvnet_priv *priv, const struct bpf_prog *prog,
			unsigned int mtu, struct netlink_ext_ack *extack);
void pvnet_xdp_init_metadata(struct pvnet_priv *priv);

/* pvnet_ctrl.c */
int pvnet_ctrl_alloc(struct pvnet_priv *priv);
void pvnet_ctrl_free(struct pvnet_priv *priv);
void pvnet_ctrl_set_vq(struct pvnet_priv *priv, struct virtqueue *vq);
int pvnet_ctrl_set_queue_pairs(struct pvnet_priv *priv, u16 pairs);
int pvnet_ctrl_set_guest_offloads(struct pvnet_priv *priv, u64 offloads);
int pvnet_ctrl_set_hash(struct pvnet_priv *priv, bool on);

/* pvnet_reconfig.c: data path, vqs, reconfiguration (under RTNL) */
void pvnet_up(struct pvnet_priv *priv);
void pvnet_down(struct pvnet_priv *priv);
int pvnet_init_vqs(struct pvnet_priv *priv);
void pvnet_del_vqs(struct pvnet_priv *priv);
int pvnet_set_real_queues(struct pvnet_priv *priv, u16 tx, u16 rx);
int pvnet_set_queue_pairs(struct pvnet_priv *priv, u16 pairs,
			  struct netlink_ext_ack *extack);
int pvnet_resize_rings(struct pvnet_priv *priv, u32 rx, u32 tx,
		       struct netlink_ext_ack *extack);
void pvnet_reset_init(struct pvnet_priv *priv);
void pvnet_reset_enable(struct pvnet_priv *priv);
void pvnet_reset_disable(struct pvnet_priv *priv);
void pvnet_schedule_reset(struct pvnet_priv *priv, const char *reason);
int pvnet_apply_ring_sizes(struct pvnet_priv *priv);
int pvnet_set_napi_tx(struct pvnet_priv *priv, bool on,
		      struct netlink_ext_ack *extack);
u16 pvnet_xdp_pairs_for(const struct pvnet_priv *priv, u16 pairs);
int pvnet_apply_pairs(struct pvnet_priv *priv, u16 pairs, u16 xdp_pairs);
bool pvnet_pause(struct pvnet_priv *priv);
void pvnet_resume(struct pvnet_priv *priv, bool was_active);
int pvnet_sync_guest_offloads(struct pvnet_priv *priv,
			      netdev_features_t features);
void pvnet_update_affinity(struct pvnet_priv *priv);
int pvnet_cpuhp_init(void);
void pvnet_cpuhp_exit(void);
void pvnet_cpuhp_add(struct pvnet_priv *priv);
void pvnet_cpuhp_remove(struct pvnet_priv *priv);

/* pvnet_ethtool.c */
void pvnet_set_ethtool_ops(struct net_device *dev);
void pvnet_rxq_stats_read(const struct pvnet_rxq_stats *stats, u64 *vals);
void pvnet_txq_stats_read(const struct pvnet_txq_stats *stats, u64 *vals);

#endif /* _PVNET_H */
