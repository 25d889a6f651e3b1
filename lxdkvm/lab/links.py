"""A lab's links on this machine: which veth carries each host's NIC on each lab network (LXD says, this
machine's /sys confirms the veth is a port of that network's bridge), the host's init PID (for a capture
inside it), and setting or clearing impairments on the links (`lab.impair` plans, `machine.impair` runs).

Every name here comes from the daemon or the kernel and is checked for its shape before it is used;
NETWORK and HOST given by a person must be one of the lab's own, and are never passed on otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LxdkvmError
from ..labfile import topology as t
from ..labfile.impairment import Impairment
from . import impair as plan
from . import objects

Say = Callable[[str], None]


@dataclass(frozen=True)
class LabLinks:
    """What the daemon has of lab LAB: network name → its bridge on this machine; (network, host) → the
    machine's end of the host's veth on it; host → its init PID (running hosts only)."""
    lab: str
    bridges: dict[str, str] = field(default_factory=dict)
    veths: dict[tuple[str, str], str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    hosts_on: dict[str, list[str]] = field(default_factory=dict)  # network → hosts with a NIC on it

    def network(self, name: str) -> str:
        """NAME's bridge; an error naming the lab's networks when NAME is not one of them."""
        if name not in self.bridges:
            known = ", ".join(sorted(self.bridges)) or "none"
            raise LxdkvmError(f"lab {self.lab} has no network {t.printable(name, 40)!r} (its networks: {known})")
        return self.bridges[name]

    def hosts(self, network: str, host: str | None) -> list[str]:
        """The hosts on NETWORK: HOST alone (an error when it has no NIC on it), or all of them."""
        on = self.hosts_on.get(network, [])
        if host is None:
            return on
        if host not in on:
            raise LxdkvmError(f"lab {self.lab} has no host {t.printable(host, 64)!r} on network {network} "
                              f"(hosts on it: {', '.join(on) or 'none'})")
        return [host]


def _port_of(veth: str, bridge: str) -> bool:
    """Whether VETH is a port of BRIDGE on this machine (/sys/class/net/VETH/master)."""
    if not plan.IFNAME.match(veth):
        return False
    master = Path("/sys/class/net", veth, "master")
    return master.is_symlink() and Path(master.resolve()).name == bridge


def read(lxd, lab: str) -> LabLinks:
    """LAB's links, as its daemon (a `LabScope`) and this machine's kernel have them."""
    if lxd.config() is None:
        raise LxdkvmError(f"lab {lab} is not up (no LXD project {lxd.project})")
    networks = {bridge: c.get(objects.NETWORK, "") for bridge, c in lxd.networks.managed().items()
                if c.get(objects.MARK) == lab}
    found = LabLinks(lab, {name: bridge for bridge, name in networks.items()})
    for host, info in sorted(lxd.instances.all().items()):
        nics = {nic.get("name", device): nic.get("network", "") for device, nic in info["devices"].items()
                if nic.get("type") == "nic" and nic.get("network", "") in networks}
        for bridge in nics.values():
            found.hosts_on.setdefault(networks[bridge], []).append(host)
        if info["status"] != "Running" or not nics:
            continue
        pid, peers = lxd.instances.links(host)
        if pid:
            found.pids[host] = pid
        for ifname, bridge in nics.items():
            veth = peers.get(ifname, "")
            if _port_of(veth, bridge):
                found.veths[(networks[bridge], host)] = veth
    return found


def current(lab: str) -> list[plan.Entry]:
    """The impairments in force on LAB's links (from its table on this machine)."""
    from ..machine import impair as kernel

    text = kernel.table(plan.table_name(lab))
    if text is None:
        return []
    try:
        return plan.read_table(text)
    except ValueError as exc:
        raise LxdkvmError(f"cannot read table bridge {plan.table_name(lab)}: {exc}") from None


def change(links: LabLinks, wanted: dict[str, tuple[list[str], Impairment | None]], say: Say) -> list[plan.Entry]:
    """Set WANTED (network → (its hosts, an impairment or None to clear)) on top of what is in force, every
    link on its veth of now (a host that restarted has a new one); the impairments in force after. Refused,
    changing nothing, when the kernel lacks what they need."""
    from ..machine import impair as kernel

    before = current(links.lab)
    after = before
    for network, (hosts, impairment) in wanted.items():
        after = plan.merged(after, network, hosts, impairment)
    asked = [plan.Entry(n, h, i) for n, (hosts, i) in wanted.items() if i is not None for h in hosts]
    if asked and (lacking := plan.missing_kinds(asked, kernel.probe())):
        raise LxdkvmError(f"cannot impair: {kernel.refused(lacking)}; nothing was changed")
    placed = []
    for entry in after:
        device = links.veths.get(entry.key)
        if device is None:
            say(f"{entry.host} has no link on {entry.network} now (not running?): its impairment is dropped")
            continue
        placed.append(plan.Entry(entry.network, entry.host, entry.impairment, device))
    kernel.apply(plan.script(links.lab, placed), plan.qdisc_changes(before, placed))
    return placed


def declared(lxd, lab: t.Lab, say: Say) -> list[plan.Entry] | None:
    """The impairments LAB's file declares (`impair:` of its networks), set on its links (`up`); None when
    it declares none."""
    nets = [n for n in lab.networks if n.impair is not None]
    if not nets:
        return None
    links = read(lxd, lab.name)
    wanted = {n.name: (list(n.impair_hosts) or links.hosts(n.name, None), n.impair) for n in nets}
    for name, (hosts, impairment) in wanted.items():
        say(f"impairing network {name} ({', '.join(hosts)}): {impairment.text()}")
    return change(links, wanted, say)


def remove(lab: str) -> bool:
    """Every impairment of LAB gone (`down`); False when it had none."""
    from ..machine import impair as kernel

    if kernel.table(plan.table_name(lab)) is None:
        return False
    kernel.apply(plan.script(lab, []), plan.qdisc_changes(current(lab), []))
    return True


NETWORK_NAME = re.compile(r"^[a-z][a-z0-9-]{0,14}$")  # what a lab file allows a network to be called
HOST_NAME = re.compile(r"^[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")  # and a host (LXD's instance names)


def named(network: str, host: str | None) -> None:
    """NETWORK and HOST as a person typed them: of the shapes a lab file allows, else an error (before
    anything is read or changed)."""
    if not NETWORK_NAME.match(network):
        raise LxdkvmError(f"{t.printable(network, 40)!r} is not a network's name (1-15 of a-z 0-9 -, "
                          "starting with a letter)")
    if host is not None and not HOST_NAME.match(host):
        raise LxdkvmError(f"{t.printable(host, 64)!r} is not a host's name (letters, digits and -)")


@dataclass(frozen=True)
class Impaired:
    """What `lxdkvm impair` did (CHANGED) and the impairments of NETWORK in force after it."""
    lab: str
    network: str
    changed: bool
    entries: tuple[plan.Entry, ...]
    kernel: dict[str, bool]

    def as_json(self) -> dict:
        return {"lab": self.lab, "network": self.network, "changed": self.changed, "kernel": self.kernel,
                "impairments": [{**e.as_json(), "device": e.device} for e in self.entries]}


def impair(session, lab: str, network: str, host: str | None, impairment: Impairment | None, clear: bool,
           say: Say) -> Impaired:
    """Impair (IMPAIRMENT), clear (CLEAR) or, with neither, only show the links of HOST (None: every host)
    on NETWORK of lab LAB."""
    from ..machine import impair as kernel
    from .lock import LabLock

    named(network, host)
    with LabLock(lab, "impair"):
        links = read(session.lab(t.project_name(lab)), lab)
        links.network(network)
        hosts = links.hosts(network, host)
        if clear or impairment is not None:
            change(links, {network: (hosts, None if clear else impairment)}, say)
        shown = [e for e in current(lab) if e.network == network and e.host in hosts]
    return Impaired(lab, network, clear or impairment is not None, tuple(shown), kernel.probe())
