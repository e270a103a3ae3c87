"""The DUT is bound to pvnet, identifies itself correctly and answers ARP, ND and ICMP."""

from __future__ import annotations

import re

import pytest
from pvnet_harness import read_version
from pvnet_harness.build import BuildResult
from pvnet_harness.testbed import DUT_V4, DUT_V6, HOST_V4, HOST_V6, TestBed, queue_sum
from pvnet_harness.traffic import l2_exchange
from pvnet_harness.util import run
from scapy.layers.l2 import ARP, Ether

pytestmark = pytest.mark.qemu


def test_dut_bound_to_pvnet_peer_to_virtio_net(bed: TestBed) -> None:
    g = bed.g
    dut = bed.dut_virtio()
    assert dut in g.sh("ls /sys/bus/virtio/drivers/pvnet/").split()
    peer_pci = bed.profile.nic("peer").pci
    peer = g.sh(f"basename /sys/bus/pci/devices/{peer_pci}/virtio*")
    assert peer in g.sh("ls /sys/bus/virtio/drivers/virtio_net/").split()
    assert peer not in g.sh("ls /sys/bus/virtio/drivers/pvnet/").split()


def test_link_up_with_qemu_mac(bed: TestBed) -> None:
    dev = bed.dut_if()
    assert re.fullmatch(r"eth\d+", dev), dev
    assert bed.g.sh(f"cat /sys/class/net/{dev}/address") == bed.dut_mac
    assert bed.g.sh(f"cat /sys/class/net/{dev}/carrier") == "1"
    assert bed.g.sh(f"cat /sys/class/net/{dev}/operstate") == "up"


def test_ethtool_identity(bed: TestBed) -> None:
    info = bed.ethtool_info()
    assert info["driver"] == "pvnet"
    assert info["version"] == read_version()
    assert info["bus-info"] == bed.profile.nic("dut").pci


def test_modinfo_complete(pvnet_build: BuildResult) -> None:
    out = run(["modinfo", str(pvnet_build.module)]).stdout
    fields: dict[str, list[str]] = {}
    for line in out.splitlines():
        k, _, v = line.partition(":")
        fields.setdefault(k.strip(), []).append(v.strip())
    assert fields["version"] == [read_version()]
    assert fields["license"] == ["GPL"]
    assert fields["description"][0]
    assert fields["author"][0]
    assert "virtio:d00000001v*" in fields["alias"]
    assert fields["vermagic"][0].startswith(pvnet_build.kernel_release + " ")


def test_arp_both_ways(bed: TestBed) -> None:
    # host -> DUT: a scapy-crafted who-has on the bridge is answered with the DUT's MAC
    br_mac = bed.net.run(["cat", "/sys/class/net/br0/address"]).strip()
    ans = l2_exchange(
        bed.net, "br0",
        Ether(src=br_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=br_mac, psrc=HOST_V4,
                                                        pdst=DUT_V4),
        lambda p: ARP in p and p[ARP].op == 2 and p[ARP].psrc == DUT_V4, timeout=10)
    assert ans is not None, "no ARP reply from the DUT"
    assert ans[ARP].hwsrc == bed.dut_mac and ans[ARP].psrc == DUT_V4
    # DUT -> host: the guest resolves the bridge address
    dev = bed.dut_if()
    g = bed.g
    g.sh(f"ip neigh flush dev {dev}")
    out = g.sh(f"arping -c 2 -w 10 -I {dev} {HOST_V4}", timeout=30)
    assert f"reply from {HOST_V4} [{br_mac}]" in out.lower(), out
    # and the guest kernel's own ARP resolution fills its neighbour table
    g.sh(f"ping -c 1 -W 5 {HOST_V4}", timeout=30)
    assert br_mac in g.sh(f"ip neigh show {HOST_V4} dev {dev}")


@pytest.mark.parametrize(("host", "dut", "flag"), [(HOST_V4, DUT_V4, "-4"), (HOST_V6, DUT_V6, "-6")])
def test_icmp_both_ways(bed: TestBed, host: str, dut: str, flag: str) -> None:
    out = bed.net.run(["ping", flag, "-c", "5", "-i", "0.2", "-W", "5", dut])
    assert " 0% packet loss" in out, out
    out = bed.g.sh(f"ping {flag} -c 5 -i 0.2 -W 5 {host}", timeout=60)
    assert " 0% packet loss" in out, out
    neigh = bed.net.run(["ip", flag, "neigh", "show", dut, "dev", "br0"])
    assert bed.dut_mac in neigh, neigh


def test_large_icmp_fragments(bed: TestBed) -> None:
    """8000-byte pings are fragmented to the MTU and reassembled both ways."""
    out = bed.net.run(["ping", "-c", "3", "-s", "8000", "-W", "5", DUT_V4])
    assert " 0% packet loss" in out, out
    out = bed.g.sh(f"ping -c 3 -s 8000 -W 5 {HOST_V4}", timeout=60)
    assert " 0% packet loss" in out, out


def test_stats_consistent(bed: TestBed) -> None:
    """ndo_get_stats64 equals the sum of the per-queue ethtool counters."""
    bed.net.run(["ping", "-c", "20", "-i", "0.05", "-W", "5", DUT_V4])
    link, st = bed.stats_snapshot()
    for key in ("rx_queue_0_packets", "rx_queue_0_bytes", "rx_queue_0_drops", "rx_queue_0_kicks",
                "tx_queue_0_packets", "tx_queue_0_bytes", "tx_queue_0_drops", "tx_queue_0_kicks"):
        assert key in st, f"ethtool -S lacks {key}: {sorted(st)}"
    rxq = queue_sum(st, "rx", "packets")
    txq = queue_sum(st, "tx", "packets")
    assert rxq >= 20 and txq >= 20
    assert link["rx_packets"] == rxq, (link, st)
    assert link["tx_packets"] == txq, (link, st)
    for d in ("rx", "tx"):
        assert queue_sum(st, d, "kicks") > 0
