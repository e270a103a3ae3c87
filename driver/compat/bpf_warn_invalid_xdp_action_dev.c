// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_warn_invalid_xdp_action(dev, prog, act) (5.17 on; before: (act)).
 */
#include <linux/filter.h>
#include <linux/netdevice.h>

static void pvnet_probe(struct net_device *dev, struct bpf_prog *prog, u32 act)
{
	bpf_warn_invalid_xdp_action(dev, prog, act);
}
