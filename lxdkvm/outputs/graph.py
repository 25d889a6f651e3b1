"""A lab as a picture: lab file (and, when the lab is up, its live status) → a small graph model → text.

`build` makes the model: the lab's networks (subnet, gateway, NAT or isolated, DHCP), its hosts (with
their state and readiness when live), the guests inside each host, and one edge per NIC carrying the
interface and its address. `mermaid` and `dot` write it; `lxdkvm/graphviz.py` turns dot text into
SVG or PNG. Pure: no LXD, no files, no subprocesses.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass

from ..labfile import topology as t

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

    @property
    def facts(self) -> list[str]:
        """The lines under the network's name: subnet, then what kind of network it is."""
        kind = [f"gw {self.gateway} · NAT" if self.mode == "nat" else "isolated · no gateway"]
        kind += ["DHCP"] if self.dhcp else []
        kind += [f"MTU {self.mtu}"] if self.mtu != 1500 else []
        return [self.subnet, " · ".join(kind)]


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

    @property
    def title(self) -> str:
        return f"lab {self.lab}"


# ---------------------------------------------------------------------------------------- build
def _bare(address: str) -> str:
    return address.split("/", 1)[0]


def _live_hosts(status: dict | None) -> dict[str, dict]:
    if not status or not status.get("exists"):
        return {}
    return {h["name"]: h for h in status.get("hosts", [])}


def _guest_nodes(lab: t.Lab, live_hosts: dict[str, dict], live: bool,
                 edges: list[Edge]) -> dict[str, list[GuestNode]]:
    """Guests per host: where LXD says each runs when live (a migrated guest is drawn in its new host,
    marked), else where the lab file puts it; guests only the live status knows are drawn too. Adds each
    guest's edges, with the addresses it reported when it has booted."""
    running = {g["name"]: (host, g) for host, h in live_hosts.items() for g in h.get("guests", [])}
    placed: dict[str, list[GuestNode]] = {}
    for g in lab.guests:
        host, seen = running.get(g.name, (g.host, None))
        state = (seen["state"] if seen else "missing") if live else None
        moved = [f"moved from {g.host}"] if host != g.host else []
        booted = bool(seen and seen.get("booted")) if live else None
        node = GuestNode(g.name, g.vcpus, g.memory_mib, state, booted, notes=tuple(moved), disk_mib=g.disk_mib)
        placed.setdefault(host, []).append(node)
        for i, a in enumerate(g.attachments):
            got = seen.get("addresses", {}).get(a.network, []) if seen else None
            label = f"nic{i} {_address(a, lab.network(a.network), got)}"
            edges.append(Edge(f"{host}/{g.name}", a.network, label, guest=True))
    declared = {g.name for g in lab.guests}
    for name, (host, seen) in sorted(running.items()):
        if name not in declared:
            placed.setdefault(host, []).append(GuestNode(name, state=seen.get("state", "?"),
                                                         booted=bool(seen.get("booted")), declared=False))
            edges += [Edge(f"{host}/{name}", net, ", ".join(_bare(a) for a in got), guest=True)
                      for net, got in sorted(seen.get("addresses", {}).items()) if lab.network(net) and got]
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


def build(lab: t.Lab, status: dict | None = None) -> Graph:
    """The graph of LAB; with STATUS (`lab.status()` of a lab that exists), annotated with live state:
    each host's state and readiness, DHCP addresses, guests' state. Hosts and guests only LXD knows
    are drawn too, marked as not in the lab file."""
    live_hosts = _live_hosts(status)
    live = bool(status and status.get("exists"))
    networks = tuple(NetNode(n.name, str(n.subnet), n.mode, str(n.gateway) if n.gateway else "", n.dhcp,
                             n.mtu, lab.bridge(n.name)) for n in lab.networks)
    hosts, edges = [], []
    guests = _guest_nodes(lab, live_hosts, live, edges)
    for host in lab.hosts:
        seen = live_hosts.get(host.name)
        state = (seen["state"] if seen else "missing") if live else None
        hosts.append(HostNode(host.name, state, bool(seen and seen.get("ready")) if live else None,
                              guests=tuple(guests.get(host.name, ()))))
        for a in host.attachments:
            got = seen.get("addresses", {}).get(a.network, []) if seen else None
            edges.append(Edge(host.name, a.network, f"{a.device} {_address(a, lab.network(a.network), got)}"))
    declared = {h.name for h in lab.hosts}
    for name, seen in sorted(live_hosts.items()):
        if name not in declared:
            hosts.append(HostNode(name, seen["state"], bool(seen.get("ready")), declared=False,
                                  guests=tuple(guests.get(name, ()))))
            edges += [Edge(name, net, ", ".join(_bare(a) for a in got) or "no address")
                      for net, got in sorted(seen.get("addresses", {}).items()) if lab.network(net)]
    edges.sort(key=lambda e: (e.guest, e.node, e.network))
    note = "live state from LXD" if live else "from the lab file (the lab is not up)"
    return Graph(lab.name, live, networks, tuple(hosts), tuple(edges), note)


def from_status(status: dict) -> Graph:
    """The graph of a lab that is up, from its live status alone (no lab file at hand)."""
    networks = []
    for n in status.get("networks", []):
        gateway = "" if n.get("gateway", "none") in ("none", "", None) else _bare(n["gateway"])
        networks.append(NetNode(n["name"], n.get("subnet", ""), "nat" if gateway else "isolated", gateway,
                                bool(gateway), bridge=n.get("bridge", "")))
    known = {n.name for n in networks}
    hosts, edges = [], []
    for h in status.get("hosts", []):
        guests = tuple(GuestNode(g["name"], state=g.get("state", "?"), booted=bool(g.get("booted")))
                       for g in h.get("guests", []))
        edges += [Edge(f"{h['name']}/{g['name']}", net, ", ".join(_bare(a) for a in got), guest=True)
                  for g in h.get("guests", []) for net, got in sorted(g.get("addresses", {}).items())
                  if net in known and got]
        hosts.append(HostNode(h["name"], h["state"], bool(h.get("ready")), guests=guests))
        for net, got in sorted(h.get("addresses", {}).items()):
            if net in known:
                edges.append(Edge(h["name"], net, ", ".join(_bare(a) for a in got) or "no address"))
    return Graph(status["lab"], True, tuple(networks), tuple(hosts), tuple(edges),
                 "live state from LXD (no lab file given)")


# ---------------------------------------------------------------------------------------- style
# One palette for both writers, so a mermaid picture and a Graphviz picture read the same way.
HOST_FILL = {"": "#e8eef7", "ready": "#c8efc8", "not ready": "#ffe9a8", "missing": "#f6c6c6"}
HOST_FILL_OTHER = "#dddddd"  # stopped, frozen, …
NAT_FILL, ISOLATED_FILL, GUEST_FILL, MACHINE_FILL = "#cfe3ff", "#eeeeee", "#ffffff", "#fff4d6"


def _host_fill(host: HostNode) -> str:
    return HOST_FILL.get(host.status, HOST_FILL_OTHER)


def _guest_fill(guest: GuestNode) -> str:
    if guest.state is None:
        return GUEST_FILL
    return HOST_FILL["ready"] if guest.booted else HOST_FILL["not ready"] if guest.state != "missing" \
        else HOST_FILL["missing"]


def _gateway_label(n: NetNode) -> str:
    """The machine's end of a NAT network: its bridge and address."""
    return f"{n.bridge} {n.gateway}".strip()


def _slug(kind: str, name: str) -> str:
    """An identifier both languages accept, distinct per kind (names may only be a-z 0-9 - in a lab file,
    but live names come from LXD and are escaped the same way)."""
    return kind + "_" + re.sub(r"[^A-Za-z0-9]", lambda m: f"_{ord(m.group()):x}_", name)


# ---------------------------------------------------------------------------------------- mermaid
def _mm(text: str) -> str:
    """Text inside a quoted mermaid label: mermaid's own entity codes for what would end or mark up it."""
    text = t.printable(text)  # a line break or a control character would end the statement
    for char in "#&\"<>|":  # '#' first: the codes themselves start with it
        text = text.replace(char, f"#{ord(char)};")
    return text


def _mm_label(name: str, facts: list[str]) -> str:
    return '"' + "<br/>".join([f"<b>{_mm(name)}</b>", *(_mm(f) for f in facts)]) + '"'


def mermaid(graph: Graph, legend: bool = True) -> str:
    """A mermaid flowchart (GitHub and GitLab render it in Markdown): networks as hexagons (NAT, blue,
    linked to this machine) or dashed parallelograms (isolated), hosts as rounded boxes coloured by
    state, guests as stadiums inside their host, addresses on the links."""
    title = json.dumps(f"{graph.title} — {graph.note}", ensure_ascii=False)  # JSON is YAML: front matter
    lines = ["---", f"title: {title}", "---", "flowchart TB"]
    nat = [n for n in graph.networks if n.mode == "nat"]
    if nat:
        lines.append(f'  {_slug("m", "machine")}[/"{MACHINE}<br/>NAT to the outside"\\]')
    for n in graph.networks:
        label = _mm_label(n.name, n.facts)
        shape = f"{{{{{label}}}}}" if n.mode == "nat" else f"[/{label}/]"
        lines.append(f"  {_slug('n', n.name)}{shape}:::{n.mode}")
    for h in graph.hosts:
        node = f"{_slug('h', h.name)}({_mm_label(h.name, h.facts)}):::{_css(h.status)}"
        if not h.guests:
            lines.append(f"  {node}")
            continue
        lines.append(f'  subgraph {_slug("c", h.name)}["host {_mm(h.name)}"]')
        lines.append("    direction TB")
        lines.append(f"    {node}")
        for g in h.guests:
            lines.append(f"    {_slug('g', h.name + '/' + g.name)}([{_mm_label(g.name, g.facts)}])"
                         f":::{_guest_css(g)}")
        lines.append("  end")
    for n in nat:
        lines.append(f'  {_slug("m", "machine")} ---|"{_mm(_gateway_label(n))}"| {_slug("n", n.name)}')
    modes = {n.name: n.mode for n in graph.networks}
    for e in graph.edges:
        node = _slug("g", e.node) if e.guest else _slug("h", e.node)
        net, link = _slug("n", e.network), f'{"-.-" if e.guest else "---"}|"{_mm(e.label)}"|'
        # NAT networks above the hosts, isolated ones below: the order of the ends sets the layers
        lines.append(f"  {net} {link} {node}" if modes.get(e.network) == "nat" else f"  {node} {link} {net}")
    if legend:
        lines += _mm_legend(graph)
    lines += _mm_classes()
    if nat:
        lines += [f"  classDef machine fill:{MACHINE_FILL},stroke:#a07800",
                  f"  class {_slug('m', 'machine')} machine"]
    return "\n".join(lines) + "\n"


def _mm_classes() -> list[str]:
    return [
        f"  classDef nat fill:{NAT_FILL},stroke:#1f5fbf,stroke-width:2px",
        f"  classDef isolated fill:{ISOLATED_FILL},stroke:#666,stroke-dasharray:5 4",
        f"  classDef plain fill:{HOST_FILL['']},stroke:#345",
        f"  classDef ready fill:{HOST_FILL['ready']},stroke:#2a7a2a",
        f"  classDef notready fill:{HOST_FILL['not ready']},stroke:#a07800",
        f"  classDef missing fill:{HOST_FILL['missing']},stroke:#a02020",
        f"  classDef other fill:{HOST_FILL_OTHER},stroke:#666",
        f"  classDef guest fill:{GUEST_FILL},stroke:#345",
    ]


def _css(status: str) -> str:
    return {"": "plain", "ready": "ready", "not ready": "notready", "missing": "missing"}.get(status, "other")


def _guest_css(guest: GuestNode) -> str:
    if guest.state is None:
        return "guest"
    return "ready" if guest.booted else "missing" if guest.state == "missing" else "notready"


def _mm_legend(graph: Graph) -> list[str]:
    items = [("lnat", "{{", "}}", "NAT network<br/>gateway on this machine", "nat"),
             ("liso", "[/", "/]", "isolated network<br/>layer 2 only", "isolated")]
    if graph.live:
        items += [("lready", "(", ")", "host ready", "ready"),
                  ("lnot", "(", ")", "host not ready", "notready"),
                  ("lmiss", "(", ")", "host missing or stopped", "missing")]
    else:
        items += [("lhost", "(", ")", "KVM host<br/>(LXD container)", "plain")]
    if any(h.guests for h in graph.hosts):
        items += [("lguest", "([", "])", "guest (QEMU/KVM)<br/>dotted: its NIC via<br/>the host's bridge",
                   "guest")]
    lines = ['  subgraph legend["legend"]', "    direction LR"]
    lines += [f'    {_slug("l", key)}{open_}"{text}"{close}:::{css}'
              for key, open_, close, text, css in items]
    return lines + ["  end"]


# ---------------------------------------------------------------------------------------- dot
def _q(text: str) -> str:
    """A quoted dot string."""
    return '"' + t.printable(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _h(text: str) -> str:
    return html.escape(t.printable(text), quote=True)


def _dot_label(name: str, facts: list[str], size: int = 9) -> str:
    small = "".join(f'<BR/><FONT POINT-SIZE="{size}">{_h(f)}</FONT>' for f in facts)
    return f"<<B>{_h(name)}</B>{small}>"


def _dot_net(n: NetNode) -> str:
    if n.mode == "nat":
        style = f'shape=hexagon, style="filled,bold", fillcolor="{NAT_FILL}", color="#1f5fbf"'
    else:
        style = f'shape=parallelogram, style="filled,dashed", fillcolor="{ISOLATED_FILL}", color="#666666"'
    return f"  {_slug('n', n.name)} [{style}, label={_dot_label(n.name, n.facts)}];"


def _dot_host(h: HostNode, indent: str = "  ") -> str:
    style = "rounded,filled" + ("" if h.declared else ",dashed")
    return (f'{indent}{_slug("h", h.name)} [shape=box, style="{style}", fillcolor="{_host_fill(h)}", '
            f'label={_dot_label(h.name, h.facts)}];')


def dot(graph: Graph, legend: bool = True) -> str:
    """Graphviz text: `dot -Tsvg` draws this machine at the top, NAT networks under it, then the hosts
    (with their guests inside), then the isolated networks, and a legend at the bottom."""
    title = _dot_label(graph.title, [graph.note], 10)
    lines = [f"graph {_q(graph.lab)} {{",
             (f'  graph [label={title}, labelloc=t, fontname="Helvetica", fontsize=14, newrank=true, '
              'nodesep=0.4, ranksep=0.7, pad=0.3];'),
             '  node [fontname="Helvetica", fontsize=11, penwidth=1.2];',
             '  edge [fontname="Helvetica", fontsize=9, color="#555555", fontcolor="#222222"];']
    nat = [n for n in graph.networks if n.mode == "nat"]
    nets = {n.name: n for n in graph.networks}
    if nat:
        lines.append(f'  {_slug("m", "machine")} [shape=box3d, style=filled, fillcolor="{MACHINE_FILL}", '
                     f'label={_dot_label(MACHINE, ["LXD · NAT to the outside"])}];')
    lines += [_dot_net(n) for n in graph.networks]
    for h in graph.hosts:
        if not h.guests:
            lines.append(_dot_host(h))
            continue
        lines += [f"  subgraph {_slug('cluster', h.name)} {{",
                  (f'    graph [label=<<FONT POINT-SIZE="9">inside {_h(h.name)}</FONT>>, '
                   'style="rounded,dashed", color="#7788aa", labeljust=l];'),
                  _dot_host(h, "    ")]
        for g in h.guests:
            style = "filled" + ("" if g.declared else ",dashed")
            lines.append(f'    {_slug("g", h.name + "/" + g.name)} [shape=ellipse, style="{style}", '
                         f'fillcolor="{_guest_fill(g)}", label={_dot_label(g.name, g.facts)}];')
        beside = " ".join(_slug("g", h.name + "/" + g.name) + ";" for g in h.guests)
        lines += [f"    {{ rank=same; {_slug('h', h.name)}; {beside} }}", "  }"]  # guests beside their host
    for n in nat:
        lines.append(f'  {_slug("m", "machine")} -- {_slug("n", n.name)} [label={_q(_gateway_label(n))}, '
                     'penwidth=2, color="#1f5fbf"];')
    for e in graph.edges:
        node = _slug("g", e.node) if e.guest else _slug("h", e.node)
        net = _slug("n", e.network)
        # NAT networks sit above the hosts, isolated ones below: the order of the ends sets the ranks
        above = e.network in nets and nets[e.network].mode == "nat"
        ends = f"{net} -- {node}" if above else f"{node} -- {net}"
        style = ', style=dashed' if e.guest else ""
        lines.append(f"  {ends} [label={_q(e.label)}{style}];")
    if legend:
        lines += _dot_legend(graph)
    return "\n".join(lines) + "\n}\n"


def _dot_legend(graph: Graph) -> list[str]:
    rows = [(NAT_FILL, "NAT network: this machine is its gateway (.1)"),
            (ISOLATED_FILL, "isolated network: layer 2 only, no gateway")]
    if graph.live:
        rows += [(HOST_FILL["ready"], "host (or guest) ready"), (HOST_FILL["not ready"], "not ready yet"),
                 (HOST_FILL["missing"], "in the lab file, missing in LXD"), (HOST_FILL_OTHER, "stopped")]
    else:
        rows += [(HOST_FILL[""], "KVM host: an unprivileged LXD container")]
    if any(h.guests for h in graph.hosts):
        rows += [(GUEST_FILL, "guest (ellipse): QEMU/KVM inside its host; dashed: its NIC on its bridge")]
    cells = "".join(f'<TR><TD BGCOLOR="{color}" WIDTH="24"> </TD><TD ALIGN="LEFT">{_h(text)}</TD></TR>'
                    for color, text in rows)
    table = (f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="2" CELLPADDING="3">'
             f'<TR><TD COLSPAN="2"><B>legend</B></TD></TR>{cells}'
             '<TR><TD COLSPAN="2" ALIGN="LEFT">edge labels: interface and IPv4 address</TD></TR></TABLE>>')
    return [f'  legend [shape=plaintext, fontsize=9, label={table}];', "  { rank=sink; legend; }"]
