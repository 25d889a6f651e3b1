"""A smoke-test guest (libvirt domain XML, an initramfs that proves a guest booted) and the cpio writer.

Pure functions: the domain comes from libvirt/direct-kernel.xml.j2, the initramfs is written in the
kernel's "newc" cpio format around a static busybox.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass

from ..templating import render_template


@dataclass(frozen=True)
class DirectKernelDomain:
    name: str
    kernel: str
    initrd: str
    serial_log: str
    domain_type: str = "qemu"  # TCG; "kvm" needs hardware virtualization the guest kernel accepts
    memory_mib: int = 256
    vcpus: int = 1
    cmdline: str = "console=ttyS0 panic=-1"


def domain_xml(domain: DirectKernelDomain) -> str:
    if domain.domain_type not in ("qemu", "kvm"):
        raise ValueError(f"domain type must be qemu or kvm, not {domain.domain_type!r}")
    return render_template("libvirt", "direct-kernel.xml.j2", **domain.__dict__)


def _cpio_entry(out: io.BytesIO, ino: int, name: str, mode: int, data: bytes = b"") -> None:
    name_bytes = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_bytes), 0]
    out.write(b"070701" + b"".join(f"{value:08X}".encode() for value in fields))
    out.write(name_bytes)
    out.write(b"\0" * (-(110 + len(name_bytes)) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


def busybox_initramfs(busybox: bytes, marker: str) -> bytes:
    """A gzip'd initramfs whose /init prints MARKER on the first serial port and powers off."""
    init = (
        "#!/bin/busybox sh\n"
        "/bin/busybox mount -t devtmpfs devtmpfs /dev\n"
        "/bin/busybox mount -t proc proc /proc\n"
        f"echo '{marker}' > /dev/ttyS0\n"
        "/bin/busybox poweroff -f\n"
    ).encode()
    entries = [("dev", 0o040755, b""), ("proc", 0o040755, b""), ("bin", 0o040755, b""),
               ("bin/busybox", 0o100755, busybox), ("bin/sh", 0o120777, b"busybox"),
               ("init", 0o100755, init)]
    return gzip.compress(newc_archive(entries))


def newc_archive(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A "newc" cpio archive of (path, mode, data) entries, in order: directories before what they hold;
    a symlink (mode 0o120777) holds its target as data."""
    out = io.BytesIO()
    for ino, (name, mode, data) in enumerate(entries, start=1):
        _cpio_entry(out, ino, name, mode, data)
    _cpio_entry(out, 0, "TRAILER!!!", 0)
    return out.getvalue()
