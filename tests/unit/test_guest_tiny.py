"""The tiny guest's build pieces that need no package archive: module metadata and order, the cpio
writer, the rendered /init."""

import lzma
import struct
import subprocess

import pytest

from lxdkvm.errors import LxdkvmError
from lxdkvm.guests import modinfo, tiny
from lxdkvm.guests.initramfs import newc_archive
from lxdkvm.templating import render_template


def elf_module(fields: dict[str, str]) -> bytes:
    """A minimal ELF64 little-endian object with a .shstrtab and a .modinfo section."""
    modinfo_data = b"".join(f"{k}={v}".encode() + b"\0" for k, v in fields.items())
    names = b"\0.shstrtab\0.modinfo\0"
    body_at = 64
    names_at, info_at = body_at, body_at + len(names)
    shoff = info_at + len(modinfo_data)
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x28, shoff)
    struct.pack_into("<HHH", header, 0x3A, 64, 3, 1)
    sections = bytes(64)  # the null section
    sections += struct.pack("<IIQQQQ", 1, 3, 0, 0, names_at, len(names)).ljust(64, b"\0")
    sections += struct.pack("<IIQQQQ", 11, 1, 0, 0, info_at, len(modinfo_data)).ljust(64, b"\0")
    return bytes(header) + names + modinfo_data + sections


def test_modinfo_reads_depends_from_the_section(tmp_path):
    data = elf_module({"license": "GPL", "depends": "virtio_ring,virtio", "name": "virtio_net"})
    (tmp_path / "virtio_net.ko.xz").write_bytes(lzma.compress(data))
    found = modinfo.find(tmp_path, "virtio-net")
    assert found.name == "virtio_net.ko.xz"
    assert modinfo.modinfo(modinfo.read(found)) == {"license": "GPL", "depends": "virtio_ring,virtio",
                                                    "name": "virtio_net"}
    with pytest.raises(LxdkvmError, match="virtio_blk is not in the kernel package"):
        modinfo.find(tmp_path, "virtio_blk")
    (tmp_path / "bad.ko").write_bytes(b"not an elf")
    with pytest.raises(LxdkvmError, match="not a 64-bit"):
        modinfo.read(tmp_path / "bad.ko")


def test_load_order_puts_dependencies_first_and_refuses_missing_ones():
    depends = {"virtio_net": ["virtio_ring", "virtio", "net_failover"], "virtio": ["virtio_ring"],
               "virtio_ring": [], "net_failover": ["failover"], "failover": []}
    order = modinfo.load_order(["virtio_net", "virtio", "virtio_ring", "net_failover", "failover"], depends)
    for name, deps in depends.items():
        assert all(order.index(dep) < order.index(name) for dep in deps)
    with pytest.raises(LxdkvmError, match="virtio_net depends on net_failover, which the tiny guest"):
        modinfo.load_order(["virtio_ring", "virtio", "virtio_net"], depends)
    with pytest.raises(LxdkvmError, match="cycle"):
        modinfo.load_order(["a", "b"], {"a": ["b"], "b": ["a"]})


def test_the_declared_module_list_is_in_the_order_the_host_notes_give():
    assert tiny.MODULES[:8] == ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
                                "virtio_pci", "failover", "net_failover", "virtio_net"]
    assert "virtio_blk" in tiny.MODULES


def read_newc(archive: bytes) -> dict[str, tuple[int, bytes]]:
    """An independent reader of the kernel's newc format (Documentation/driver-api/early-userspace)."""
    entries, at = {}, 0
    while True:
        assert archive[at:at + 6] == b"070701"
        fields = [int(archive[at + 6 + 8 * i:at + 14 + 8 * i], 16) for i in range(13)]
        mode, size, name_size = fields[1], fields[6], fields[11]
        name = archive[at + 110:at + 110 + name_size - 1].decode()
        at = (at + 110 + name_size + 3) & ~3
        data = archive[at:at + size]
        at = (at + size + 3) & ~3
        if name == "TRAILER!!!":
            assert at == len(archive)
            return entries
        entries[name] = (mode, data)


def test_newc_archive_round_trips():
    given = [("bin", 0o040755, b""), ("bin/tool", 0o100755, b"#!/bin/sh\necho odd\n"),
             ("bin/link", 0o120777, b"tool"), ("data", 0o100644, b"x" * 5), ("lib/a-longer-name.ko", 0o100644, b"7")]
    assert read_newc(newc_archive(given)) == {name: (mode, data) for name, mode, data in given}


def test_newc_archive_layout():
    archive = newc_archive([("init", 0o100755, b"abc")])
    assert archive.startswith(b"070701") and b"TRAILER!!!\0" in archive
    assert len(archive) % 4 == 0


def test_rendered_scripts_are_valid_shell_and_print_one_marker(tmp_path):
    init = render_template("libvirt", "tiny-init.sh.j2", modules=tiny.MODULES, marker=tiny.MARKER,
                           build_version="1/test", dhcp_tries=3, dhcp_pause=1)
    assert init.startswith("#!/bin/busybox sh\n")
    assert "{{" not in init and "{#" not in init
    assert init.count(tiny.MARKER) == 1
    assert " ".join(tiny.MODULES) in init
    for name, text in [("init", init), ("udhcpc", render_template("libvirt", "tiny-udhcpc.sh")),
                       ("agentd", render_template("libvirt", "tiny-agentd.sh"))]:
        (tmp_path / name).write_text(text)
        proc = subprocess.run(["sh", "-n", str(tmp_path / name)], check=False, capture_output=True, text=True)
        assert proc.returncode == 0, f"{name}: {proc.stderr}"


def test_key_changes_with_every_input():
    keys = {tiny.build_key("k=1", "b=1"), tiny.build_key("k=2", "b=1"), tiny.build_key("k=1", "b=2")}
    assert len(keys) == 3 and all(len(k) == 16 for k in keys)
