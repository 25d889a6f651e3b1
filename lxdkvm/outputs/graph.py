"""A lab as a picture: lab file (and, when the lab is up, its live status) → a small graph model → text.

`build` makes the model: the lab's networks (subnet, gateway, NAT or isolated, DHCP), its hosts (with
their state and readiness when live), the guests inside each host, and one edge per NIC carrying the
interface and its address; `draw` makes it for a lab file or a lab that is up. `graphtext` writes it as
Mermaid or Graphviz text; `graphviz` turns dot text into SVG or PNG. Pure but for `draw`, which reads the
live status through the session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..labfile import topology as t

if TYPE_CHECKING:
    from ..lab.status import HostStatus, LabStatus

FORMATS = ("mermaid", "dot", "svg", "png")
MACHINE = "this machine"


@dataclass(frozen=True)
class NetNode:
    name: str
    subnet: str
    mode: str  # "nat" | "isolated"
    gateway: str = ""  # "" when there is none (isolated)
    dhcp: bool = False
    mtu: int = 1500
    bridge: str = ""  # the LXD bridge on this machine that carries it
    impaired: tuple[str, ...] = ()  # "h2: loss 30%": impaired links (declared, or in force when live)

    @property
    def facts(self) -> list[str]:
        """The lines under the network's name: subnet, what kind of network it is, its impaired links."""
        kind = [f"gw {self.gateway} · NAT" if self.mode == "nat" else "isolated · no gateway"]
        kind += ["DHCP"] if self.dhcp else []
        kind += [f"MTU {self.mtu}"] if self.mtu != 1500 else []
        return [self.subnet, " · ".join(kind), *(f"impaired {i}" for i in self.impaired)]


@dataclass(frozen=True)
class GuestNode:
    name: str
    vcpus: int | None = None
    memory_mib: int | None = None
    state: str | None = None  # None: not live (from the lab file only)
    booted: bool | None = None
    declared: bool = True  # in the lab file (False: only LXD/libvirt knows it)
    notes: tuple[str, ...] = ()  # e.g. "moved from kvm-1" (live migration)
    disk_mib: int = 0  # a data disk beside the tiny guest's own

    @property
    def facts(self) -> list[str]:
        disk = f" · {self.disk_mib} MiB disk" if self.disk_mib else ""
        size = [f"{self.vcpus} vCPU · {self.memory_mib} MiB{disk}"] if self.vcpus else []
        if self.state is None:
            return size + list(self.notes)
        return size + [f"{self.state.lower()}{' · booted' if self.booted else ''}"
                       + ("" if self.declared else " · not in lab file"), *self.notes]


@dataclass(frozen=True)
class HostNode:
    name: str
    state: str | None = None  # None: not live; "Running", "Stopped", …, "missing" (in the file, not in LXD)
    ready: bool | None = None
    declared: bool = True  # in the lab file (False: in LXD only)
    guests: tuple[GuestNode, ...] = ()

    @property
    def status(self) -> str:
        """'ready' | 'not ready' | 'stopped' | 'missing' | '' (not live): what the host's colour says."""
        if self.state is None:
            return ""
        if self.state == "missing":
            return "missing"
        if self.state != "Running":
            return self.state.lower()
        return "ready" if self.ready else "not ready"

    @property
    def facts(self) -> list[str]:
        if self.state is None:
            return []
        return [self.status + ("" if self.declared else " · not in lab file")]


@dataclass(frozen=True)
class Edge:
    node: str  # a host's name, or "host/guest" for a guest
    network: str
    label: str  # interface and address: "eth1 10.200.20.11", "eth0 dhcp", "eth0 10.200.10.173 (dhcp)"
    guest: bool = False


@dataclass(frozen=True)
class Graph:
    lab: str
    live: bool  # annotated with the lab's live state
    networks: tuple[NetNode, ...] = ()
    hosts: tuple[HostNode, ...] = ()
    edges: tuple[Edge, ...] = ()
    note: str = ""  # a line under the title: where the picture comes from
    warnings: tuple[str, ...] = ()  # what the live status left out (`lab.status.checked`): not drawn

    @property
    def title(self) -> str:
        return f"lab {self.lab}"


# ---------------------------------------------------------------------------------------- build
def _bare(address: str) -> str:
    return address.split("/", 1)[0]


def _live_hosts(status: LabStatus | None) -> dict[str, HostStatus]:
    if not status or not status.exists:
        return {}
    return {h.name: h for h in status.hosts}


def _guest_nodes(lab: t.Lab, live_hosts: dict[str, HostStatus], live: bool,
                 edges: list[Edge]) -> dict[str, list[GuestNode]]:
    """Guests per host: where LXD says each runs when live (a migrated guest is drawn in its new host,
    marked), else where the lab file puts it; guests only the live status knows are drawn too. Adds each
    guest's edges, with the addresses it reported when it has booted."""
    running = {g.name: (host, g) for host, h in live_hosts.items() for g in h.guests}
    placed: dict[str, list[GuestNode]] = {}
    for g in lab.guests:
        host, seen = running.get(g.name, (g.host, None))
        state = (seen.state if seen else "missing") if live else None
        moved = [f"moved from {g.host}"] if host != g.host else []
        booted = bool(seen and seen.booted) if live else None
        node = GuestNode(g.name, g.vcpus, g.memory_mib, state, booted, notes=tuple(moved), disk_mib=g.disk_mib)
        placed.setdefault(host, []).append(node)
        for i, a in enumerate(g.attachments):
            got = seen.addresses.get(a.network, []) if seen else None
            label = f"nic{i} {_address(a, lab.network(a.network), got)}"
            edges.append(Edge(f"{host}/{g.name}", a.network, label, guest=True))
    declared = {g.name for g in lab.guests}
    for name, (host, seen) in sorted(running.items()):
        if name not in declared:
            placed.setdefault(host, []).append(GuestNode(name, state=seen.state, booted=seen.booted,
                                                         declared=False))
            edges += [Edge(f"{host}/{name}", net, ", ".join(_bare(a) for a in got), guest=True)
                      for net, got in sorted(seen.addresses.items()) if lab.network(net) and got]
    return placed


def _address(want: t.Attachment, network: t.Network | None,
             live: list[str] | None) -> str:
    """A NIC's address: the static one, the lease it holds (live), or what it will get."""
    if want.ipv4 is not None:
        return str(want.ipv4)
    if live:
        return f"{', '.join(_bare(a) for a in live)} (dhcp)"
    if network is not None and network.dhcp:
        return "dhcp, no lease yet" if live is not None else "dhcp"
    return "no address"


def _live_impaired(status: LabStatus, network: str) -> tuple[str, ...]:
    return tuple(f"→ {e.host}: {e.impairment.text()}" for e in status.impairments if e.network == network)


def _impaired(lab: t.Lab, net: t.Network, status: LabStatus | None) -> tuple[str, ...]:
    """NET's impaired links: in force (STATUS, a live lab), else as its lab file declares them."""
    if status is not None:
        return _live_impaired(status, net.name)
    if net.impair is None:
        return ()
    hosts = ", ".join(net.impair_hosts) if net.impair_hosts else "every host"
    return (f"→ {hosts}: {net.impair.text()}",)


def build(lab: t.Lab, status: LabStatus | None = None) -> Graph:
    """The graph of LAB; with STATUS (a `LabStatus` of a lab that exists), annotated with live state:
    each host's state and readiness, DHCP addresses, guests' state. Hosts and guests only LXD knows
    are drawn too, marked as not in the lab file."""
    live_hosts = _live_hosts(status)
    live = bool(status and status.exists)
    networks = tuple(NetNode(n.name, str(n.subnet), n.mode, str(n.gateway) if n.gateway else "", n.dhcp,
                             n.mtu, lab.bridge(n.name), _impaired(lab, n, status if live else None))
                     for n in lab.networks)
    hosts, edges = [], []
    guests = _guest_nodes(lab, live_hosts, live, edges)
    for host in lab.hosts:
        seen = live_hosts.get(host.name)
        state = (seen.state if seen else "missing") if live else None
        hosts.append(HostNode(host.name, state, bool(seen and seen.ready) if live else None,
                              guests=tuple(guests.get(host.name, ()))))
        for a in host.attachments:
            got = seen.addresses.get(a.network, []) if seen else None
            edges.append(Edge(host.name, a.network, f"{a.device} {_address(a, lab.network(a.network), got)}"))
    declared = {h.name for h in lab.hosts}
    for name, seen in sorted(live_hosts.items()):
        if name not in declared:
            hosts.append(HostNode(name, seen.state, seen.ready, declared=False, guests=tuple(guests.get(name, ()))))
            edges += [Edge(name, net, ", ".join(_bare(a) for a in got) or "no address")
                      for net, got in sorted(seen.addresses.items()) if lab.network(net)]
    edges.sort(key=lambda e: (e.guest, e.node, e.network))
    note = "live state from LXD" if live else "from the lab file (the lab is not up)"
    warnings = status.warnings if status else ()
    return Graph(lab.name, live, networks, tuple(hosts), tuple(edges), note, warnings)


def from_status(status: LabStatus) -> Graph:
    """The graph of a lab that is up, from its live status alone (no lab file at hand)."""
    networks = []
    for n in status.networks:
        gateway = "" if n.gateway in ("none", "") else _bare(n.gateway)
        networks.append(NetNode(n.name, n.subnet, "nat" if gateway else "isolated", gateway,
                                bool(gateway), bridge=n.bridge, impaired=_live_impaired(status, n.name)))
    known = {n.name for n in networks}
    hosts, edges = [], []
    for h in status.hosts:
        guests = tuple(GuestNode(g.name, state=g.state, booted=g.booted) for g in h.guests)
        edges += [Edge(f"{h.name}/{g.name}", net, ", ".join(_bare(a) for a in got), guest=True)
                  for g in h.guests for net, got in sorted(g.addresses.items()) if net in known and got]
        hosts.append(HostNode(h.name, h.state, h.ready, guests=guests))
        for net, got in sorted(h.addresses.items()):
            if net in known:
                edges.append(Edge(h.name, net, ", ".join(_bare(a) for a in got) or "no address"))
    return Graph(status.lab, True, tuple(networks), tuple(hosts), tuple(edges),
                 "live state from LXD (no lab file given)", status.warnings)


def draw(session, lab: str | None, live: bool) -> Graph:
    """The graph of LAB: a lab file (None: the default lab) annotated with its live state when it is up
    (and LIVE), or a lab name, drawn from its live state alone. Drawing changes nothing, so any lab file
    is drawn: no --allow-* needed."""
    from pathlib import Path

    from ..errors import LxdkvmError
    from ..lab import status as status_mod
    from ..lab.load import lab_name, load
    from ..labfile.checks import Allowances

    def live_status(name: str):
        try:
            if not Path(session.daemon.socket).exists():
                return None
            found = status_mod.read(session.lab(t.project_name(name)), name)
        except LxdkvmError:
            return None
        return found if found.exists else None

    if lab is not None and not Path(lab).is_file():
        name = lab_name(lab)  # refuses a path that does not exist and a bad name
        status = live_status(name)
        if status is None:
            raise LxdkvmError(f"lab {name} is not up (or LXD does not answer): give its lab file to draw it "
                              "from the file")
        return from_status(status)
    parsed = load(lab, allow=Allowances(unconfined=True, host_devices=True, cgnat=True), machine=False)
    return build(parsed, live_status(parsed.name) if live else None)
