// SPDX-License-Identifier: GPL-2.0
/*
 * page_pool_get_stats() (5.19 on, only with CONFIG_PAGE_POOL_STATS): the
 * pool's own allocation and recycling counters.  It returned bool before
 * 6.10 and returns void since; pvnet ignores the result.  The header moved
 * to net/page_pool/helpers.h in 6.6.
 */
#if __has_include("net/page_pool/helpers.h")
#include <net/page_pool/helpers.h>
#else
#include <net/page_pool.h>
#endif

static u64 pvnet_probe(const struct page_pool *pool)
{
	struct page_pool_stats stats = {};

	page_pool_get_stats(pool, &stats);
	return stats.recycle_stats.cached + stats.recycle_stats.ring;
}
