"""Initramfs images in the kernel's "newc" cpio format: the writer (the tiny and Debian guests use it) and
a smoke-test initramfs around a static busybox that proves a guest booted.

Pure functions; a guest's libvirt domain is `guests.domain`'s.
"""

from __future__ import annotations

import gzip
import io


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
