"""lxdkvm's built-in tiny guest: Debian's cloud kernel and a busybox initramfs, built offline from
Debian packages (`apt-get download`, `dpkg-deb -x`) and cached by what went into it.

The initramfs holds busybox, the virtio modules a guest needs for its NICs and disk, and an /init
(libvirt/tiny-init.sh.j2) that configures the guest from its kernel command line, prints one boot
marker on ttyS0, keeps a root shell there and serves commands on ttyS1 (libvirt/tiny-agentd.sh).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import LxdkvmError
from ..images.base import cache_root
from ..templating import data_dir, render_template
from . import cache, debs, modinfo
from .initramfs import newc_archive

BUILD_VERSION = "1"  # bump when the build code changes what it produces
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"
MODULES = ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
           "failover", "net_failover", "virtio_net", "virtio_blk"]
MARKER = "LXDKVM-GUEST-BOOTED"
TEMPLATES = ("tiny-init.sh.j2", "tiny-udhcpc.sh", "tiny-agentd.sh")
DHCP_TRIES, DHCP_PAUSE = 10, 1

Report = Callable[[str], None]


@dataclass(frozen=True)
class TinyArtifacts:
    kernel: Path
    initrd: Path
    key: str


def _inputs() -> tuple[str, str, str]:
    """(kernel package, its version, busybox's version) as apt resolves them now. apt-cache takes ~1 s, so
    the answer is remembered until apt's package lists change."""
    lists = Path("/var/lib/apt/lists")
    stamp = str(lists.stat().st_mtime_ns) if lists.is_dir() else ""
    remembered = cache_root() / "guests" / "apt-resolution.json"
    try:
        saved = json.loads(remembered.read_text())
        if stamp and saved["stamp"] == stamp:
            return tuple(saved["inputs"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    kernel_package = debs.depends_of(KERNEL_METAPACKAGE)
    inputs = (kernel_package, debs.candidate_version(kernel_package), debs.candidate_version(BUSYBOX_PACKAGE))
    stamp = str(lists.stat().st_mtime_ns) if lists.is_dir() else ""  # apt-get update may have run
    remembered.parent.mkdir(parents=True, exist_ok=True)
    remembered.write_text(json.dumps({"stamp": stamp, "inputs": inputs}))
    return inputs


def build_key(kernel_version: str, busybox_version: str) -> str:
    digest = hashlib.sha256(f"{BUILD_VERSION}\0{kernel_version}\0{busybox_version}\0{' '.join(MODULES)}".encode())
    for name in TEMPLATES:
        digest.update((data_dir("libvirt") / name).read_bytes())
    return digest.hexdigest()[:16]


def cache_dir(key: str) -> Path:
    return cache_root() / "guests" / f"tiny-{key}"


def _artifacts(folder: Path, key: str) -> TinyArtifacts:
    return TinyArtifacts(kernel=folder / "vmlinuz", initrd=folder / "initrd.gz", key=key)


def build(report: Report = lambda _m: None, force: bool = False) -> TinyArtifacts:
    """The tiny guest's kernel and initramfs, built once per key; a finished build is reused as is."""
    kernel_package, kernel_version, busybox_version = _inputs()
    key = build_key(f"{kernel_package}={kernel_version}", busybox_version)
    final = cache_dir(key)
    if final.is_dir() and not force:
        return _artifacts(final, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"tiny-{key}.", suffix=".work", dir=final.parent))
    try:
        report(f"tiny guest {key}: {kernel_package} {kernel_version}, busybox {busybox_version}")
        debs_dir = cache_root() / "guests" / "debs"
        for package in (kernel_package, BUSYBOX_PACKAGE):
            report(f"extracting {package}")
            debs.extract(debs.download(package, debs_dir), work / "x")
        _write(work, key)
        cache.publish(work / "out", final, force)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(f"tiny guest {key}: built in {final}")
    return _artifacts(final, key)


def _one(pattern: str, under: Path, what: str) -> Path:
    found = sorted(under.glob(pattern))
    if len(found) != 1:
        raise LxdkvmError(f"expected one {what} ({pattern}) in the extracted packages, found {len(found)}")
    return found[0]


def current_key() -> str:
    """The key of the tiny build apt's package lists lead to now, without building or downloading it."""
    kernel_package, kernel_version, busybox_version = _inputs()
    return build_key(f"{kernel_package}={kernel_version}", busybox_version)


def resolved_inputs() -> tuple[str, str, str]:
    """(kernel package, its version, busybox's version): what the current tiny build is made of."""
    return _inputs()


def modules_of(extracted: Path, names: list[str]) -> list[tuple[str, bytes]]:
    """(name, .ko bytes) of NAMES from an extracted kernel package, in an order `insmod` can follow."""
    root = _one("lib/modules/*", extracted, "kernel module tree")
    data, depends = {}, {}
    for name in names:
        data[name] = modinfo.read(modinfo.find(root, name))
        info = modinfo.modinfo(data[name])
        depends[name] = [dep.replace("-", "_") for dep in info.get("depends", "").split(",") if dep]
    return [(name, data[name]) for name in modinfo.load_order(names, depends)]


def _write(work: Path, key: str) -> None:
    extracted = work / "x"
    vmlinuz = _one("boot/vmlinuz-*", extracted, "kernel")
    busybox = extracted / "bin" / "busybox"
    if not busybox.is_file():
        raise LxdkvmError(f"{BUSYBOX_PACKAGE} has no bin/busybox")
    modules = modules_of(extracted, MODULES)
    init = render_template("libvirt", "tiny-init.sh.j2", modules=[name for name, _ in modules], marker=MARKER,
                           build_version=f"{BUILD_VERSION}/{key}", dhcp_tries=DHCP_TRIES, dhcp_pause=DHCP_PAUSE)
    folders = ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "lib", "lib/modules", "etc", "dev", "proc",
               "sys", "tmp", "run", "root"]
    entries = [(folder, 0o040755, b"") for folder in folders]
    entries += [("bin/busybox", 0o100755, busybox.read_bytes()), ("bin/sh", 0o120777, b"busybox"),
                ("init", 0o100755, init.encode()),
                ("sbin/lxdkvm-udhcpc", 0o100755, render_template("libvirt", "tiny-udhcpc.sh").encode()),
                ("sbin/lxdkvm-agentd", 0o100755, render_template("libvirt", "tiny-agentd.sh").encode())]
    entries += [(f"lib/modules/{name}.ko", 0o100644, data) for name, data in modules]
    out = work / "out"
    out.mkdir()
    shutil.copyfile(vmlinuz, out / "vmlinuz")
    (out / "initrd.gz").write_bytes(gzip.compress(newc_archive(entries), compresslevel=6))
    (out / "key").write_text(key + "\n")
