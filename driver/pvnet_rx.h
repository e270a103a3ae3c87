/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pvnet: receive-side definitions shared by the rx poll (pvnet_rx.c), the
 * XDP rx path (pvnet_xdp.c) and the rx buffers (pvnet_rxbuf.c).  Calls go
 * one way: pvnet_rx.c -> pvnet_xdp.c -> pvnet_rxbuf.c.
 */
#ifndef _PVNET_RX_H
#define _PVNET_RX_H

#include "pvnet.h"

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

/*
 * Mergeable tokens: buffer address | (truesize / PVNET_MRG_ALIGN - 1),
 * plus PVNET_MRG_ROOM when the buffer was posted with XDP tailroom.
 */
static inline void *pvnet_mrg_token(void *buf, unsigned int truesize, bool room)
{
	return (void *)((unsigned long)buf |
			(truesize / PVNET_MRG_ALIGN - 1) |
			(room ? PVNET_MRG_ROOM : 0));
}

static inline void *pvnet_mrg_buf(void *token)
{
	return (void *)((unsigned long)token & ~(PVNET_MRG_ALIGN - 1UL));
}

static inline unsigned int pvnet_mrg_truesize(void *token)
{
	return (((unsigned long)token & PVNET_MRG_SIZE_MASK) + 1) *
	       PVNET_MRG_ALIGN;
}

static inline bool pvnet_mrg_has_room(void *token)
{
	return (unsigned long)token & PVNET_MRG_ROOM;
}

/* Bytes the device may have written into the buffer of @token. */
static inline unsigned int pvnet_mrg_capacity(void *token)
{
	return pvnet_mrg_truesize(token) - PVNET_RX_HEADROOM -
	       (pvnet_mrg_has_room(token) ? PVNET_XDP_TAILROOM : 0);
}

/* pvnet_rxbuf.c: buffers, and skbs built from them */
void pvnet_mrg_put(struct pvnet_rxq *rxq, void *buf, bool napi);
void pvnet_big_put(struct page *page);
void pvnet_rx_hdr(const struct pvnet_priv *priv,
		  struct virtio_net_hdr_v1_hash *hdr, const void *src);
void pvnet_rx_deliver(struct pvnet_rxq *rxq, struct sk_buff *skb,
		      const struct virtio_net_hdr_v1_hash *hash_hdr,
		      struct pvnet_rx_batch *batch);
bool pvnet_rx_skb_start(struct pvnet_rxq *rxq, struct pvnet_rx_skb *rs,
			void *data, unsigned int len, struct page *page,
			unsigned int offset, unsigned int truesize,
			bool *used);
bool pvnet_rx_skb_add(struct pvnet_rxq *rxq, struct pvnet_rx_skb *rs,
		      struct page *page, unsigned int offset,
		      unsigned int len, unsigned int truesize);
bool pvnet_rx_mrg_add(struct pvnet_rxq *rxq, struct pvnet_rx_skb *rs,
		      void *buf, unsigned int len, unsigned int truesize);
void pvnet_rx_mrg_discard(struct pvnet_rxq *rxq, unsigned int left,
			  struct pvnet_rx_batch *batch);

/* pvnet_xdp.c: rx side */
void pvnet_xdp_rx_mrg(struct pvnet_rxq *rxq, void *token, unsigned int len,
		      struct virtio_net_hdr_v1_hash *hdr, u16 num_buffers,
		      struct pvnet_rx_batch *batch);
void pvnet_xdp_tx_flush(struct pvnet_rxq *rxq, struct pvnet_rx_batch *batch);

#endif /* _PVNET_RX_H */
