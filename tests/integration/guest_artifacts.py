"""A guest kernel and a static busybox from Debian's archive, cached next to lxdkvm's image cache."""

from pathlib import Path

from lxdkvm.guests import debs, tiny
from lxdkvm.images.base import cache_root


def guest_files() -> tuple[Path, Path]:
    """(vmlinuz, busybox) extracted from linux-image-cloud-amd64 and busybox-static."""
    root = cache_root() / "guest"
    extracted = root / "extracted"
    for package in (debs.depends_of(tiny.KERNEL_METAPACKAGE), tiny.BUSYBOX_PACKAGE):
        debs.extract(debs.download(package, root), extracted)
    return max(extracted.glob("boot/vmlinuz-*")), extracted / "bin/busybox"


MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")


def bootable_disk(out: Path, kernel: Path, initrd: Path, append: str, size_mib: int = 34) -> Path:
    """A raw disk image that boots like a stranger's appliance: an MBR, one FAT partition with SYSLINUX,
    a kernel and an initramfs, the kernel command line in its own syslinux.cfg (nothing from lxdkvm's
    domain). Built without mounting anything: mkfs.fat and syslinux work on the partition's file."""
    import shutil
    import struct
    import subprocess

    work = out.parent / f"{out.name}.build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    start, part_sectors = 2048, (size_mib - 2) * 2048
    (work / "syslinux.cfg").write_text("SERIAL 0 115200\nDEFAULT appliance\nPROMPT 0\nTIMEOUT 0\n"
                                       "LABEL appliance\n  KERNEL /vmlinuz\n  INITRD /initrd.gz\n"
                                       f"  APPEND {append}\n")
    part = work / "part.img"
    run = lambda *c: subprocess.run(c, check=True, capture_output=True)
    run("mkfs.fat", "-C", "-F", "16", "-h", str(start), "-n", "APPLIANCE", str(part), str(part_sectors // 2))
    for source, name in ((kernel, "vmlinuz"), (initrd, "initrd.gz"), (work / "syslinux.cfg", "syslinux.cfg")):
        run("mcopy", "-i", str(part), str(source), f"::/{name}")
    run("syslinux", "--install", str(part))
    with open(out, "wb") as disk:
        disk.truncate(size_mib * 2**20)
        boot = bytearray(MBR.read_bytes()[:440].ljust(446, b"\0"))
        # one active FAT16 (LBA) partition; CHS fields say "use LBA"
        boot += struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x0E, b"\xfe\xff\xff", start, part_sectors)
        boot += b"\0" * 48 + b"\x55\xaa"
        disk.write(bytes(boot))
        disk.seek(start * 512)
        disk.write(part.read_bytes())
    shutil.rmtree(work)
    return out
