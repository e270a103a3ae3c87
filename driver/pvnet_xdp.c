// SPDX-License-Identifier: GPL-2.0
/*
 * pvnet: XDP program attach (ndo_bpf) and XDP frame transmit
 * (ndo_xdp_xmit).  The rx side runs in pvnet_rx.c, the tx queueing in
 * pvnet_tx.c.
 *
 * XDP runs on mergeable rx buffers only.  While a program is attached:
 * - the guest offloads are off (CTRL_GUEST_OFFLOADS), so that the program
 *   sees whole frames with complete checksums; LRO and rx-gro-hw show off;
 * - rx buffers keep PVNET_XDP_TAILROOM free at their end (frags' shared
 *   info, bpf_xdp_adjust_tail growth) and, for a program without frags
 *   support, hold a whole frame, which bounds the MTU by a page;
 * - XDP frames go out on XDP-only queue pairs, one per CPU, when the
 *   device has that many pairs beyond those the stack uses, else on the
 *   stack's queues under their tx lock.
 *
 * ndo_xdp_xmit works with or without a program attached to this device:
 * frames redirected here use the same queues as XDP_TX (in-tree
 * virtio_net refuses them with -ENXIO unless a program is attached).
 */

#include <linux/netdevice.h>
#include <linux/rtnetlink.h>

#include "pvnet.h"
#include "pvnet_compat.h"

/*
 * Largest MTU whose frames fit one rx buffer with XDP's head and tail room
 * (and a header of @hdr_len bytes).
 */
#define PVNET_XDP_MAX_MTU(hdr_len) \
	(PVNET_XDP_PAGE_ROOM - (hdr_len) - ETH_HLEN - VLAN_HLEN)

/* Can @prog (NULL: none) run with @mtu? */
int pvnet_xdp_check_mtu(struct pvnet_priv *priv, const struct bpf_prog *prog,
			unsigned int mtu, struct netlink_ext_ack *extack)
{
	if (!prog || mtu <= PVNET_XDP_MAX_MTU(priv->hdr_len) ||
	    pvnet_prog_has_frags(prog))
		return 0;

	if (PVNET_XDP_FRAGS)
		pvnet_config_err(priv->dev, extack,
				 "MTU too large for an XDP program without frags support: load it as xdp.frags (BPF_F_XDP_HAS_FRAGS) or lower the MTU");
	else
		pvnet_config_err(priv->dev, extack,
				 "MTU too large for XDP on this kernel (no multi-buffer XDP before Linux 5.18): lower the MTU");
	netdev_info(priv->dev, "XDP without frags needs an MTU of at most %lu\n",
		    (unsigned long)PVNET_XDP_MAX_MTU(priv->hdr_len));
	return -EINVAL;
}

/* Whether @prog can be attached at all; sets the extack if not. */
static int pvnet_xdp_check(struct pvnet_priv *priv, struct bpf_prog *prog,
			   struct netlink_ext_ack *extack)
{
	struct virtio_device *vdev = priv->vdev;

	if (priv->rx_mode != PVNET_RX_MERGEABLE) {
		pvnet_config_err(priv->dev, extack,
				 "XDP needs mergeable rx buffers: the device did not offer VIRTIO_NET_F_MRG_RXBUF");
		return -EOPNOTSUPP;
	}
	if (priv->guest_offloads_capable &&
	    !virtio_has_feature(vdev, VIRTIO_NET_F_CTRL_GUEST_OFFLOADS)) {
		pvnet_config_err(priv->dev, extack,
				 "XDP needs the guest offloads (LRO, rx checksum) off, and the device cannot turn them off (no VIRTIO_NET_F_CTRL_GUEST_OFFLOADS)");
		return -EOPNOTSUPP;
	}
	return pvnet_xdp_check_mtu(priv, prog, priv->dev->mtu, extack);
}

/*
 * Rx buffers for @prog: tailroom while any program is attached, and a
 * whole frame per buffer for one without frags.  New buffers follow at
 * once; each buffer's token says how it was posted.
 */
static void pvnet_xdp_set_rx_layout(struct pvnet_priv *priv,
				    const struct bpf_prog *prog)
{
	WRITE_ONCE(priv->rx_tailroom,
		   prog ? PVNET_XDP_TAILROOM : 0);
	WRITE_ONCE(priv->rx_linear, prog && !pvnet_prog_has_frags(prog));
}

/*
 * Attach, replace or detach.  Replacing one program by another is a
 * pointer swap: the rx poll reads the pointer once per poll under RCU, and
 * the old program is freed only after a grace period (bpf_prog_put).
 * Going from none to one or back changes the buffer layout, the guest
 * offloads and the queue pairs, with the data path paused.
 */
static int pvnet_xdp_set(struct pvnet_priv *priv, struct bpf_prog *prog,
			 struct netlink_ext_ack *extack)
{
	struct bpf_prog *old = rtnl_dereference(priv->xdp_prog);
	struct net_device *dev = priv->dev;
	bool was_active;
	int err;

	if (prog) {
		err = pvnet_xdp_check(priv, prog, extack);
		if (err)
			return err;
	}

	if (!!old == !!prog) {
		rcu_assign_pointer(priv->xdp_prog, prog);
		pvnet_xdp_set_rx_layout(priv, prog);
		if (old)
			bpf_prog_put(old);
		return 0;
	}

	if (!priv->vqs_ready)
		return -ENODEV;

	was_active = pvnet_pause(priv);

	rcu_assign_pointer(priv->xdp_prog, prog);
	/* Guest offloads follow the program (none while one is attached). */
	err = pvnet_sync_guest_offloads(priv, dev->features);
	if (err) {
		pvnet_config_err(dev, extack,
				 "the device refused to change its guest offloads");
		goto err_undo;
	}
	err = pvnet_apply_pairs(priv, priv->curr_queue_pairs,
				pvnet_xdp_pairs_for(priv,
						    priv->curr_queue_pairs));
	if (err) {
		pvnet_config_err(dev, extack,
				 "the device refused the XDP queue pairs");
		goto err_undo;
	}
	pvnet_xdp_set_rx_layout(priv, prog);

	pvnet_resume(priv, was_active);
	pvnet_update_affinity(priv);
	/* LRO and rx-gro-hw go off (or back to what was asked for). */
	netdev_update_features(dev);
	if (old)
		bpf_prog_put(old);
	netdev_info(dev, "XDP program %s, %u XDP tx queue pairs\n",
		    prog ? "attached" : "detached", priv->xdp_queue_pairs);
	return 0;

err_undo:
	/* Sends nothing if the offloads never changed. */
	rcu_assign_pointer(priv->xdp_prog, old);
	if (pvnet_sync_guest_offloads(priv, dev->features))
		netdev_err(dev, "could not restore the guest offloads\n");
	pvnet_resume(priv, was_active);
	return err;
}

int pvnet_ndo_bpf(struct net_device *dev, struct netdev_bpf *bpf)
{
	struct pvnet_priv *priv = netdev_priv(dev);

	switch (bpf->command) {
	case XDP_SETUP_PROG:
		return pvnet_xdp_set(priv, bpf->prog, bpf->extack);
	default:
		return -EINVAL;
	}
}

/*
 * Frames redirected to this device (devmap, or XDP_REDIRECT by ifindex),
 * from NAPI context of the device they came from.
 */
int pvnet_ndo_xdp_xmit(struct net_device *dev, int n,
		       struct xdp_frame **frames, u32 flags)
{
	struct pvnet_priv *priv = netdev_priv(dev);
	int sent;

	if (unlikely(flags & ~XDP_XMIT_FLAGS_MASK))
		return -EINVAL;
	/* pvnet_down() waits for a grace period after clearing ->active. */
	if (unlikely(!READ_ONCE(priv->active)))
		return -ENETDOWN;

	sent = pvnet_xdp_xmit_frames(priv, frames, n,
				     flags & XDP_XMIT_FLUSH);
	return pvnet_xdp_xmit_ret(frames, sent, n);
}
