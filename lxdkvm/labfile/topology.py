"""A lab as plain data: what the lab file says once it is loaded, expanded and defaulted.

`labfile` builds it from YAML, `labcheck` says what is wrong with it, `labobjects` turns it into the LXD
objects it needs. Nothing here talks to LXD or reads files.
"""

from __future__ import annotations

import hashlib
import ipaddress
import unicodedata
from dataclasses import dataclass, field

from ..errors import LxdkvmError
from .impairment import Impairment

DEFAULT_IMAGE = "lxdkvm/kvm-host"
PROJECT_PREFIX = "lxdkvm-"
IFNAME_MAX = 15  # Linux interface names: 15 bytes
SHOWN_MAX = 300  # characters of one field of a problem (a hostile file can make a value 1 MiB long)


def printable(text: str, limit: int = SHOWN_MAX) -> str:
    """TEXT safe to print on a terminal: control, format (bidi overrides such as U+202E) and line-separator
    characters written as escapes, and at most LIMIT characters."""
    out = "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c
                  for c in text[:limit + 1])
    return out[:limit] + "…" if len(text) > limit else out


def mebibytes(size: str) -> int | None:
    """'128MiB' → 128, '1GiB' → 1024, '512MB' → 488 (ASCII digits only, `values.size_bytes`); None for a
    share ('50%'), anything else that is not a size, or less than 1 MiB."""
    from .values import size_bytes

    size_b = size_bytes(size)
    return (size_b // 2**20 or None) if size_b is not None else None


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a lab file: where (line and key path), what, and how to fix it."""
    path: str
    message: str
    hint: str = ""
    line: int = 0

    def render(self, source: str) -> str:
        text = f"{printable(source)}:{self.line}: {printable(self.path)}: {printable(self.message)}"
        return text + (f"\n    hint: {printable(self.hint)}" if self.hint else "")


class LabInvalid(LxdkvmError):
    """The lab file has problems; every one of them is listed, and nothing was changed."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source, self.problems = source, sorted(problems, key=lambda p: (p.line, p.path))
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{source}: {count}, nothing was changed\n" + self.report())

    def report(self) -> str:
        return "\n".join(p.render(self.source) for p in self.problems)


@dataclass(frozen=True)
class Network:
    name: str
    subnet: ipaddress.IPv4Network
    mode: str  # "nat": this machine is the gateway and NATs to the outside; "isolated": layer 2 only
    dhcp: bool
    mtu: int
    path: str = ""
    line: int = 0
    mtu_given: bool = False  # the lab file sets `mtu:` (on a cluster, a default MTU fits the tunnel instead)
    impair: Impairment | None = None  # `impair:`: on the links of IMPAIR_HOSTS (every host's when empty)
    impair_hosts: tuple[str, ...] = ()
    impair_line: int = 0  # of `impair.hosts:` (or `impair:`)

    @property
    def gateway(self) -> ipaddress.IPv4Address | None:
        return self.subnet.network_address + 1 if self.mode == "nat" else None

    @property
    def dhcp_range(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | None:
        """DHCP leases come from the upper half of the subnet; the lower half is for static addresses."""
        if not self.dhcp:
            return None
        half = self.subnet.num_addresses // 2
        return self.subnet.network_address + half, self.subnet.broadcast_address - 1


@dataclass(frozen=True)
class Attachment:
    """A host's or a guest's NIC on a lab network (ipv4 None: a DHCP lease, or no address)."""
    network: str
    device: str  # eth0, eth1, ... in the order the host lists its networks
    ipv4: ipaddress.IPv4Address | None = None
    path: str = ""
    line: int = 0

    @property
    def bridge(self) -> str:
        """The in-host bridge that holds this NIC and the host's address on the network."""
        return in_host_bridge(self.network)


@dataclass(frozen=True)
class Host:
    name: str
    attachments: tuple[Attachment, ...] = ()
    cpu: int | None = None
    memory: str | None = None
    idmap: str = "isolated"
    config: dict[str, str] = field(default_factory=dict)
    profiles: tuple[str, ...] = ()
    path: str = ""
    line: int = 0
    config_from: dict[str, str] = field(default_factory=dict)  # config key → key path that set it
    groups: tuple[str, ...] = ()  # Ansible groups: the range's (compute-[1-4] → compute), then `groups:`
    placement: str = "spread"  # on an LXD cluster: a member, group:<cluster group>, or spread (ignored otherwise)
    placement_path: str = ""  # the key that set it, for problems


@dataclass(frozen=True)
class ExtraProfile:
    name: str
    config: dict[str, str] = field(default_factory=dict)
    devices: dict[str, dict[str, str]] = field(default_factory=dict)
    path: str = ""
    line: int = 0


@dataclass(frozen=True)
class Guest:
    """A QEMU/KVM guest that runs inside one of the lab's hosts, on the host's in-host bridges."""
    name: str
    host: str
    attachments: tuple[Attachment, ...] = ()  # a NIC per lab network, on the host's bridge for it
    vcpus: int = 1
    memory_mib: int = 128
    accel: str = "auto"  # "auto": kvm where the host has hardware virtualization, else tcg
    disk: str = "tiny"  # "tiny": the built-in tiny guest (kernel + initramfs); "debian": Debian 12;
    #                     "file": an image imported into this machine's guest image store (disk_file)
    disk_mib: int = 0  # tiny: a qcow2 data disk of this size (0: none); debian/file: the root disk's size
    user_data: str | None = None  # cloud-init user-data (debian and file guests)
    disk_file: str | None = None  # the imported image's name (lxdkvm.guests.store)
    ready_console: str | None = None  # file guests: console text that says it booted
    ready_timeout: int | None = None  # file guests: seconds to wait for booted and addresses
    path: str = ""
    line: int = 0


@dataclass(frozen=True)
class Opening:
    """One thing a lab network may reach that lxdkvm's firewall closes by default (`networks[].open`)."""
    network: str  # the lab network it is opened for
    kind: str  # "machine" (a port of this machine), "subnet" (a destination range through it)
    protocol: str = ""  # tcp | udp (machine)
    port: int = 0  # machine
    subnet: ipaddress.IPv4Network | None = None  # subnet
    path: str = ""
    line: int = 0

    def describe(self) -> str:
        if self.kind == "machine":
            return f"{self.network} → this machine {self.protocol}/{self.port}"
        return f"{self.network} → {self.subnet} through this machine"


@dataclass(frozen=True)
class Lab:
    name: str
    source: str
    image: str = DEFAULT_IMAGE
    storage: str = "auto"  # "auto": the copy-on-write pool lxdkvm chooses (see storage.choose_pool)
    networks: tuple[Network, ...] = ()
    hosts: tuple[Host, ...] = ()
    profiles: tuple[ExtraProfile, ...] = ()
    guests: tuple[Guest, ...] = ()
    lines: dict[str, int] = field(default_factory=dict, compare=False)  # key path → line in the file
    bridge_max: int = IFNAME_MAX  # on a cluster, shorter: LXD names a bridge's tunnel `<bridge>-<tunnel>`
    openings: tuple[Opening, ...] = ()  # what its networks may reach beyond the outside (`open:`)

    def line_of(self, path: str, fallback: int = 1) -> int:
        return self.lines.get(path, fallback)

    @property
    def project(self) -> str:
        return project_name(self.name)

    def network(self, name: str) -> Network | None:
        return next((n for n in self.networks if n.name == name), None)

    def bridge(self, network: str) -> str:
        return bridge_name(self.name, network, self.bridge_max)

    def host(self, name: str) -> Host | None:
        return next((h for h in self.hosts if h.name == name), None)

    def guests_on(self, host: str) -> tuple[Guest, ...]:
        return tuple(g for g in self.guests if g.host == host)


def project_name(lab: str) -> str:
    return PROJECT_PREFIX + lab


def in_host_bridge(network: str) -> str:
    """The Linux bridge inside each lab host that carries a lab network's NIC (and its address), so the
    host's guests share the network's layer 2: `br-<network>`, or a short hash when that is too long."""
    plain = f"br-{network}"
    if len(plain) <= IFNAME_MAX:
        return plain
    digest = hashlib.sha256(network.encode()).hexdigest()[:4]
    return f"br-{network[:IFNAME_MAX - 8]}-{digest}"


def bridge_name(lab: str, network: str, limit: int = IFNAME_MAX) -> str:
    """The LXD bridge of a lab network: `<lab>-<network>` when that fits LIMIT (an interface name), else a
    short hash of both plus the start of the network name (still unique and still recognisable)."""
    plain = f"{lab}-{network}"
    if len(plain) <= limit:
        return plain
    digest = hashlib.sha256(f"{lab}/{network}".encode()).hexdigest()[:5]
    return f"lk{digest}-{network[:limit - 8]}"
