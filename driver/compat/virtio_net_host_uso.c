// SPDX-License-Identifier: GPL-2.0
/*
 * VIRTIO_NET_F_HOST_USO and VIRTIO_NET_HDR_GSO_UDP_L4 (UDP segmentation
 * offload, VIRTIO 1.2) are named by the uapi header from 6.2 on.
 */
#include <linux/virtio_net.h>

static unsigned int pvnet_probe(void)
{
	return VIRTIO_NET_F_HOST_USO + VIRTIO_NET_HDR_GSO_UDP_L4;
}
