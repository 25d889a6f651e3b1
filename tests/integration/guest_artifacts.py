"""A guest kernel and a static busybox from Debian's archive, cached next to lxdkvm's image cache."""

import glob
import subprocess
from pathlib import Path

from lxdkvm.image import cache_root


def _download(package: str, into: Path) -> Path:
    found = sorted(into.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    for attempt in range(2):
        proc = subprocess.run(["apt-get", "download", package], cwd=into, capture_output=True, text=True)
        if proc.returncode == 0:
            return sorted(into.glob(f"{package}_*.deb"))[-1]
        if attempt == 0:  # stale or missing package lists
            subprocess.run(["apt-get", "update", "-q"], capture_output=True)
    raise RuntimeError(f"apt-get download {package} failed: {proc.stderr.strip()}")


def _depends(metapackage: str) -> str:
    out = subprocess.run(["apt-cache", "depends", metapackage], capture_output=True, text=True).stdout
    if "Depends:" not in out:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True)
        out = subprocess.run(["apt-cache", "depends", metapackage], capture_output=True, text=True).stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if "Depends:" in line)


def guest_files() -> tuple[Path, Path]:
    """(vmlinuz, busybox) extracted from linux-image-cloud-amd64 and busybox-static."""
    root = cache_root() / "guest"
    root.mkdir(parents=True, exist_ok=True)
    kernel_deb = _download(_depends("linux-image-cloud-amd64"), root)
    busybox_deb = _download("busybox-static", root)
    extracted = root / "extracted"
    for deb in (kernel_deb, busybox_deb):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(extracted)], check=True)
    vmlinuz = Path(sorted(glob.glob(str(extracted / "boot/vmlinuz-*")))[-1])
    return vmlinuz, extracted / "bin/busybox"
