from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest
from pvnet_harness.image import Cpio, load_order, parse_builtin, parse_modules_dep

DEP = """kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz
kernel/net/9p/9pnet.ko.xz:
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
"""


def test_load_order_dependencies_first() -> None:
    deps = parse_modules_dep(DEP)
    assert deps["9pnet_virtio"][0] == "kernel/net/9p/9pnet_virtio.ko.xz"
    order = load_order(["virtio_net", "9p", "9pnet_virtio", "packet"], deps, {"packet"})
    assert order.index("failover") < order.index("net_failover") < order.index("virtio_net")
    assert order.index("9pnet") < order.index("9p") and order.index("netfs") < order.index("9p")
    assert order.count("9pnet") == 1 and "packet" not in order


def test_load_order_unknown_module() -> None:
    with pytest.raises(LookupError):
        load_order(["nope"], parse_modules_dep(DEP), set())


def test_parse_builtin() -> None:
    assert parse_builtin("kernel/net/packet/af_packet.ko\n") == {"af_packet"}


def test_cpio_is_readable_by_cpio(tmp_path: Path) -> None:
    c = Cpio()
    c.dir("bin")
    c.file("bin/tool", b"#!/bin/sh\necho hi\n", 0o755)
    c.file("odd", b"x" * 3)
    c.symlink("lib", "usr/lib")
    arc = tmp_path / "a.cpio.gz"
    arc.write_bytes(gzip.compress(c.to_bytes()))
    listing = subprocess.run(["sh", "-c", f"zcat {arc} | cpio -itv 2>/dev/null"],
                             capture_output=True, text=True, check=True).stdout
    assert "bin/tool" in listing and "lib -> usr/lib" in listing
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["sh", "-c", f"zcat {arc} | cpio -id --quiet"], cwd=out, check=True)
    assert (out / "bin/tool").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (out / "bin/tool").stat().st_mode & 0o777 == 0o755
    assert (out / "odd").read_bytes() == b"xxx"
