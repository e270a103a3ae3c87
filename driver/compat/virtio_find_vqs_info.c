// SPDX-License-Identifier: GPL-2.0
/*
 * virtio_find_vqs() taking one struct virtqueue_info array (6.11 on)
 * instead of separate callbacks[] and names[] arrays.
 */
#include <linux/virtio.h>
#include <linux/virtio_config.h>

static int pvnet_probe(struct virtio_device *vdev, struct virtqueue *vqs[],
		       struct virtqueue_info info[])
{
	return virtio_find_vqs(vdev, 2, vqs, info, NULL);
}
