"""What a lab means, checked before anything is created: names, subnets, addresses, references, ids.

Pure: the lab and a few facts about this machine (`Machine`) in, every problem out.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from . import confine, guestchecks, keys, sizes
from . import topology as t
from .confine import Allowances
from .keys import MANAGED_KEYS  # noqa: F401 (where it was: set by lxdkvm, refused in a lab file)

LAB_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")
LAB_NAME_RULE = "use 1-32 lower-case letters, digits and hyphens, starting with a letter"
NETWORK_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,13}[a-z0-9])?$")
HOST_NAME = re.compile(r"^[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")  # LXD's rule for instance names
# Ansible group names (lxdkvm's inventory): lab_* and net_* are the inventory's own groups.
GROUP_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
GROUP_NAME_RULE = "use up to 63 lower-case letters, digits and underscores, not starting with a digit"
RESERVED_GROUPS = ("all", "ungrouped")
RESERVED_GROUP_PREFIXES = ("lab_", "net_")
RESERVED_PROFILES = ("default", "kvm-host")
# A profile's name goes into LXD's URLs (/1.0/profiles/NAME?project=…): letters, digits and -, nothing a
# URL reads as syntax (`default?project=default` overwrote another project's profile).
PROFILE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
PROFILE_NAME_RULE = "use 1-63 lower-case letters, digits and hyphens, starting with a letter"
DEVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
DEVICE_KEY = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Machine:
    """Facts about this machine the checks need; None means "not known" (the check is skipped)."""
    routes: tuple[tuple[ipaddress.IPv4Network, str], ...] = ()  # (destination, device)
    cpus: int | None = None
    isolated_capacity: int | None = None  # isolated id maps root's subordinate ranges allow
    isolated_elsewhere: int = 0  # containers with an isolated map that are not this lab's
    images: frozenset[str] | None = None  # image aliases LXD has
    pools: frozenset[str] | None = None  # storage pools LXD has
    buildable_images: frozenset[str] = field(default_factory=lambda: frozenset({t.DEFAULT_IMAGE}))
    memory: int | None = None  # bytes of RAM (MemTotal)
    hardware_virt: bool | None = None  # vmx/svm in /proc/cpuinfo
    guest_images: dict[str, int] | None = None  # imported guest images: name → virtual size in MiB
    pool_free_mib: int | None = None  # free space of the storage pool the lab's guests' disks go to
    allow: Allowances = field(default_factory=Allowances)  # not a fact: risks accepted on the command line
    cluster: object = None  # cluster.placement.Cluster when LXD is a cluster (`lab.load` checks it)


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"known: {', '.join(choices)}" if choices else ""


def _unique_names(items: Iterable[t.Network | t.Host | t.ExtraProfile], kind: str,
                  pattern: re.Pattern | None, rule: str) -> Iterator[t.Problem]:
    """Each name valid (when a pattern is given) and declared once; a repeat points at the first."""
    first: dict[str, t.Network | t.Host | t.ExtraProfile] = {}
    for item in items:
        if pattern is not None and not pattern.fullmatch(item.name):
            yield t.Problem(f"{item.path}.name", f"'{item.name}' is not a valid {kind} name", rule, item.line)
        if item.name in first:
            yield t.Problem(f"{item.path}.name", f"{kind} '{item.name}' is declared twice",
                            f"the first one is on line {first[item.name].line}; rename one", item.line)
        first.setdefault(item.name, item)


def _names(lab: t.Lab) -> Iterator[t.Problem]:
    if not LAB_NAME.fullmatch(lab.name):
        yield t.Problem("name", f"'{lab.name}' is not a valid lab name",
                        LAB_NAME_RULE, 1)
    yield from _unique_names(lab.networks, "network", NETWORK_NAME,
                             "use 1-15 lower-case letters, digits and hyphens, starting with a letter")
    yield from _unique_names(lab.hosts, "host", HOST_NAME, "use up to 63 letters, digits and hyphens, "
                             "starting with a letter and not ending with a hyphen")
    for prof in lab.profiles:
        if prof.name in RESERVED_PROFILES:
            yield t.Problem(f"{prof.path}.name", f"profile name '{prof.name}' is lxdkvm's own",
                            "choose another name", prof.line)
    yield from _unique_names(lab.profiles, "profile", PROFILE_NAME, PROFILE_NAME_RULE)


def _groups(lab: t.Lab) -> Iterator[t.Problem]:
    """Ansible group names: valid, not the inventory's own, not a host's name (Ansible would mix them up)."""
    hosts = {h.name for h in lab.hosts}
    said: set[tuple[str, str]] = set()
    for host in lab.hosts:
        where = f"{host.path}.groups" if f"{host.path}.groups" in lab.lines else "defaults.groups"
        line = lab.line_of(where, host.line)
        for group in host.groups:
            if (where, group) in said:  # a range of hosts, or defaults: say it once
                continue
            said.add((where, group))
            if not GROUP_NAME.fullmatch(group):
                yield t.Problem(where, f"'{group}' is not a valid group name", GROUP_NAME_RULE, line)
            elif group in RESERVED_GROUPS or group.startswith(RESERVED_GROUP_PREFIXES):
                yield t.Problem(where, f"group '{group}' is the inventory's own",
                                "lab_<lab> and net_<network> are made for you; choose another name", line)
            elif group in hosts:
                yield t.Problem(where, f"group '{group}' is also the name of a host",
                                "Ansible keeps hosts and groups in one namespace; rename one", line)


def _subnets(lab: t.Lab, machine: Machine) -> Iterator[t.Problem]:
    own_bridges = {lab.bridge(n.name) for n in lab.networks}
    for i, net in enumerate(lab.networks):
        where = f"{net.path}.subnet"
        if not 8 <= net.subnet.prefixlen <= 29:
            yield t.Problem(where, f"{net.subnet} has a /{net.subnet.prefixlen} prefix",
                            "use a prefix from /8 to /29 (room for a gateway, DHCP and static hosts)", net.line)
            continue
        if unusual := confine.subnet_problem(net.subnet, machine.allow):
            yield t.Problem(where, *unusual, net.line)
        for other in lab.networks[:i]:
            if net.subnet.overlaps(other.subnet):
                yield t.Problem(where, f"{net.subnet} overlaps network '{other.name}' ({other.subnet})",
                                "give every network of the lab its own subnet", net.line)
        # A NAT network gives the machine an address and a route: it must not hide a route the machine
        # has (its LAN, LXD's management bridge lxdkvmbr0, other labs). An isolated network is layer 2
        # only: no address, no route, the machine never sends to it, so overlapping a route changes
        # nothing outside the lab and is allowed (it only shadows that route inside the lab's own hosts).
        if net.mode == "nat":
            for route, device in machine.routes:
                if device not in own_bridges and net.subnet.overlaps(route):
                    yield t.Problem(where, f"{net.subnet} overlaps this machine's route {route} on {device}",
                                    "choose a subnet no interface of this machine uses "
                                    "(see `ip route`)", net.line)
        for opening in (o for o in lab.openings if o.network == net.name):
            if net.mode != "nat":
                yield t.Problem(opening.path, "an isolated network reaches nothing through this machine",
                                "open things for a NAT network; an isolated one has no gateway", opening.line)
            elif opening.subnet is not None and opening.subnet.overlaps(net.subnet):
                yield t.Problem(f"{opening.path}.subnet", f"{opening.subnet} overlaps the network itself",
                                "open a range outside the lab's own subnets", opening.line)
        if net.mode == "isolated" and net.dhcp:
            yield t.Problem(f"{net.path}.dhcp", "an isolated network has no DHCP server",
                            "nothing on this machine is on an isolated segment; set `dhcp: false` and "
                            "give hosts static `ipv4:` addresses, or use `mode: nat`", net.line)


def _attachments(lab: t.Lab) -> Iterator[t.Problem]:
    names = [n.name for n in lab.networks]
    taken: dict[ipaddress.IPv4Address, t.Host] = {}
    for host in lab.hosts:
        seen: set[str] = set()
        for att in host.attachments:
            net = lab.network(att.network)
            if net is None:
                yield t.Problem(f"{att.path}.network", f"no network '{att.network}' in this lab",
                                _suggest(att.network, names) or "declare it under `networks:`", att.line)
                continue
            if att.network in seen:
                yield t.Problem(f"{att.path}.network", f"host '{host.name}' is on '{att.network}' twice",
                                "list each network once per host", att.line)
            seen.add(att.network)
            if att.ipv4 is None:
                continue
            yield from _address(host, att, net, taken)


def _impaired_hosts(lab: t.Lab) -> Iterator[t.Problem]:
    """The hosts a network's `impair.hosts` names are hosts of the lab on that network, each once."""
    for net in lab.networks:
        on = [h.name for h in lab.hosts if any(a.network == net.name for a in h.attachments)]
        for name in sorted({n for n in net.impair_hosts if net.impair_hosts.count(n) > 1}):
            yield t.Problem(f"{net.path}.impair.hosts", f"host '{name}' is listed twice", "list each host once",
                            net.impair_line)
        for name in dict.fromkeys(net.impair_hosts):
            if name not in on:
                known = "no host of this lab" if lab.host(name) is None else f"not on network '{net.name}'"
                yield t.Problem(f"{net.path}.impair.hosts", f"'{t.printable(name, 64)}' is {known}", _suggest(name, on) or f"name hosts on {net.name}", net.impair_line)


def _address(host: t.Host, att: t.Attachment, net: t.Network,
             taken: dict[ipaddress.IPv4Address, t.Host]) -> Iterator[t.Problem]:
    where, ip = f"{att.path}.ipv4", att.ipv4
    label = f"{ip} (host {host.name})"
    if ip not in net.subnet:
        yield t.Problem(where, f"{label} is outside network '{net.name}' ({net.subnet})",
                        f"use an address in {net.subnet}", att.line)
        return
    if ip in (net.subnet.network_address, net.subnet.broadcast_address):
        kind = "network" if ip == net.subnet.network_address else "broadcast"
        yield t.Problem(where, f"{label} is the {kind} address of {net.subnet}",
                        "use a host address", att.line)
        return
    if ip == net.gateway:
        yield t.Problem(where, f"{label} is the gateway of network '{net.name}'",
                        f"this machine uses {net.gateway}; start host addresses at {net.gateway + 10}", att.line)
        return
    if net.dhcp_range and net.dhcp_range[0] <= ip <= net.dhcp_range[1]:
        low, high = net.dhcp_range
        yield t.Problem(where, f"{label} is inside the DHCP range of '{net.name}' ({low}-{high})",
                        f"use an address below {low} or set `dhcp: false` on the network", att.line)
        return
    if ip in taken:
        other = taken[ip]
        yield t.Problem(where, f"{label} is also given to host {other.name}",
                        "give every host its own address" + (" (a range of hosts counts up from the "
                                                             "address given)" if other.line == host.line else ""),
                        att.line)
        return
    taken[ip] = host


def _config_of(lab: t.Lab, config: dict[str, str], path: str, line: int, allow: Allowances,
               origin: dict[str, str] | None = None) -> Iterator[t.Problem]:
    """Each key of CONFIG (of a profile, `defaults:` or a host) that a lab may not set to its value: the
    allow-list of `keys` (managed keys, bookkeeping, unknown and legacy keys, values, confinement)."""
    for key, value in config.items():
        where = (origin or {}).get(key) or f"{path}.config.{key}"
        if refused := keys.config_problem(key, value, allow):
            yield t.Problem(where, *refused, lab.line_of(where, line))


def _devices(lab: t.Lab, prof: t.ExtraProfile, allow: Allowances) -> Iterator[t.Problem]:
    """A lab profile's devices: names and keys as plain words, what each may reach (`confine`)."""
    networks = {n.name: n for n in lab.networks}
    for name, device in prof.devices.items():
        where = f"{prof.path}.devices.{name}"
        line = lab.line_of(where, prof.line)
        if not DEVICE_NAME.fullmatch(name) or ".." in name:
            yield t.Problem(where, f"'{name}' is not a valid device name", "use 1-63 letters, digits and "
                            "_ . - (an LXD device name goes into its URLs and paths)", line)
            continue
        bad_keys = [key for key in device if not DEVICE_KEY.fullmatch(key)]
        for key in bad_keys:
            yield t.Problem(f"{where}.{key}", f"'{key}' is not a device key", "LXD's device keys are lower-case "
                            "words such as type, network, name", lab.line_of(f"{where}.{key}", line))
        if "type" not in device:
            yield t.Problem(where, "a device needs a `type`", "e.g. type: disk, nic or unix-char", line)
        if device.get("type") == "disk" and device.get("path") == "/":
            yield t.Problem(where, "the root disk is lxdkvm's", "choose the pool with the lab's `storage:` key",
                            line)
        elif "type" in device and not bad_keys:
            for refused in confine.device_problems(device, networks, allow):
                yield t.Problem(where, *refused, line)


def _config(lab: t.Lab, allow: Allowances) -> Iterator[t.Problem]:
    """Instance config of lab profiles, `defaults:` and hosts (a range of hosts shares its entry's), and
    lab profiles' devices."""
    for prof in lab.profiles:
        yield from _config_of(lab, prof.config, prof.path, prof.line, allow)
        yield from _devices(lab, prof, allow)
    said: set[str] = set()
    for host in lab.hosts:
        for problem in _config_of(lab, host.config, host.path, host.line, allow, host.config_from):
            if problem.path not in said:  # one entry (or the defaults), many hosts: say it once
                said.add(problem.path)
                yield problem


def _references(lab: t.Lab, machine: Machine) -> Iterator[t.Problem]:
    profiles = [p.name for p in lab.profiles]
    said: set[tuple[str, str]] = set()
    for host in lab.hosts:
        for name in host.profiles:
            if name not in profiles and (host.path, name) not in said:
                said.add((host.path, name))
                yield t.Problem(f"{host.path}.profiles", f"no profile '{name}' in this lab",
                                _suggest(name, profiles) or "declare it under `profiles:`", host.line)
    if ".." in lab.image:  # the schema's pattern says which characters; an alias is never a relative path
        yield t.Problem("image", f"'{lab.image}' is not an image alias", "an alias has no `..`",
                        lab.line_of("image", 1))
    elif machine.images is not None and lab.image not in machine.images and lab.image not in machine.buildable_images:
        yield t.Problem("image", f"LXD has no image '{lab.image}'",
                        _suggest(lab.image, sorted(machine.images | machine.buildable_images)) or
                        f"omit `image:` to use {t.DEFAULT_IMAGE} (built on demand)", 1)
    if machine.pools is not None and lab.storage != "auto" and lab.storage not in machine.pools:
        yield t.Problem("storage", f"LXD has no storage pool '{lab.storage}'",
                        _suggest(lab.storage, sorted(machine.pools)) or "use `storage: auto`", 1)


def _capacity(lab: t.Lab, machine: Machine) -> Iterator[t.Problem]:
    said: set[str] = set()
    if machine.cpus:
        for host in lab.hosts:
            if host.cpu and host.cpu > machine.cpus and host.path not in said:
                said.add(host.path)
                yield t.Problem(f"{host.path}.limits.cpu", f"{host.cpu} CPUs, but this machine has {machine.cpus}",
                                f"use at most {machine.cpus}", host.line)
    said = set()
    for host in lab.hosts:  # at least what a KVM host needs, at most what the machine has
        if host.path not in said and (problem := sizes.memory_problem(host, machine.memory)):
            said.add(host.path)
            yield problem
    isolated = sum(1 for h in lab.hosts if h.idmap == "isolated")
    if machine.isolated_capacity is not None and isolated + machine.isolated_elsewhere > machine.isolated_capacity:
        free = max(0, machine.isolated_capacity - machine.isolated_elsewhere)
        yield t.Problem("hosts", f"{isolated} hosts need an isolated id map, but root's subordinate ids "
                        f"leave room for {free} more", "add ranges to /etc/subuid and /etc/subgid, or set "
                        "`idmap: shared` on some hosts", lab.hosts[0].line if lab.hosts else 1)


CHECKS: list[Callable[[t.Lab, Machine], Iterator[t.Problem]]] = [
    lambda lab, _m: _names(lab), lambda lab, _m: _groups(lab), _subnets, lambda lab, _m: _attachments(lab),
    lambda lab, _m: _impaired_hosts(lab),
    lambda lab, m: _config(lab, m.allow), _references, _capacity,
    lambda lab, m: guestchecks.check(lab, m.cpus, m.memory, m.hardware_virt, m.guest_images, m.pool_free_mib),
]


def check(lab: t.Lab, machine: Machine = Machine()) -> list[t.Problem]:
    return [problem for rule in CHECKS for problem in rule(lab, machine)]
