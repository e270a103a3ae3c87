"""invoke tasks: kernels, build, dkms, test, test-qemu, check, demo, bench, lint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from invoke import Context, task

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "python"))

from pvnet_harness import read_version  # noqa: E402
from pvnet_harness.build import dkms_build, kbuild, render_dkms_conf  # noqa: E402
from pvnet_harness.kernels import DEBUG_LINES, LINES, KernelCache, parse_lines_arg  # noqa: E402
from pvnet_harness.util import CommandError, cache_dir, progress, setup_logging  # noqa: E402

PY = sys.executable


def _tree(line: str, offline: bool = False):
    return KernelCache(cache_dir()).fetch(line, offline=offline)


def _fail(err: Exception) -> None:
    print(f"\nERROR: {err}", file=sys.stderr)
    raise SystemExit(1)


# The debug lane: the test modules run on each debug line (KASAN, lockdep, kmemleak, fault
# injection), every case of them (--full-matrix: all the hostile-device scenarios). Not in
# `invoke check` by default: the kernel's first build (14.5 min here) and this subset do not
# fit CI's budget yet (docs/history.md).
DEBUG_SUBSET = ("tests/e2e/test_basic.py", "tests/e2e/test_lifecycle.py",
                "tests/e2e/test_faults.py", "tests/e2e/test_recovery.py",
                "tests/e2e/test_hostile.py")


@task(help={"line": "5.10, 6.1, 6.12, 7, a comma list, all (the production lines) or a debug "
                    f"line ({', '.join(DEBUG_LINES)}: built from Debian's source, once)",
            "offline": "use the cache only"})
def kernels(c: Context, line: str = "6.1", offline: bool = False, verbose: bool = False) -> None:
    """Fetch Debian kernel image + headers per line into the cache (private apt state); a
    debug line is built from linux-source with kconfig/<line>.config and cached."""
    setup_logging(verbose)
    for name in parse_lines_arg(line):
        try:
            t = _tree(name, offline)
        except (CommandError, LookupError, RuntimeError) as err:
            _fail(err)
        print(f"{name:10} {t.version:22} {t.release:22} {t.root}")


@task(help={"kernel": "kernel line", "w1": "extra warnings (W=1)", "sparse": "run sparse (C=2)"})
def build(c: Context, kernel: str = "6.1", w1: bool = True, sparse: bool = False,
          verbose: bool = False) -> None:
    """Developer loop: plain kbuild of pvnet.ko against the cached headers."""
    setup_logging(verbose)
    extra = (("W=1",) if w1 else ()) + (("C=2",) if sparse else ())
    try:
        res = kbuild(_tree(kernel, offline=False), ROOT, extra)
    except (CommandError, LookupError, RuntimeError) as err:
        _fail(err)
    print(res.module)
    print(f"probes passed: {' '.join(sorted(res.probes))}")


@task(help={"kernel": "kernel line"})
def dkms(c: Context, kernel: str = "6.1", verbose: bool = False) -> None:
    """Build pvnet through DKMS (private dkms tree) against a kernel line."""
    setup_logging(verbose)
    try:
        res = dkms_build(_tree(kernel), ROOT)
    except (CommandError, LookupError, RuntimeError) as err:
        _fail(err)
    print(res.module)


@task
def dkms_conf(c: Context) -> None:
    """Regenerate dkms.conf from its template and the VERSION file."""
    (ROOT / "dkms.conf").write_text(render_dkms_conf(read_version(ROOT)))
    print(ROOT / "dkms.conf")


@task(help={"out": "output folder (relative to the checkout)",
            "kernel": "kernel line the signed module is built for",
            "sign_key": "private key (PEM) to sign pvnet.ko with",
            "sign_cert": "X.509 certificate of that key (PEM or DER)"})
def dist(c: Context, out: str = "dist", kernel: str = "6.1", sign_key: str = "",
         sign_cert: str = "") -> None:
    """DKMS source tarball and pvnet-dkms .deb; with --sign-key/--sign-cert a signed pvnet.ko."""
    from pvnet_harness.dist import build_dist

    setup_logging()
    try:
        res = build_dist(ROOT / out, Path(sign_key) if sign_key else None,
                         Path(sign_cert) if sign_cert else None, kernel_line=kernel)
    except (CommandError, LookupError, RuntimeError, ValueError, OSError) as err:
        _fail(err)
    for path in (res.tarball, res.deb, res.signed_module):
        if path is not None:
            print(path)


@task
def test_packaging(c: Context) -> None:
    """Packaging tests: DKMS tarball per line, .deb install/purge, lintian, signing (root)."""
    c.run(f"{PY} -m pytest tests/e2e/test_packaging.py -v -rs", pty=False)


@task
def test(c: Context) -> None:
    """Unit tests: no QEMU, no root."""
    c.run(f"{PY} -m pytest tests/unit -q", pty=False)


def _pytest_e2e(kernel: str, accel: str, k: str, keep: bool, paths: str) -> str:
    opts = f"--kernel {kernel} --accel {accel}"
    if kernel in DEBUG_LINES:
        opts += " --full-matrix"
    if k:
        opts += f" -k '{k}'"
    if keep:
        opts += " --keep"
    return f"{PY} -m pytest {paths} {opts} -v --durations=15"


@task(help={"kernel": "kernel line", "accel": "auto|kvm|tcg", "k": "pytest -k expression",
            "keep": "keep guest work folders"})
def test_qemu(c: Context, kernel: str = "6.1", accel: str = "auto", k: str = "",
              keep: bool = False) -> None:
    """End-to-end suite per kernel line (root); with several lines, a line x test matrix.
    Packaging tests are not in it (they boot no guest): `invoke test-packaging`."""
    lines = parse_lines_arg(kernel)
    paths = "tests/e2e -m 'not packaging'"
    if len(lines) == 1 and lines[0] in LINES:
        c.run(_pytest_e2e(lines[0], accel, k, keep, paths), pty=False)
        return
    # a debug line: its subset, then the matrix with the reliability summary
    runs = [(ln, _pytest_e2e(ln, accel, k, keep, " ".join(DEBUG_SUBSET) if ln in DEBUG_LINES
                             else paths)) for ln in lines]
    _run_matrix(c, lines, runs)


def _run_matrix(c: Context, lines: list[str], runs: list[tuple[str, str]]) -> None:
    """Run one pytest session per (line, extra args), then print the line x test matrix."""
    from pvnet_harness.capabilities import read_record, record_path, report
    from pvnet_harness.matrix import all_passed, build_matrix, reliability, render_matrix

    out = ROOT / "out"
    out.mkdir(exist_ok=True)
    reports: dict[str, Path | None] = {}
    probes: dict[str, frozenset[str]] = {}
    failed = False
    for line, cmd in zip(lines, (r[1] for r in runs), strict=True):
        junit = out / f"e2e-{line}.xml"
        junit.unlink(missing_ok=True)
        record_path(out, line).unlink(missing_ok=True)
        progress(f"test suite on kernel line {line}")
        res = c.run(f"{cmd} --junitxml={junit}", pty=False, warn=True)
        failed |= res is None or res.exited != 0
        reports[line] = junit if junit.exists() else None
        if record_path(out, line).exists():
            probes[line] = read_record(record_path(out, line))
    tests, table = build_matrix(reports)
    text = render_matrix(tests, table)
    # the capability comparison is of production lines only (a debug line is its base line)
    production = {ln: p for ln, p in probes.items() if ln in LINES}
    probe_table, lost = report(production, [ln for ln in LINES if ln in production],
                               newest=list(LINES)[-1])  # oldest first
    text += "\n\nprobes that compiled per line (driver/compat):\n" + probe_table
    if lost:
        text += "\n\nprobes lost on a newer line without a named reason:\n" + "\n".join(lost)
    rel = {ln: reliability(p) for ln, p in reports.items() if p is not None}
    summaries = [r.render(ln) for ln, r in rel.items() if r.scenarios or ln in DEBUG_LINES]
    if summaries:
        text += "\n\n" + "\n".join(summaries)
    (out / "e2e-matrix.txt").write_text(text + "\n")
    print("\n" + text)
    if failed or lost or not all_passed(table):
        raise SystemExit(1)


@task(help={"kernel": "kernel lines (comma list or all)", "accel": "auto|kvm|tcg",
            "lint_first": "run invoke lint before the tests",
            "debug": "debug lines to run the debug subset on after the production lines "
                     f"(comma list: {','.join(DEBUG_LINES)}; default none, as CI)"})
def check(c: Context, kernel: str = "all", accel: str = "auto", lint_first: bool = True,
          debug: str = "") -> None:
    """Everything CI runs: lint, then unit tests + the e2e suite on every kernel line
    (packaging tests once, with the first line), then a line x test matrix; with --debug, the
    debug subset (DEBUG_SUBSET) on those debug kernels (built on first use) as well."""
    lines = [ln for ln in parse_lines_arg(kernel) if ln in LINES]
    debug_lines = [ln for ln in parse_lines_arg(debug) if ln in DEBUG_LINES] if debug else []
    if lint_first:
        lint(c, kernel=",".join(lines))
    runs = []
    for i, line in enumerate(lines):
        paths = "tests/unit tests/e2e" if i == 0 else "tests/e2e -m 'not packaging'"
        runs.append((line, _pytest_e2e(line, accel, "", False, paths)))
    for line in debug_lines:
        runs.append((line, _pytest_e2e(line, accel, "", False, " ".join(DEBUG_SUBSET))))
    _run_matrix(c, [r[0] for r in runs], runs)


@task(help={"kernel": "kernel line", "accel": "auto|kvm|tcg", "out": "report folder"})
def demo(c: Context, kernel: str = "6.1", accel: str = "auto", out: str = "out",
         verbose: bool = False) -> None:
    """Main job: fetch kernel, DKMS-build pvnet, boot a guest with it, push traffic, report."""
    from pvnet_harness.demo import run_demo

    setup_logging(verbose)
    try:
        report = run_demo(kernel, accel, ROOT / out)
    except Exception as err:  # the report says what failed, with command/console context
        _fail(err)
    progress(f"report written to {ROOT / out / 'demo-report.json'}")
    print(json.dumps(report["summary"], indent=2))


@task(help={"kernel": "kernel line", "accel": "auto|kvm|tcg",
            "out": "output folder for bench.json/.md/.png (relative to the checkout)",
            "rounds": "interleaved rounds per driver (pvnet, virtio_net, pvnet, ...)",
            "duration": "seconds per measurement run",
            "queues": "DUT queue pairs offered by the device (0: the standard profile's)",
            "offline": "use the cached kernel only"})
def bench(c: Context, kernel: str = "6.1", accel: str = "auto", out: str = "out/bench",
          rounds: int = 5, duration: int = 3, queues: int = 0, offline: bool = False,
          verbose: bool = False) -> None:
    """Same-boot A/B benchmark of pvnet vs the in-tree virtio_net (sysfs rebind between rounds):
    TCP streams, UDP 64 B pps, TCP RR p50/p99, guest CPU per GB; writes JSON, markdown, PNG."""
    from pvnet_harness.bench import bench as run_bench

    setup_logging(verbose)
    try:
        res = run_bench(kernel, accel, ROOT / out, rounds, duration, queues, offline)
    except Exception as err:  # the message carries the command/console context
        _fail(err)
    print("\n" + res.files["md"].read_text())
    for path in res.files.values():
        print(path)
    if res.failures or res.dmesg_problems:
        print(f"\n{len(res.failures)} measurement run(s) failed; guest dmesg problems: "
              f"{res.dmesg_problems or 'none'}", file=sys.stderr)
        raise SystemExit(1)


@task(help={"kernel": "kernel lines for the W=1 + sparse builds (comma list or all)"})
def lint(c: Context, kernel: str = "all", verbose: bool = False) -> None:
    """ruff + mypy (Python); checkpatch --strict, W=1 and sparse per kernel line (driver)."""
    from pvnet_harness.lint import checkpatch, probe_check, warning_build

    setup_logging(verbose)
    c.run(f"{PY} -m ruff check python tests tasks.py conftest.py")
    c.run(f"{PY} -m mypy python/pvnet_harness --ignore-missing-imports")
    builds = {line: warning_build(line) for line in parse_lines_arg(kernel)}
    results = [checkpatch(), *builds.values(), probe_check(builds)]
    for r in results:
        print(f"{'ok  ' if r.ok else 'FAIL'} {r.name}")
        for f in r.findings[:40]:
            print(f"     {f}")
        for n in r.notes:
            print(f"     {n}")
    if not all(r.ok for r in results):
        raise SystemExit(1)
