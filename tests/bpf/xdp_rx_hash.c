// SPDX-License-Identifier: GPL-2.0
/*
 * The device's receive hash through the bpf_xdp_metadata_rx_hash() kfunc: for each test
 * frame (rx_hash.h) the kfunc's return value, hash and RSS type go to rx_hashes[seq] and
 * the frame is dropped; everything else passes.  A metadata kfunc needs the program
 * loaded bound to the device: tests/bpf/load_bound.c does that.
 */
#include "rx_hash.h"

/* The kernel's enum (include/net/xdp.h); not in the uapi headers. */
enum xdp_rss_hash_type {
	XDP_RSS_TYPE_NONE = 0,
};

extern int bpf_xdp_metadata_rx_hash(const struct xdp_md *ctx, __u32 *hash,
				    enum xdp_rss_hash_type *rss_type) __ksym;

SEC("xdp")
int xdp_rx_hash(struct xdp_md *ctx)
{
	long seq = test_frame_seq((void *)(long)ctx->data, (void *)(long)ctx->data_end);
	enum xdp_rss_hash_type type = XDP_RSS_TYPE_NONE;
	__u32 hash = 0;
	int ret;

	if (seq < 0) {
		count(CNT_PASS);
		return XDP_PASS;
	}
	count(CNT_HIT);
	ret = bpf_xdp_metadata_rx_hash(ctx, &hash, &type);
	record(seq, ret, hash, type);
	return XDP_DROP;
}
