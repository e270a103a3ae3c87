// SPDX-License-Identifier: GPL-2.0
/*
 * xsk_rx: AF_XDP receiver in copy mode (XDP_COPY) for the XDP tests, run in the guest.
 *
 *   xsk_rx IFNAME PROG_OBJ COUNT TIMEOUT_S [PORT]
 *
 * Opens one AF_XDP socket per rx queue of IFNAME (so every frame is caught whichever queue
 * the device puts it on), each with its own UMEM, fill and rx ring; loads PROG_OBJ (the
 * xdp_redirect_xsk program), puts every socket into xsks_map at its queue index (only the
 * socket's owner can do that) and attaches the program in driver mode. Then it says
 * "ready" on stderr and receives until COUNT frames arrived (plus a short linger that
 * catches extra copies) or TIMEOUT_S passed, detaches the program and prints a JSON
 * summary on stdout: received, unique, bad, per-queue counts and the sockets' drop stats.
 *
 * A good frame is IPv4/UDP to PORT (default 9) whose payload starts with a big-endian
 * sequence number below COUNT followed by zero bytes: what the harness's
 * traffic.udp_flood_frames() sends. libbpf 1.x has no xsk.h, so the sockets and rings are
 * set up with the raw socket options of <linux/if_xdp.h>.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef SOL_XDP
#define SOL_XDP 283
#endif

#define FRAME_SIZE 2048
#define RING_SIZE 8192		/* fill and rx ring entries; also UMEM frames per socket */
#define MAX_QUEUES 64		/* xsks_map max_entries */
#define LINGER_NS 500000000LL	/* after COUNT frames: keep reading this long */

struct ring {
	__u32 *producer;
	__u32 *consumer;
	void *desc;
	void *map;
	size_t map_len;
};

struct xsk {
	int fd;
	void *umem;
	struct ring fill;
	struct ring rx;
	unsigned long received;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "xsk_rx: %s: %s\n", what, strerror(err));
	exit(2);
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Number of rx queues the netdev has (its queues/rx-N entries in sysfs). */
static int rx_queues(const char *ifname)
{
	char path[256];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/sys/class/net/%s/queues", ifname);
	d = opendir(path);
	if (!d)
		die(path, errno);
	while ((e = readdir(d)))
		n += strncmp(e->d_name, "rx-", 3) == 0;
	closedir(d);
	return n;
}

static void map_ring(struct ring *r, int fd, const struct xdp_ring_offset *off,
		     size_t desc_size, off_t pgoff)
{
	r->map_len = off->desc + RING_SIZE * desc_size;
	r->map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		      fd, pgoff);
	if (r->map == MAP_FAILED)
		die("mmap ring", errno);
	r->producer = (__u32 *)((char *)r->map + off->producer);
	r->consumer = (__u32 *)((char *)r->map + off->consumer);
	r->desc = (char *)r->map + off->desc;
}

/* Give UMEM frames to the kernel through the fill ring (it always has room: every frame
 * is either there or in the rx ring, and both hold RING_SIZE entries). */
static void fill(struct xsk *x, const __u64 *addrs, __u32 n)
{
	__u32 prod = *x->fill.producer;
	__u64 *ring = x->fill.desc;
	__u32 i;

	for (i = 0; i < n; i++)
		ring[(prod + i) & (RING_SIZE - 1)] = addrs[i] & ~(__u64)(FRAME_SIZE - 1);
	__atomic_store_n(x->fill.producer, prod + n, __ATOMIC_RELEASE);
}

static void xsk_open(struct xsk *x, int ifindex, int queue)
{
	struct xdp_umem_reg reg = { 0 };
	struct xdp_mmap_offsets off;
	struct sockaddr_xdp sxdp = { 0 };
	socklen_t optlen = sizeof(off);
	static __u64 addrs[RING_SIZE];
	int size = RING_SIZE;
	int i;

	x->fd = socket(AF_XDP, SOCK_RAW, 0);
	if (x->fd < 0)
		die("socket(AF_XDP)", errno);
	x->umem = mmap(NULL, (size_t)RING_SIZE * FRAME_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (x->umem == MAP_FAILED)
		die("mmap umem", errno);
	reg.addr = (__u64)(uintptr_t)x->umem;
	reg.len = (__u64)RING_SIZE * FRAME_SIZE;
	reg.chunk_size = FRAME_SIZE;
	if (setsockopt(x->fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof(reg)))
		die("XDP_UMEM_REG", errno);
	if (setsockopt(x->fd, SOL_XDP, XDP_UMEM_FILL_RING, &size, sizeof(size)) ||
	    setsockopt(x->fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &size, sizeof(size)) ||
	    setsockopt(x->fd, SOL_XDP, XDP_RX_RING, &size, sizeof(size)))
		die("ring sizes", errno);
	if (getsockopt(x->fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &optlen))
		die("XDP_MMAP_OFFSETS", errno);
	map_ring(&x->fill, x->fd, &off.fr, sizeof(__u64), XDP_UMEM_PGOFF_FILL_RING);
	map_ring(&x->rx, x->fd, &off.rx, sizeof(struct xdp_desc), XDP_PGOFF_RX_RING);
	for (i = 0; i < RING_SIZE; i++)
		addrs[i] = (__u64)i * FRAME_SIZE;
	fill(x, addrs, RING_SIZE);

	sxdp.sxdp_family = AF_XDP;
	sxdp.sxdp_ifindex = ifindex;
	sxdp.sxdp_queue_id = queue;
	sxdp.sxdp_flags = XDP_COPY;
	if (bind(x->fd, (struct sockaddr *)&sxdp, sizeof(sxdp)))
		die("bind AF_XDP socket (copy mode)", errno);
}

/* Whether a frame is a test frame; its sequence number in *seq. */
static int good_frame(const unsigned char *p, __u32 len, int port, __u32 count, __u32 *seq)
{
	const struct ethhdr *eth = (const void *)p;
	const struct iphdr *ip = (const void *)(p + sizeof(*eth));
	const struct udphdr *udp;
	const unsigned char *payload;
	__u32 ihl, plen, i;

	if (len < sizeof(*eth) + sizeof(*ip) || eth->h_proto != htons(ETH_P_IP))
		return 0;
	ihl = ip->ihl * 4;
	if (ihl < sizeof(*ip) || ip->protocol != IPPROTO_UDP ||
	    len < sizeof(*eth) + ihl + sizeof(*udp))
		return 0;
	udp = (const void *)((const unsigned char *)ip + ihl);
	plen = ntohs(udp->len);
	payload = (const unsigned char *)(udp + 1);
	if (ntohs(udp->dest) != port || plen < sizeof(*udp) + 4 ||
	    payload + plen - sizeof(*udp) > p + len)
		return 0;
	plen -= sizeof(*udp);
	*seq = ntohl(*(const __u32 *)payload);
	for (i = 4; i < plen; i++)
		if (payload[i])
			return 0;
	return *seq < count;
}

int main(int argc, char **argv)
{
	static struct xsk xsks[MAX_QUEUES];
	struct pollfd pfds[MAX_QUEUES];
	unsigned long total = 0, unique = 0, bad = 0;
	long long start, deadline, linger = 0;
	struct bpf_program *prog;
	struct bpf_object *obj;
	unsigned char *seen;
	int ifindex, nq, q, map_fd, port = 9, err;
	__u32 count;

	if (argc < 5) {
		fprintf(stderr, "usage: %s IFNAME PROG_OBJ COUNT TIMEOUT_S [PORT]\n", argv[0]);
		return 2;
	}
	ifindex = if_nametoindex(argv[1]);
	if (!ifindex)
		die(argv[1], errno);
	count = strtoul(argv[3], NULL, 0);
	deadline = now_ns() + atoll(argv[4]) * 1000000000LL;
	if (argc > 5)
		port = atoi(argv[5]);
	seen = calloc(count + 1, 1);
	nq = rx_queues(argv[1]);
	if (!seen || nq < 1 || nq > MAX_QUEUES) {
		fprintf(stderr, "xsk_rx: %d rx queues on %s\n", nq, argv[1]);
		return 2;
	}

	obj = bpf_object__open_file(argv[2], NULL);
	err = libbpf_get_error(obj);
	if (err)
		die(argv[2], -err);
	err = bpf_object__load(obj);
	if (err)
		die("load BPF object", -err);
	prog = bpf_object__find_program_by_name(obj, "xdp_redirect_xsk");
	map_fd = bpf_object__find_map_fd_by_name(obj, "xsks_map");
	if (!prog || map_fd < 0)
		die("xdp_redirect_xsk/xsks_map not in the object", ENOENT);

	for (q = 0; q < nq; q++) {
		xsk_open(&xsks[q], ifindex, q);
		if (bpf_map_update_elem(map_fd, &q, &xsks[q].fd, BPF_ANY))
			die("xsks_map update", errno);
		pfds[q].fd = xsks[q].fd;
		pfds[q].events = POLLIN;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	err = bpf_xdp_attach(ifindex, bpf_program__fd(prog),
			     XDP_FLAGS_DRV_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST, NULL);
	if (err)
		die("attach xdp_redirect_xsk in driver mode", -err);
	fprintf(stderr, "ready: %d queue(s)\n", nq);
	fflush(stderr);

	start = now_ns();
	while (!stop) {
		long long now = now_ns();

		if (now > deadline || (linger && now > linger))
			break;
		if (!linger && total >= count)
			linger = now + LINGER_NS;
		if (poll(pfds, nq, 100) < 0 && errno != EINTR)
			die("poll", errno);
		for (q = 0; q < nq; q++) {
			struct xsk *x = &xsks[q];
			__u32 cons = *x->rx.consumer;
			__u32 n = __atomic_load_n(x->rx.producer, __ATOMIC_ACQUIRE) - cons;
			static __u64 addrs[RING_SIZE];
			__u32 i, seq;

			for (i = 0; i < n; i++) {
				const struct xdp_desc *d = (const struct xdp_desc *)x->rx.desc +
							   ((cons + i) & (RING_SIZE - 1));

				addrs[i] = d->addr;
				if (!good_frame((unsigned char *)x->umem + d->addr, d->len, port,
						count, &seq))
					bad++;
				else if (!seen[seq]++)
					unique++;
			}
			__atomic_store_n(x->rx.consumer, cons + n, __ATOMIC_RELEASE);
			if (n)
				fill(x, addrs, n);
			x->received += n;
			total += n;
		}
	}

	err = bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, NULL);
	if (err)
		fprintf(stderr, "xsk_rx: detach: %s\n", strerror(-err));
	printf("{\"received\": %lu, \"unique\": %lu, \"bad\": %lu, \"queues\": %d, "
	       "\"seconds\": %.3f, \"detached\": %s, \"per_queue\": [",
	       total, unique, bad, nq, (now_ns() - start) / 1e9, err ? "false" : "true");
	for (q = 0; q < nq; q++) {
		struct xdp_statistics st = { 0 };
		socklen_t len = sizeof(st);

		getsockopt(xsks[q].fd, SOL_XDP, XDP_STATISTICS, &st, &len);
		printf("%s{\"queue\": %d, \"received\": %lu, \"rx_dropped\": %llu, "
		       "\"rx_invalid_descs\": %llu, \"rx_ring_full\": %llu, "
		       "\"rx_fill_ring_empty_descs\": %llu}", q ? ", " : "", q, xsks[q].received,
		       (unsigned long long)st.rx_dropped, (unsigned long long)st.rx_invalid_descs,
		       (unsigned long long)st.rx_ring_full,
		       (unsigned long long)st.rx_fill_ring_empty_descs);
		close(xsks[q].fd);
	}
	printf("]}\n");
	bpf_object__close(obj);
	return 0;
}
