// SPDX-License-Identifier: GPL-2.0
/*
 * load_bound OBJ PROG IFNAME: load program PROG of OBJ bound to device IFNAME
 * (BPF_F_XDP_DEV_BOUND_ONLY, which XDP metadata kfuncs need and which iproute2 and
 * Debian 12's bpftool cannot ask for) and attach it in driver mode, replacing any
 * program there.  It stays attached after exit: `ip link set dev IFNAME xdpdrv off`
 * detaches it.  Prints the program id; libbpf's and the verifier's messages go to
 * stderr on failure.
 */
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>

#ifndef BPF_F_XDP_DEV_BOUND_ONLY
#define BPF_F_XDP_DEV_BOUND_ONLY (1U << 6)	/* Linux 6.3 uapi */
#endif

int main(int argc, char **argv)
{
	struct bpf_prog_info info = {};
	__u32 info_len = sizeof(info);
	struct bpf_program *prog;
	struct bpf_object *obj;
	unsigned int ifindex;
	int err, fd;

	if (argc != 4) {
		fprintf(stderr, "usage: %s OBJ PROG IFNAME\n", argv[0]);
		return 2;
	}
	ifindex = if_nametoindex(argv[3]);
	if (!ifindex) {
		fprintf(stderr, "no interface %s: %s\n", argv[3], strerror(errno));
		return 1;
	}
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		fprintf(stderr, "cannot open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	prog = bpf_object__find_program_by_name(obj, argv[2]);
	if (!prog) {
		fprintf(stderr, "no program %s in %s\n", argv[2], argv[1]);
		return 1;
	}
	bpf_program__set_ifindex(prog, ifindex);
	bpf_program__set_flags(prog, bpf_program__flags(prog) | BPF_F_XDP_DEV_BOUND_ONLY);
	err = bpf_object__load(obj);
	if (err) {
		fprintf(stderr, "loading %s bound to %s failed: %s\n", argv[2], argv[3],
			strerror(-err));
		return 1;
	}
	fd = bpf_program__fd(prog);
	err = bpf_xdp_attach(ifindex, fd, XDP_FLAGS_DRV_MODE, NULL);
	if (err) {
		fprintf(stderr, "attaching %s to %s failed: %s\n", argv[2], argv[3],
			strerror(-err));
		return 1;
	}
	if (bpf_obj_get_info_by_fd(fd, &info, &info_len) == 0)
		printf("%u\n", info.id);
	return 0;
}
