"""Driver and link lifecycle: rmmod under load, sysfs unbind/bind, QMP link down/up."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from pvnet_harness.guest import GuestError
from pvnet_harness.testbed import DUT_V4, HOST_V4, TestBed, queue_sum
from pvnet_harness.traffic import TcpSink, make_payload, tcp_send_file

pytestmark = pytest.mark.qemu


def assert_works(bed: TestBed, tmp_path: Path, port: int) -> None:
    """Ping plus an 8 MiB byte-exact transfer host -> guest."""
    out = bed.net.run(["ping", "-c", "3", "-i", "0.2", "-W", "5", DUT_V4])
    assert " 0% packet loss" in out, out
    src = tmp_path / f"after{port}.bin"
    want = make_payload(src, 8 << 20, str(port).encode())
    bed.listen(port, f"/tmp/after{port}.bin", f"after{port}")
    tcp_send_file(bed.net, DUT_V4, port, src)
    bed.wait_job(f"after{port}", 120)
    assert bed.sha256(f"/tmp/after{port}.bin") == want
    bed.g.sh(f"rm -f /tmp/after{port}.bin")


def _blast(bed: TestBed, port: int, stop: threading.Event) -> None:
    with bed.net.entered():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    chunk = b"\xa5" * 65536
    try:
        s.connect((DUT_V4, port))
        while not stop.is_set():
            s.sendall(chunk)
    except OSError:
        pass  # expected: the guest interface goes away under us
    finally:
        s.close()


def test_rmmod_during_transfer_then_insmod(bed: TestBed, tmp_path: Path) -> None:
    g = bed.g
    virtio = bed.dut_virtio()
    # both directions busy: host -> guest into /dev/null, guest -> host from /dev/zero
    g.sh("socat -u TCP-LISTEN:5005,reuseaddr OPEN:/dev/null >/dev/null 2>&1 &")
    sink = TcpSink(bed.net, HOST_V4, 5006).start()
    stop = threading.Event()
    blaster = threading.Thread(target=_blast, args=(bed, 5005, stop), daemon=True)
    time.sleep(0.5)
    blaster.start()
    g.sh(f"socat -u OPEN:/dev/zero TCP:{HOST_V4}:5006 >/dev/null 2>&1 &")
    time.sleep(3)
    before = bed.ethtool_stats()
    for d in ("rx", "tx"):  # traffic flows both ways, on whichever queues
        assert queue_sum(before, d, "packets") > 100, before
    res = g.run("rmmod pvnet", timeout=120, check=False)
    stop.set()
    assert res.rc == 0, res.out
    assert g.run("test -e /sys/bus/virtio/drivers/pvnet", check=False).rc != 0
    assert g.sh(f"ls /sys/bus/virtio/devices/{virtio}/") and \
        g.run(f"test -e /sys/bus/virtio/devices/{virtio}/driver", check=False).rc != 0
    g.run("pkill socat", check=False)
    blaster.join(15)
    with pytest.raises((TimeoutError, OSError)):
        sink.wait(0.1)  # the guest->host stream was cut, not completed
    g.sh("insmod /kmod/pvnet.ko")
    assert virtio in g.sh("ls /sys/bus/virtio/drivers/pvnet/")
    bed.setup_dut()
    assert bed.g.sh(f"cat /sys/class/net/{bed.dut_if()}/address") == bed.dut_mac
    assert_works(bed, tmp_path, 5007)


def test_sysfs_unbind_bind(bed: TestBed, tmp_path: Path) -> None:
    g = bed.g
    virtio = bed.dut_virtio()
    g.sh(f"echo {virtio} > /sys/bus/virtio/drivers/pvnet/unbind")
    pci = bed.profile.nic("dut").pci
    assert g.run(f"ls /sys/bus/pci/devices/{pci}/{virtio}/net", check=False).rc != 0
    g.sh(f"echo {virtio} > /sys/bus/virtio/drivers/pvnet/bind")
    bed.setup_dut()
    assert_works(bed, tmp_path, 5008)


def test_qmp_set_link_off_on(bed: TestBed, tmp_path: Path) -> None:
    nic = bed.profile.nic("dut")
    bed.g.qmp("set_link", name=nic.id, up=False)
    bed.wait_carrier(False)
    dev = bed.dut_if()
    assert bed.g.sh(f"cat /sys/class/net/{dev}/operstate") == "down"
    lost = bed.net.run(["ping", "-c", "2", "-W", "1", DUT_V4], check=False)
    assert " 100% packet loss" in lost, lost
    bed.g.qmp("set_link", name=nic.id, up=True)
    bed.wait_carrier(True)
    assert_works(bed, tmp_path, 5009)


def test_guest_panic_is_reported_with_its_log(bed: TestBed) -> None:
    """Last in this module (it kills the guest): a guest kernel panic fails the step at once,
    with the kernel log the panic replays on the console (panic_print=0x20), backtraces
    included, and the guest is stopped, so a soft lockup (softlockup_panic=1) in any test is
    reported with its backtrace instead of timing out."""
    with pytest.raises(GuestError) as err:
        bed.g.run("echo c > /proc/sysrq-trigger", timeout=120)
    text = str(err.value)
    assert "guest kernel panic during" in text, text[-2000:]
    assert "sysrq" in text.lower() and "Call Trace" in text, text[-4000:]
    # pvnet's info messages (loglevel=1 keeps them off the console) come back in the replay
    assert "pvnet virtio" in text, text[-4000:]
    assert bed.g.child is None
