"""What a lab file may not do to the machine that runs it: privilege, the machine's devices, odd subnets.

Lab files are shared like topologies, so they are untrusted. A lab host is an unprivileged container with
its own id map, the KVM devices lxdkvm passes itself (profiles/kvm-host.yaml.j2) and NICs on the lab's
own bridges; everything here would give it more of the machine than that. Each refusal can be lifted
by one command-line flag that names the risk (`Allowances`); docs/labs.md says what each one exposes.

Pure: config, devices and subnets in, (message, hint) or problems out. `labcheck` calls it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import topology as t

TRUE = frozenset({"true", "1", "yes", "on"})  # LXD's shared.IsTrue (case-insensitive)
FALSE = frozenset({"false", "0", "no", "off"})  # LXD's shared.IsFalse
UNCONFINED_FLAG = "--allow-unconfined"
DEVICES_FLAG = "--allow-host-devices"
CGNAT_FLAG = "--allow-cgnat"


@dataclass(frozen=True)
class Allowances:
    """Risks the user accepted on the command line; the checks get them as data."""
    unconfined: bool = False  # config keys that undo the container's confinement
    host_devices: bool = False  # devices that reach the machine (its files, device nodes, hardware, sockets)
    cgnat: bool = False  # subnets in the shared address space 100.64.0.0/10


# ---------------------------------------------------------------------------------------- config
def _always(_value: str) -> bool:
    return True


def _unless_false(value: str) -> bool:
    """Refused unless it says no: anything else LXD reads as true, or refuses itself."""
    return value.strip().lower() not in FALSE


def _unless_true(value: str) -> bool:
    return value.strip().lower() not in TRUE


# (key, or prefix ending in ".") → (when it is refused, what it would expose). First match wins.
CONFINEMENT: list[tuple[str, Callable[[str], bool], str]] = [
    ("security.privileged", _unless_false, "a privileged container's root is the machine's root"),
    ("raw.", _always, ("raw.* (lxc, idmap, apparmor, seccomp, qemu) goes to LXC/QEMU unchecked and can undo "
     "every other confinement, e.g. map the machine's root or mount its files")),
    ("security.idmap.", _always, ("it chooses which of the machine's uids/gids the host maps (base) or how "
     "many it takes (size): it could share ids with other containers or use up the ids other labs need")),
    ("linux.kernel_modules", _always, ("LXD loads these modules into the machine's kernel, as root, before "
     "the host starts")),
    ("security.syscalls.intercept.", _unless_false, ("LXD then performs these system calls (mknod, mount, "
     "setxattr, bpf, sched_setscheduler, sysinfo) as root on the machine on the container's behalf")),
    ("security.syscalls.allow", _always, "it replaces LXD's default seccomp deny list with your own list"),
    ("security.syscalls.deny_default", _unless_true, "turning it off drops LXD's default seccomp deny list"),
    ("security.devlxd.images", _unless_false, ("/dev/lxd then serves every image in LXD's store (other "
     "labs' and private ones) to the container")),
    ("nvidia.", _always, "it mounts the machine's NVIDIA driver, libraries and devices into the host"),
]
# Not refused, on purpose: security.nesting (lxdkvm sets it: nested containers stay inside this one's user
# namespace), security.protection.* (they only stop LXD deleting or shifting the container; note that
# protection.delete makes `lxdkvm down` fail until it is removed), security.devlxd (turning it off only
# narrows), security.syscalls.deny / deny_compat (narrow), linux.sysctl.* (namespaced sysctls), limits.*
# other than cpu and memory (ceilings, and rlimits inside the container's cgroup), user.*, environment.*,
# boot.*, snapshots.*, migration.*, cloud-init.*.


def config_problem(key: str, value: str, allow: Allowances) -> tuple[str, str] | None:
    """(message, hint) when KEY=VALUE would undo the host's confinement, else None."""
    if allow.unconfined:
        return None
    for name, refused, why in CONFINEMENT:
        if (key.startswith(name) if name.endswith(".") else key == name) and refused(value):
            return (f"is refused: {why}", (f"lab hosts stay confined; remove it, or pass {UNCONFINED_FLAG} "
                    "if you trust this lab file"))
    return None


# ---------------------------------------------------------------------------------------- devices
LAB_DEVICES = ("nic", "none")  # what a lab profile may declare without a flag
# Device types that reach the machine, and what each would expose.
HOST_DEVICES = {
    "disk": "it mounts a path, block device or storage volume of the machine into the host",
    "unix-char": "it passes one of the machine's device nodes into the host",
    "unix-block": "it passes one of the machine's block devices into the host",
    "unix-hotplug": "it passes the machine's hot-plugged device nodes into the host",
    "gpu": "it passes the machine's GPU into the host",
    "usb": "it passes the machine's USB devices into the host",
    "pci": "it passes one of the machine's PCI devices into the host",
    "infiniband": "it passes the machine's InfiniBand device into the host",
    "tpm": "it gives the host a TPM on the machine",
    "proxy": "it forwards connections across the machine's network namespace: bind=host (the default) "
             "listens on the machine; bind=instance connects from the machine, e.g. to "
             "unix:/var/lib/lxd/unix.socket, which is root on the machine",
}
# NIC keys that keep a NIC on a lab bridge. Refused with them: nictype and parent (physical, macvlan,
# ipvlan, sriov, routed put the host on the machine's own interfaces), host_name (names an interface of
# the machine), ipv4.routes* and ipv4.host_address (routes and addresses on the machine), vlan, maas.*.
NIC_KEYS = ("type", "network", "name", "hwaddr", "mtu", "ipv4.address", "boot.priority", "limits.ingress",
            "limits.egress", "limits.max", "limits.priority", "security.mac_filtering",
            "security.ipv4_filtering", "security.port_isolation", "queue.tx.length")


def _nic(device: dict[str, str], networks: list[str]) -> Iterator[tuple[str, str]]:
    for key in device:
        if key not in NIC_KEYS:
            yield ((f"nic key '{key}' is refused: it would put the host on the machine's interfaces, routes "
                   "or addresses"), (f"a lab NIC is `{{type: nic, network: NAME}}` on a lab network; pass "
                   f"{DEVICES_FLAG} if you trust this lab file"))
    network = device.get("network")
    if network is None:
        yield "a nic needs `network:` naming a lab network", f"lab networks: {', '.join(networks) or 'none'}"
    elif network not in networks:
        yield ((f"'{network}' is not a network of this lab: a lab host's NICs are on the lab's own bridges "
               "(another network is the machine's or another lab's)"),
               (f"lab networks: {', '.join(networks) or 'none'}; "
               f"pass {DEVICES_FLAG} if you trust this lab file"))


def device_problems(device: dict[str, str], networks: list[str],
                    allow: Allowances) -> Iterator[tuple[str, str]]:
    """(message, hint) for each way DEVICE (of a lab profile) would reach past the lab."""
    kind = device.get("type")
    if kind not in (*LAB_DEVICES, *HOST_DEVICES):
        yield (f"unknown device type '{kind}'",
               (f"a lab profile may declare {' and '.join(LAB_DEVICES)} devices "
               f"(and with {DEVICES_FLAG}: {', '.join(HOST_DEVICES)})"))
    elif allow.host_devices:
        return
    elif kind in HOST_DEVICES:
        article = "an" if kind[0] in "aeio" else "a"
        yield (f"{article} {kind} device is refused: {HOST_DEVICES[kind]}",
               (f"a lab profile may declare nic devices on lab networks and none; pass {DEVICES_FLAG} if you "
               "trust this lab file"))
    elif kind == "nic":
        yield from _nic(device, networks)


# ---------------------------------------------------------------------------------------- subnets
PRIVATE = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
# Ranges that are never a lab's: they mean something to every machine, or name real destinations.
SPECIAL = [(ipaddress.IPv4Network(net), what) for net, what in (
    ("0.0.0.0/8", "'this network' (unspecified) range"),
    ("127.0.0.0/8", "loopback range"),
    ("169.254.0.0/16", "link-local range"),
    ("192.0.0.0/24", "IETF protocol assignments range"),
    ("192.0.2.0/24", "documentation range TEST-NET-1"),
    ("198.18.0.0/15", "benchmarking range"),
    ("198.51.100.0/24", "documentation range TEST-NET-2"),
    ("203.0.113.0/24", "documentation range TEST-NET-3"),
    ("224.0.0.0/4", "multicast range"),
    ("240.0.0.0/4", "reserved range (and broadcast)"),
)]
PRIVATE_HINT = "use a private range (10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)"


def subnet_problem(subnet: ipaddress.IPv4Network, allow: Allowances) -> tuple[str, str] | None:
    """(message, hint) when SUBNET is not an ordinary private range for a lab, else None."""
    for special, what in SPECIAL:
        if subnet.overlaps(special):
            return f"{subnet} is in the {what} {special}", PRIVATE_HINT
    if subnet.overlaps(CGNAT):
        if allow.cgnat and subnet.subnet_of(CGNAT):
            return None
        return ((f"{subnet} is in the shared address space {CGNAT} (carrier-grade NAT; Tailscale and other "
                "VPNs use it too)"), f"{PRIVATE_HINT}, or pass {CGNAT_FLAG} if nothing here uses it")
    if not any(subnet.subnet_of(p) for p in PRIVATE):
        return f"{subnet} is not a private range", (f"{PRIVATE_HINT} so the lab does not hide real "
                                                    "destinations")
    return None


# ---------------------------------------------------------------------------------------- memory
UNITS = {"B": 1, "kB": 10**3, "KiB": 2**10, "MB": 10**6, "MiB": 2**20, "GB": 10**9, "GiB": 2**30,
         "TB": 10**12, "TiB": 2**40}


def memory_bytes(size: str, machine_bytes: int) -> float:
    """`2GiB` → bytes; `50%` → that share of MACHINE_BYTES (as LXD reads limits.memory)."""
    text = size.replace(" ", "")
    if text.endswith("%"):
        return float(text[:-1]) * machine_bytes / 100
    unit = next(u for u in sorted(UNITS, key=len, reverse=True) if text.endswith(u))
    return float(text[: -len(unit)]) * UNITS[unit]


def memory_problem(host: t.Host, machine_bytes: int) -> t.Problem | None:
    if not host.memory or memory_bytes(host.memory, machine_bytes) <= machine_bytes:
        return None
    have = f"{machine_bytes / 2**30:.1f}GiB"
    return t.Problem(f"{host.path}.limits.memory", f"{host.memory}, but this machine has {have} of memory",
                     f"use at most {have} (or a share such as 50%)", host.line)
