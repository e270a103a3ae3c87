// SPDX-License-Identifier: GPL-2.0
/*
 * Multi-buffer XDP (5.18 on): xdp_buff flags, frags in the shared info,
 * xdp_frags_size, xdp_frame_has_frags(), and programs that declare they
 * handle frags (prog->aux->xdp_has_frags): what pvnet_rx.c and pvnet_tx.c
 * use.  Not xdp_update_skb_shared_info(): pvnet builds its skbs itself,
 * and 7.x renamed that helper (xdp_update_skb_frags_info), which made an
 * earlier version of this probe fail on 7.3 for a name pvnet never called.
 */
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/netdevice.h>
#include <linux/skbuff.h>
#include <net/xdp.h>

static unsigned int pvnet_probe(struct xdp_buff *xdp, struct xdp_frame *xdpf,
				const struct bpf_prog *prog)
{
	struct skb_shared_info *sinfo = xdp_get_shared_info_from_buff(xdp);

	xdp_buff_set_frags_flag(xdp);
	sinfo->xdp_frags_size = 0;
	if (!prog->aux->xdp_has_frags || xdp_frame_has_frags(xdpf))
		return 0;
	return xdp_buff_has_frags(xdp) ? xdp_get_buff_len(xdp) : 0;
}
