"""Debian LTS kernels (image + headers) fetched into a cache with a private apt state.

The machine's apt sources and installed packages are never touched: apt runs with its own
sources list, lists, cache and an empty dpkg status file under the cache directory.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .debver import compare_versions
from .util import progress, run

DEBIAN = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
LISTS_MAX_AGE_S = 24 * 3600


@dataclass(frozen=True)
class KernelLine:
    """One supported kernel line and the Debian suites that carry it.

    `build_root` names the Debian root (debroot.ROOTS) pvnet is built in for this line, "" for
    the host: Debian 13's kernels are built with gcc-14 and their kbuild tools need its libc, so
    their headers are installed and used inside a Debian 13 root, as a Debian 13 user has them.
    The host then fetches only the image (and its modules) to boot.
    """

    name: str
    suites: tuple[tuple[str, str], ...]
    build_root: str = ""

    def matches(self, version: str) -> bool:
        return version.startswith(self.name + ".")


# Oldest first: the capability check (capabilities.py) compares each line with the older ones.
LINES: dict[str, KernelLine] = {
    "5.10": KernelLine("5.10", ((DEBIAN, "bullseye"), (SECURITY, "bullseye-security"))),
    "6.1": KernelLine("6.1", ((DEBIAN, "bookworm"), (SECURITY, "bookworm-security"))),
    "6.12": KernelLine("6.12", ((DEBIAN, "trixie"), (SECURITY, "trixie-security")), "trixie"),
    # The newest 7.x Debian ships for trixie users, resolved at run time: a new upload is built
    # and tested by the next run.
    "7": KernelLine("7", ((DEBIAN, "trixie-backports"),), "trixie"),
}


@dataclass(frozen=True)
class DebugLine:
    """A kernel built by the harness (debugkernel.py) from the Debian source package of a
    production line, with the repo's config fragment (KASAN, lockdep, kmemleak, fault
    injection). Not one of LINES: the sharding and the capability matrix count production
    lines only, and `all` means those."""

    name: str
    base: str  # the production line whose linux-source-<base> package it is built from
    fragment: str  # the config fragment, relative to the repo root
    build_root: str = "trixie"


DEBUG_LINES: dict[str, DebugLine] = {
    "6.12-debug": DebugLine("6.12-debug", "6.12", "kconfig/6.12-debug.config"),
}


def in_shard(index: int, line: str, anchor: bool = False) -> bool:
    """Whether case `index` of a combination test split over the kernel lines runs on `line`:
    the line at position index % len(LINES) runs it, every line runs an anchor. A debug line
    runs its base line's share."""
    if line in DEBUG_LINES:
        line = DEBUG_LINES[line].base
    return anchor or index % len(LINES) == list(LINES).index(line)


def parse_lines_arg(arg: str) -> list[str]:
    """'6.1' -> ['6.1']; 'all' -> every production line; '5.10,6.1' -> both; a debug line
    ('6.12-debug') by its name only. Unknown names raise."""
    names = list(LINES) if arg == "all" else [a.strip() for a in arg.split(",") if a.strip()]
    for n in names:
        if n not in LINES and n not in DEBUG_LINES:
            raise ValueError(f"unknown kernel line {n!r}; known: {', '.join(LINES)}, "
                             f"{', '.join(DEBUG_LINES)} or 'all'")
    return names


@dataclass(frozen=True)
class PackageRef:
    name: str
    version: str
    filename: str
    sha256: str
    size: int

    @property
    def deb_name(self) -> str:
        return Path(self.filename).name


@dataclass(frozen=True)
class KernelPin:
    """A kernel line resolved to exact packages."""

    line: str
    version: str
    abi: str
    packages: tuple[PackageRef, ...]

    @property
    def release(self) -> str:
        return f"{self.abi}-amd64"


@dataclass
class KernelTree:
    """An extracted kernel: what build, image and guest need."""

    line: str
    version: str
    release: str
    root: Path
    vmlinux: Path
    packages: list[dict[str, str | int]] = field(default_factory=list)
    build_root: str = ""
    # A kernel the harness built (debug lines): its build tree inside build_root, which DKMS
    # builds against instead of an installed linux-headers package. "" for Debian's kernels.
    kbuild_dir: str = ""

    @property
    def headers_dir(self) -> Path:
        """The extracted headers of a host-built line (a rooted line's are in its root)."""
        return self.root / "usr/src" / f"linux-headers-{self.release}"

    @property
    def headers_package(self) -> str:
        return f"linux-headers-{self.release}"

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib/modules" / self.release

    @property
    def config(self) -> Path:
        return self._boot_file("config")

    @property
    def vmlinuz(self) -> Path:
        return self._boot_file("vmlinuz")

    def _boot_file(self, name: str) -> Path:
        """/boot/<name>-<release>, or (7.x packages) /usr/lib/modules/<release>/<name>."""
        boot = self.root / "boot" / f"{name}-{self.release}"
        if boot.exists():
            return boot
        return self.root / "usr/lib/modules" / self.release / name

    def compiler(self) -> str:
        """The compiler name the headers ask for (from .kernelvariables), e.g. gcc-12."""
        text = (self.headers_dir / ".kernelvariables").read_text()
        return compiler_from_kernelvariables(text)

    def to_json(self) -> str:
        d = asdict(self)
        d["root"] = str(self.root)
        d["vmlinux"] = str(self.vmlinux)
        return json.dumps(d, indent=2)

    @classmethod
    def from_json(cls, text: str) -> KernelTree:
        d = json.loads(text)
        d["root"] = Path(d["root"])
        d["vmlinux"] = Path(d["vmlinux"])
        return cls(**d)


# ---------------------------------------------------------------- pure parsing helpers


def parse_stanzas(text: str) -> list[dict[str, str]]:
    """Parse deb822 stanzas (apt-cache show output) into dicts; continuation lines joined."""
    stanzas: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    key = ""
    for raw in text.splitlines():
        if not raw.strip():
            if cur:
                stanzas.append(cur)
            cur, key = {}, ""
            continue
        if raw[0] in " \t" and key:
            cur[key] += "\n" + raw.strip()
            continue
        k, _, v = raw.partition(":")
        key = k.strip()
        cur[key] = v.strip()
    if cur:
        stanzas.append(cur)
    return stanzas


def newest_for_line(stanzas: list[dict[str, str]], line: KernelLine) -> dict[str, str]:
    """The stanza with the highest Debian version belonging to the line."""
    best: dict[str, str] | None = None
    for st in stanzas:
        ver = st.get("Version", "")
        if not line.matches(ver):
            continue
        if best is None or compare_versions(ver, best["Version"]) > 0:
            best = st
    if best is None:
        raise LookupError(f"no linux-image-amd64 version of line {line.name} in the apt lists")
    return best


def depends_names(depends: str) -> list[str]:
    """Package names of a Depends field (first alternative of each entry)."""
    names = []
    for entry in depends.split(","):
        first = entry.split("|")[0].strip()
        if first:
            names.append(first.split()[0].split(":")[0])
    return names


def abi_from_image_depends(depends: str) -> str:
    """'linux-image-6.1.0-56-amd64 (= 6.1.192-2)' -> '6.1.0-56'."""
    for name in depends_names(depends):
        m = re.fullmatch(r"linux-image-(.+)-amd64(?:-unsigned)?", name)
        if m:
            return m.group(1)
    raise ValueError(f"no linux-image-*-amd64 in Depends: {depends!r}")


def compiler_from_kernelvariables(text: str) -> str:
    m = re.search(r"^CC\s*=.*?\)\s*(gcc[-\w.]*)\s*$", text, re.M)
    if not m:
        m = re.search(r"^CC\s*=.*?(gcc[-\w.]*)\s*$", text, re.M)
    if not m:
        raise ValueError("no CC line in .kernelvariables")
    return m.group(1)


def find_compressed_payload(data: bytes) -> tuple[str, int]:
    """Locate the compressed vmlinux inside a bzImage: ('xz'|'zstd'|'gzip', offset)."""
    magics = {"xz": b"\xfd7zXZ\x00", "zstd": b"\x28\xb5\x2f\xfd", "gzip": b"\x1f\x8b\x08"}
    found = [(data.find(m), k) for k, m in magics.items() if data.find(m) >= 0]
    if not found:
        raise ValueError("no xz/zstd/gzip payload found in the bzImage")
    off, kind = min(found)
    return kind, off


def extract_vmlinux(bzimage: Path, out: Path) -> None:
    """Decompress the kernel payload of a bzImage into an ELF vmlinux (for PVH boot)."""
    data = bzimage.read_bytes()
    kind, off = find_compressed_payload(data)
    if kind == "xz":
        elf = lzma.LZMADecompressor().decompress(data[off:])
    elif kind == "zstd":
        import zstandard

        elf = zstandard.ZstdDecompressor().decompressobj().decompress(data[off:])
    else:
        import zlib

        elf = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[off:])
    if elf[:4] != b"\x7fELF":
        raise ValueError(f"{bzimage}: decompressed payload ({kind}) is not an ELF")
    out.write_bytes(elf)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- private apt state


class PrivateApt:
    """apt-get / apt-cache confined to a state directory of our own."""

    def __init__(self, state: Path) -> None:
        self.state = state

    def sources_text(self) -> str:
        seen: list[str] = []
        for line in LINES.values():
            for uri, suite in line.suites:
                entry = f"deb {uri} {suite} main"
                if entry not in seen:
                    seen.append(entry)
        return "\n".join(seen) + "\n"

    def options(self) -> list[str]:
        s = self.state
        opts = {
            "Dir::State": s,
            "Dir::State::Lists": s / "lists",
            "Dir::State::status": s / "status",
            "Dir::Cache": s / "cache",
            "Dir::Etc::SourceList": s / "sources.list",
            "Dir::Etc::SourceParts": s / "sources.list.d",
            "Dir::Etc::Preferences": s / "preferences",
            "Dir::Etc::PreferencesParts": s / "preferences.d",
            "APT::Sandbox::User": "root",
            "Debug::NoLocking": "1",
        }
        out: list[str] = []
        for k, v in opts.items():
            out += ["-o", f"{k}={v}"]
        return out

    def prepare(self) -> None:
        for d in ("lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
            (self.state / d).mkdir(parents=True, exist_ok=True)
        (self.state / "status").touch()
        src = self.state / "sources.list"
        if not src.exists() or src.read_text() != self.sources_text():
            src.write_text(self.sources_text())
            stamp = self.state / "updated"
            stamp.unlink(missing_ok=True)

    def update(self, force: bool = False) -> None:
        self.prepare()
        stamp = self.state / "updated"
        if not force and stamp.exists() and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE_S:
            return
        progress("apt-get update (private state, system sources untouched)")
        run(["apt-get", *self.options(), "update"], timeout=600)
        stamp.touch()

    def show(self, spec: str) -> list[dict[str, str]]:
        proc = run(["apt-cache", *self.options(), "show", spec], check=False)
        return parse_stanzas(proc.stdout) if proc.returncode == 0 else []

    def show_one(self, name: str, version: str) -> dict[str, str]:
        st = self.show(f"{name}={version}")
        if not st:
            raise LookupError(f"{name}={version} not in the apt lists")
        return st[0]

    def download(self, pkgs: list[PackageRef], dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        specs = [f"{p.name}={p.version}" for p in pkgs]
        run(["apt-get", *self.options(), "download", *specs], cwd=dest, timeout=1800)


def _ref(st: dict[str, str]) -> PackageRef:
    return PackageRef(st["Package"], st["Version"], st["Filename"], st["SHA256"], int(st["Size"]))


class KernelCache:
    """Resolve, download, verify and extract the kernels of each line."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.apt = PrivateApt(cache / "apt")

    def resolve(self, line_name: str) -> KernelPin:
        line = LINES[line_name]
        self.apt.update()
        meta = newest_for_line(self.apt.show("linux-image-amd64"), line)
        version = meta["Version"]
        abi = abi_from_image_depends(meta["Depends"])
        image = self.apt.show_one(f"linux-image-{abi}-amd64", version)
        refs = [_ref(image)]
        # 7.x splits the image: linux-image-<abi> is a 2 kB package that depends on
        # linux-binary-<abi> (vmlinuz), linux-modules-<abi> and linux-base-<abi> (config).
        for dep in depends_names(image.get("Depends", "")):
            if abi in dep:
                refs.append(_ref(self.apt.show_one(dep, version)))
        if not line.build_root:
            headers = self.apt.show_one(f"linux-headers-{abi}-amd64", version)
            refs.append(_ref(headers))
            for dep in depends_names(headers.get("Depends", "")):
                if dep.startswith("linux-headers-") or dep.startswith("linux-kbuild-"):
                    refs.append(_ref(self.apt.show_one(dep, version)))
        return KernelPin(line_name, version, abi, tuple(refs))

    def checkpatch(self, line_name: str = "6.12") -> Path:
        """scripts/checkpatch.pl (+ spelling.txt, const_structs.checkpatch) from Debian's
        linux-source package of a line, fetched once through the private apt state."""
        line = LINES[line_name]
        self.apt.update()
        meta = newest_for_line(self.apt.show(f"linux-source-{line_name}"), line)
        dest = self.cache / "checkpatch" / meta["Version"]
        script = dest / "scripts" / "checkpatch.pl"
        if script.exists():
            return script
        ref = _ref(meta)
        debs = self.cache / "checkpatch" / "debs"
        self._download_verified([ref], debs, f"{ref.name} {ref.version} for checkpatch")
        work = dest / "x"
        work.mkdir(parents=True, exist_ok=True)
        run(["dpkg-deb", "-x", debs / ref.deb_name, work])
        tarballs = sorted(work.glob("usr/src/linux-source-*.tar.*"))
        if not tarballs:
            raise RuntimeError(f"{ref.deb_name} holds no linux-source tarball")
        top = tarballs[0].name.split(".tar")[0]
        members = [f"{top}/scripts/{n}" for n in ("checkpatch.pl", "spelling.txt",
                                                   "const_structs.checkpatch")]
        run(["tar", "-C", dest, "--strip-components=1", "-xf", tarballs[0], *members], timeout=900)
        shutil.rmtree(work)
        return script

    def tree_dir(self, version: str) -> Path:
        return self.cache / "kernels" / version

    def cached(self, line_name: str) -> KernelTree | None:
        """The newest already-extracted tree of a line, without touching the network."""
        base = self.cache / "kernels"
        best: KernelTree | None = None
        for manifest in base.glob("*/manifest.json") if base.exists() else []:
            tree = KernelTree.from_json(manifest.read_text())
            if tree.line != line_name:
                continue
            if best is None or compare_versions(tree.version, best.version) > 0:
                best = tree
        return best

    def fetch(self, line_name: str, offline: bool = False) -> KernelTree:
        if line_name in DEBUG_LINES:
            from .debugkernel import fetch_debug

            return fetch_debug(self, DEBUG_LINES[line_name], offline)
        if offline:
            tree = self.cached(line_name)
            if tree is None:
                raise LookupError(f"no cached kernel for line {line_name}; run without offline")
            return tree
        pin = self.resolve(line_name)
        tdir = self.tree_dir(pin.version)
        manifest = tdir / "manifest.json"
        debs = tdir / "debs"
        if manifest.exists() and self._verify(pin, debs):
            tree = KernelTree.from_json(manifest.read_text())
            if tree.build_root == LINES[line_name].build_root:
                progress(f"kernel {line_name}: {pin.version} cached and verified ({tdir})")
                return tree
        self._download_verified(list(pin.packages), debs, f"kernel {line_name} packages")
        return self._extract(pin, tdir)

    def _download_verified(self, refs: list[PackageRef], debs: Path, what: str) -> None:
        """Download the packages not already in `debs` with the right size and sha256, then
        check every one against the apt metadata."""
        missing = [p for p in refs if not self._good(p, debs)]
        if missing:
            mb = sum(p.size for p in missing) / 1e6
            progress(f"downloading {len(missing)} of the {what} ({mb:.0f} MB)")
            self.apt.download(missing, debs)
        bad = [p.deb_name for p in refs if not self._good(p, debs)]
        if bad:
            raise RuntimeError(f"sha256 mismatch against apt metadata: {', '.join(bad)}")

    @staticmethod
    def _good(p: PackageRef, debs: Path) -> bool:
        f = debs / p.deb_name.replace(":", "%3a")
        return f.exists() and f.stat().st_size == p.size and sha256_file(f) == p.sha256

    def _verify(self, pin: KernelPin, debs: Path) -> bool:
        return all(self._good(p, debs) for p in pin.packages)

    def _extract(self, pin: KernelPin, tdir: Path) -> KernelTree:
        root = tdir / "root"
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        progress(f"kernel {pin.line}: extracting {pin.version}")
        for p in pin.packages:
            run(["dpkg-deb", "-x", tdir / "debs" / p.deb_name, root])
        if not (root / "lib").exists() and (root / "usr/lib").is_dir():
            (root / "lib").symlink_to("usr/lib")  # 7.x ships /usr/lib/modules only
        tree = KernelTree(
            line=pin.line,
            version=pin.version,
            release=pin.release,
            root=root,
            vmlinux=tdir / "vmlinux",
            packages=[{"name": p.name, "version": p.version, "sha256": p.sha256} for p in pin.packages],
            build_root=LINES[pin.line].build_root,
        )
        if not tree.build_root:
            fix_headers_makefile(tree.headers_dir, root)
        run(["depmod", "-b", root, "-a", pin.release])
        extract_vmlinux(tree.vmlinuz, tree.vmlinux)
        (tdir / "manifest.json").write_text(tree.to_json())
        return tree


def fix_headers_makefile(headers: Path, root: Path) -> None:
    """Debian's per-flavour headers Makefile includes the -common tree by absolute path."""
    mk = headers / "Makefile"
    text = mk.read_text()
    new = re.sub(r"^include /usr/src/", f"include {root}/usr/src/", text, flags=re.M)
    mk.write_text(new)
