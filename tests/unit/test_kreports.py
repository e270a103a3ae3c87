"""Report blocks of a debug kernel's dmesg and kmemleak's report (kreports.py)."""

from __future__ import annotations

from pvnet_harness.guest import bad_dmesg_lines
from pvnet_harness.kreports import (
    blocks_for_lines,
    parse_kmemleak,
    pvnet_leaks,
    report_blocks,
    strip_prefix,
)

KASAN = """\
[   10.000001] pvnet virtio1 eth0: link up
[   12.100000] ==================================================================
[   12.100001] BUG: KASAN: slab-use-after-free in pvnet_rx_poll+0x1a/0x2b0 [pvnet]
[   12.100002] Read of size 8 at addr ffff888004a1c010 by task ksoftirqd/0/15
[   12.100003] CPU: 0 UID: 0 PID: 15 Comm: ksoftirqd/0 Not tainted 6.12.118-pvnet-debug #1
[   12.100004] Call Trace:
[   12.100005]  <TASK>
[   12.100006]  kasan_report+0xb9/0xf0
[   12.100007]  pvnet_rx_poll+0x1a/0x2b0 [pvnet]
[   12.100008]  </TASK>
[   12.100009] Allocated by task 1:
[   12.100010]  __kmalloc_noprof+0x1c4/0x3e0
[   12.100011] The buggy address belongs to the object at ffff888004a1c000
[   12.100012] ==================================================================
[   12.200000] random: crng init done
"""

LOCKDEP = """\
[   20.000000] ======================================================
[   20.000001] WARNING: possible circular locking dependency detected
[   20.000002] 6.12.118-pvnet-debug #1 Not tainted
[   20.000003] ------------------------------------------------------
[   20.000004] ethtool/321 is trying to acquire lock:
[   20.000005] ffff888003c0e0d8 (&ctrl->lock){+.+.}-{3:3}, at: pvnet_ctrl_send+0x3c/0x200 [pvnet]
[   20.000006] -> #1 (rtnl_mutex){+.+.}-{3:3}:
[   20.000007]        __mutex_lock+0x10c/0xe60
[   20.000008] stack backtrace:
[   20.000009] CPU: 1 UID: 0 PID: 321 Comm: ethtool Not tainted 6.12.118-pvnet-debug #1
[   20.000010] Call Trace:
[   20.000011]  <TASK>
[   20.000012]  dump_stack_lvl+0x5d/0x80
[   20.000013]  </TASK>
[   20.000014] pvnet virtio1 eth0: 2 queue pairs
"""

RCU = """\
[   30.000000] =============================
[   30.000001] WARNING: suspicious RCU usage
[   30.000002] 6.12.118-pvnet-debug #1 Not tainted
[   30.000003] -----------------------------
[   30.000004] net/core/dev.c:123 suspicious rcu_dereference_check() usage!
[   30.000005] Call Trace:
[   30.000006]  <TASK>
[   30.000007]  lockdep_rcu_suspicious+0x150/0x1a0
[   30.000008]  </TASK>
"""

WARN = """\
[   40.000000] ------------[ cut here ]------------
[   40.000001] WARNING: CPU: 0 PID: 7 at net/sched/sch_generic.c:525 dev_watchdog+0x2a0/0x2b0
[   40.000002] Modules linked in: pvnet veth ifb
[   40.000003] Call Trace:
[   40.000004]  <TASK>
[   40.000005]  call_timer_fn+0x2c/0x150
[   40.000006]  </TASK>
[   40.000007] ---[ end trace 0000000000000000 ]---
[   40.000008] next line
"""

SLEEP = """\
[   50.000000] BUG: sleeping function called from invalid context at mm/slub.c:4110
[   50.000001] in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 5, name: kworker/0:0
[   50.000002] Call Trace:
[   50.000003]  <TASK>
[   50.000004]  __might_resched+0x1b5/0x2a0
[   50.000005]  pvnet_refill_work+0x44/0x120 [pvnet]
[   50.000006]  </TASK>
[   50.000007] after
"""

ALLOC = """\
[   60.000000] FAULT_INJECTION: forcing a failure.
[   60.000001] name failslab, interval 1, probability 10, space 0, times -1
[   60.000002] CPU: 0 UID: 0 PID: 15 Comm: ksoftirqd/0 Not tainted 6.12.118-pvnet-debug #1
[   60.000003] Call Trace:
[   60.000004]  <TASK>
[   60.000005]  should_fail_ex+0x2a1/0x300
[   60.000006]  pvnet_rx_refill+0x80/0x200 [pvnet]
[   60.000007]  </TASK>
[   60.000008] ksoftirqd/0: page allocation failure: order:0, mode:0x820(GFP_ATOMIC), nodemask=(null)
[   60.000009] CPU: 0 UID: 0 PID: 15 Comm: ksoftirqd/0 Not tainted 6.12.118-pvnet-debug #1
[   60.000010] Call Trace:
[   60.000011]  <TASK>
[   60.000012]  warn_alloc+0x150/0x1c0
[   60.000013]  </TASK>
[   60.000014] Mem-Info:
"""


COLOURED = (
    "\x1b[32m[   52.528512] \x1b[0m\x1b[33mFAULT_INJECTION: \x1b[0mforcing a failure.\n"
    "               name failslab, interval 1, probability 20, space 0, times 999999\n"
    "\x1b[32m[   52.528600] \x1b[0mCall Trace:\n"
    "\x1b[32m[   52.528601] \x1b[0m <TASK>\n"
    "\x1b[32m[   52.528602] \x1b[0m pvnet_rx_refill+0x80/0x200 [pvnet]\n"
    "\x1b[32m[   52.528603] \x1b[0m </TASK>\n"
    "\x1b[32m[   52.600000] \x1b[0m\x1b[33mksoftirqd/0: \x1b[0mpage allocation failure: "
    "order:0, mode:0x820(GFP_ATOMIC)\n"
)


def test_coloured_dmesg() -> None:
    """dmesg on the guest's console (a terminal) colours timestamps and prefixes."""
    assert [r.kind for r in report_blocks(COLOURED)] == ["fault-injection", "alloc-failure"]
    rep = report_blocks(COLOURED)[0]
    assert rep.header == "FAULT_INJECTION: forcing a failure."
    assert rep.names_pvnet and rep.text.splitlines()[-1].strip() == "</TASK>"
    assert strip_prefix(bad_dmesg_lines(COLOURED)[0]).startswith("ksoftirqd/0: page alloc")


def test_prefix_is_stripped() -> None:
    assert strip_prefix("[   12.100001] BUG: KASAN: x") == "BUG: KASAN: x"
    assert strip_prefix("[    1.5] [    T1] hello") == "hello"
    assert strip_prefix("no prefix") == "no prefix"


def test_kasan_block_runs_from_the_ruler_to_the_closing_ruler() -> None:
    (rep,) = report_blocks(KASAN)
    assert rep.kind == "kasan"
    lines = rep.text.splitlines()
    assert lines[0].startswith("=====") and lines[1].startswith("BUG: KASAN: slab-use-after")
    assert lines[-1].startswith("=====") and "The buggy address" in lines[-2]
    assert "crng" not in rep.text and "link up" not in rep.text
    assert rep.names_pvnet


def test_lockdep_block_ends_with_its_stack_backtrace() -> None:
    (rep,) = report_blocks(LOCKDEP)
    assert rep.kind == "lockdep"
    assert rep.text.splitlines()[0].startswith("=====")
    assert rep.text.splitlines()[-1].strip() == "</TASK>"
    assert "2 queue pairs" not in rep.text
    assert rep.names_pvnet


def test_rcu_warning_and_sleep_in_atomic() -> None:
    (rcu,) = report_blocks(RCU)
    assert rcu.kind == "lockdep" and not rcu.names_pvnet
    (sleep,) = report_blocks(SLEEP)
    assert sleep.kind == "lockdep" and sleep.names_pvnet
    assert sleep.text.splitlines()[-1].strip() == "</TASK>"


def test_warning_runs_to_its_end_trace() -> None:
    (rep,) = report_blocks(WARN)
    assert rep.kind == "warning"
    assert rep.text.splitlines()[-1].startswith("---[ end trace")
    assert "next line" not in rep.text
    # "Modules linked in: pvnet" is not a pvnet frame
    assert not rep.names_pvnet


def test_several_reports_in_one_text() -> None:
    kinds = [r.kind for r in report_blocks(KASAN + LOCKDEP + WARN + SLEEP + ALLOC)]
    assert kinds == ["kasan", "lockdep", "warning", "lockdep", "fault-injection",
                     "alloc-failure"]


def test_bad_lines_are_shown_with_their_whole_block() -> None:
    text = KASAN + WARN + "[ 70.0] refcount_t: underflow; use-after-free.\n"
    bad = bad_dmesg_lines(text)
    shown = blocks_for_lines(text, bad)
    assert len(shown) == 3
    assert shown[0].startswith("=====") and "Allocated by task" in shown[0]
    assert "end trace" in shown[1]
    assert shown[2] == "refcount_t: underflow; use-after-free."


def test_lockdep_reports_are_bad_lines() -> None:
    for text in (LOCKDEP, RCU, SLEEP):
        assert bad_dmesg_lines(text), text
    assert any("inconsistent lock state" in ln for ln in
               bad_dmesg_lines("[ 1.0] WARNING: inconsistent lock state\n"))


KMEMLEAK = """\
unreferenced object 0xffff888006a3c000 (size 1024):
  comm "insmod", pid 201, jiffies 4294893456
  hex dump (first 32 bytes):
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................
  backtrace (crc 5d2e8a1f):
    [<ffffffff8155b0c4>] __kmalloc_noprof+0x1c4/0x3e0
    [<ffffffffc0212a45>] pvnet_probe+0x345/0x1200 [pvnet]
    [<ffffffff81a0e0a2>] virtio_dev_probe+0x2a2/0x470
unreferenced object 0xffff888007000000 (size 64):
  comm "swapper/0", pid 1, jiffies 4294667296
  backtrace (crc 0):
    [<ffffffff8155b0c4>] kmalloc_trace+0x24/0x90
    [<ffffffff81c0e0a2>] acpi_os_allocate+0x22/0x30
"""


def test_kmemleak_records() -> None:
    leaks = parse_kmemleak(KMEMLEAK)
    assert [(lk.address, lk.size, lk.comm) for lk in leaks] == [
        ("0xffff888006a3c000", 1024, "insmod"), ("0xffff888007000000", 64, "swapper/0")]
    assert leaks[0].backtrace[1].startswith("pvnet_probe+0x345")
    assert leaks[0].text.startswith("unreferenced object 0xffff888006a3c000")
    assert leaks[0].text.rstrip().endswith("virtio_dev_probe+0x2a2/0x470")
    assert [lk.address for lk in pvnet_leaks(KMEMLEAK)] == ["0xffff888006a3c000"]


def test_a_leak_of_an_unloaded_module_counts_as_pvnet() -> None:
    """After rmmod, kmemleak cannot name pvnet's frames: they are bare module-area addresses."""
    text = """\
unreferenced object 0xffff888006a3c000 (size 512):
  comm "insmod", pid 301, jiffies 4294893456
  backtrace (crc 1):
    [<ffffffff8155b0c4>] __kmalloc_noprof+0x1c4/0x3e0
    [<ffffffffc0212a45>] 0xffffffffc0212a45
"""
    assert [lk.size for lk in pvnet_leaks(text)] == [512]
    kernel_only = text.replace("[<ffffffffc0212a45>] 0xffffffffc0212a45",
                               "[<ffffffff81a0e0a2>] do_one_initcall+0x2a2/0x470")
    assert pvnet_leaks(kernel_only) == []


def test_kmemleak_empty() -> None:
    assert parse_kmemleak("") == []
    assert pvnet_leaks("\n") == []


def test_the_injectors_own_lockdep_report_is_told_apart() -> None:
    """fail_function's kprobe draws a random number in int3 context: lockdep reports the CRNG
    lock, from should_fail_ex() under fei_kprobe_handler(); only that report is the
    injector's."""
    from pvnet_harness.kreports import is_injector_report

    injector = ("WARNING: inconsistent lock state\n--------------------------------\n"
                "inconsistent {INITIAL USE} -> {IN-NMI} usage.\n"
                " should_fail_ex+0x2ad/0x4c0\n fei_kprobe_handler+0x19/0x80\n"
                " pvnet_ctrl_cmd+0x132/0x2d0 [pvnet]\n")
    other = ("WARNING: inconsistent lock state\n--------------------------------\n"
             " pvnet_rx_poll+0x10/0x200 [pvnet]\n")
    reps = report_blocks(injector) + report_blocks(other)
    assert [r.kind for r in reps] == ["lockdep", "lockdep"]
    assert [is_injector_report(r) for r in reps] == [True, False]
