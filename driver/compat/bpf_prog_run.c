// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_prog_run(prog, ctx) (5.15 on), which replaced the BPF_PROG_RUN()
 * macro; 7.x no longer has the macro.  pvnet_compat.h backfills the
 * function name for older kernels.
 */
#include <linux/filter.h>

static u32 pvnet_probe(const struct bpf_prog *prog, const void *ctx)
{
	return bpf_prog_run(prog, ctx);
}
