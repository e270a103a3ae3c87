"""Command-line options shared by the unit and e2e suites."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--kernel", default=os.environ.get("PVNET_KERNEL", "6.1"),
                     help="kernel line for e2e tests: 5.10, 6.1, 6.12, 7 or a debug line (6.12-debug)")
    parser.addoption("--accel", default=os.environ.get("PVNET_ACCEL", "auto"),
                     help="QEMU accelerator: auto (KVM only with kvm_intel/kvm_amd), kvm, tcg")
    parser.addoption("--offline", action="store_true", default=False,
                     help="use the cached kernel without asking apt")
    parser.addoption("--keep", action="store_true", default=False,
                     help="keep guest work folders (console.log, dmesg.log) after the run")
    parser.addoption("--full-matrix", action="store_true",
                     default=os.environ.get("PVNET_FULL_MATRIX", "") not in ("", "0"),
                     help="run every case of the sharded combination tests on this kernel "
                          "line, not only the line's share (see tests/e2e/conftest.py)")
