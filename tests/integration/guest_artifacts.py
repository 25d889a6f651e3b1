"""A guest kernel and a static busybox from Debian's archive, cached next to lxdkvm's image cache."""

from pathlib import Path

from lxdkvm.guests import debs, tiny
from lxdkvm.image import cache_root


def guest_files() -> tuple[Path, Path]:
    """(vmlinuz, busybox) extracted from linux-image-cloud-amd64 and busybox-static."""
    root = cache_root() / "guest"
    extracted = root / "extracted"
    for package in (debs.depends_of(tiny.KERNEL_METAPACKAGE), tiny.BUSYBOX_PACKAGE):
        debs.extract(debs.download(package, root), extracted)
    return max(extracted.glob("boot/vmlinuz-*")), extracted / "bin/busybox"
