"""Offload acceptance: every `ethtool -K` combination of tx-checksumming, tso, gso, gro and lro
at MTU 1500 and 9000 moves TCP and UDP byte-exact in every direction, and what the DUT hands
the device under TSO segments (as the spec says the device must) into valid frames that
carry exactly the bytes sent."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pvnet_harness.guest import load_profile
from pvnet_harness.testbed import (
    DUT_V4,
    DUT_V6,
    HOST_V4,
    HOST_V6,
    PEER_V4,
    PEER_V6,
    Feature,
    TestBed,
    parse_ethtool_features,
    parse_ethtool_stats,
    queue_sum,
)
from pvnet_harness.traffic import (
    GSO_TCPV4,
    GSO_TCPV6,
    TcpSink,
    VnetSniffer,
    checksum_problems,
    make_payload,
    reassemble_tcp,
    tcp_send_file,
)
from scapy.layers.l2 import Ether

pytestmark = pytest.mark.qemu

TOGGLES = ("tx", "tso", "gso", "gro", "lro")
# the netdev feature bits behind each `ethtool -K` toggle, as `ethtool -k` names them
BITS = {
    "tx": ("tx-checksum-ip-generic",),
    "tso": ("tx-tcp-segmentation", "tx-tcp-ecn-segmentation", "tx-tcp6-segmentation"),
    "gso": ("generic-segmentation-offload",),
    "gro": ("generic-receive-offload",),
    "lro": ("large-receive-offload",),
}
COMBOS = [dict(zip(TOGGLES, vals, strict=True))
          for vals in itertools.product((True, False), repeat=len(TOGGLES))]
TCP_SIZE = 128 << 10
XFER = Path(__file__).with_name("guest_xfer.py")


def _onoff(v: bool) -> str:
    return "on" if v else "off"


def combo_id(combo: dict[str, bool]) -> str:
    return "-".join(f"{k}_{_onoff(v)}" for k, v in combo.items())


# Split over the kernel lines (each line runs a third; all on and all off run on every line):
# a run over the three lines covers every combination at both MTUs; --full-matrix runs all.
COMBO_PARAMS = [pytest.param(c, id=combo_id(c),
                             marks=pytest.mark.shard(i, anchor=len(set(c.values())) == 1))
                for i, c in enumerate(COMBOS)]


def expected_features(req: dict[str, bool], initial: dict[str, Feature]) -> dict[str, bool]:
    """The feature bits the kernel's rules (netdev_fix_features) give for a request.

    Every requested toggle must take effect except where the rules refuse it: TSO (all its
    bits) needs tx checksumming. TSO sub-features the device did not negotiate (fixed off,
    e.g. tx-tcp-ecn-segmentation without HOST_ECN) stay as they are. Any other fixed bit is
    expected to follow the request: a toggle that cannot be changed is a failure.
    """
    exp: dict[str, bool] = {}
    for toggle, bits in BITS.items():
        for bit in bits:
            sub_fixed = toggle == "tso" and initial[bit].fixed
            exp[bit] = initial[bit].on if sub_fixed else req[toggle]
    if not req["tx"]:
        for bit in BITS["tso"]:
            exp[bit] = False
    return exp


@pytest.fixture(scope="module", params=[1500, 9000], ids=lambda m: f"mtu{m}")
def bed_mtu(request: pytest.FixtureRequest, make_bed: Callable[..., TestBed]) -> Iterator[TestBed]:
    """The standard bed at MTU 1500, and a jumbo bed: DUT host_mtu=9000, peer, taps and
    bridge at 9000. One at a time (module-scoped, parametrized)."""
    mtu: int = request.param
    tb = make_bed() if mtu == 1500 else make_bed(
        profile=load_profile().variant(host_mtu=mtu), mtu=mtu)
    with tb:
        dev = tb.dut_if()
        assert tb.g.sh(f"cat /sys/class/net/{dev}/mtu") == str(mtu)
        tb.g.sh(f"ip neigh flush dev {dev}")
        shutil.copy(XFER, tb.g.workdir / XFER.name)
        tb.g.sh(f"python3 -c 'import ast; ast.parse(open(\"/mnt/work/{XFER.name}\").read())'")
        yield tb


@pytest.fixture(scope="module")
def initial_features(bed_mtu: TestBed) -> dict[str, Feature]:
    feats = parse_ethtool_features(bed_mtu.g.sh(f"ethtool -k {bed_mtu.dut_if()}"))
    # the device offers TSO: the DUT must expose it, changeable and on
    for bit in ("tx-tcp-segmentation", "tx-tcp6-segmentation", "tx-checksum-ip-generic"):
        assert feats[bit] == Feature(True, False), (bit, feats[bit])
    return feats


def _mtu(bed: TestBed) -> int:
    return bed.lab.mtu if bed.lab is not None and bed.lab.mtu else 1500


def _udp_sizes(mtu: int, v6: bool) -> list[int]:
    """Around the largest unfragmented payload, then well above the MTU (fragments)."""
    top = mtu - (48 if v6 else 28)
    return [top, top + 1, 2 * mtu + 100]


def _combo_spec(index: int, mtu: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Guest spec and host plan for one combination; the address families of the four TCP
    directions alternate between combinations so every direction runs over both."""
    flip = index % 2 == 1

    def a(v4: str, v6: str) -> str:
        return v6 if flip else v4

    def b(v4: str, v6: str) -> str:
        return v4 if flip else v6

    port = 6000 + 10 * index
    spec: dict[str, Any] = {
        "tcp_recv": [
            {"name": "dut_to_peer.recv", "ns": "peer", "addr": a(PEER_V4, PEER_V6), "port": port},
            {"name": "peer_to_dut.recv", "ns": "", "addr": b(DUT_V4, DUT_V6), "port": port + 1},
            {"name": "host_to_dut.recv", "ns": "", "addr": a(DUT_V4, DUT_V6), "port": port + 2},
        ],
        "tcp_send": [
            {"name": "dut_to_peer.send", "ns": "", "addr": a(PEER_V4, PEER_V6), "port": port,
             "size": TCP_SIZE},
            {"name": "peer_to_dut.send", "ns": "peer", "addr": b(DUT_V4, DUT_V6),
             "port": port + 1, "size": TCP_SIZE},
            {"name": "dut_to_host.send", "ns": "", "addr": b(HOST_V4, HOST_V6), "port": port + 3,
             "size": TCP_SIZE},
        ],
        "udp_echo": [
            {"name": f"udp{v}", "server_ns": "peer", "server": addr, "client_ns": "",
             "port": port + 4 + i, "sizes": _udp_sizes(mtu, v == "6")}
            for i, (v, addr) in enumerate((("4", PEER_V4), ("6", PEER_V6)))
        ],
    }
    host = {"sink": (b(HOST_V4, HOST_V6), port + 3), "send": (a(DUT_V4, DUT_V6), port + 2)}
    return spec, host


def run_xfer(bed: TestBed, spec: dict[str, Any], before: str = "", after: str = "",
             timeout: float = 240) -> tuple[dict[str, Any], str]:
    """ONE guest command: `before`, the spec's transfers (concurrently), then `after`;
    returns the transfer results and what `after` printed."""
    (bed.g.workdir / "spec.json").write_text(json.dumps(spec))
    out = bed.g.sh(f"{before} python3 -S -E /mnt/work/{XFER.name} /mnt/work/spec.json; "
                   f"echo @@AFTER; {after}", timeout=timeout)
    head, _, tail = out.partition("@@AFTER")
    lines = [ln for ln in head.splitlines() if ln.startswith("{")]
    assert lines, f"no result from the guest transfer script:\n{out}"
    return json.loads(lines[-1]), tail


def check_pairs(results: dict[str, Any]) -> None:
    """Every guest-internal transfer arrived complete and unchanged."""
    errors = {k: v for k, v in results.items() if "error" in v or v.get("ok") is False}
    assert not errors, errors
    for name in {k.split(".")[0] for k in results if k.endswith(".recv")}:
        sent, got = results.get(f"{name}.send"), results[f"{name}.recv"]
        if sent is not None:
            assert got == sent, (name, sent, got)


@pytest.fixture(scope="module")
def host_payload(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("offloads") / "h2d.bin"
    return path, make_payload(path, TCP_SIZE, b"offload-h2d")


@pytest.mark.parametrize("combo", COMBO_PARAMS)
def test_offload_combination(bed_mtu: TestBed, initial_features: dict[str, Feature],
                             host_payload: tuple[Path, str], combo: dict[str, bool]) -> None:
    bed = bed_mtu
    dev = bed.dut_if()
    index = COMBOS.index(combo)
    spec, host = _combo_spec(index, _mtu(bed))
    args = " ".join(f"{k} {_onoff(v)}" for k, v in combo.items())
    sink = TcpSink(bed.net, *host["sink"]).start()
    path, h2d_sha = host_payload
    dut_addr, dut_port = host["send"]
    with ThreadPoolExecutor(1) as pool:
        sent = pool.submit(tcp_send_file, bed.net, dut_addr, dut_port, path, 120)
        # ethtool -K may refuse part of a request (tso without tx): judged by the read-back
        results, after = run_xfer(bed, spec, before=f"ethtool -K {dev} {args};",
                                  after=f"ethtool -k {dev}")
        assert sent.result(timeout=60) == TCP_SIZE
    got = sink.wait(60)
    check_pairs(results)
    assert results["host_to_dut.recv"] == {"bytes": TCP_SIZE, "sha256": h2d_sha}
    assert sink.nbytes == TCP_SIZE and got == results["dut_to_host.send"]["sha256"]
    feats = parse_ethtool_features(after)
    want = expected_features(combo, initial_features)
    have = {bit: feats[bit].on for bit in want}
    assert have == want, f"ethtool -k after `ethtool -K {args}`"
    assert feats["tx-scatter-gather"].on


def test_tso_segmentation_on_the_host(bed_mtu: TestBed) -> None:
    """TCP over IPv4 and IPv6 to the host with TSO: each GSO frame the DUT hands the device,
    segmented as the spec requires, gives frames within the MTU with valid checksums, and the
    segments carry exactly the bytes sent; the driver's gso/csum counters match."""
    bed = bed_mtu
    dev = bed.dut_if()
    mtu = _mtu(bed)
    size = 512 << 10
    bed.g.sh(f"ethtool -K {dev} tx on tso on gso on gro on")
    port4, port6 = 7101, 7102
    spec = {"tcp_send": [
        {"name": "v4", "ns": "", "addr": HOST_V4, "port": port4, "size": size},
        {"name": "v6", "ns": "", "addr": HOST_V6, "port": port6, "size": size}]}
    sinks = {"v4": TcpSink(bed.net, HOST_V4, port4).start(),
             "v6": TcpSink(bed.net, HOST_V6, port6).start()}
    cmd_stats = f"ethtool -S {dev}"
    with VnetSniffer(bed.net, bed.dut_tap) as sniff:
        before = parse_ethtool_stats(bed.g.sh(cmd_stats))
        results, after = run_xfer(bed, spec, after=cmd_stats)
        for name, sink in sinks.items():
            assert sink.wait(60) == results[name]["sha256"], name
        time.sleep(0.5)
    delta = {k: v - before.get(k, 0) for k, v in parse_ethtool_stats(after).items()}
    frames = [f for f in sniff.frames if Ether(f.frame).src == bed.dut_mac]

    gso = [f for f in frames if f.gso]
    assert {f.gso_type for f in gso} == {GSO_TCPV4, GSO_TCPV6}, "no TSO frames of both families"
    wire: list[bytes] = []
    problems: list[str] = []
    n_segments = 0
    for f in frames:
        segs = f.segments()
        if f.gso:
            n_segments += len(segs)
            # a frame that needed the device to segment it; hdr_len is not compared: the tap
            # reports its own skb's linear length there, not the value the driver wrote
            assert len(f.frame) - 14 > mtu, len(f.frame)
        for seg in segs:
            assert len(seg) - 14 <= mtu, (len(seg), mtu)
            problems += checksum_problems(seg)
        wire += segs
    assert not problems, "\n".join(problems[:20])
    for name, (src, dst, port) in {"v4": (DUT_V4, HOST_V4, port4),
                                   "v6": (DUT_V6, HOST_V6, port6)}.items():
        stream = reassemble_tcp(wire, src, dst, port)
        assert len(stream) == size, name
        assert hashlib.sha256(stream).hexdigest() == results[name]["sha256"], name
    # counters: every GSO skb the driver handed over was seen on the tap, and nothing else
    assert queue_sum(delta, "tx", "gso_packets") == len(gso)
    assert queue_sum(delta, "tx", "gso_segments") == n_segments
    assert queue_sum(delta, "tx", "gso_bytes") == sum(len(f.frame) for f in gso)
    assert len(gso) <= queue_sum(delta, "tx", "csum_partial") <= sum(f.partial for f in frames)
