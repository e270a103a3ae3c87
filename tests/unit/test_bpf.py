"""XDP test programs: build caching, the C/Python constants agreeing, bpftool/ip JSON parsing,
the numbered-flood checker, the Toeplitz hash the rx-hash test checks against."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import struct
from pathlib import Path

import pytest
from pvnet_harness import bpf
from pvnet_harness.bpf import BPF_SRC, BpfBuildError, build_all, need_tool, program_names, stale
from pvnet_harness.traffic import FloodTally, udp_flood_frames, udp_flood_seq
from pvnet_harness.xdp import (
    COUNTERS,
    RX_HASH_SLOTS,
    XDP_TEST_PORT,
    header_define,
    le_bytes,
    parse_percpu_dump,
    parse_rss_key,
    parse_rx_hashes,
    parse_xdp_prog_id,
    toeplitz,
)


def test_port_and_counter_slots_match_the_c_header() -> None:
    assert header_define("XDP_TEST_PORT") == XDP_TEST_PORT
    text = (BPF_SRC / "xdp_common.h").read_text()
    slots = {m.group(1).lower(): int(m.group(2))
             for m in re.finditer(r"^\s*CNT_(\w+)\s*=\s*(\d+),", text, re.M)}
    assert [slots[name] for name in COUNTERS] == list(range(len(COUNTERS)))
    assert slots["max"] >= len(COUNTERS)


def test_program_names_split_bpf_from_helpers() -> None:
    progs, helpers = program_names()
    assert {"xdp_drop", "xdp_tx_swap", "xdp_pass_adjust", "xdp_redirect_devmap",
            "xdp_redirect_xsk", "xdp_redirect_cpumap", "xdp_aborted", "xdp_rx_hash",
            "tc_skb_hash"} <= set(progs)
    assert helpers == ["load_bound", "xsk_rx"]


def test_stale_when_missing_or_older(tmp_path: Path) -> None:
    src, out = tmp_path / "a.c", tmp_path / "a.o"
    src.write_text("x")
    assert stale(out, [src])
    out.write_text("o")
    os.utime(src, ns=(1_000_000_000, 1_000_000_000))
    os.utime(out, ns=(2_000_000_000, 2_000_000_000))
    assert not stale(out, [src])
    os.utime(src, ns=(3_000_000_000, 3_000_000_000))
    assert stale(out, [src])


def test_missing_compiler_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bpf.shutil, "which", lambda name: None)
    with pytest.raises(BpfBuildError, match="apt-get install clang"):
        need_tool("clang")


@pytest.mark.skipif(not (shutil.which("clang") and shutil.which("gcc")
                         and Path("/usr/include/bpf/bpf_helpers.h").exists()),
                    reason="clang, gcc and libbpf-dev are needed to build the programs")
def test_every_program_builds_and_is_cached(tmp_path: Path) -> None:
    built = build_all(out_dir=tmp_path)
    assert all(p.stat().st_size > 0 for p in built.all())
    assert built.objects["xdp_drop"].read_bytes()[:4] == b"\x7fELF"
    stamp = built.objects["xdp_drop"].stat().st_mtime_ns
    assert build_all(out_dir=tmp_path).objects["xdp_drop"].stat().st_mtime_ns == stamp


def test_compile_error_is_a_build_error(tmp_path: Path) -> None:
    if not shutil.which("clang"):
        pytest.skip("no clang")
    (tmp_path / "xdp_bad.c").write_text("int x = ;\n")
    with pytest.raises(BpfBuildError, match=r"xdp_bad\.c does not build"):
        bpf.compile_bpf("xdp_bad", src_dir=tmp_path, out_dir=tmp_path / "out")


def test_xdp_prog_id_from_ip_json() -> None:
    assert parse_xdp_prog_id('[{"ifindex": 2, "ifname": "eth0"}]') is None
    one = '[{"ifname": "eth0", "xdp": {"mode": 1, "prog": {"id": 42, "name": "xdp_drop"}}}]'
    assert parse_xdp_prog_id(one) == 42
    multi = ('[{"xdp": {"mode": 4, "attached": [{"mode": 2, "prog": {"id": 7}}, '
             '{"mode": 1, "prog": {"id": 9}}]}}]')
    assert parse_xdp_prog_id(multi) == 9


def test_percpu_dump_summed_over_cpus() -> None:
    dump = ('[{"key": ["0x00","0x00","0x00","0x00"], "values": ['
            '{"cpu": 0, "value": ["0x01","0x00","0x00","0x00","0x00","0x00","0x00","0x00"]},'
            '{"cpu": 1, "value": ["0x00","0x01","0x00","0x00","0x00","0x00","0x00","0x00"]}]},'
            '{"key": 1, "values": [{"cpu": 0, "value": 5}, {"cpu": 1, "value": 6}]}]')
    assert parse_percpu_dump(dump) == {0: 257, 1: 11}
    assert le_bytes(4) == "4 0 0 0" and le_bytes(8192) == "0 32 0 0"


def test_flood_frames_numbered_and_checked() -> None:
    frames = [bytes(f) for f in udp_flood_frames("02:00:00:00:00:01", "52:54:00:50:56:01",
                                                 "198.18.0.1", "198.18.0.2", 3, dport=9, size=18)]
    assert len(frames[0]) == 60  # 64 on the wire with the FCS
    assert [udp_flood_seq(f, 9) for f in frames] == [0, 1, 2]
    assert udp_flood_seq(frames[1], 10) is None
    damaged = frames[2][:-1] + b"\x01"
    assert udp_flood_seq(damaged, 9) is None
    tally = FloodTally(3)
    for seq in (0, 1, 1, None, 7):
        tally.add(seq)
    assert tally.summary() == {"received": 5, "unique": 2, "bad": 2}


def test_bench_xdp_metrics_use_built_programs() -> None:
    from pvnet_harness.bench import METRICS, XDP_PROGS

    assert set(XDP_PROGS) <= {m.name for m in METRICS}
    assert set(XDP_PROGS.values()) <= set(program_names()[0])


# The verification suite of Microsoft's RSS documentation ("Verifying the RSS Hash
# Calculation"), with its default key.
MS_KEY = bytes.fromhex("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c"
                       "6a42b73bbeac01fa")


def _tuple(src: str, dst: str, ports: tuple[int, int] | None) -> bytes:
    data = ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed
    return data + (struct.pack("!HH", *ports) if ports else b"")


@pytest.mark.parametrize("src,dst,ports,want", [
    ("66.9.149.187", "161.142.100.80", (2794, 1766), 0x51CCC178),
    ("66.9.149.187", "161.142.100.80", None, 0x323E8FC2),
    ("199.92.111.2", "65.69.140.83", (14230, 4739), 0xC626B0EA),
    ("24.19.198.95", "12.22.207.184", (12898, 38024), 0x5C2B394A),
    ("3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1", (2794, 1766), 0x40207D3D),
    ("3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1", None, 0x2CC18CD5),
])
def test_toeplitz_matches_the_published_vectors(src: str, dst: str,
                                                ports: tuple[int, int] | None,
                                                want: int) -> None:
    assert toeplitz(MS_KEY, _tuple(src, dst, ports)) == want


def test_toeplitz_refuses_a_short_key() -> None:
    with pytest.raises(ValueError):
        toeplitz(MS_KEY[:8], bytes(12))


def test_rss_key_from_ethtool_x() -> None:
    text = ("RX flow hash indirection table for eth1 with 2 RX ring(s):\n"
            "Operation not supported\nRSS hash key:\n"
            + ":".join(f"{b:02x}" for b in MS_KEY) + "\nRSS hash function:\n    toeplitz: on\n")
    assert parse_rss_key(text) == MS_KEY
    with pytest.raises(ValueError):
        parse_rss_key("RSS hash key:\nOperation not supported\n")


def test_rx_hashes_dump_keeps_the_entries_frames_reached() -> None:
    def hexes(data: bytes) -> list[str]:
        return [f"0x{b:02x}" for b in data]

    entries = [
        {"key": hexes((0).to_bytes(4, "little")),
         "value": hexes(struct.pack("<iIII", 0, 0xDEADBEEF, 41, 1))},
        {"key": hexes((1).to_bytes(4, "little")),
         "value": hexes(struct.pack("<iIII", -61, 0, 0, 2))},
        {"key": hexes((2).to_bytes(4, "little")), "value": hexes(bytes(16))},
    ]
    assert parse_rx_hashes(json.dumps(entries)) == {0: (0, 0xDEADBEEF, 41, 1),
                                                   1: (-61, 0, 0, 2)}


def test_rx_hash_slots_match_the_c_program() -> None:
    assert header_define("RX_HASH_SLOTS", BPF_SRC / "rx_hash.h") == RX_HASH_SLOTS
