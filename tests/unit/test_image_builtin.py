"""A kernel with the virtio and 9p drivers built in (the debug lane's): the initramfs loads
only what is a module, and a wanted module the kernel has neither way is an error."""

from __future__ import annotations

import pytest
from pvnet_harness.image import GUEST_MODULES, load_order, parse_builtin, parse_modules_dep

DEP = """\
kernel/net/sched/sch_netem.ko:
kernel/net/sched/sch_ingress.ko:
kernel/net/sched/sch_tbf.ko:
kernel/net/sched/cls_matchall.ko:
kernel/net/sched/cls_u32.ko:
kernel/net/sched/cls_bpf.ko:
kernel/net/sched/act_mirred.ko:
kernel/drivers/net/ifb.ko:
kernel/drivers/net/veth.ko:
"""
BUILTIN = """\
kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci.ko
kernel/drivers/net/virtio_net.ko
kernel/drivers/net/net_failover.ko
kernel/net/9p/9pnet.ko
kernel/net/9p/9pnet_virtio.ko
kernel/fs/9p/9p.ko
"""


def test_built_in_guest_modules_are_skipped() -> None:
    order = load_order([n for n, _ in GUEST_MODULES], parse_modules_dep(DEP),
                       parse_builtin(BUILTIN))
    assert order == ["sch_netem", "sch_ingress", "sch_tbf", "cls_matchall", "cls_u32",
                     "cls_bpf", "act_mirred", "ifb", "veth"]


def test_a_module_missing_both_ways_is_an_error() -> None:
    dep = DEP.replace("kernel/drivers/net/veth.ko:\n", "")
    with pytest.raises(LookupError, match="veth"):
        load_order([n for n, _ in GUEST_MODULES], parse_modules_dep(dep), parse_builtin(BUILTIN))
