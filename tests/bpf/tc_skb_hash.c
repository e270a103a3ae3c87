// SPDX-License-Identifier: GPL-2.0
/*
 * skb->hash as the driver left it, seen by a tc ingress classifier (direct action): for
 * each test frame (rx_hash.h) the hash goes to rx_hashes[seq] and the frame is dropped;
 * everything else continues.  Reading skb->hash does not compute one: 0 means the driver
 * set none (RPS, which would compute a software hash earlier, is off in the test guest).
 */
#include <linux/pkt_cls.h>
#include "rx_hash.h"

SEC("tc")
int tc_skb_hash(struct __sk_buff *skb)
{
	long seq;

	if (bpf_skb_pull_data(skb, skb->len))
		return TC_ACT_OK;
	seq = test_frame_seq((void *)(long)skb->data, (void *)(long)skb->data_end);
	if (seq < 0)
		return TC_ACT_OK;
	record(seq, 0, skb->hash, 0);
	return TC_ACT_SHOT;
}
