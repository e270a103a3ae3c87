/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pvnet: kernel API compatibility helpers.
 *
 * Every call whose signature or name differs between the kernels pvnet
 * supports goes through one of the small helpers below, so that version
 * differences stay in this one file.  For now the helpers use the 6.1
 * API directly; build-time probes that define PVNET_HAVE_* macros will
 * select the variants for other kernels.
 */
#ifndef _PVNET_COMPAT_H
#define _PVNET_COMPAT_H

#include <linux/etherdevice.h>
#include <linux/ethtool.h>
#include <linux/netdevice.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>

/* netif_napi_add() lost its weight argument in 6.1. */
static inline void pvnet_napi_add(struct net_device *dev,
				  struct napi_struct *napi,
				  int (*poll)(struct napi_struct *, int))
{
	netif_napi_add(dev, napi, poll);
}

/* netif_tx_napi_add() was renamed netif_napi_add_tx() in 5.19/6.1. */
static inline void pvnet_napi_add_tx(struct net_device *dev,
				     struct napi_struct *napi,
				     int (*poll)(struct napi_struct *, int))
{
	netif_napi_add_tx(dev, napi, poll);
}

/* virtio_reset_device() appeared in 5.17; older kernels call the op. */
static inline void pvnet_reset_device(struct virtio_device *vdev)
{
	virtio_reset_device(vdev);
}

/* virtio_find_vqs() takes a struct virtqueue_info array from 6.11 on. */
static inline int pvnet_find_vqs(struct virtio_device *vdev, unsigned int nvqs,
				 struct virtqueue *vqs[],
				 vq_callback_t *callbacks[],
				 const char * const names[])
{
	return virtio_find_vqs(vdev, nvqs, vqs, callbacks, names, NULL);
}

/* dev->dev_addr became const in 5.17; eth_hw_addr_set() exists since 5.15. */
static inline void pvnet_eth_hw_addr_set(struct net_device *dev, const u8 *addr)
{
	eth_hw_addr_set(dev, addr);
}

/*
 * ethtool_ops::get_ringparam gained the kernel_ethtool_ringparam and
 * extack arguments in 5.17.  PVNET_DEFINE_GET_RINGPARAM(name, impl)
 * defines an op called @name with the right signature that calls
 * impl(dev, ring).
 */
#define PVNET_DEFINE_GET_RINGPARAM(name, impl)				\
static void name(struct net_device *dev,				\
		 struct ethtool_ringparam *ring,			\
		 struct kernel_ethtool_ringparam *kring,		\
		 struct netlink_ext_ack *extack)			\
{									\
	impl(dev, ring);						\
}

#endif /* _PVNET_COMPAT_H */
