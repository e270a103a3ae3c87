// SPDX-License-Identifier: GPL-2.0
/*
 * Rx page recycling through a page_pool: page fragments from a pool
 * (page_pool_dev_alloc_frag, 5.15 on) and skb_mark_for_recycle(), which
 * sends an skb's pool pages back to their pool when it is freed (5.15 on).
 * The header moved to net/page_pool/helpers.h in 6.6.
 */
#if __has_include("net/page_pool/helpers.h")
#include <net/page_pool/helpers.h>
#else
#include <net/page_pool.h>
#endif
#include <linux/skbuff.h>

static struct page *pvnet_probe(struct page_pool *pool, struct sk_buff *skb,
				unsigned int *offset)
{
	struct page_pool_params pp = { .pool_size = 256 };

	skb_mark_for_recycle(skb);
	page_pool_put_full_page(pool, virt_to_head_page(skb->data), false);
	page_pool_destroy(page_pool_create(&pp));
	return page_pool_dev_alloc_frag(pool, offset, 2048);
}
