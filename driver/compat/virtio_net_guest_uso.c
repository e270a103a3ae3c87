// SPDX-License-Identifier: GPL-2.0
/*
 * VIRTIO_NET_F_GUEST_USO4/6 and VIRTIO_NET_HDR_GSO_UDP_L4 (6.2 on, with
 * UDP_L4 support in virtio_net_hdr_to_skb()).
 */
#include <linux/virtio_net.h>

static unsigned int pvnet_probe(void)
{
	return VIRTIO_NET_F_GUEST_USO4 + VIRTIO_NET_F_GUEST_USO6 +
	       VIRTIO_NET_HDR_GSO_UDP_L4;
}
