"""Lab networks stretched over the members of an LXD cluster, as plain data. Pure.

Every lab network is an LXD bridge on every member, joined by LXD's own multicast vxlan tunnel (the kernel
has vxlan; geneve, GRE and fan are not available everywhere):
- VNI and group per lab network: a hash of "<lab>/<network>" into 0x010000-0xFEFFFF, moved up past the
  VNIs other networks of the cluster already use (so no two networks share a segment); the multicast group
  is 239.<the VNI's three bytes> (administratively scoped; 239.0/16 and 239.255/16 are never used), so a
  member only receives the traffic of segments it joined.
- MTU: the tunnel costs 50 bytes (outer IPv4, UDP, vxlan, Ethernet), so a stretched network carries at most
  the members' interface MTU - 50. A network whose `mtu:` is not given gets that; one that asks for more is
  a problem of the lab file.
- NAT networks: an anycast gateway. Every member's bridge has the gateway address (LXD gives it the same
  MAC on every member), so a host's outbound traffic leaves through its own member's NAT and never crosses
  the tunnel; DHCP is off (each member's dnsmasq would answer for the same segment and hand out the same
  leases), and hosts and guests without an address get a fixed one from the network's DHCP range instead,
  in the order the lab file lists them (`pin_addresses`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress

from ..labfile import topology as t
from .placement import Cluster

TUNNEL = "lk"  # LXD names the tunnel's device `<bridge>-lk`: bridges on a cluster are at most 12 characters
BRIDGE_MAX = t.IFNAME_MAX - len(TUNNEL) - 1
VXLAN_OVERHEAD = 50
VNI_FIRST, VNI_LAST = 0x010000, 0xFEFFFF
KEYS = (f"tunnel.{TUNNEL}.protocol", f"tunnel.{TUNNEL}.id", f"tunnel.{TUNNEL}.group")


def vni(lab: str, network: str, taken: frozenset[int] = frozenset()) -> int:
    span = VNI_LAST - VNI_FIRST + 1
    start = int(hashlib.sha256(f"{lab}/{network}".encode()).hexdigest(), 16) % span
    for step in range(span):
        candidate = VNI_FIRST + (start + step) % span
        if candidate not in taken:
            return candidate
    raise ValueError("no free VNI")


def group(vni_: int) -> str:
    return f"239.{vni_ >> 16 & 255}.{vni_ >> 8 & 255}.{vni_ & 255}"


def tunnel_config(lab: str, network: str, taken: frozenset[int]) -> dict[str, str]:
    number = vni(lab, network, taken)
    return dict(zip(KEYS, ("vxlan", str(number), group(number)), strict=True))


def mtu(net: t.Network, cluster: Cluster) -> int:
    if net.mtu_given or cluster.tunnel_mtu is None:
        return net.mtu
    return min(net.mtu, cluster.tunnel_mtu)


def check(lab: t.Lab, cluster: Cluster) -> list[t.Problem]:
    """A network's `mtu:` fits the tunnel between the members."""
    problems = []
    for net in lab.networks:
        if cluster.tunnel_mtu is not None and net.mtu_given and net.mtu > cluster.tunnel_mtu:
            problems.append(t.Problem(
                f"{net.path}.mtu", f"network {net.name}: MTU {net.mtu} does not fit the tunnel between the LXD "
                f"cluster's members ({cluster.tunnel_mtu}: their interfaces' MTU - {VXLAN_OVERHEAD} for vxlan)",
                f"set `mtu: {cluster.tunnel_mtu}` or less, or leave it out (then it is {cluster.tunnel_mtu} "
                "on a cluster and 1500 on one daemon)", lab.line_of(f"{net.path}.mtu", net.line)))
    return problems


def pin_addresses(lab: t.Lab) -> t.Lab:
    """LAB with a fixed address for every host and guest NIC that would take a DHCP lease on a NAT network
    (DHCP is off on stretched NAT networks), from the network's DHCP range, in the order of the file."""
    used = {a.ipv4 for item in (*lab.hosts, *lab.guests) for a in item.attachments if a.ipv4}
    free: dict[str, list[ipaddress.IPv4Address]] = {}
    for net in lab.networks:
        if net.mode == "nat" and net.dhcp_range:
            first, last = net.dhcp_range
            free[net.name] = [ipaddress.IPv4Address(n) for n in range(int(last), int(first) - 1, -1)
                              if ipaddress.IPv4Address(n) not in used]

    def pinned(attachments: tuple[t.Attachment, ...]) -> tuple[t.Attachment, ...]:
        out = []
        for att in attachments:
            pool = free.get(att.network)
            if att.ipv4 is None and pool:
                att = dataclasses.replace(att, ipv4=pool.pop())
            out.append(att)
        return tuple(out)

    hosts = tuple(dataclasses.replace(h, attachments=pinned(h.attachments)) for h in lab.hosts)
    guests = tuple(dataclasses.replace(g, attachments=pinned(g.attachments)) for g in lab.guests)
    networks = tuple(dataclasses.replace(n, dhcp=False, mtu=n.mtu) if n.mode == "nat" else n for n in lab.networks)
    return dataclasses.replace(lab, hosts=hosts, guests=guests, networks=networks)


def for_cluster(lab: t.Lab, cluster: Cluster) -> t.Lab:
    """The lab as a cluster runs it: bridge names that leave room for the tunnel device, MTUs that fit the
    tunnel, fixed addresses instead of DHCP on NAT networks."""
    lab = pin_addresses(lab)
    networks = tuple(dataclasses.replace(n, mtu=mtu(n, cluster)) for n in lab.networks)
    return dataclasses.replace(lab, networks=networks, bridge_max=BRIDGE_MAX)
