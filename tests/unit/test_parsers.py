from __future__ import annotations

from pvnet_harness.demo import iperf_mbps, ping_summary
from pvnet_harness.testbed import Feature, parse_ethtool_features, parse_ethtool_stats, parse_kv_lines

ETHTOOL_S = """NIC statistics:
     rx_queue_0_packets: 1234
     rx_queue_0_bytes: 99999
     tx_queue_0_drops: 0
"""

PING = """--- 198.18.0.2 ping statistics ---
10 packets transmitted, 10 received, 0% packet loss, time 1803ms
rtt min/avg/max/mdev = 0.512/0.801/1.204/0.201 ms
"""


def test_parse_ethtool_stats() -> None:
    assert parse_ethtool_stats(ETHTOOL_S) == {
        "rx_queue_0_packets": 1234, "rx_queue_0_bytes": 99999, "tx_queue_0_drops": 0}


def test_parse_ethtool_info() -> None:
    info = parse_kv_lines("driver: pvnet\nversion: 0.1.0\nbus-info: 0000:00:03.0\n")
    assert info["bus-info"] == "0000:00:03.0"


def test_ping_summary() -> None:
    assert ping_summary(PING) == {"loss_pct": 0.0, "rtt_min_ms": 0.512, "rtt_avg_ms": 0.801,
                                  "rtt_max_ms": 1.204}


def test_iperf_mbps() -> None:
    assert iperf_mbps({"end": {"sum_received": {"bits_per_second": 5e8}}}) == 500.0


ETHTOOL_K = """Features for eth0:
rx-checksumming: on
tx-checksumming: off
\ttx-checksum-ip-generic: off
tcp-segmentation-offload: off
\ttx-tcp-segmentation: off [requested on]
\ttx-tcp-ecn-segmentation: off [fixed]
large-receive-offload: off [fixed]
"""


def test_parse_ethtool_features() -> None:
    f = parse_ethtool_features(ETHTOOL_K)
    assert f["tx-checksum-ip-generic"] == Feature(False, False)
    assert f["tx-tcp-segmentation"] == Feature(False, False)
    assert f["tx-tcp-ecn-segmentation"] == Feature(False, True)
    assert f["rx-checksumming"] == Feature(True, False)
    assert "Features for eth0" not in f


def test_queue_counter_and_sum_pick_one_counter_per_queue() -> None:
    from pvnet_harness.testbed import queue_counter, queue_sum

    st = {"rx_queue_0_packets": 3, "rx_queue_1_packets": 4, "tx_queue_0_packets": 9,
          "rx_queue_0_gso_packets": 100}
    assert queue_counter(st, "rx", "packets") == {0: 3, 1: 4}
    assert queue_sum(st, "rx", "packets") == 7
    assert queue_sum(st, "rx", "gso_packets") == 100
    assert queue_sum(st, "tx", "bytes") == 0


def test_queue_counter_both_naming_schemes() -> None:
    from pvnet_harness.testbed import queue_counter, queue_sum

    pvnet = {"rx_queue_0_xdp_drops": 3, "rx_queue_1_xdp_drops": 4, "rx_queue_0_drops": 9}
    assert queue_counter(pvnet, "rx", "xdp_drops") == {0: 3, 1: 4}
    virtio_612 = {"rx0_xdp_drops": 5, "rx1_xdp_drops": 6, "rx_xdp_drops": 11, "tx0_xdp_tx": 1}
    assert queue_counter(virtio_612, "rx", "xdp_drops") == {0: 5, 1: 6}
    assert queue_sum(virtio_612, "tx", "xdp_tx") == 1
