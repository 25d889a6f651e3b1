"""A lab as the daemon has it now, as typed plain data: its networks, its hosts (state, readiness,
addresses per network) and the guests running in them. `read` gathers it; `LabStatus.as_json` is the
document `lxdkvm status --json` prints (and `from_json` reads one back, for tests and saved states).

Every string in it was read back from the daemon, a host or a guest, so a status is `checked` before
anyone sees it (`read` and `from_json` both return checked statuses): each value must have the shape
lxdkvm itself gives it (`readback`), and what does not is left out and said in `warnings`, one
line naming the host, never repeating the value. Outputs that hand a status on to other programs still
treat it as untrusted (docs/security.md).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .. import readback as rb
from ..errors import LxdkvmError
from ..labfile import topology as t
from . import links, objects
from .impair import Entry

Addresses = dict[str, list[str]]  # network → ["ADDR/PFX", ...]
WARNINGS_KEPT = 100  # of a saved status's own warnings
HOSTS_AT_ONCE = 8  # hosts read at the same time, each with one state request and one exec


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
    warnings: tuple[str, ...] = ()  # values the daemon or a host reported that were left out (`checked`)
    impairments: tuple[Entry, ...] = ()  # impaired links in force on this machine (`lab.links`)

    @property
    def nat_networks(self) -> set[str]:
        return {n.name for n in self.networks if n.nat}

    @property
    def guests(self) -> list[GuestStatus]:
        return [g for h in self.hosts for g in h.guests]

    def host(self, name: str) -> HostStatus | None:
        return next((h for h in self.hosts if h.name == name), None)

    def as_json(self) -> dict:
        out = {"lab": self.lab, "project": self.project, "exists": self.exists,
               "networks": [n.as_json() for n in self.networks], "hosts": [h.as_json() for h in self.hosts]}
        if self.impairments:
            out["impairments"] = [e.as_json() for e in self.impairments]
        return {**out, "warnings": list(self.warnings)} if self.warnings else out

    @classmethod
    def from_json(cls, data: dict) -> LabStatus:
        """A status saved as JSON (`as_json`), checked like one read from the daemon: a file is no more
        trusted than the hosts it describes. Its own warnings are kept, reduced to plain characters."""
        try:
            raw = cls(data["lab"], data.get("project", t.project_name(data["lab"])), bool(data.get("exists")),
                      tuple(NetworkStatus(n["name"], n.get("bridge", ""), n.get("subnet", ""),
                                          n.get("gateway", "none")) for n in data.get("networks", [])),
                      tuple(_host_from_json(h) for h in data.get("hosts", [])),
                      tuple(rb.safe_text(w) for w in _listed(data.get("warnings"))[:WARNINGS_KEPT]),
                      tuple(Entry.from_json(e) for e in _listed(data.get("impairments"))))
        except (KeyError, TypeError, AttributeError) as exc:
            raise LxdkvmError(f"not a lab status: {rb.defanged(str(exc))} is missing or not valid") from exc
        return checked(raw)


def _listed(value: object) -> list:
    if value is not None and not isinstance(value, list):
        raise TypeError("warnings are not a list")
    return value or []


def _host_from_json(h: dict) -> HostStatus:
    return HostStatus(h["name"], h["state"], bool(h.get("ready")), dict(h.get("addresses", {})),
                      tuple(GuestStatus(g["name"], g.get("host", h["name"]), g.get("state", rb.UNKNOWN),
                                        bool(g.get("booted")), g.get("boot_id", ""),
                                        dict(g.get("addresses", {})), g.get("image", ""))
                            for g in h.get("guests", [])),
                      h.get("member", ""))


# ---------------------------------------------------------------------------------------- checking
Problems = dict[str, list[str]]  # who (a host, or "lab NAME") → what was left out


def _addresses(found: object, problems: list[str]) -> Addresses:
    """Network → ["ADDR/PFX"] with only lab network names and IPv4 interfaces in it."""
    out: Addresses = {}
    for network, addresses in (found.items() if isinstance(found, dict) else ()):
        listed = addresses if isinstance(addresses, list) else [addresses]
        if not rb.network_name(network):
            if listed:
                problems.append(f"addresses on a network named {rb.defanged(network)}")
            continue
        good = [rb.interface(a) for a in listed]
        problems += [f"address {rb.defanged(a)} on {network}" for a, ok in zip(listed, good, strict=True)
                     if not ok]
        out[network] = [a for a in good if a]
    return out


def _first_bad(fields: dict[str, tuple[object, object]]) -> str:
    """"FIELD VALUE" (the value defanged) of the first field whose check failed, else ""."""
    return next((f"{what} {rb.defanged(value)}" for what, (value, ok) in fields.items() if not ok), "")


def _guest(g: GuestStatus, host: str, problems: list[str]) -> GuestStatus | None:
    bad = _first_bad({"name": (g.name, rb.guest_name(g.name)), "host": (g.host, rb.host_name(g.host) == host),
                      "state": (g.state, g.state == rb.UNKNOWN or rb.guest_state(g.state)),
                      "boot id": (g.boot_id, g.boot_id == "" or rb.boot_id(g.boot_id)),
                      "image": (g.image, g.image == "" or rb.image_name(g.image))})
    if bad:
        problems.append(f"a guest with {bad}")
        return None
    return GuestStatus(g.name, host, g.state, g.booted is True, g.boot_id, _addresses(g.addresses, problems),
                       g.image)


def _host(h: HostStatus, lab: str, problems: Problems) -> HostStatus | None:
    name = rb.host_name(h.name)
    if not name:
        problems.setdefault(f"lab {lab}", []).append(f"an instance with name {rb.defanged(h.name)}")
        return None
    mine = problems.setdefault(name, [])
    state = rb.instance_state(h.state) or rb.UNKNOWN
    if state == rb.UNKNOWN and h.state != rb.UNKNOWN:
        mine.append(f"its state {rb.defanged(h.state)}")
    member = rb.member_name(h.member) or ""
    if h.member and not member:
        mine.append(f"its cluster member {rb.defanged(h.member)}")
    guests = tuple(g for g in (_guest(g, name, mine) for g in h.guests) if g)
    return HostStatus(name, state, h.ready is True and state == "Running", _addresses(h.addresses, mine),
                      guests, member)


def _network(n: NetworkStatus, lab: str, problems: Problems) -> NetworkStatus | None:
    bad = _first_bad({"name": (n.name, rb.network_name(n.name)),
                      "bridge": (n.bridge, n.bridge == "" or rb.ifname(n.bridge)),
                      "subnet": (n.subnet, n.subnet == "" or rb.subnet(n.subnet) == n.subnet),
                      "gateway": (n.gateway, n.gateway in ("none", "")
                                  or rb.interface(n.gateway) == n.gateway)})
    if bad:
        problems.setdefault(f"lab {lab}", []).append(f"a network with {bad}")
        return None
    return n


def checked(status: LabStatus) -> LabStatus:
    """STATUS with only values of the shapes lxdkvm gives them: a host, guest or network whose name (or
    another identifying field) fails is left out, as is an address that fails; a host's state that
    fails becomes `readback.UNKNOWN`. Each is said once in `warnings`, naming the host."""
    if not rb.lab_name(status.lab) or not re.fullmatch(r"[a-z][a-z0-9-]{0,62}", str(status.project)):
        raise LxdkvmError(f"not a lab status: lab {rb.defanged(status.lab)}, "
                          f"project {rb.defanged(status.project)}")
    problems: Problems = {}
    networks = tuple(n for n in (_network(n, status.lab, problems) for n in status.networks) if n)
    hosts = tuple(h for h in (_host(h, status.lab, problems) for h in status.hosts) if h)
    found = [w for who, what in problems.items() for w in rb.summarised(who, what)]
    warnings = tuple(dict.fromkeys([*status.warnings, *(f"{w} (left out)" for w in found)]))
    return dataclasses.replace(status, networks=networks, hosts=hosts, warnings=warnings)


# ---------------------------------------------------------------------------------------- reading
def _in(address: str, subnet: str) -> bool:
    try:
        return ipaddress.IPv4Interface(address).ip in ipaddress.IPv4Network(subnet)
    except ValueError:
        return False


def _with_prefix(address: str, subnet: str) -> str:
    """A lease's bare address as an interface of its network ("10.0.0.5" in 10.0.0.0/24 → "10.0.0.5/24"),
    the way guests report theirs."""
    return address if "/" in address else f"{address}/{ipaddress.IPv4Network(subnet).prefixlen}"


def _per_network(info: dict, networks: dict[str, dict], addresses: dict[str, list[str]]) -> Addresses:
    """A host's addresses per lab network: on the in-host bridge that carries the NIC (on the NIC itself
    for older hosts)."""
    out = {}
    for device, nic in sorted(info["devices"].items()):
        if nic.get("type") == "nic":
            network = networks.get(nic.get("network", ""), {}).get(objects.NETWORK, nic.get("network", ""))
            out[network] = addresses.get(t.in_host_bridge(network)) or addresses.get(nic.get("name", device), [])
    return out


def _guests(lxd, host: str, lab: str, networks: dict[str, dict], leases: dict,
            warn: Callable[[str], None], lock: threading.Lock) -> tuple[GuestStatus, ...]:
    """The lab's guests running in HOST, their addresses per network (the network whose subnet holds
    each); an imported image reports nothing, so its DHCP addresses come from the daemon's leases, read
    once for all hosts (LEASES, under LOCK)."""
    from ..guests import runtime

    rows = runtime.guest_status(lxd.instances, host, lab, warn)
    subnets = {c.get(objects.NETWORK, b): c.get("user.lxdkvm.subnet", "") for b, c in networks.items()}
    if any(r.get("dhcp_macs") for r in rows):
        with lock:
            if "found" not in leases:
                leases["found"] = lxd.networks.leases(sorted(networks))
    out = []
    for row in rows:
        found = {**row["addresses"], **{nic: leases["found"][mac] for nic, mac in row.get("dhcp_macs", {}).items()
                                        if mac in leases.get("found", {})}}
        per_net = {net: [_with_prefix(a, subnet) for a in found.values() if _in(a, subnet)]
                   for net, subnet in subnets.items()}
        out.append(GuestStatus(row["name"], host, row["state"], row["booted"], row.get("boot_id", ""),
                               {net: got for net, got in per_net.items() if got}, row.get("image", "")))
    return tuple(out)


def read(lxd, name: str, guests: bool = True) -> LabStatus:
    """The status of lab NAME through LXD (a `lxd.session.LabScope` of its project), `checked`; with GUESTS,
    one exec in each running host lists its guests."""
    project = lxd.config()
    networks = {bridge: config for bridge, config in lxd.networks.managed().items()
                if config.get(objects.MARK) == name}
    instances = lxd.instances.all() if project is not None else {}
    leases: dict = {}
    lock = threading.Lock()

    def host_status(host: str, info: dict) -> tuple[HostStatus, list[str]]:
        running = info["status"] == "Running" and rb.host_name(host) is not None  # no exec into a stranger
        warnings: list[str] = []
        addresses = lxd.instances.addresses(host) if running else {}
        found = _guests(lxd, host, name, networks, leases, warnings.append, lock) if running and guests else ()
        return HostStatus(host, info["status"], running and info["config"].get(objects.READY) == "true",
                          _per_network(info, networks, addresses), found, info.get("location") or ""), warnings

    # every host at once: its addresses and its guests (one exec), the answers in the hosts' order
    with ThreadPoolExecutor(max_workers=HOSTS_AT_ONCE) as pool:
        read_back = list(pool.map(lambda item: host_status(*item), sorted(instances.items())))
    hosts = [host for host, _warnings in read_back]
    warnings = [warning for _host, found in read_back for warning in found]
    return checked(LabStatus(
        name, lxd.project, project is not None,
        tuple(NetworkStatus(c.get(objects.NETWORK, b), b, c.get("user.lxdkvm.subnet", ""), c.get("ipv4.address", "none"))
              for b, c in sorted(networks.items())),
        tuple(hosts), tuple(warnings), tuple(links.current(name)) if project is not None else ()))
