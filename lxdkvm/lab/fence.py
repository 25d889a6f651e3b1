"""What a lab's networks may reach on and through this machine, as an nftables table lxdkvm owns: one
`inet lxdkvm-<lab>` table per lab, made before its hosts start and removed by `down`.

By default a lab's hosts and guests reach the outside through NAT and nothing else of the machine:
- to the machine itself (input, whatever address they aim at: the gateway, the LAN address, another
  bridge's address, link-local, IPv6 link-local): only DHCP, and DNS to their own bridge's gateway;
  answers to connections the machine opened (SSH, Ansible) come back;
- through the machine (forward): not to other labs, the management bridge, the machine's LAN, private
  and shared ranges, link-local (169.254.169.254 and other metadata services), multicast, IPv6 at all;
  their own lab's other networks, yes. An isolated network has no gateway: nothing from it is routed.
  Frames bridged between the hosts of one lab network are the lab's own business: where the kernel
  passes bridged frames through IP's forward hook (br_netfilter), they go out the bridge they came in
  on, and pass.

Why not LXD's network ACLs: their rules are unordered (drop before allow), and cannot tell traffic *to*
the machine from traffic *through* it, so "only DHCP and DNS to the machine, the internet through it"
cannot be written with them (docs/security.md).

A lab file opens what a person really needs with a network's `open:` list; `plan` shows each. Pure: the
lab and this machine's subnets in, the table's text out (`machine.nftables` loads it).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

from ..labfile import topology as t
from ..labfile.topology import Opening

__all__ = ["Fence", "Opening", "fence", "rules", "table_name"]

TABLE_PREFIX = "lxdkvm-"
# Destinations a lab never reaches through the machine unless its file opens them: private, shared
# (CGNAT), loopback, link-local (metadata services), multicast, reserved.
CLOSED = tuple(ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4"))


@dataclass(frozen=True)
class Fence:
    table: str
    text: str  # the nft script that makes the table (replacing an older one atomically)
    digest: str  # of the rules: the table's comment, so `plan` can tell whether it is current
    openings: tuple[Opening, ...] = field(default_factory=tuple)


def table_name(lab: str) -> str:
    return TABLE_PREFIX + lab


def _set(items: list[str]) -> str:
    return "{ " + ", ".join(items) + " }" if items else ""


def _closed(machine_subnets: list[ipaddress.IPv4Network]) -> list[str]:
    """The closed destinations and the machine's own subnets (its LAN, whatever its range). The lab's own
    subnets and what its file opened are accepted before this list is looked at."""
    subnets = set(CLOSED) | {s for s in machine_subnets if not s.is_loopback}
    return [str(n) for n in ipaddress.collapse_addresses(subnets)]


def rules(lab: t.Lab, machine_subnets: list[ipaddress.IPv4Network], openings: tuple[Opening, ...] = ()) -> str:
    """The body of lab LAB's table (see the module doc)."""
    bridges = {n.name: lab.bridge(n.name) for n in lab.networks}
    nat = [n for n in lab.networks if n.mode == "nat"]
    isolated = [bridges[n.name] for n in lab.networks if n.mode != "nat"]
    lines = [f'  set bridges {{ type ifname; elements = {_set([f"{chr(34)}{b}{chr(34)}" for b in bridges.values()])}; }}',
             "", "  chain input {", "    type filter hook input priority filter - 1; policy accept;",
             "    iifname @bridges jump from_lab", "  }", "", "  chain from_lab {",
             "    ct state established,related accept", "    meta nfproto ipv6 drop"]
    for net in nat:
        bridge, gateway = bridges[net.name], net.gateway
        lines += [f'    iifname "{bridge}" udp sport 68 udp dport 67 accept',
                  f'    iifname "{bridge}" ip daddr {gateway} meta l4proto {{ tcp, udp }} th dport 53 accept']
        for o in openings:
            if o.network == net.name and o.kind == "machine":
                lines.append(f'    iifname "{bridge}" {o.protocol} dport {o.port} accept')
    lines += ["    counter drop", "  }", "", "  chain forward {",
              "    type filter hook forward priority filter - 1; policy accept;",
              "    iifname @bridges jump through_lab", "  }", "", "  chain through_lab {",
              # frames bridged between the ports of one lab network pass the machine's forward hook too
              # (br_netfilter: in and out are the bridge), as do packets routed between the lab's networks
              "    oifname @bridges accept", "    meta nfproto ipv6 drop"]
    if isolated:
        lines.append(f"    iifname {_set([chr(34) + b + chr(34) for b in isolated])} counter drop")
    for o in openings:
        if o.kind == "subnet":
            lines.append(f'    iifname "{bridges[o.network]}" ip daddr {o.subnet} accept')
    lines.append(f"    ip daddr {_set(_closed(machine_subnets))} counter drop")
    lines += ["  }"]
    return "\n".join(lines) + "\n"


def fence(lab: t.Lab, machine_subnets: list[ipaddress.IPv4Network], openings: tuple[Opening, ...] = ()) -> Fence:
    """Lab LAB's table, and the script that puts it in place of an older one in one transaction."""
    name = table_name(lab.name)
    body = rules(lab, machine_subnets, openings)
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    text = (f"table inet {name} {{}}\ndelete table inet {name}\n"
            f'table inet {name} {{\n  comment "lxdkvm lab {lab.name} {digest}"\n{body}}}\n')
    return Fence(name, text, digest, openings)
