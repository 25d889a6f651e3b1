"""The graph model (`graph.Graph`) written as text: Mermaid for Markdown, Graphviz's dot for pictures. One
palette for both, so the two pictures read the same way. Every name and address comes from a lab file
or from the daemon, so each is escaped for the format it lands in."""

from __future__ import annotations

import html
import json
import re

from ..labfile import topology as t
from .graph import MACHINE, Graph, GuestNode, HostNode, NetNode

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
