"""Kernel reports in a guest's dmesg and in kmemleak's debugfs file: pure parsing.

A debug kernel (KASAN, lockdep, debugobjects, kmemleak, fault injection) reports in blocks:
a header line ("BUG: KASAN: slab-use-after-free in ...", "WARNING: possible circular locking
dependency detected", "WARNING: CPU: 0 PID: 1 at ...") often under a ruler of '=' signs,
then registers, backtraces and notes, up to an end marker (the closing ruler of KASAN, the
"---[ end trace" of a WARNING/Oops, the "</TASK>" of lockdep's and RCU's stack backtrace). A
test that fails on such a report carries the whole block, and the harness tells the reports
that name pvnet (a backtrace frame in the module or a pvnet_ function) from the others.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# "[   12.345678] " (dmesg's timestamps) and "[    T123] " (caller ids) before a message
_PREFIX = re.compile(r"^(?:\[\s*\d+\.\d+\]\s?)?(?:\[\s*[TC]\d+\]\s?)?")
_RULER = re.compile(r"^=+$")
# util-linux dmesg colours its output on a terminal (the guest's serial console is one)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# Header line of a report -> its kind. Order matters: the first match names the kind.
HEADERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("kasan", re.compile(r"BUG: KASAN: ")),
    ("kcsan", re.compile(r"BUG: KCSAN: ")),
    ("lockdep", re.compile(r"WARNING: possible (?:circular|recursive) locking|"
                           r"WARNING: inconsistent lock state|"
                           r"WARNING: suspicious RCU usage|"
                           r"WARNING: (?:bad unlock balance|held lock freed|lock held when "
                           r"returning to user space)|"
                           r"INFO: possible irq lock inversion|"
                           r"WARNING: .*HARDIRQ-safe -> HARDIRQ-unsafe|"
                           r"BUG: sleeping function called from invalid context|"
                           r"BUG: scheduling while atomic|"
                           r"BUG: Invalid wait context")),
    ("debugobjects", re.compile(r"ODEBUG: ")),
    ("fault-injection", re.compile(r"FAULT_INJECTION: forcing a failure")),
    ("alloc-failure", re.compile(r"page allocation failure: order:")),
    ("oops", re.compile(r"BUG: unable to handle|general protection fault|Oops: |"
                        r"kernel BUG at")),
    ("warning", re.compile(r"WARNING: CPU: \d+ PID: \d+ at |WARNING: at ")),
    ("bug", re.compile(r"BUG: ")),
)
MAX_BLOCK_LINES = 400
# A backtrace frame or a symbol in pvnet: "pvnet_rx_poll+0x1a/0x2b0 [pvnet]"
PVNET_FRAME = re.compile(r"\[pvnet\]|\bpvnet_\w+\+0x[0-9a-f]+")


def is_injector_report(rep: Report) -> bool:
    """A lockdep report about the fault injector itself: should_fail_ex() called from the
    kprobe of fail_function (fei_kprobe_handler), whose int3 handler lockdep counts as NMI
    context, takes the CRNG lock for its random draw. Kind "injector" in dmesg_allow."""
    return rep.kind == "lockdep" and "should_fail_ex" in rep.text and \
        "fei_kprobe_handler" in rep.text


def strip_prefix(line: str) -> str:
    """A dmesg line without its colours, timestamp and caller id."""
    return _PREFIX.sub("", _ANSI.sub("", line.rstrip("\r")))


@dataclass(frozen=True)
class Report:
    """One report block of dmesg: its kind, header line and text (timestamps stripped)."""

    kind: str
    header: str
    text: str

    @property
    def names_pvnet(self) -> bool:
        return names_pvnet(self.text)


def names_pvnet(text: str) -> bool:
    """Whether a report's text has a frame in pvnet (a `[pvnet]` module tag or a pvnet_
    function with an offset)."""
    return PVNET_FRAME.search(text) is not None


def header_kind(line: str) -> str | None:
    for kind, pat in HEADERS:
        if pat.search(line):
            return kind
    return None


# Kinds whose block ends with the stack backtrace's "</TASK>" (no end-trace line follows)
_TASK_END = frozenset({"lockdep", "fault-injection", "alloc-failure", "bug"})


def _block_end(kind: str, lines: list[str], start: int) -> int:
    """Index one past the last line of the block whose header is lines[start]."""
    limit = min(len(lines), start + MAX_BLOCK_LINES)
    for i in range(start + 1, limit):
        ln = lines[i]
        if kind == "kasan" and _RULER.match(ln):
            return i + 1
        if ln.startswith("---[ end trace") or ln.startswith("---[ end Kernel panic"):
            return i + 1
        if kind in _TASK_END and ln.strip() == "</TASK>":
            return i + 1
        # The next report began without this one's end marker. An ODEBUG line is followed
        # by its own WARNING splat, which belongs to it.
        if kind != "debugobjects" and header_kind(ln) is not None:
            return i - 1 if _RULER.match(lines[i - 1]) and i - 1 > start else i
    return limit


def report_blocks(text: str) -> list[Report]:
    """Every report block of a dmesg text, in order. A ruler line just above a header belongs
    to the block; a block without its end marker runs to the next header or 400 lines."""
    lines = [strip_prefix(ln) for ln in text.splitlines()]
    out: list[Report] = []
    i = 0
    while i < len(lines):
        kind = header_kind(lines[i])
        if kind is None:
            i += 1
            continue
        start = i - 1 if i > 0 and _RULER.match(lines[i - 1]) else i
        end = _block_end(kind, lines, i)
        out.append(Report(kind, lines[i], "\n".join(lines[start:end])))
        i = end
    return out


def blocks_for_lines(text: str, bad: Iterable[str]) -> list[str]:
    """The report blocks that hold any of the `bad` lines (as bad_dmesg_lines returns them),
    then the bad lines that are in no block, each once: what a failing test's message shows."""
    blocks = report_blocks(text)
    wanted = [strip_prefix(b) for b in bad]
    shown: list[str] = []
    covered: set[str] = set()
    for rep in blocks:
        rep_lines = set(rep.text.splitlines())
        hits = [w for w in wanted if w in rep_lines]
        if hits:
            shown.append(rep.text)
            covered.update(hits)
    shown.extend(w for w in dict.fromkeys(wanted) if w not in covered)
    return shown


# ---------------------------------------------------------------- kmemleak


@dataclass(frozen=True)
class Leak:
    """One 'unreferenced object' of /sys/kernel/debug/kmemleak."""

    address: str
    size: int
    comm: str
    backtrace: tuple[str, ...]
    text: str

    @property
    def names_pvnet(self) -> bool:
        """A frame in pvnet, or in an unloaded module (kmemleak prints a frame of freed module
        text as a bare address in the module area): a leak of a pvnet that was rmmod'ed."""
        return any(names_pvnet(f) or _UNLOADED.match(f) for f in self.backtrace)


# x86-64 module area (MODULES_VADDR..MODULES_END), as kmemleak prints an unknown symbol
_UNLOADED = re.compile(r"^0xffffffff(?:[a-e][0-9a-f]|f[0-e])[0-9a-f]{6}$")
_LEAK_HEAD = re.compile(r"^unreferenced object (0x[0-9a-f]+) \(size (\d+)\):")
_COMM = re.compile(r'comm "([^"]*)"')
_FRAME = re.compile(r"^\s*\[<[0-9a-f]+>\]\s+(\S.*)$")


def parse_kmemleak(text: str) -> list[Leak]:
    """The leak records of kmemleak's report ("unreferenced object ... backtrace:" blocks)."""
    leaks: list[Leak] = []
    cur: list[str] = []

    def flush() -> None:
        if not cur:
            return
        m = _LEAK_HEAD.match(cur[0])
        assert m is not None
        comm = _COMM.search("\n".join(cur[1:3]))
        frames = tuple(f.group(1).strip() for ln in cur if (f := _FRAME.match(ln)))
        leaks.append(Leak(m.group(1), int(m.group(2)), comm.group(1) if comm else "",
                          frames, "\n".join(cur).rstrip()))

    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if _LEAK_HEAD.match(line):
            flush()
            cur = [line]
        elif cur:
            cur.append(line)
    flush()
    return leaks


def pvnet_leaks(text: str) -> list[Leak]:
    return [lk for lk in parse_kmemleak(text) if lk.names_pvnet]
