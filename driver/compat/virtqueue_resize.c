// SPDX-License-Identifier: GPL-2.0
/*
 * virtqueue_resize(vq, num, recycle) (6.0 to 6.10).
 *
 * Superseded-by: virtqueue_resize_done (6.11 added the recycle_done
 * callback, so this 3-argument form no longer compiles there).
 */
#include <linux/virtio.h>

static int pvnet_probe(struct virtqueue *vq,
		       void (*recycle)(struct virtqueue *vq, void *buf))
{
	return virtqueue_resize(vq, 256, recycle);
}
