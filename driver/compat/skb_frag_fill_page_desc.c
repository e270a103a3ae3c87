// SPDX-License-Identifier: GPL-2.0
/*
 * skb_frag_fill_page_desc() (6.5 on; before: __skb_frag_set_page() etc.).
 */
#include <linux/skbuff.h>

static void pvnet_probe(skb_frag_t *frag, struct page *page)
{
	skb_frag_fill_page_desc(frag, page, 0, 64);
}
