from __future__ import annotations

from pvnet_harness.lint import compiler_warnings

LOG = """make: Entering directory '/x/linux-headers-6.1.0-56-amd64'
  CC [M]  /w/driver/pvnet_main.o
  CHECK   /w/driver/pvnet_main.c
/w/driver/pvnet_main.c:12:5: warning: no previous prototype for 'foo' [-Wmissing-prototypes]
/w/driver/pvnet_rx.c:40:17: warning: incorrect type in assignment (different base types)
/w/driver/pvnet_tx.c:9:1: error: expected ';' before '}' token
make: Leaving directory '/x/linux-headers-6.1.0-56-amd64'
"""


def test_compiler_warnings_picks_gcc_and_sparse_lines() -> None:
    found = compiler_warnings(LOG)
    assert len(found) == 3
    assert all("/w/driver/" in f for f in found)


def test_the_kernels_sparse_refusal_is_recognised() -> None:
    from pvnet_harness.lint import sparse_refusal

    log = ("/usr/src/linux-headers-7.3.4+deb13-common/Makefile:1311: C=2 specified, but "
           "sparse is not available or not up to date\n  CC [M]  /w/driver/pvnet_main.o\n")
    assert sparse_refusal(log) == ("C=2 specified, but sparse is not available or not up "
                                   "to date")
    assert sparse_refusal(LOG) is None
