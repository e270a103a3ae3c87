// SPDX-License-Identifier: GPL-2.0
/*
 * Before 6.7 a page_pool hands out page fragments only if created with
 * PP_FLAG_PAGE_FRAG; later kernels dropped the flag (always allowed).
 *
 * Removed-upstream: 6.7, "page_pool: remove PP_FLAG_PAGE_FRAG": every pool
 * hands out fragments, so page_pool_frag alone decides recycling there.
 */
#if __has_include("net/page_pool/helpers.h")
#include <net/page_pool/helpers.h>
#else
#include <net/page_pool.h>
#endif

static unsigned int pvnet_probe(void)
{
	return PP_FLAG_PAGE_FRAG;
}
