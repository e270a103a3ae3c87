// SPDX-License-Identifier: GPL-2.0
/*
 * The page_pool API lives in net/page_pool/helpers.h from 6.6 on
 * (net/page_pool.h before).
 */
#include <net/page_pool/helpers.h>

static void pvnet_probe(struct page_pool *pool, struct page *page)
{
	page_pool_put_full_page(pool, page, false);
}
