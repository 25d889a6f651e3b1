"""lxdkvm's Debian guest disk: a real distribution for guests, built offline and cached by key.

The disk is the base container image's rootfs (lxdkvm.image, debootstrapped once: systemd, cloud-init,
openssh-server, ifupdown) made into ext4 on the whole device (`mkfs.ext4 -d`, no partition table, no
bootloader) and compressed into qcow2. It boots directly with the tiny guest's kernel (Debian's cloud
kernel) and its own busybox initramfs (libvirt/debian-init.sh.j2) that loads the modules the guest needs,
mounts root=/dev/vda and hands over to systemd. cloud-init reads a NoCloud seed (lxdkvm.guests.seed);
once its final stage is over, a unit prints the same boot marker the tiny guest prints on ttyS0, and the
tiny guest's command server answers on ttyS1.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import LxdkvmError
from ..images import base
from ..templating import data_dir, render_template
from . import cache, debs, tiny
from .initramfs import newc_archive

BUILD_VERSION = "1"  # bump when the build code changes what it produces
SIZE_MIB = 2048  # the filesystem's size; the qcow2 holds only what is written (an overlay may be larger)
LABEL = "lxdkvm-root"
# isofs (and cdrom, which it needs): cloud-init mounts the NoCloud seed, and the disk has no kmod to load it
MODULES = [*tiny.MODULES, "cdrom", "isofs"]
TEMPLATES = {"libvirt": ("debian-init.sh.j2", "debian-marker.sh.j2", "debian-marker.service",
                         "debian-agentd.service", "tiny-agentd.sh"),
             "cloud-init": ("debian-guest.cfg",)}
# A container image has no udev: without it systemd never sees /dev/vda or /dev/ttyS0 (fsck and the serial
# getty wait 90 s for their device units); kmod loads the kernel's modules, which the disk carries too.
PACKAGES = ("udev", "kmod")
MARKER_UNIT = "lxdkvm-boot-marker.service"
AGENT_UNIT = "lxdkvm-agentd.service"

Report = tiny.Report


@dataclass(frozen=True)
class DebianDisk:
    path: Path  # disk.qcow2: the base image guests' overlays stand on
    kernel: Path
    initrd: Path
    key: str
    size_mib: int


def build_key(base_key: str, tiny_key: str, packages: tuple[str, ...] = ()) -> str:
    """A hash of what makes the disk: the base image, the tiny guest's kernel and busybox, the added
    packages' versions ("udev=252…"), the modules, the templates."""
    digest = hashlib.sha256(f"{BUILD_VERSION}\0{base_key}\0{tiny_key}\0{SIZE_MIB}\0{' '.join(MODULES)}\0"
                            f"{' '.join(packages)}".encode())
    for folder, names in TEMPLATES.items():
        for name in names:
            digest.update((data_dir(folder) / name).read_bytes())
    return digest.hexdigest()[:16]


def cache_dir(key: str) -> Path:
    return base.cache_root() / "guests" / f"debian-{key}"


def _disk(folder: Path, key: str) -> DebianDisk:
    return DebianDisk(folder / "disk.qcow2", folder / "vmlinuz", folder / "initrd.gz", key, SIZE_MIB)


def base_rootfs(report: Report) -> tuple[str, Path]:
    """The base image's key and its cached rootfs tarball; the image is built (once) when it is missing."""
    key = base.Recipe().key()
    cached = base.cache_root() / "images" / key
    if not (cached / "complete").exists():
        report(f"base image {key} is not cached: building it")
        key = base.build(report=report).key
        cached = base.cache_root() / "images" / key
    tarball = cached / "rootfs.tar.gz"
    if not tarball.is_file():
        raise LxdkvmError(f"the base image's rootfs is not cached ({tarball}): run `lxdkvm image build --force`")
    return key, tarball


def _run(command: list[str], what: str) -> None:
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise LxdkvmError(f"{command[0]} is missing: {what} needs it (run `lxdkvm setup`)") from exc
    if proc.returncode != 0:
        raise LxdkvmError(f"{what} failed: {' '.join(command[:3])}: {proc.stderr.strip()[-500:]}")


def build(report: Report = lambda _m: None, force: bool = False) -> DebianDisk:
    """The Debian guest disk, its kernel and initramfs, built once per key; a finished build is reused."""
    base_key, tarball = base_rootfs(report)
    kernels = tiny.build(report)
    key = build_key(base_key, kernels.key, tuple(f"{p}={debs.candidate_version(p)}" for p in PACKAGES))
    final = cache_dir(key)
    if final.is_dir() and not force:
        return _disk(final, key)
    if os.geteuid() != 0:
        raise LxdkvmError("building the Debian guest disk needs root (the rootfs keeps its owners)")
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"debian-{key}.", suffix=".work", dir=final.parent))
    try:
        report(f"debian guest {key}: base image {base_key}, kernel {kernels.key}")
        extracted = _extract_kernel(work)
        rootfs = work / "rootfs"
        rootfs.mkdir()
        _run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpzf", str(tarball), "-C",
              str(rootfs)], "unpacking the base rootfs")
        report(f"installing {', '.join(PACKAGES)} and the kernel's modules")
        _add_packages(rootfs, PACKAGES)
        _add_modules(rootfs, extracted)
        customise(rootfs)
        out = work / "out"
        out.mkdir()
        report(f"mkfs.ext4 -d ({SIZE_MIB} MiB) and qemu-img convert -c")
        raw = work / "disk.raw"
        _run(["mkfs.ext4", "-q", "-F", "-L", LABEL, "-d", str(rootfs), str(raw), f"{SIZE_MIB}M"],
             "making the guest's filesystem")
        shutil.rmtree(rootfs)
        _run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(raw), str(out / "disk.qcow2")],
             "compressing the guest disk")
        raw.unlink()
        report("initramfs")
        _initramfs(extracted, key, out)
        shutil.copyfile(kernels.kernel, out / "vmlinuz")
        (out / "key").write_text(key + "\n")
        cache.publish(out, final, force)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(f"debian guest {key}: built in {final}")
    return _disk(final, key)


def _enable(rootfs: Path, target: str, unit: str, source: str) -> None:
    wants = rootfs / "etc/systemd/system" / f"{target}.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / unit
    link.unlink(missing_ok=True)
    link.symlink_to(source)


def _install(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def customise(rootfs: Path) -> None:
    """Make a container rootfs a VM disk: fstab, a serial getty, NoCloud only, identity per instance,
    the boot marker and the command server."""
    _install(rootfs / "etc/fstab", "# lxdkvm: ext4 on the whole disk, no partition table\n"
                                   "/dev/vda / ext4 defaults,errors=remount-ro 0 1\n")
    _install(rootfs / "etc/hostname", "")  # cloud-init sets local-hostname from the seed
    _install(rootfs / "etc/machine-id", "")  # systemd makes one at first boot
    (rootfs / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # cloud-init makes new ones per instance
    shutil.rmtree(rootfs / "var/lib/cloud", ignore_errors=True)  # no instance has run yet
    _install(rootfs / "etc/cloud/cloud.cfg.d/90_lxdkvm.cfg", render_template("cloud-init", "debian-guest.cfg"))
    _enable(rootfs, "getty.target", "serial-getty@ttyS0.service", "/lib/systemd/system/serial-getty@.service")
    _install(rootfs / "usr/local/sbin/lxdkvm-boot-marker",
             render_template("libvirt", "debian-marker.sh.j2", marker=tiny.MARKER), 0o755)
    _install(rootfs / "etc/systemd/system" / MARKER_UNIT, render_template("libvirt", "debian-marker.service"))
    _enable(rootfs, "cloud-init.target", MARKER_UNIT, f"/etc/systemd/system/{MARKER_UNIT}")
    _install(rootfs / "usr/local/sbin/lxdkvm-agentd", render_template("libvirt", "tiny-agentd.sh"), 0o755)
    _install(rootfs / "etc/systemd/system" / AGENT_UNIT, render_template("libvirt", "debian-agentd.service"))
    _enable(rootfs, "multi-user.target", AGENT_UNIT, f"/etc/systemd/system/{AGENT_UNIT}")


def _extract_kernel(work: Path) -> Path:
    """The tiny guest's kernel package and busybox, extracted (the .debs are cached with tiny's)."""
    kernel_package, _, _ = tiny.resolved_inputs()
    extracted = work / "x"
    for package in (kernel_package, tiny.BUSYBOX_PACKAGE):
        debs.extract(debs.download(package, _debs_dir()), extracted)
    return extracted


def _debs_dir() -> Path:
    return base.cache_root() / "guests" / "debs"


def _chroot(rootfs: Path, *command: str) -> None:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(["chroot", str(rootfs), *command], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise LxdkvmError(f"in the guest disk: {' '.join(command)} failed: "
                          f"{(proc.stderr or proc.stdout).strip()[-500:]}")


def _add_packages(rootfs: Path, packages: tuple[str, ...]) -> None:
    """Install PACKAGES with dpkg in the rootfs (offline: their dependencies are in the base image)."""
    inside = rootfs / "tmp/lxdkvm-debs"
    inside.mkdir(parents=True)
    for package in packages:
        shutil.copy(debs.download(package, _debs_dir()), inside)
    _chroot(rootfs, "sh", "-c", "dpkg -i /tmp/lxdkvm-debs/*.deb")
    shutil.rmtree(inside)


def _add_modules(rootfs: Path, extracted: Path) -> None:
    """The kernel's module tree in the rootfs, with modules.dep (depmod in the rootfs)."""
    found = sorted((extracted / "lib/modules").iterdir())
    if len(found) != 1:
        raise LxdkvmError(f"expected one kernel module tree in the kernel package, found {len(found)}")
    target = rootfs / "lib/modules" / found[0].name
    shutil.copytree(found[0], target, symlinks=True, dirs_exist_ok=True)
    _chroot(rootfs, "depmod", "-a", found[0].name)


def _initramfs(extracted: Path, key: str, out: Path) -> None:
    busybox = extracted / "bin" / "busybox"
    if not busybox.is_file():
        raise LxdkvmError(f"{tiny.BUSYBOX_PACKAGE} has no bin/busybox")
    modules = tiny.modules_of(extracted, MODULES)
    init = render_template("libvirt", "debian-init.sh.j2", modules=[name for name, _ in modules],
                           build_version=f"{BUILD_VERSION}/{key}")
    entries = [(folder, 0o040755, b"") for folder in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "lib",
                                                      "lib/modules", "dev", "proc", "sys", "newroot")]
    entries += [("bin/busybox", 0o100755, busybox.read_bytes()), ("bin/sh", 0o120777, b"busybox"),
                ("init", 0o100755, init.encode())]
    entries += [(f"lib/modules/{name}.ko", 0o100644, data) for name, data in modules]
    (out / "initrd.gz").write_bytes(gzip.compress(newc_archive(entries), compresslevel=6))
