// SPDX-License-Identifier: GPL-2.0
/*
 * struct virtio_net_hdr_v1_hash with hash_value_lo/hash_value_hi (two
 * __le16: newer than 6.12, Debian's 7.3 has it) instead of one __le32
 * hash_value.  Same bytes on the wire.
 */
#include <linux/virtio_net.h>

static u32 pvnet_probe(const struct virtio_net_hdr_v1_hash *h)
{
	return le16_to_cpu(h->hash_value_lo) |
	       (u32)le16_to_cpu(h->hash_value_hi) << 16;
}
