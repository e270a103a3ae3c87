// SPDX-License-Identifier: GPL-2.0
/*
 * virtio_reset_device() (5.17 on); older kernels call the transport's
 * config->reset() op directly.
 */
#include <linux/virtio.h>
#include <linux/virtio_config.h>

static void pvnet_probe(struct virtio_device *vdev)
{
	virtio_reset_device(vdev);
}
