// SPDX-License-Identifier: GPL-2.0
/*
 * Multi-buffer XDP (5.18 on): xdp_buff flags, frags in the shared info,
 * xdp_frags_size, xdp_update_skb_shared_info(), and programs that declare
 * they handle frags (prog->aux->xdp_has_frags).
 */
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/netdevice.h>
#include <linux/skbuff.h>
#include <net/xdp.h>

static unsigned int pvnet_probe(struct xdp_buff *xdp, struct sk_buff *skb,
				const struct bpf_prog *prog)
{
	struct skb_shared_info *sinfo = xdp_get_shared_info_from_buff(xdp);

	xdp_buff_set_frags_flag(xdp);
	sinfo->xdp_frags_size = 0;
	xdp_update_skb_shared_info(skb, sinfo->nr_frags, 0, 0,
				   xdp_buff_is_frag_pfmemalloc(xdp));
	if (!prog->aux->xdp_has_frags)
		return 0;
	return xdp_buff_has_frags(xdp) ? xdp_get_buff_len(xdp) : 0;
}
