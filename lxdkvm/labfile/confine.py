"""What a lab file may not do to the machine that runs it: the machine's devices, odd subnets, and the
flags that lift a class of refusal (`Allowances`).

Lab files are shared like topologies, so they are untrusted. A lab host is an unprivileged container with
its own id map, the KVM devices lxdkvm passes itself (profiles/kvm-host.yaml.j2) and NICs on the lab's
own bridges; everything here would give it more of the machine than that. Each refusal can be lifted
by one command-line flag that names the risk; docs/labs.md says what each one exposes. The instance
config keys (the other way to undo confinement) are an allow-list of their own: `keys`.

A lab NIC is an allow-list too: the keys that keep it on a lab bridge, each with the syntax of its value
(`NIC_VALUES`), and its `ipv4.address` on that network, below the DHCP range.

Pure: devices and subnets in, (message, hint) out. `checks` calls it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from . import topology as t
from . import values as v

UNCONFINED_FLAG = "--allow-unconfined"
DEVICES_FLAG = "--allow-host-devices"
CGNAT_FLAG = "--allow-cgnat"


@dataclass(frozen=True)
class Allowances:
    """Risks the user accepted on the command line; the checks get them as data."""
    unconfined: bool = False  # config keys that undo the container's confinement
    host_devices: bool = False  # devices that reach the machine (its files, device nodes, hardware, sockets)
    cgnat: bool = False  # subnets in the shared address space 100.64.0.0/10


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
NIC_VALUES: dict[str, v.Check] = {
    "name": v.interface_name, "hwaddr": v.unicast_mac, "mtu": v.MTU, "boot.priority": v.integer(0, 1000),
    "limits.ingress": v.RATE, "limits.egress": v.RATE, "limits.max": v.RATE, "limits.priority": v.UINT32,
    "security.mac_filtering": v.boolean, "security.ipv4_filtering": v.boolean,
    "security.port_isolation": v.boolean, "queue.tx.length": v.integer(1, 65535),
}
NIC_KEYS = ("type", "network", "ipv4.address", *NIC_VALUES)
NIC_HINT = "a lab NIC is `{type: nic, network: NAME}` on a lab network, with the keys docs/labs.md lists"


def _nic_address(text: str, net: t.Network) -> Iterator[tuple[str, str]]:
    """ipv4.address of a NIC on NET: a host address of its subnet, not the gateway, below the DHCP range."""
    try:
        ip = ipaddress.IPv4Address(text)
    except ValueError:
        yield f"nic key 'ipv4.address': '{text}' is not an IPv4 address", "write a plain address such as 10.0.0.9"
        return
    low = net.dhcp_range[0] if net.dhcp_range else None
    if ip not in net.subnet or ip in (net.subnet.network_address, net.subnet.broadcast_address):
        yield (f"nic key 'ipv4.address': {ip} is not a host address of network '{net.name}' ({net.subnet})",
               f"use an address in {net.subnet}")
    elif ip == net.gateway:
        yield f"nic key 'ipv4.address': {ip} is the gateway of network '{net.name}'", "use a host address"
    elif low is not None and ip >= low:
        yield (f"nic key 'ipv4.address': {ip} is inside the DHCP range of '{net.name}' (from {low})",
               f"use an address below {low}")


def _nic_reach(device: dict[str, str], networks: dict[str, t.Network]) -> Iterator[tuple[str, str]]:
    """What would take a NIC off the lab's bridges (what --allow-host-devices lifts)."""
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


def _nic_values(device: dict[str, str], networks: dict[str, t.Network]) -> Iterator[tuple[str, str]]:
    """The value of each NIC key (with or without the flag: values are data either way)."""
    for key, check in NIC_VALUES.items():
        if key in device and (reason := check(device[key])):
            yield f"nic key '{key}': '{device[key]}' {reason}", NIC_HINT
    if "ipv4.address" in device and device.get("network") in networks:
        yield from _nic_address(device["ipv4.address"], networks[device["network"]])


def device_problems(device: dict[str, str], networks: dict[str, t.Network],
                    allow: Allowances) -> Iterator[tuple[str, str]]:
    """(message, hint) for each way DEVICE (of a lab profile) would reach past the lab, and each NIC value
    that is not what its key takes."""
    kind = device.get("type")
    if kind not in (*LAB_DEVICES, *HOST_DEVICES):
        yield (f"unknown device type '{kind}'",
               (f"a lab profile may declare {' and '.join(LAB_DEVICES)} devices "
               f"(and with {DEVICES_FLAG}: {', '.join(HOST_DEVICES)})"))
    elif kind == "none" and len(device) > 1:
        yield "a none device has only `type`", "a none device hides a device of the same name: remove its other keys"
    elif kind == "nic":
        if not allow.host_devices:
            yield from _nic_reach(device, networks)
        yield from _nic_values(device, networks)
    elif kind in HOST_DEVICES and not allow.host_devices:
        article = "an" if kind[0] in "aeio" else "a"
        yield (f"{article} {kind} device is refused: {HOST_DEVICES[kind]}",
               (f"a lab profile may declare nic devices on lab networks and none; pass {DEVICES_FLAG} if you "
               "trust this lab file"))


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
