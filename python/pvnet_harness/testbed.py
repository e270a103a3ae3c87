"""The standard test bed: harness netns + one guest with the DUT (pvnet) and the peer
(in-tree virtio_net, in guest netns "peer"), addressed and ready for traffic."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .guest import Guest, GuestError, Profile, bad_dmesg_lines, choose_accel, load_profile
from .image import build_initramfs
from .kernels import KernelTree
from .netlab import HOST_V4 as HOST_V4  # re-exported: the test bed's address plan
from .netlab import HOST_V6 as HOST_V6
from .netlab import NetLab, netem_args

DUT_V4 = "198.18.0.2"
PEER_V4 = "198.18.0.3"
DUT_V6 = "2001:db8::2"
PEER_V6 = "2001:db8::3"
KMEMLEAK = "/sys/kernel/debug/kmemleak"


def queue_counter(stats: dict[str, int], direction: str, name: str) -> dict[int, int]:
    """One per-queue counter of `ethtool -S` ("rx"/"tx", e.g. "packets") -> {queue: value}.
    Names are rx_queue_<q>_<name> (pvnet, virtio_net before 6.9) or rx<q>_<name> (virtio_net
    since 6.9)."""
    pat = re.compile(rf"{direction}(?:_queue_)?(\d+)_{name}")
    return {int(m.group(1)): v for k, v in stats.items() if (m := pat.fullmatch(k))}


def queue_sum(stats: dict[str, int], direction: str, name: str) -> int:
    """A per-queue counter summed over every queue ethtool -S lists."""
    return sum(queue_counter(stats, direction, name).values())


def parse_ethtool_stats(text: str) -> dict[str, int]:
    """`ethtool -S` output -> {name: value}."""
    stats: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().rpartition(":")
        if sep and value.strip().lstrip("-").isdigit():
            stats[name.strip()] = int(value)
    return stats


@dataclass(frozen=True)
class RestSnapshot:
    """Counters read at one moment (TestBed.at_rest): the host tap's, the DUT's link counters
    and its `ethtool -S`. The tap's tx_* are the frames it handed to QEMU for the DUT."""

    tap: dict[str, int]
    link: dict[str, int]
    ethtool: dict[str, int]


@dataclass(frozen=True)
class Feature:
    on: bool
    fixed: bool


def parse_ethtool_features(text: str) -> dict[str, Feature]:
    """`ethtool -k` output -> {feature: Feature(on, fixed)} ("on [requested off]" is on)."""
    feats: dict[str, Feature] = {}
    for line in text.splitlines():
        name, sep, rest = line.strip().partition(": ")
        words = rest.split()
        if sep and words and words[0] in ("on", "off"):
            feats[name] = Feature(words[0] == "on", "[fixed]" in rest)
    return feats


def parse_kv_lines(text: str, sep: str = ":") -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        k, s, v = line.partition(sep)
        if s:
            out[k.strip()] = v.strip()
    return out


def parse_ethtool_sections(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """`ethtool -l`/`-g` output -> (maximums, current settings)."""
    maxima, _, current = text.partition("Current hardware settings:")
    return parse_kv_lines(maxima), parse_kv_lines(current)


@dataclass
class TestBed:
    __test__ = False  # not a pytest test class

    tree: KernelTree
    pvnet_ko: Path
    profile: Profile = field(default_factory=load_profile)
    accel: str = field(default_factory=choose_accel)
    pvnet_params: str = ""
    # host bridge/taps and peer MTU (jumbo beds); the DUT takes its MTU from host_mtu
    mtu: int | None = None
    keep: bool = False
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pvnet-bed-")))
    lab: NetLab | None = None
    guest: Guest | None = None
    # The compat probes (driver/compat/<name>.c stems, lower case) that compiled into pvnet_ko:
    # the build's BuildResult.probes, set by the e2e make_bed fixture, so tests ask what the
    # module under test can do instead of which kernel line it runs on. Empty (the default)
    # for beds made without a build result at hand (bench, demo).
    probes: frozenset[str] = frozenset()

    def has(self, probe: str) -> bool:
        """Whether the probe driver/compat/<probe>.c compiled for this bed's module (name in
        any case: "VIRTQUEUE_RESIZE" as PVNET_HAVE_VIRTQUEUE_RESIZE reads, or "virtqueue_resize")."""
        return probe.lower() in self.probes

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> TestBed:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        initrd = build_initramfs(self.tree, self.pvnet_ko, self.workdir / "initrd.gz",
                                 self.profile.guest_nics(), self.pvnet_params)
        self.lab = NetLab({n.tap: n.queues for n in self.profile.nics}, mtu=self.mtu)
        self.lab.create()
        try:
            self.before_guest()
            self.guest = Guest(self.tree, initrd, self.lab, self.profile, self.workdir / "guest",
                               self.accel)
            self.guest.start()
            self.setup_peer()
            self.setup_dut()
        except BaseException:
            self.stop()
            raise

    def before_guest(self) -> None:
        """Called once the netns and taps exist, before QEMU starts (a bed with a device
        back-end starts it here). Nothing for the standard bed."""

    def stop(self) -> None:
        if self.guest is not None:
            self.guest.stop()
            self.guest = None
        if self.lab is not None:
            self.lab.close()
            self.lab = None
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def g(self) -> Guest:
        if self.guest is None:
            raise GuestError("test bed is not started")
        return self.guest

    @property
    def net(self) -> NetLab:
        if self.lab is None:
            raise GuestError("test bed is not started")
        return self.lab

    # ------------------------------------------------------------ topology

    @property
    def dut_mac(self) -> str:
        return self.profile.nic("dut").mac

    @property
    def dut_tap(self) -> str:
        return self.profile.nic("dut").tap

    def nic_if(self, role: str = "dut") -> str:
        """A NIC's current netdev name (it changes across driver reloads)."""
        pci = self.profile.nic(role).pci
        out = self.g.sh(f"ls /sys/bus/pci/devices/{pci}/virtio*/net/ 2>/dev/null")
        names = out.split()
        if len(names) != 1:
            self.g.fail(f"expected one netdev under the {role} NIC {pci}, found {names}")
        return names[0]

    def dut_if(self) -> str:
        return self.nic_if("dut")

    def nic_virtio(self, role: str = "dut") -> str:
        pci = self.profile.nic(role).pci
        return self.g.sh(f"basename /sys/bus/pci/devices/{pci}/virtio*")

    def dut_virtio(self) -> str:
        return self.nic_virtio("dut")

    def nic_driver(self, role: str = "dut") -> str:
        """The virtio driver a NIC is bound to ("" when unbound)."""
        virtio = self.nic_virtio(role)
        return self.g.sh(f"basename \"$(readlink /sys/bus/virtio/devices/{virtio}/driver)\" "
                         f"2>/dev/null || true")

    def dut_driver(self) -> str:
        return self.nic_driver("dut")

    def bind_nic(self, role: str, driver: str) -> str:
        """Move a NIC to another virtio driver (pvnet, virtio_net) through sysfs unbind/bind;
        returns the new netdev name (the netdev is recreated, down and unaddressed)."""
        virtio = self.nic_virtio(role)
        current = self.nic_driver(role)
        if current != driver:
            if current:
                self.g.sh(f"echo {virtio} > /sys/bus/virtio/drivers/{current}/unbind")
            self.g.sh(f"echo {virtio} > /sys/bus/virtio/drivers/{driver}/bind")
        if self.nic_driver(role) != driver:
            self.g.fail(f"{role} NIC {virtio} did not bind to {driver}")
        return self.nic_if(role)

    def bind_dut(self, driver: str) -> str:
        """Move the DUT to another virtio driver, then address it again; returns the new
        netdev name."""
        self.bind_nic("dut", driver)
        return self.setup_dut()

    def setup_dut(self) -> str:
        dev = self.dut_if()
        self.g.sh(f"ip link set {dev} up && ip addr replace {DUT_V4}/24 dev {dev} && "
                  f"ip -6 addr replace {DUT_V6}/64 dev {dev} nodad")
        self.wait_carrier(True)
        return dev

    def setup_peer(self) -> None:
        mtu = f" mtu {self.mtu}" if self.mtu else ""
        self.g.sh(f"ip -n peer link set peer0 up{mtu} && "
                  f"ip -n peer addr replace {PEER_V4}/24 dev peer0"
                  f" && ip -n peer -6 addr replace {PEER_V6}/64 dev peer0 nodad")

    def wait_carrier(self, up: bool, timeout: float = 20) -> None:
        want = "1" if up else "0"
        deadline = time.monotonic() + timeout
        while True:
            dev = self.dut_if()
            got = self.g.run(f"cat /sys/class/net/{dev}/carrier", check=False).out.strip()
            if got == want:
                return
            if time.monotonic() > deadline:
                self.g.fail(f"DUT carrier stayed {got!r}, wanted {want}")
            time.sleep(0.5)

    # ------------------------------------------------------------ reading the DUT

    def ethtool_stats(self) -> dict[str, int]:
        return parse_ethtool_stats(self.g.sh(f"ethtool -S {self.dut_if()}"))

    def ethtool_sections(self, flag: str) -> tuple[dict[str, str], dict[str, str]]:
        """`ethtool -l` (channels) or `ethtool -g` (rings) of the DUT: (maximums, current)."""
        return parse_ethtool_sections(self.g.sh(f"ethtool {flag} {self.dut_if()}"))

    def link_stats(self) -> dict[str, int]:
        dev = self.dut_if()
        out = self.g.sh(f"cd /sys/class/net/{dev}/statistics && grep . *")
        return {k: int(v) for k, v in parse_kv_lines(out).items()}

    def between_link_reads(self, cmd: str, tries: int = 10) -> tuple[dict[str, int], str]:
        """(link counters, output of `cmd`) with nothing received or sent while `cmd` ran: the
        link counters are read before and after `cmd` in one guest command, again until both
        reads agree (a stray ND/ARP frame or a late ACK arriving in between would make exact
        comparisons flaky)."""
        dev = self.dut_if()
        for _ in range(tries):
            read = self._read_between_links(dev, cmd)
            if read is not None:
                return read
        raise AssertionError(f"link counters kept moving over {tries} reads")

    def _read_between_links(self, dev: str, cmd: str) -> tuple[dict[str, int], str] | None:
        """One try of between_link_reads: None if the link counters moved while `cmd` ran."""
        link_cmd = f"(cd /sys/class/net/{dev}/statistics && grep . *)"
        out = self.g.sh(f"{link_cmd}; echo @@CMD; {cmd}; echo @@LINK; {link_cmd}")
        first, _, rest = out.partition("@@CMD")
        between, _, last = rest.partition("@@LINK")
        if first.strip() != last.strip():
            return None
        return {k: int(v) for k, v in parse_kv_lines(first).items()}, between

    def stats_snapshot(self, tries: int = 10) -> tuple[dict[str, int], dict[str, int]]:
        """(link counters, `ethtool -S`) read at one moment (see between_link_reads)."""
        link, ethtool = self.between_link_reads(f"ethtool -S {self.dut_if()}", tries)
        return link, parse_ethtool_stats(ethtool)

    def at_rest(self, tries: int = 10) -> RestSnapshot | None:
        """The host tap's counters and the DUT's (link counters, `ethtool -S`) at one moment,
        or None if frames kept crossing over `tries` reads: the tap is read before and after
        one try of between_link_reads with `ethtool -S`, again until neither moved. Counting a
        frame on one side and not the other in a base snapshot offsets every later tap-vs-DUT
        difference by one for good (a stray ND/MLD frame from the host did exactly that in CI)."""
        dev = self.dut_if()  # once: the tap must stay still across the guest's one command
        for _ in range(tries):
            tap = self.net.link_stats(self.dut_tap)
            read = self._read_between_links(dev, f"ethtool -S {dev}")
            if read is not None and self.net.link_stats(self.dut_tap) == tap:
                return RestSnapshot(tap, read[0], parse_ethtool_stats(read[1]))
            time.sleep(0.2)
        return None

    def ethtool_info(self) -> dict[str, str]:
        return parse_kv_lines(self.g.sh(f"ethtool -i {self.dut_if()}"))

    # ------------------------------------------------------------ guest-side transfers

    def listen(self, port: int, path: str, name: str, ns: str = "") -> None:
        """Background one-shot TCP receiver in the guest writing to `path` (socat)."""
        pre = f"ip netns exec {ns} " if ns else ""
        self.g.sh(f"{pre}socat -u TCP-LISTEN:{port},reuseaddr OPEN:{path},creat,trunc "
                  f">/tmp/{name}.log 2>&1 & echo $! > /tmp/{name}.pid")

    def wait_job(self, name: str, timeout: float) -> None:
        """Wait for a background guest job started by listen(); fail with its log.

        The guest shell polls with its own deadline, so on a stall the console stays usable
        and the failure carries the DUT's transmit state (counters, BQL, kernel log)."""
        secs = max(1, int(timeout))
        # A finished child stays a zombie until `wait` reaps it: "alive" means not in state Z.
        # The deadline is the guest clock's, not a count of sleeps: a loaded TCG guest sleeps
        # long, and the host must not give up on the console before the guest does.
        res = self.g.run(f"p=$(cat /tmp/{name}.pid); end=$(($(date +%s) + {secs})); "
                         f"alive() {{ s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null); "
                         f"[ -n \"$s\" ] && [ \"$s\" != Z ]; }}; "
                         f"while alive && [ $(date +%s) -lt $end ]; do sleep 0.2; done; "
                         f"if alive; then echo still-running; (exit 124); else wait $p; fi",
                         timeout=timeout + 60, check=False)
        if res.rc != 0:
            log = self.g.run(f"cat /tmp/{name}.log", check=False).out
            state = self.dut_state() if res.rc == 124 else ""
            self.g.fail(f"guest job {name} exited {res.rc}: {log}{state}")

    def dut_state(self) -> str:
        """What a stalled transfer needs looked at: per-queue counters, queue flags, BQL and
        the kernel log's tail."""
        dev = self.dut_if()
        return "\n" + self.g.run(
            f"ethtool -S {dev} | grep -v ': 0$'; "
            f"for q in /sys/class/net/{dev}/queues/tx-*; do "
            f"echo $q inflight=$(cat $q/byte_queue_limits/inflight) "
            f"limit=$(cat $q/byte_queue_limits/limit) timeouts=$(cat $q/tx_timeout); done; "
            f"tc -s qdisc show dev {dev}; ss -tni; dmesg | tail -n 30", timeout=60,
            check=False).out

    def sha256(self, path: str) -> str:
        return self.g.sh(f"sha256sum {path}", timeout=180).split()[0]

    # ------------------------------------------------------------ impairment

    def impair_peer(self, delay_ms: float, loss_pct: float) -> str:
        """netem on the peer, both directions (egress qdisc, ingress through ifb).

        The host kernel of these machines has no sch_netem, so the wire is impaired inside
        the guest at the peer end; the DUT's own queues carry no test qdisc.
        """
        args = " ".join(netem_args(delay_ms=delay_ms, loss_pct=loss_pct, limit=10000))
        p = "ip netns exec peer"
        self.g.sh(
            f"{p} ip link add ifb0 type ifb && {p} ip link set ifb0 up && "
            f"{p} tc qdisc add dev peer0 root {args} && "
            f"{p} tc qdisc add dev peer0 handle ffff: ingress && "
            f"{p} tc filter add dev peer0 parent ffff: matchall "
            f"action mirred egress redirect dev ifb0 && "
            f"{p} tc qdisc add dev ifb0 root {args}"
        )
        return args

    def clear_impairment(self) -> None:
        p = "ip netns exec peer"
        self.g.run(f"{p} tc qdisc del dev peer0 root; {p} tc qdisc del dev peer0 ingress; "
                   f"{p} ip link del ifb0", check=False)

    def check_dmesg(self) -> list[str]:
        """Bad kernel lines since the last check (WARNING, BUG, Oops, refcount...)."""
        return bad_dmesg_lines(self.g.new_dmesg())


    # ------------------------------------------------------------ debug kernels

    def guest_has(self, path: str) -> bool:
        """Whether a path exists in the guest (a debugfs file: what the kernel can do)."""
        return self.g.run(f"test -e {path}", check=False).rc == 0

    def kmemleak_quiet(self) -> bool:
        """Stop kmemleak's periodic scan thread (the harness scans when it wants a report);
        False when the kernel has no kmemleak."""
        if not self.guest_has(KMEMLEAK):
            return False
        self.g.run(f"echo scan=off > {KMEMLEAK}", check=False)
        return True

    def kmemleak_report(self, pause_s: float = 5) -> str | None:
        """kmemleak's report after two scans `pause_s` apart (an object must look unreferenced
        in both, so fresh allocations in flight do not count), then cleared so the next report
        is new; None without kmemleak. The report goes through the work share (it can be long
        for a serial console)."""
        if not self.guest_has(KMEMLEAK):
            return None
        name = f"kmemleak-{time.monotonic_ns()}.txt"
        self.g.run(f"echo scan > {KMEMLEAK}; sleep {pause_s}; echo scan > {KMEMLEAK}; "
                   f"cat {KMEMLEAK} > /mnt/work/{name}; echo clear > {KMEMLEAK}",
                   timeout=600)
        path = self.workdir / "guest" / name
        text = path.read_text(errors="replace") if path.exists() else ""
        path.unlink(missing_ok=True)
        return text

    def module_text_range(self, module: str = "pvnet") -> tuple[int, int]:
        """[start, end) of a module's functions from /proc/kallsyms (the end is one page past
        its last function symbol): the range a fault-injection stack-trace filter requires."""
        out = self.g.sh(f"grep -E ' [tT] .*\\[{module}\\]$' /proc/kallsyms | cut -d' ' -f1")
        addrs = [int(a, 16) for a in out.split() if int(a, 16)]
        if not addrs:
            raise GuestError(f"no text symbols of {module} in /proc/kallsyms")
        return min(addrs), max(addrs) + 4096
