from __future__ import annotations

import re
from pathlib import Path

import pytest
from pvnet_harness import REPO_ROOT, read_version
from pvnet_harness.build import render_dkms_conf
from pvnet_harness.guest import choose_accel, kvm_usable, load_profile, qemu_argv, tcg_thread
from pvnet_harness.image import GuestNic, render_init
from pvnet_harness.kernels import KernelTree


def test_dkms_conf_in_sync_with_version() -> None:
    assert (REPO_ROOT / "dkms.conf").read_text() == render_dkms_conf(read_version())
    assert f'PACKAGE_VERSION="{read_version()}"' in render_dkms_conf(read_version())


def test_one_version_source() -> None:
    import pvnet_harness

    assert pvnet_harness.__version__ == read_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", read_version())
    kbuild = (REPO_ROOT / "Kbuild").read_text()
    assert "VERSION" in kbuild and "PVNET_VERSION" in kbuild


def test_init_binds_dut_to_pvnet_and_peer_to_netns() -> None:
    init1, text = render_init([("virtio_pci", ""), ("ifb", "numifbs=0")],
                       [GuestNic("dut", "0000:00:03.0"), GuestNic("peer", "0000:00:04.0")],
                       "napi_tx=0")
    assert "insmod /kmod/virtio_pci.ko" in init1
    assert "insmod /kmod/ifb.ko numifbs=0" in init1
    assert init1.startswith("#!/busybox/busybox sh\n") and "exec /usr/bin/bash" in init1
    assert 'echo "$(virtio_of 0000:00:03.0)" > /sys/bus/virtio/drivers/virtio_net/unbind' in text
    assert "insmod /kmod/pvnet.ko napi_tx=0" in text
    assert "netdev_of 0000:00:04.0" in text and "name peer0" in text
    assert text.index("virtio_net/unbind") < text.index("insmod /kmod/pvnet.ko")
    assert "PVNET-READY" in text


def _tree(tmp_path: Path) -> KernelTree:
    return KernelTree("6.1", "6.1.192-2", "6.1.0-56-amd64", tmp_path, tmp_path / "vmlinux")


def test_qemu_argv_tcg(tmp_path: Path) -> None:
    prof = load_profile("standard")
    argv = qemu_argv(prof, _tree(tmp_path), tmp_path / "i.gz", tmp_path, tmp_path / "q.sock",
                     "tcg")
    joined = " ".join(argv)
    assert argv[0] == "qemu-system-x86_64"
    assert argv[argv.index("-accel") + 1] == "tcg,thread=multi"
    assert argv[argv.index("-kernel") + 1] == str(tmp_path / "vmlinux")  # PVH boot of vmlinux
    assert "console=ttyS0" in argv[argv.index("-append") + 1]
    nets = [a for a in argv if a.startswith("tap,")]
    assert len(nets) == 2 and all("vhost=off" in n for n in nets)
    devs = [a for a in argv if a.startswith("virtio-net-pci,")]
    assert len(devs) == 2
    for d in devs:
        assert "romfile=," in d or d.endswith("romfile=")
        assert "mq=on" in d and "vectors=6" in d
    assert "mac=52:54:00:50:56:01" in joined and "addr=0x3" in joined
    assert "readonly=on" in joined and "path=/usr" in joined


def test_tcg_thread_from_the_machine(tmp_path: Path) -> None:
    """Profiles may ask for single-threaded TCG (the XDP tests do, see test_xdp._tcg_threads);
    under KVM the setting does not apply."""
    prof = load_profile("xdp").with_machine(tcg_thread="single")
    assert "tcg_thread" not in load_profile("xdp").machine  # the original is unchanged
    args = (prof, _tree(tmp_path), tmp_path / "i.gz", tmp_path, tmp_path / "q.sock")
    tcg = qemu_argv(*args, "tcg")
    assert tcg[tcg.index("-accel") + 1] == "tcg,thread=single"
    assert tcg[tcg.index("-smp") + 1] == "2"
    kvm = qemu_argv(*args, "kvm")
    assert kvm[kvm.index("-accel") + 1] == "kvm"
    var = qemu_argv(prof.variant(cpus=4, queues=4), *args[1:], "tcg")
    assert var[var.index("-accel") + 1] == "tcg,thread=single"  # a variant keeps it


def test_tcg_thread_from_the_environment_and_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """PVNET_TCG_THREAD overrides every profile (anything but single/multi is refused); without
    either, more vCPUs than host CPUs means single-threaded."""
    single = load_profile("xdp").with_machine(tcg_thread="single")
    monkeypatch.delenv("PVNET_TCG_THREAD", raising=False)
    # without a setting: multi while the host has a CPU for every vCPU (2 in the standard profile)
    assert tcg_thread(load_profile(), host_cpus=2) == "multi"
    assert tcg_thread(load_profile().variant(cpus=4), host_cpus=2) == "single"
    assert tcg_thread(load_profile().variant(cpus=4), host_cpus=4) == "multi"
    assert tcg_thread(single, host_cpus=64) == "single"
    monkeypatch.setenv("PVNET_TCG_THREAD", "multi")
    assert tcg_thread(single) == "multi"
    monkeypatch.setenv("PVNET_TCG_THREAD", "single")
    assert tcg_thread(load_profile(), host_cpus=64) == "single"
    monkeypatch.setenv("PVNET_TCG_THREAD", "mtt")
    with pytest.raises(ValueError, match="PVNET_TCG_THREAD"):
        tcg_thread(single)


def test_accel_choice(tmp_path: Path) -> None:
    sysmod = tmp_path / "module"
    sysmod.mkdir()
    (sysmod / "kvm_pvm").mkdir()
    assert choose_accel(None, sysmod) == "tcg"  # PVM's /dev/kvm boots no stock kernel
    assert choose_accel("kvm", sysmod) == "kvm"
    (sysmod / "kvm_intel").mkdir()
    assert kvm_usable(sysmod, tmp_path / "module") is True
    assert kvm_usable(sysmod, tmp_path / "nope") is False


def test_profile_variant_changes_only_the_dut(tmp_path: Path) -> None:
    prof = load_profile("standard").variant(cpus=4, queues=4, host_mtu=9000,
                                            props={"mrg_rxbuf": "off"})
    argv = qemu_argv(prof, _tree(tmp_path), tmp_path / "i.gz", tmp_path, tmp_path / "q.sock",
                     "tcg")
    assert argv[argv.index("-smp") + 1] == "4"
    dut, peer = (a for a in argv if a.startswith("virtio-net-pci,"))
    assert "vectors=10" in dut and "host_mtu=9000" in dut and dut.endswith(",mrg_rxbuf=off")
    assert "vectors=6" in peer and "host_mtu" not in peer and "mrg_rxbuf" not in peer
    taps = [a for a in argv if a.startswith("tap,")]
    assert "queues=4" in taps[0] and "queues=2" in taps[1]
    assert load_profile("standard").machine["cpus"] == 2  # the original is unchanged
