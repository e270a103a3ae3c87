// SPDX-License-Identifier: GPL-2.0
/*
 * virtqueue_resize(vq, num, recycle) (6.0 on; 6.11 added recycle_done,
 * probed separately by virtqueue_resize_done.c).
 */
#include <linux/virtio.h>

static int pvnet_probe(struct virtqueue *vq,
		       void (*recycle)(struct virtqueue *vq, void *buf))
{
	return virtqueue_resize(vq, 256, recycle);
}
