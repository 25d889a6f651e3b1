"""Kernel modules from an extracted linux-image package: find them by name, decompress them, read their
`.modinfo` section (what `modinfo` prints) and put them in an order `insmod` can follow."""

from __future__ import annotations

import lzma
import struct
from pathlib import Path

from ..errors import LxdkvmError


def find(modules_root: Path, name: str) -> Path:
    """NAME.ko (or .ko.xz) anywhere under lib/modules/VERSION/kernel/; '-' and '_' are the same."""
    wanted = {name.replace("-", "_")}
    for path in sorted(modules_root.rglob("*.ko*")):
        stem = path.name.split(".ko")[0].replace("-", "_")
        if stem in wanted and path.name.endswith((".ko", ".ko.xz")):
            return path
    raise LxdkvmError(f"kernel module {name} is not in the kernel package ({modules_root})")


def read(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        try:
            data = lzma.decompress(data)
        except lzma.LZMAError as exc:
            raise LxdkvmError(f"{path.name}: cannot decompress ({exc})") from exc
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise LxdkvmError(f"{path.name}: not a 64-bit little-endian ELF kernel module")
    return data


def modinfo(data: bytes) -> dict[str, str]:
    """The key=value strings of an ELF64 module's .modinfo section (later keys win, like `modinfo -F`)."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", data, shoff + index * shentsize)
        return name, offset, size

    _, names_at, _ = section(shstrndx)
    for index in range(shnum):
        name, offset, size = section(index)
        if data[names_at + name:data.index(b"\0", names_at + name)] == b".modinfo":
            fields = {}
            for item in data[offset:offset + size].split(b"\0"):
                key, sep, value = item.decode(errors="replace").partition("=")
                if sep:
                    fields[key] = value
            return fields
    raise LxdkvmError("kernel module has no .modinfo section")


def load_order(wanted: list[str], depends: dict[str, list[str]]) -> list[str]:
    """WANTED in their given order, each after what it depends on. Every dependency must itself be in
    WANTED: a dependency lxdkvm does not ship is a clear build failure, not a guest that cannot boot."""
    order: list[str] = []
    for name in wanted:
        missing = [dep for dep in depends[name] if dep not in wanted]
        if missing:
            raise LxdkvmError(f"kernel module {name} depends on {', '.join(missing)}, which the tiny guest "
                              "does not include")

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in path:
            raise LxdkvmError(f"kernel modules depend on each other in a cycle: {' → '.join(path + (name,))}")
        for dep in depends[name]:
            visit(dep, path + (name,))
        order.append(name)

    for name in wanted:
        visit(name, ())
    return order
