"""Where a lab's hosts run on an LXD cluster: the cluster as plain data, the checks of `placement:` against
it, and the member each host is created on. Pure: `lxd.server.Server.cluster()` reads the facts.

`placement:` of a host is a member's name, `group:<cluster group>`, or `spread` (the default). A new
`spread` host goes to the online member with the fewest of the lab's hosts (ties: the first by name); a
host that exists stays where it is unless its placement names another member or group. The placement only
chooses among the cluster's own members: it never names an address, a remote or anything on the machine.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..labfile import topology as t

SPREAD = "spread"
GROUP = "group:"
ONLINE = "Online"


@dataclass(frozen=True)
class Member:
    name: str
    status: str  # LXD's: Online, Offline, Evacuated, Blocked
    groups: tuple[str, ...] = ()
    address: str = ""
    message: str = ""

    @property
    def can_host(self) -> bool:
        return self.status == ONLINE


@dataclass(frozen=True)
class Cluster:
    members: tuple[Member, ...]
    tunnel_mtu: int | None = None  # the largest MTU a network stretched over the members can carry
    vnis_taken: frozenset[int] = field(default_factory=frozenset)  # tunnel ids of networks not this lab's

    @property
    def names(self) -> list[str]:
        return sorted(m.name for m in self.members)

    @property
    def groups(self) -> list[str]:
        return sorted({g for m in self.members for g in m.groups})

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)

    def allowed(self, placement: str) -> list[str]:
        """The members a host with PLACEMENT may run on (all, for spread)."""
        if placement == SPREAD:
            return self.names
        if placement.startswith(GROUP):
            return sorted(m.name for m in self.members if placement[len(GROUP):] in m.groups)
        return [placement] if self.member(placement) else []


def check(lab: t.Lab, cluster: Cluster) -> list[t.Problem]:
    """Each host's placement names a member or group of this cluster that can host it now."""
    problems = []
    online = [m.name for m in cluster.members if m.can_host]
    if not online:
        problems.append(t.Problem("hosts", "no member of the LXD cluster is online",
                                  "`lxc cluster list` shows why; bring a member back", lab.line_of("hosts")))
    for host in lab.hosts:
        where, line = host.placement, lab.line_of(host.placement_path, host.line)
        if where == SPREAD:
            continue
        if where.startswith(GROUP):
            group = where[len(GROUP):]
            members = cluster.allowed(where)
            if not members:
                problems.append(t.Problem(host.placement_path, f"host {host.name}: the cluster has no group "
                                          f"'{group}'", f"groups: {', '.join(cluster.groups) or 'none'} "
                                          "(`lxc cluster group list`)", line))
            elif not any(m in online for m in members):
                problems.append(t.Problem(host.placement_path, f"host {host.name}: no member of group "
                                          f"'{group}' is online", "`lxc cluster list`", line))
            continue
        member = cluster.member(where)
        if member is None:
            problems.append(t.Problem(host.placement_path, f"host {host.name}: the cluster has no member "
                                      f"'{where}'", f"members: {', '.join(cluster.names)}", line))
        elif not member.can_host:
            problems.append(t.Problem(host.placement_path, f"host {host.name}: member {where} is "
                                      f"{member.status.lower()}", f"{member.message or 'lxc cluster list'}; "
                                      "place the host elsewhere or bring the member back", line))
    return problems


def assign(lab: t.Lab, cluster: Cluster, located: dict[str, str]) -> dict[str, str]:
    """host → the member it runs on (or is created on). LOCATED: where the lab's existing hosts are."""
    online = [m.name for m in sorted(cluster.members, key=lambda m: m.name) if m.can_host]
    load = Counter(where for where in located.values())
    chosen: dict[str, str] = {}
    for host in lab.hosts:  # existing hosts first: they keep their member when it is allowed
        allowed = cluster.allowed(host.placement)
        if located.get(host.name) in allowed:
            chosen[host.name] = located[host.name]
    # then hosts pinned to a member, groups, spread: so spread hosts count the pinned ones
    order = sorted(lab.hosts, key=lambda h: 2 if h.placement == SPREAD else 1 if h.placement.startswith(GROUP) else 0)
    for host in order:
        if host.name in chosen:
            continue
        candidates = [m for m in online if m in cluster.allowed(host.placement)] or cluster.allowed(host.placement)
        if not candidates:
            continue  # `check` said why
        best = min(candidates, key=lambda m: (load[m], m))
        chosen[host.name] = best
        load[best] += 1
    return chosen
