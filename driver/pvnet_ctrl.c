// SPDX-License-Identifier: GPL-2.0
/*
 * pvnet: control virtqueue (VIRTIO 1.2, 5.1.6.5).
 *
 * A command is a device-readable header and payload followed by one
 * device-writable ack byte.  Commands are synchronous: the driver posts
 * one, kicks and waits for the device to return it.  They are issued
 * from process context (probe, restore, ethtool and ndo callbacks under
 * RTNL) and serialised by ctrl->lock.
 *
 * The buffers live in their own kmalloc'ed struct: the netdev private
 * area may be vmalloc'ed, which the DMA API cannot map.
 */

#include <linux/delay.h>
#include <linux/jiffies.h>
#include <linux/mutex.h>
#include <linux/netdevice.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>

#include "pvnet.h"
#include "pvnet_compat.h"

/* struct virtio_net_hash_config up to its key (13 bytes). */
#define PVNET_HASH_CFG_LEN \
	offsetof(struct virtio_net_hash_config, hash_key_data)

/* How long a command may take before the device is declared broken. */
#define PVNET_CTRL_TIMEOUT	(5 * HZ)

struct pvnet_ctrl {
	struct virtqueue *vq;
	struct mutex lock;		/* one command in flight */
	bool broken;			/* a command timed out */
	struct virtio_net_ctrl_hdr hdr;
	virtio_net_ctrl_ack ack;
	union {
		__virtio16 pairs;
		__virtio64 offloads;
		/* struct virtio_net_hash_config and its key */
		u8 hash[PVNET_HASH_CFG_LEN + PVNET_HASH_KEY_LEN];
	} data;
	/* Hash reports on (re-sent after VQ_PAIRS_SET, see below). */
	bool hash_on;
};

int pvnet_ctrl_alloc(struct pvnet_priv *priv)
{
	struct pvnet_ctrl *ctrl;

	if (!virtio_has_feature(priv->vdev, VIRTIO_NET_F_CTRL_VQ))
		return 0;

	ctrl = kzalloc(sizeof(*ctrl), GFP_KERNEL);
	if (!ctrl)
		return -ENOMEM;
	mutex_init(&ctrl->lock);
	priv->ctrl = ctrl;
	return 0;
}

void pvnet_ctrl_free(struct pvnet_priv *priv)
{
	if (!priv->ctrl)
		return;
	mutex_destroy(&priv->ctrl->lock);
	kfree(priv->ctrl);
	priv->ctrl = NULL;
}

void pvnet_ctrl_set_vq(struct pvnet_priv *priv, struct virtqueue *vq)
{
	if (priv->ctrl) {
		priv->ctrl->vq = vq;
		priv->ctrl->broken = false;
	}
}

/*
 * Send one command with a payload of @len bytes already in ctrl->data.
 * Returns 0 when the device acknowledged it with VIRTIO_NET_OK.
 */
static int pvnet_ctrl_cmd(struct pvnet_priv *priv, u8 class, u8 cmd,
			  unsigned int len)
{
	struct pvnet_ctrl *ctrl = priv->ctrl;
	struct scatterlist hdr, data, ack, *sgs[3];
	unsigned long deadline;
	unsigned int out = 0, tmp;
	int err;

	lockdep_assert_held(&ctrl->lock);

	if (!ctrl->vq || ctrl->broken)
		return -EIO;

	ctrl->hdr.class = class;
	ctrl->hdr.cmd = cmd;
	ctrl->ack = ~VIRTIO_NET_OK;

	sg_init_one(&hdr, &ctrl->hdr, sizeof(ctrl->hdr));
	sgs[out++] = &hdr;
	if (len) {
		sg_init_one(&data, &ctrl->data, len);
		sgs[out++] = &data;
	}
	sg_init_one(&ack, &ctrl->ack, sizeof(ctrl->ack));
	sgs[out] = &ack;

	err = virtqueue_add_sgs(ctrl->vq, sgs, out, 1, ctrl, GFP_KERNEL);
	if (err) {
		netdev_err(priv->dev, "control command %u.%u not queued: %d\n",
			   class, cmd, err);
		return err;
	}

	if (!virtqueue_kick(ctrl->vq)) {
		ctrl->broken = true;
		return -EIO;
	}

	/*
	 * The device answers control commands synchronously in practice;
	 * poll, sleeping a little between looks.
	 */
	deadline = jiffies + PVNET_CTRL_TIMEOUT;
	while (!virtqueue_get_buf(ctrl->vq, &tmp)) {
		if (virtqueue_is_broken(ctrl->vq) ||
		    time_after(jiffies, deadline)) {
			/* The buffers stay the device's until it is reset. */
			ctrl->broken = true;
			netdev_err(priv->dev,
				   "control command %u.%u: no answer from the device\n",
				   class, cmd);
			return -ETIMEDOUT;
		}
		usleep_range(20, 100);
	}

	return ctrl->ack == VIRTIO_NET_OK ? 0 : -EIO;
}

/*
 * VIRTIO_NET_CTRL_MQ_HASH_CONFIG: hashes of priv->hash_types with
 * priv->hash_key in every rx header, or (@on false) none.  Under
 * ctrl->lock.
 */
static int __pvnet_ctrl_set_hash(struct pvnet_priv *priv, bool on)
{
	struct pvnet_ctrl *ctrl = priv->ctrl;
	struct virtio_net_hash_config *cfg = (void *)ctrl->data.hash;
	unsigned int len = PVNET_HASH_CFG_LEN;
	int err;

	memset(ctrl->data.hash, 0, sizeof(ctrl->data.hash));
	if (on) {
		cfg->hash_types = cpu_to_le32(priv->hash_types);
		cfg->hash_key_length = PVNET_HASH_KEY_LEN;
		memcpy(cfg->hash_key_data, priv->hash_key, PVNET_HASH_KEY_LEN);
		len += PVNET_HASH_KEY_LEN;
	}
	err = pvnet_ctrl_cmd(priv, VIRTIO_NET_CTRL_MQ,
			     VIRTIO_NET_CTRL_MQ_HASH_CONFIG, len);
	if (err)
		netdev_err(priv->dev, "device refused hash config %#x: %d\n",
			   on ? priv->hash_types : 0, err);
	else
		ctrl->hash_on = on;
	return err;
}

/* Hash reports on or off (ethtool -K rxhash); -EOPNOTSUPP without them. */
int pvnet_ctrl_set_hash(struct pvnet_priv *priv, bool on)
{
	struct pvnet_ctrl *ctrl = priv->ctrl;
	int err;

	if (!ctrl || !priv->hash_types)
		return -EOPNOTSUPP;

	mutex_lock(&ctrl->lock);
	err = __pvnet_ctrl_set_hash(priv, on);
	mutex_unlock(&ctrl->lock);
	return err;
}

/*
 * VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET.  A device may drop its hash
 * configuration with any MQ command (QEMU does), so it is sent again.
 */
int pvnet_ctrl_set_queue_pairs(struct pvnet_priv *priv, u16 pairs)
{
	struct pvnet_ctrl *ctrl = priv->ctrl;
	int err;

	if (!ctrl || !virtio_has_feature(priv->vdev, VIRTIO_NET_F_MQ))
		return pairs == 1 ? 0 : -EOPNOTSUPP;

	mutex_lock(&ctrl->lock);
	ctrl->data.pairs = cpu_to_virtio16(priv->vdev, pairs);
	err = pvnet_ctrl_cmd(priv, VIRTIO_NET_CTRL_MQ,
			     VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
			     sizeof(ctrl->data.pairs));
	if (!err && ctrl->hash_on)
		__pvnet_ctrl_set_hash(priv, true);
	mutex_unlock(&ctrl->lock);
	if (err)
		netdev_err(priv->dev, "device refused %u queue pairs: %d\n",
			   pairs, err);
	return err;
}

/* VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET: @offloads is a VIRTIO_NET_F_GUEST_* mask. */
int pvnet_ctrl_set_guest_offloads(struct pvnet_priv *priv, u64 offloads)
{
	struct pvnet_ctrl *ctrl = priv->ctrl;
	int err;

	if (!ctrl ||
	    !virtio_has_feature(priv->vdev, VIRTIO_NET_F_CTRL_GUEST_OFFLOADS))
		return -EOPNOTSUPP;

	mutex_lock(&ctrl->lock);
	ctrl->data.offloads = cpu_to_virtio64(priv->vdev, offloads);
	err = pvnet_ctrl_cmd(priv, VIRTIO_NET_CTRL_GUEST_OFFLOADS,
			     VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET,
			     sizeof(ctrl->data.offloads));
	mutex_unlock(&ctrl->lock);
	if (err)
		netdev_err(priv->dev,
			   "device refused guest offloads 0x%llx: %d\n",
			   offloads, err);
	return err;
}
