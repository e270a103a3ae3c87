from __future__ import annotations

import pytest
from pvnet_harness.netlab import check_test_address, netem_args


def test_netem_args() -> None:
    assert netem_args(delay_ms=200, loss_pct=1) == ["netem", "delay", "200ms", "loss", "1%"]
    assert netem_args(delay_ms=10, jitter_ms=2, limit=1000, rate="10mbit") == [
        "netem", "limit", "1000", "delay", "10ms", "2ms", "rate", "10mbit"]
    assert netem_args(loss_pct=0.5) == ["netem", "loss", "0.5%"]


@pytest.mark.parametrize("kw", [{"delay_ms": -1}, {"loss_pct": 101}, {"jitter_ms": 5}])
def test_netem_args_rejects_nonsense(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        netem_args(**kw)


@pytest.mark.parametrize("addr", ["198.18.0.2", "198.19.255.1", "2001:db8::2"])
def test_allowed_addresses(addr: str) -> None:
    assert check_test_address(addr) == addr


@pytest.mark.parametrize("addr", ["10.0.2.2", "8.8.8.8", "192.168.1.1", "2001:db8:1::1", "::1"])
def test_forbidden_addresses(addr: str) -> None:
    with pytest.raises(ValueError):
        check_test_address(addr)
