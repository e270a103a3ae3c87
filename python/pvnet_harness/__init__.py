"""pvnet harness: fetch kernels, build pvnet with DKMS, boot QEMU guests, test end to end."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def read_version(root: Path = REPO_ROOT) -> str:
    """The single version source: the top-level VERSION file."""
    return (root / "VERSION").read_text().strip()


__version__ = read_version() if (REPO_ROOT / "VERSION").exists() else "0.0.0"
