"""A lab as the daemon has it now, as typed plain data: its networks, its hosts (state, readiness,
addresses per network) and the guests running in them. `read` gathers it; `LabStatus.as_json` is the
document `lxdkvm status --json` prints (and `from_json` reads one back, for tests and saved states).

Every string in it was read back from the daemon, a host or a guest: outputs that hand it on to other
programs treat it as untrusted (docs/security.md).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ..labfile import topology as t
from . import objects

Addresses = dict[str, list[str]]  # network → ["ADDR/PFX", ...]


@dataclass(frozen=True)
class NetworkStatus:
    name: str
    bridge: str
    subnet: str
    gateway: str  # "ADDR/PFX" on a NAT network, "none" on an isolated one

    @property
    def nat(self) -> bool:
        return self.gateway != "none"

    def as_json(self) -> dict:
        return {"name": self.name, "bridge": self.bridge, "subnet": self.subnet, "gateway": self.gateway}


@dataclass(frozen=True)
class GuestStatus:
    name: str
    host: str
    state: str
    booted: bool
    boot_id: str = ""
    addresses: Addresses = field(default_factory=dict)
    image: str = ""  # an imported image's name (it prints no boot marker), else ""

    def first_address(self) -> str | None:
        return next((a.split("/")[0] for found in self.addresses.values() for a in found), None)

    def as_json(self) -> dict:
        out = {"name": self.name, "host": self.host, "state": self.state, "booted": self.booted,
               "boot_id": self.boot_id, "addresses": self.addresses}
        return {**out, "image": self.image} if self.image else out


@dataclass(frozen=True)
class HostStatus:
    name: str
    state: str
    ready: bool
    addresses: Addresses = field(default_factory=dict)
    guests: tuple[GuestStatus, ...] = ()
    member: str = ""  # on a cluster: the member it runs on

    @property
    def running(self) -> bool:
        return self.state == "Running"

    def management_address(self, nat_networks: set[str]) -> str | None:
        """The host's address on its first NAT network (the one this machine routes to), without prefix."""
        for network, found in self.addresses.items():
            if network in nat_networks and found:
                return str(ipaddress.IPv4Interface(found[0]).ip)
        return None

    def as_json(self) -> dict:
        where = {"member": self.member} if self.member else {}
        return {"name": self.name, "state": self.state, **where, "ready": self.ready,
                "addresses": self.addresses, "guests": [g.as_json() for g in self.guests]}


@dataclass(frozen=True)
class LabStatus:
    lab: str
    project: str
    exists: bool
    networks: tuple[NetworkStatus, ...] = ()
    hosts: tuple[HostStatus, ...] = ()

    @property
    def nat_networks(self) -> set[str]:
        return {n.name for n in self.networks if n.nat}

    @property
    def guests(self) -> list[GuestStatus]:
        return [g for h in self.hosts for g in h.guests]

    def host(self, name: str) -> HostStatus | None:
        return next((h for h in self.hosts if h.name == name), None)

    def as_json(self) -> dict:
        return {"lab": self.lab, "project": self.project, "exists": self.exists,
                "networks": [n.as_json() for n in self.networks], "hosts": [h.as_json() for h in self.hosts]}

    @classmethod
    def from_json(cls, data: dict) -> LabStatus:
        return cls(data["lab"], data.get("project", t.project_name(data["lab"])), bool(data.get("exists")),
                   tuple(NetworkStatus(n["name"], n.get("bridge", ""), n.get("subnet", ""), n.get("gateway", "none"))
                         for n in data.get("networks", [])),
                   tuple(HostStatus(h["name"], h["state"], bool(h.get("ready")), dict(h.get("addresses", {})),
                                    tuple(GuestStatus(g["name"], g.get("host", h["name"]), g.get("state", "?"),
                                                      bool(g.get("booted")), g.get("boot_id", ""),
                                                      dict(g.get("addresses", {})), g.get("image", ""))
                                          for g in h.get("guests", [])), h.get("member", ""))
                         for h in data.get("hosts", [])))


# ---------------------------------------------------------------------------------------- reading
def _in(address: str, subnet: str) -> bool:
    try:
        return ipaddress.IPv4Interface(address).ip in ipaddress.IPv4Network(subnet)
    except ValueError:
        return False


def _per_network(info: dict, networks: dict[str, dict], addresses: dict[str, list[str]]) -> Addresses:
    """A host's addresses per lab network: on the in-host bridge that carries the NIC (on the NIC itself
    for older hosts)."""
    out = {}
    for device, nic in sorted(info["devices"].items()):
        if nic.get("type") == "nic":
            network = networks.get(nic.get("network", ""), {}).get(objects.NETWORK, nic.get("network", ""))
            out[network] = addresses.get(t.in_host_bridge(network)) or addresses.get(nic.get("name", device), [])
    return out


def _guests(lxd, host: str, lab: str, networks: dict[str, dict], leases: dict) -> tuple[GuestStatus, ...]:
    """The lab's guests running in HOST, their addresses per network (the network whose subnet holds
    each); an imported image reports nothing, so its DHCP addresses come from the daemon's leases."""
    from ..guests import runtime

    rows = runtime.guest_status(lxd.instances, host, lab)
    subnets = {c.get(objects.NETWORK, b): c.get("user.lxdkvm.subnet", "") for b, c in networks.items()}
    if any(r.get("dhcp_macs") for r in rows) and "found" not in leases:
        leases["found"] = lxd.networks.leases(sorted(networks))
    out = []
    for row in rows:
        found = {**row["addresses"], **{nic: leases["found"][mac] for nic, mac in row.get("dhcp_macs", {}).items()
                                        if mac in leases.get("found", {})}}
        per_net = {net: [a for a in found.values() if _in(a, subnet)] for net, subnet in subnets.items()}
        out.append(GuestStatus(row["name"], host, row["state"], row["booted"], row.get("boot_id", ""),
                               {net: got for net, got in per_net.items() if got}, row.get("image", "")))
    return tuple(out)


def read(lxd, name: str, guests: bool = True) -> LabStatus:
    """The status of lab NAME through LXD (a `lxd.session.LabScope` of its project); with GUESTS, one exec
    in each running host lists its guests."""
    project = lxd.config()
    networks = {bridge: config for bridge, config in lxd.networks.managed().items()
                if config.get(objects.MARK) == name}
    instances = lxd.instances.all() if project is not None else {}
    hosts, leases = [], {}
    for host, info in sorted(instances.items()):
        running = info["status"] == "Running"
        addresses = lxd.instances.addresses(host) if running else {}
        found = _guests(lxd, host, name, networks, leases) if running and guests else ()
        hosts.append(HostStatus(host, info["status"], running and info["config"].get(objects.READY) == "true",
                                _per_network(info, networks, addresses), found, info.get("location") or ""))
    return LabStatus(
        name, lxd.project, project is not None,
        tuple(NetworkStatus(c.get(objects.NETWORK, b), b, c.get("user.lxdkvm.subnet", ""), c.get("ipv4.address", "none"))
              for b, c in sorted(networks.items())),
        tuple(hosts))
