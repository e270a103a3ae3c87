// SPDX-License-Identifier: GPL-2.0
/*
 * virtio_config_driver_enable() (6.11 on): the driver-level switch for
 * config change callbacks, kept in the virtio_device across driver binds.
 */
#include <linux/virtio.h>
#include <linux/virtio_config.h>

static void pvnet_probe(struct virtio_device *vdev)
{
	virtio_config_driver_enable(vdev);
}
