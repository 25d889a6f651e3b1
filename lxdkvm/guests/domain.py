"""A lab guest as a libvirt domain: its plain description, its kernel command line, its MACs and where
its files live inside a lab host. Pure: nothing here touches a host.

The guest reads its configuration from the kernel command line (``lxdkvm.name=``, ``lxdkvm.net=``), so
one initramfs serves every guest; `parse_cmdline` is the inverse of `kernel_cmdline`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

from ..errors import LxdkvmError
from ..templating import render_template

NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
ACCELS = {"tcg": "qemu", "kvm": "kvm"}  # lxdkvm's accelerator → libvirt's domain type
BASE_CMDLINE = "console=ttyS0,115200 panic=-1 loglevel=6"  # 6: notices ("Linux version") but no info flood

GUESTS_DIR = "/var/lib/lxdkvm/guests"
TINY_DIR = "/var/lib/lxdkvm/tiny"
DEBIAN_DIR = "/var/lib/lxdkvm/debian"  # the Debian guest disk: one base copy per build key
FILES_DIR = "/var/lib/lxdkvm/files"  # imported guest images (lxdkvm.guests.store): one copy per sha256
SERIAL_LOG_DIR = "/var/log/libvirt/qemu"  # libvirt's own: QEMU (libvirt-qemu) may write its logs there
AGENT_SOCKET_DIR = "/var/lib/libvirt/qemu"  # libvirt-qemu's home: QEMU may bind a socket there
METADATA_NS = "https://lxdkvm.invalid/1"
# libvirt's traffic filter on every guest NIC (libvirt/lxdkvm-guest-filter.xml, defined in each host by
# `hostprep`): frames only from the guest's own MAC and its own address (given, or learnt from the DHCP
# server's answer), ARP only for that address, no DHCP server, no IPv6 (so no router advertisements).
GUEST_FILTER = "lxdkvm-guest"


@dataclass(frozen=True)
class GuestNic:
    bridge: str
    mac: str
    address: str | None  # "10.0.0.5/24"; None = DHCP
    gateway: str | None = None
    dhcp_server: str | None = None  # a DHCP NIC's server (its network's gateway): the filter learns its lease


@dataclass(frozen=True)
class GuestDomain:
    name: str
    kernel: str
    initrd: str
    memory_mib: int
    vcpus: int
    accel: str  # "tcg" or "kvm"
    nics: tuple[GuestNic, ...] = ()
    disk: str | None = None  # qcow2 path inside the host, virtio-blk
    serial_log: str = ""
    agent_socket: str = ""
    metadata: str = ""  # opaque text (e.g. a JSON spec) kept in the domain's <metadata>
    root: str | None = None  # root=DEVICE on the command line: the initramfs boots the disk's own system
    # kernel "" (a guest from an imported image): no direct kernel boot, the firmware boots the disk
    seed: str | None = None  # a NoCloud seed ISO inside the host, attached read-only as vdb


@dataclass(frozen=True)
class GuestPaths:
    """Where a guest's files live inside its lab host."""
    directory: str
    kernel: str
    initrd: str
    disk: str
    serial_log: str
    agent_socket: str
    xml: str
    seed: str = ""  # the NoCloud seed ISO, for a guest whose disk runs cloud-init


@dataclass(frozen=True)
class DebianPaths:
    """The Debian guest disk (base of every Debian guest's qcow2 overlay), its kernel and initramfs:
    one shared copy per build key in each host."""
    directory: str
    disk: str
    kernel: str
    initrd: str


@dataclass(frozen=True)
class TinyPaths:
    """The tiny guest's kernel and initramfs, one shared copy per build key in each host."""
    directory: str
    kernel: str
    initrd: str


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise LxdkvmError(f"invalid guest name {name!r}: a letter, then up to 62 letters, digits or '-'")
    return name


def _check_key(key: str, what: str = "tiny guest") -> str:
    if not re.fullmatch(r"[0-9a-f]{8,64}", key):
        raise LxdkvmError(f"invalid {what} key {key!r}: expected lowercase hex")
    return key


def tiny_paths(key: str) -> TinyPaths:
    directory = f"{TINY_DIR}/{_check_key(key)}"
    return TinyPaths(directory, f"{directory}/vmlinuz", f"{directory}/initrd.gz")


def debian_paths(key: str) -> DebianPaths:
    directory = f"{DEBIAN_DIR}/{_check_key(key, 'Debian guest disk')}"
    return DebianPaths(directory, f"{directory}/disk.qcow2", f"{directory}/vmlinuz", f"{directory}/initrd.gz")


def file_image_path(key: str) -> str:
    """Where a host keeps an imported guest image (the base of its guests' overlays), by its sha256."""
    return f"{FILES_DIR}/{_check_key(key, 'guest image')}/disk.qcow2"


def paths(name: str, tiny_key: str | None = None) -> GuestPaths:
    """A guest's paths; with `tiny_key`, kernel and initrd are the shared tiny copies of that build."""
    directory = f"{GUESTS_DIR}/{check_name(name)}"
    if tiny_key is None:
        kernel, initrd = f"{directory}/vmlinuz", f"{directory}/initrd.gz"
    else:
        tiny = tiny_paths(tiny_key)
        kernel, initrd = tiny.kernel, tiny.initrd
    return GuestPaths(directory=directory, kernel=kernel, initrd=initrd, disk=f"{directory}/disk.qcow2",
                      serial_log=f"{SERIAL_LOG_DIR}/{name}-serial.log",
                      agent_socket=f"{AGENT_SOCKET_DIR}/lxdkvm-{name}.agent", xml=f"{directory}/domain.xml",
                      seed=f"{directory}/seed.iso")


def mac_for(lab: str, guest: str, index: int) -> str:
    """A stable MAC in QEMU's locally administered 52:54:00 range (unicast by construction)."""
    digest = hashlib.sha256(f"{lab}\0{guest}\0{index}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def check_nic(nic: GuestNic) -> None:
    if not MAC_RE.fullmatch(nic.mac) or int(nic.mac[:2], 16) & 1:
        raise LxdkvmError(f"invalid guest MAC {nic.mac!r}: six lowercase hex pairs, unicast")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", nic.bridge):
        raise LxdkvmError(f"invalid bridge name {nic.bridge!r}")
    if nic.address is not None:
        try:
            ipaddress.IPv4Interface(nic.address)
            if "/" not in nic.address:
                raise ValueError("no prefix length")
        except ValueError as exc:
            raise LxdkvmError(f"invalid guest address {nic.address!r}: IPv4 ADDRESS/PREFIX ({exc})") from exc
    if nic.dhcp_server:
        try:
            ipaddress.IPv4Address(nic.dhcp_server)
        except ValueError as exc:
            raise LxdkvmError(f"invalid DHCP server {nic.dhcp_server!r}") from exc
    if nic.gateway:
        try:
            ipaddress.IPv4Address(nic.gateway)
        except ValueError as exc:
            raise LxdkvmError(f"invalid guest gateway {nic.gateway!r}") from exc


def kernel_cmdline(d: GuestDomain) -> str:
    """console=ttyS0 … lxdkvm.name=NAME lxdkvm.net=MAC,ADDR/PFX,GW;MAC,dhcp (one entry per NIC)."""
    parts = [BASE_CMDLINE, f"lxdkvm.name={check_name(d.name)}"]
    entries = []
    for nic in d.nics:
        check_nic(nic)
        entries.append(f"{nic.mac},dhcp" if nic.address is None else f"{nic.mac},{nic.address},{nic.gateway or ''}")
    if entries:
        parts.append("lxdkvm.net=" + ";".join(entries))
    if d.root is not None:
        if not re.fullmatch(r"/dev/[a-z0-9]{2,16}", d.root):
            raise LxdkvmError(f"guest {d.name}: invalid root device {d.root!r}")
        parts.append(f"root={d.root} ro")
    return " ".join(parts)


def parse_cmdline(cmdline: str) -> tuple[str, tuple[tuple[str, str | None, str | None], ...]]:
    """(name, ((mac, address or None for DHCP, gateway or None), ...)) from a kernel command line."""
    name, nets = "", ()
    for word in cmdline.split():
        if word.startswith("lxdkvm.name="):
            name = word.removeprefix("lxdkvm.name=")
        elif word.startswith("lxdkvm.net="):
            found = []
            for entry in word.removeprefix("lxdkvm.net=").split(";"):
                mac, address, *rest = entry.split(",") + [""]
                gateway = rest[0] if rest else ""
                found.append((mac, None if address == "dhcp" else address, gateway or None))
            nets = tuple(found)
    return name, nets


def domain_xml(d: GuestDomain) -> str:
    check_name(d.name)
    if d.accel not in ACCELS:
        raise LxdkvmError(f"guest {d.name}: accel must be tcg or kvm, not {d.accel!r}")
    if d.memory_mib < 32 or d.vcpus < 1:
        raise LxdkvmError(f"guest {d.name}: needs at least 32 MiB and 1 vCPU")
    if not d.kernel and not d.disk:
        raise LxdkvmError(f"guest {d.name}: nothing to boot (no kernel and no disk)")
    for nic in d.nics:
        check_nic(nic)
    return render_template("libvirt", "guest.xml.j2", d=d, domain_type=ACCELS[d.accel],
                           cmdline=kernel_cmdline(d) if d.kernel else "", metadata_ns=METADATA_NS,
                           guest_filter=GUEST_FILTER)
