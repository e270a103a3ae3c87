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
#include <linux/error-injection.h>
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
 * Post one command with a payload of @len bytes already in ctrl->data and
 * wait for the device to return it.  Returns 0 when it answered
 * VIRTIO_NET_OK, -EINVAL when it refused (VIRTIO_NET_ERR: the device
 * gives no reason), -EPROTO for any other ack value, -ETIMEDOUT when it
 * did not answer in time (the buffers then stay the device's until a
 * reset), -EIO when the vq is broken, or the error of queueing.
 *
 * Not inlined, and open to the kernel's function error injection
 * (fail_function): the debug lane's tests make it fail to check that
 * every caller reports the error, rolls back and recovers.
 */
static noinline int pvnet_ctrl_exchange(struct pvnet_priv *priv, u8 class,
					u8 cmd, unsigned int len)
{
	struct pvnet_ctrl *ctrl = priv->ctrl;
	struct scatterlist hdr, data, ack, *sgs[3];
	unsigned long deadline;
	unsigned int out = 0, tmp;
	int err;

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
	if (err)
		return err;
	if (!virtqueue_kick(ctrl->vq))
		return -EIO;

	/*
	 * The device answers control commands synchronously in practice;
	 * poll, sleeping a little between looks.
	 */
	deadline = jiffies + PVNET_CTRL_TIMEOUT;
	while (!virtqueue_get_buf(ctrl->vq, &tmp)) {
		if (virtqueue_is_broken(ctrl->vq))
			return -EIO;
		if (time_after(jiffies, deadline))
			return -ETIMEDOUT;
		usleep_range(20, 100);
	}

	switch (ctrl->ack) {
	case VIRTIO_NET_OK:
		return 0;
	case VIRTIO_NET_ERR:
		return -EINVAL;
	default:
		return -EPROTO;
	}
}
ALLOW_ERROR_INJECTION(pvnet_ctrl_exchange, ERRNO);

/*
 * Send one command (see pvnet_ctrl_exchange()) and account for it: every
 * command in ctrl_cmds, refusals in ctrl_fails, missing answers in
 * ctrl_timeouts.  A command that got no answer, or a broken vq, leaves the
 * control queue unusable until the device is reset: the reset is
 * scheduled, and commands meanwhile fail with -EBUSY.  Under ctrl->lock.
 */
static int pvnet_ctrl_cmd(struct pvnet_priv *priv, u8 class, u8 cmd,
			  unsigned int len)
{
	struct pvnet_ctrl *ctrl = priv->ctrl;
	struct pvnet_dev_stats *stats = &priv->dev_stats;
	int err;

	lockdep_assert_held(&ctrl->lock);

	if (!ctrl->vq)
		return -ENODEV;
	if (ctrl->broken)
		return -EBUSY;

	atomic_long_inc(&stats->ctrl_cmds);
	err = pvnet_ctrl_exchange(priv, class, cmd, len);
	switch (err) {
	case 0:
		return 0;
	case -EINVAL:
	case -EPROTO:
		atomic_long_inc(&stats->ctrl_fails);
		netdev_err(priv->dev, "control command %u.%u refused by the device (%s)\n",
			   class, cmd, err == -EINVAL ? "VIRTIO_NET_ERR" : "bad ack");
		return err;
	case -ETIMEDOUT:
		atomic_long_inc(&stats->ctrl_timeouts);
		fallthrough;
	case -EIO:
		ctrl->broken = true;
		netdev_err(priv->dev, "control command %u.%u: %s; resetting the device\n",
			   class, cmd, err == -EIO ? "the queue is broken" :
			   "no answer from the device");
		pvnet_schedule_reset(priv, "the control queue stopped answering");
		return err;
	default:
		netdev_err(priv->dev, "control command %u.%u not queued: %d\n",
			   class, cmd, err);
		return err;
	}
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
