"""A QEMU guest: process in the harness netns, serial console via pexpect, QMP, dmesg."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import signal
import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

import pexpect

from . import REPO_ROOT
from .image import GuestNic
from .kernels import KernelTree
from .netlab import NetLab
from .templates import render
from .util import log, progress

BAD_DMESG = re.compile(
    r"WARNING:|BUG:|Oops|refcount_t|unregister_netdevice: waiting|NETDEV WATCHDOG|"
    r"general protection fault|Kernel panic|list_del corruption|UBSAN|KASAN|"
    r"kernel BUG|soft lockup|hung_task|page allocation failure|"
    # lockdep, RCU and might_sleep reports of a debug kernel (their headers also say WARNING:
    # or BUG:, named here so a reworded header still fails), debugobjects
    r"possible circular locking dependency|possible recursive locking|"
    r"inconsistent lock state|suspicious RCU usage|irq lock inversion|"
    r"sleeping function called from invalid context|scheduling while atomic|ODEBUG:"
)
MAX_CMD = 3500  # keep well under the tty's 4095-byte canonical line


class GuestError(RuntimeError):
    """A guest step failed; the message carries the console tail."""


@dataclass(frozen=True)
class NicSpec:
    role: str
    id: str
    tap: str
    mac: str
    slot: int
    queues: int = 1
    host_mtu: int | None = None
    # Extra virtio-net-pci properties, e.g. {"mrg_rxbuf": "off", "guest_tso4": "off"}.
    props: dict[str, str] = field(default_factory=dict)
    # "tap" (QEMU opens the tap) or "vhost-user" (a back-end process owns the data queues,
    # pvnet_harness.vhost_user; it forwards to the tap). The bed fills in `socket`.
    backend: str = "tap"
    socket: str = ""

    @property
    def vhost_user(self) -> bool:
        if self.backend not in ("tap", "vhost-user"):
            raise ValueError(f"NIC {self.id}: backend must be tap or vhost-user, not {self.backend!r}")
        return self.backend == "vhost-user"

    @property
    def pci(self) -> str:
        return f"0000:00:{self.slot:02x}.0"

    @property
    def device_props(self) -> str:
        """The virtio-net-pci properties beyond netdev/id/mac/addr, as `,k=v` text."""
        props: dict[str, str] = {"romfile": ""}
        if self.queues > 1:
            props |= {"mq": "on", "vectors": str(2 * self.queues + 2)}
        if self.host_mtu:
            props["host_mtu"] = str(self.host_mtu)
        props |= self.props
        return "".join(f",{k}={v}" for k, v in props.items())


@dataclass(frozen=True)
class Profile:
    name: str
    machine: dict[str, Any]
    nics: tuple[NicSpec, ...]

    def nic(self, role: str) -> NicSpec:
        for n in self.nics:
            if n.role == role:
                return n
        raise KeyError(role)

    def guest_nics(self) -> list[GuestNic]:
        return [GuestNic(n.role, n.pci) for n in self.nics]

    def variant(self, role: str = "dut", cpus: int | None = None, **nic_changes: Any) -> Profile:
        """This profile with one NIC's fields changed (queues=4, host_mtu=9000,
        props={"mrg_rxbuf": "off"}...) and optionally another vCPU count."""
        nics = tuple(replace(n, **nic_changes) if n.role == role else n for n in self.nics)
        machine = dict(self.machine) | ({"cpus": cpus} if cpus else {})
        changes = ",".join(f"{k}={v}" for k, v in nic_changes.items())
        return Profile(f"{self.name}[{role}:{changes}]", machine, nics)

    def with_machine(self, **changes: Any) -> Profile:
        """This profile with [machine] fields changed (tcg_thread="single"...)."""
        name = ",".join(f"{k}={v}" for k, v in changes.items())
        return Profile(f"{self.name}[{name}]", dict(self.machine) | changes, self.nics)


def load_profile(name: str = "standard", root: Path = REPO_ROOT) -> Profile:
    data = tomllib.loads((root / "qemu" / f"{name}.toml").read_text())
    nics = tuple(NicSpec(**n) for n in data["nic"])
    return Profile(name, data["machine"], nics)


def kvm_usable(sys_module: Path = Path("/sys/module"), dev: Path = Path("/dev/kvm")) -> bool:
    """KVM counts only when a hardware KVM module is loaded (kvm_pvm boots no stock kernel)."""
    return dev.exists() and any((sys_module / m).exists() for m in ("kvm_intel", "kvm_amd"))


def choose_accel(requested: str | None = None, sys_module: Path = Path("/sys/module")) -> str:
    if requested in ("kvm", "tcg"):
        return requested
    if requested not in (None, "", "auto"):
        raise ValueError(f"accelerator must be kvm, tcg or auto, not {requested!r}")
    return "kvm" if kvm_usable(sys_module) else "tcg"


def vhost_usable(accel: str, dev: Path = Path("/dev/vhost-net")) -> bool:
    """Whether the guest's taps get vhost-net (only with KVM, and only when the host has it)."""
    return accel == "kvm" and dev.exists()


# Boots of one guest while its kernel panics before init starts (Guest.start). In CI
# (2026-11-23) a 4-vCPU 6.12 guest panicked so twice in a row, multi-threaded TCG.
EARLY_PANIC_BOOTS = 3


def tcg_thread(profile: Profile, host_cpus: int | None = None) -> str:
    """TCG's threading for a machine: PVNET_TCG_THREAD (single or multi) if set, else the
    profile's [machine] tcg_thread, else multi (a host thread per vCPU) when the host has a
    CPU for each vCPU and single when it has fewer.

    With more vCPU threads than host CPUs, multi-threaded TCG gains nothing, and the host
    preempts vCPU threads in the middle of their work: this is where a guest kernel patching
    its text (int3 first, text_poke_bp) has been seen to run a stale translation of the int3
    and die of "Oops: int3" (CI, 2026-11-23: a 4-vCPU 6.12 guest on 2 cores, at boot, twice
    in a row). Single-threaded TCG runs one vCPU at a time and has never shown it."""
    forced = os.environ.get("PVNET_TCG_THREAD", "")
    if forced not in ("", "single", "multi"):
        raise ValueError(f"PVNET_TCG_THREAD must be single or multi, not {forced!r}")
    if forced:
        return forced
    if "tcg_thread" in profile.machine:
        return str(profile.machine["tcg_thread"])
    cpus = host_cpus if host_cpus is not None else len(os.sched_getaffinity(0))
    return "single" if int(profile.machine.get("cpus", 1)) > cpus else "multi"


def qemu_argv(
    profile: Profile,
    tree: KernelTree,
    initrd: Path,
    workdir: Path,
    qmp_path: Path,
    accel: str,
    cmdline_extra: str = "",
) -> list[str]:
    # PVNET_GUEST_CMDLINE appends to every guest's command line (debugging: "loglevel=5" puts
    # warnings and their backtraces, e.g. a soft lockup's, on the console).
    extra = f"{cmdline_extra} {os.environ.get('PVNET_GUEST_CMDLINE', '')}"
    # A soft lockup panics, and the panic replays the whole kernel log on the console
    # (panic_print bit 0x20): the backtraces that loglevel=1 kept off the console reach the
    # harness, which stops the guest and fails with them (Guest.run).
    cmdline = ("console=ttyS0 quiet loglevel=1 panic=-1 softlockup_panic=1 panic_print=0x20 "
               f"net.ifnames=0 {extra}").strip()
    for n in profile.nics:
        if n.vhost_user and not n.socket:
            raise ValueError(f"NIC {n.id} is on vhost-user but has no socket path")
    text = render(
        "qemu-args.j2",
        machine=profile.machine,
        accel="kvm" if accel == "kvm" else f"tcg,thread={tcg_thread(profile)}",
        cpu="host" if accel == "kvm" else "max",
        qmp_path=qmp_path,
        vmlinux=tree.vmlinux,
        initrd=initrd,
        cmdline=cmdline,
        workdir=workdir,
        nics=profile.nics,
        vhost=vhost_usable(accel),
        vhost_user=any(n.vhost_user for n in profile.nics),
    )
    return ["qemu-system-x86_64", *[ln for ln in text.splitlines() if ln.strip()]]


def frame_command(cmd: str, token: str, seq: int) -> tuple[str, re.Pattern[str]]:
    """Wrap a shell command so its exit code follows a marker the command text cannot match.

    The marker is printed by printf from two halves, so an echoed command line never looks
    like the marker itself.
    """
    if len(cmd) > MAX_CMD:
        raise ValueError(f"command longer than {MAX_CMD} bytes: put it in a script on the work share")
    if "\n" in cmd:
        raise ValueError("one-line commands only: put multi-line scripts on the work share")
    framed = f"{{ {cmd}\n}} </dev/null; printf '\\n%s_%s\\n' '@@PVNET{token}' \"{seq}=$?\"\n"
    # line ends arrive as \r\r\n: the guest tty and the host pty both map \n to \r\n
    pattern = re.compile(rf"\n@@PVNET{token}_{seq}=(\d+)\r*\n")
    return framed, pattern


@dataclass
class CmdResult:
    cmd: str
    rc: int
    out: str


@dataclass
class Guest:
    """One booted guest. Use as a context manager; stop() is safe to call twice."""

    tree: KernelTree
    initrd: Path
    lab: NetLab
    profile: Profile
    workdir: Path
    accel: str = "tcg"
    cmdline_extra: str = ""
    child: pexpect.spawn | None = None
    dmesg_log: list[str] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_hex(3))
    _seq: int = 0
    early_panic: str = ""

    @property
    def console_log(self) -> Path:
        return self.workdir / "console.log"

    @property
    def qmp_path(self) -> Path:
        return self.workdir / "qmp.sock"

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None else None

    def __enter__(self) -> Guest:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, boot_timeout: float = 180) -> None:
        """Boot the guest and wait for its init to report ready.

        A kernel panic before init has started (no pvnet code is loaded then: the driver is a
        module that init inserts) is a fault of the emulated machine, seen under TCG as an int3
        Oops in early boot code being patched; such a boot is retried, EARLY_PANIC_BOOTS boots
        in all, each panicked console kept as console-early-panic-<n>.log. A panic after init
        has started always fails."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = self.lab.exec_argv(
            qemu_argv(self.profile, self.tree, self.initrd, self.workdir, self.qmp_path,
                      self.accel, self.cmdline_extra)
        )
        log.info("qemu: %s", shlex.join(argv))
        (self.workdir / "qemu.cmd").write_text(shlex.join(argv) + "\n")
        t0 = time.monotonic()
        for attempt in range(1, EARLY_PANIC_BOOTS + 1):
            progress(f"booting {self.tree.release} ({self.accel}) in netns {self.lab.name}")
            retry = attempt < EARLY_PANIC_BOOTS
            if self._boot(argv, boot_timeout,
                          f"console-early-panic-{attempt}.log" if retry else None):
                break
            progress(f"guest kernel panicked before init: {self.early_panic}; booting again")
        assert self.child is not None
        self.child.expect(r"\r?\n")
        self.sendline_raw("stty -echo; set +m +H; export PS1='' PS2=''")
        time.sleep(0.3)
        self.run("true", timeout=30)
        progress(f"guest up in {time.monotonic() - t0:.1f}s")

    def _boot(self, argv: list[str], boot_timeout: float, early_panic_log: str | None) -> bool:
        """Start QEMU and wait for PVNET-READY. False: the kernel panicked before init started
        and early_panic_log names where to keep its console for another attempt (this one is
        stopped); without it such a panic fails."""
        logf = self.console_log.open("w")
        self.child = pexpect.spawn(
            argv[0], argv[1:], encoding="utf-8", codec_errors="replace", timeout=boot_timeout,
            maxread=65536, echo=False, dimensions=(50, 400),
        )
        self.child.logfile_read = logf
        outcomes = [r"PVNET-INIT-START", r"PVNET-READY", r"PVNET-INIT-ERROR: [^\r\n]*",
                    r"Kernel panic[^\r\n]*", pexpect.EOF, pexpect.TIMEOUT]
        what = ["", "", "init error", "kernel panic", "QEMU exited", "boot timeout"]
        idx = self.child.expect(outcomes)
        if idx == 3 and early_panic_log:
            self.early_panic = str(self.child.after).strip()
            self.stop()
            self.console_log.replace(self.workdir / early_panic_log)
            return False
        if idx == 0:
            idx = self.child.expect(outcomes[1:]) + 1
        if idx != 1:
            self.fail(f"guest boot failed ({what[idx]}): {self.child.after!s}")
        return True

    def sendline_raw(self, text: str) -> None:
        assert self.child is not None
        self.child.send(text + "\n")

    def console_tail(self, lines: int = 60) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def fail(self, msg: str, lines: int = 60) -> NoReturn:
        raise GuestError(f"{msg}\n--- guest console tail ({self.console_log}) ---\n"
                         f"{self.console_tail(lines)}")

    def panicked(self, msg: str) -> None:
        """The guest kernel panicked: let it print the replayed log, stop it (panic=-1 would
        reboot it under the tests' feet) and fail with the log's end."""
        assert self.child is not None
        try:
            self.child.expect([pexpect.TIMEOUT, pexpect.EOF], timeout=5)  # reads what comes
        except OSError:
            pass
        self.stop()
        self.fail(msg, lines=250)

    def run(self, cmd: str, timeout: float = 60, check: bool = True) -> CmdResult:
        """Run a one-line shell command in the guest; returns its exit code and output."""
        if self.child is None or not self.child.isalive():
            self.fail(f"guest is not running (command: {cmd})")
        assert self.child is not None
        self._seq += 1
        framed, pattern = frame_command(cmd, self.token, self._seq)
        self.child.send(framed)
        idx = self.child.expect([pattern, r"Kernel panic[^\r\n]*", pexpect.EOF, pexpect.TIMEOUT],
                                timeout=timeout)
        if idx == 1:
            self.panicked(f"guest kernel panic during: {cmd}")
        if idx != 0:
            what = ["", "kernel panic", "QEMU exited", f"timeout after {timeout}s"][idx]
            self.fail(f"guest command failed ({what}): {cmd}")
        assert self.child.match is not None
        rc = int(self.child.match.group(1))
        out = (self.child.before or "").replace("\r", "")
        res = CmdResult(cmd, rc, out.strip("\n"))
        if check and rc != 0:
            self.fail(f"guest command exited {rc}: {cmd}\n{res.out[-3000:]}")
        return res

    def sh(self, cmd: str, timeout: float = 60) -> str:
        return self.run(cmd, timeout=timeout).out

    def qmp(self, command: str, **args: Any) -> Any:
        from qemu.qmp.legacy import QEMUMonitorProtocol

        mon = QEMUMonitorProtocol(str(self.qmp_path))
        mon.connect()
        try:
            resp = mon.cmd_raw(command, args or None)
        finally:
            mon.close()
        if "error" in resp:
            raise GuestError(f"QMP {command} {args}: {resp['error']}")
        return resp.get("return")

    def new_dmesg(self) -> str:
        """Kernel messages since the last call (the guest ring buffer is read and cleared)."""
        text = self.run("dmesg -c", timeout=60).out
        self.dmesg_log.append(text)
        with (self.workdir / "dmesg.log").open("a") as f:
            f.write(text + "\n")
        return text

    def stop(self) -> None:
        child = self.child
        if child is None:
            return
        self.child = None
        if child.isalive():
            try:
                child.send("/busybox/poweroff -f\n")
                child.expect(pexpect.EOF, timeout=20)
            except (pexpect.TIMEOUT, pexpect.EOF, OSError):
                pass
        if child.isalive():
            child.kill(signal.SIGTERM)
            time.sleep(1)
        if child.isalive():
            child.kill(signal.SIGKILL)
        child.close(force=True)
        if child.logfile_read is not None:
            child.logfile_read.close()


def bad_dmesg_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if BAD_DMESG.search(ln)]
