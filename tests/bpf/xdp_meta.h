/* SPDX-License-Identifier: GPL-2.0 */
/* The metadata xdp_meta.c writes in front of a test frame and tc_meta.c expects there. */
#ifndef PVNET_XDP_META_H
#define PVNET_XDP_META_H

#include <linux/types.h>

#define META_MAGIC 0x5056454dU	/* "PVEM" */

struct pvnet_test_meta {
	__u32 magic;
	__u16 sport;		/* the frame's UDP source port, network order */
	__u16 pad;
};

#endif
