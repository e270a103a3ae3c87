// SPDX-License-Identifier: GPL-2.0
/*
 * virtqueue_resize(vq, num, recycle, recycle_done): the recycle_done
 * callback was added in 6.11.
 */
#include <linux/virtio.h>

static int pvnet_probe(struct virtqueue *vq,
		       void (*recycle)(struct virtqueue *vq, void *buf),
		       void (*recycle_done)(struct virtqueue *vq))
{
	return virtqueue_resize(vq, 256, recycle, recycle_done);
}
