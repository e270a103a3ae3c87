// SPDX-License-Identifier: GPL-2.0
/*
 * tc ingress (direct action) side of xdp_meta.c: every test frame (IPv4, UDP to
 * XDP_TEST_PORT) must arrive with the metadata the XDP program put in front of it, magic and
 * UDP source port: CNT_HIT counts those, CNT_CORRUPT the test frames without it (none
 * expected). Test frames are dropped here; everything else continues.
 */
#include <linux/pkt_cls.h>
#include "xdp_common.h"
#include "xdp_meta.h"

SEC("tc")
int tc_meta(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct pvnet_test_meta *meta = (void *)(long)skb->data_meta;
	struct udphdr *udp = test_udp(data, data_end);

	if (!udp)
		return TC_ACT_OK;
	if ((void *)(meta + 1) <= data && meta->magic == META_MAGIC &&
	    meta->sport == udp->source)
		count(CNT_HIT);
	else
		count(CNT_CORRUPT);
	return TC_ACT_SHOT;
}
