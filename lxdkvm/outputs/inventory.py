"""An Ansible inventory of a lab that is up, as plain data — the one source of both
`lxdkvm inventory LAB --format yaml|ini|json` and the inventory plugin (playbooks/inventory_plugins).

`build` is pure: the lab's status (`lab.status.LabStatus`), each host's groups and how to reach it in, an
`Inventory` out. `live` gathers those from LXD and the lab's state directory. The writers turn an
`Inventory` into the three formats Ansible reads; each parses to the same hosts, groups and vars.

Groups: `lab_<lab>` (every host), `net_<network>` (the hosts on it), the group of each range of hosts
(`compute-[1-4]` → compute) and the hosts' `groups:` from the lab file. Names with `-` get `_`
(Ansible's rule for group names). Every variable is a host variable, so the inventories of two labs
can be used together.

What hosts report is untrusted (docs/security.md): the status it is built from is checked
(`lab.status.checked`) and so are the groups read back from the daemon. On top of that no string an
inventory holds is ever a template to Ansible: the YAML writer tags every string variable `!unsafe`, the
JSON writer wraps each as `{"__ansible_unsafe": ...}` (what ansible-core's script inventory reads as
untrusted), and the INI format, which has no such mark, refuses a value Ansible would template.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LxdkvmError
from ..labfile import topology as t

if TYPE_CHECKING:
    from ..lab.status import HostStatus, LabStatus

PYTHON = "/usr/bin/python3"  # the image's; saves Ansible's interpreter discovery (and its warning)


@dataclass(frozen=True)
class Access:
    """How Ansible reaches a lab's hosts over SSH."""
    user: str
    private_key: Path
    known_hosts: Path

    @property
    def ssh_common_args(self) -> str:
        # whatever the user's ansible.cfg or ~/.ssh/config says: this lab's known_hosts, checked, and
        # only this lab's key offered
        return (f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes "
                "-o IdentitiesOnly=yes")


@dataclass
class Inventory:
    hosts: dict[str, dict] = field(default_factory=dict)  # host → its variables
    groups: dict[str, list[str]] = field(default_factory=dict)  # group → its hosts
    warnings: list[str] = field(default_factory=list)  # what was read back and left out (never rendered)


def group_name(name: str) -> str:
    return name.replace("-", "_").replace(".", "_")


def _guest_vars(host: HostStatus) -> list[dict]:
    """A host's guests as the lab's status reports them: name, state, its addresses per network, and the
    first one as `address` (what a play pings)."""
    out = []
    for guest in host.guests:
        addresses = {net: str(ipaddress.IPv4Interface(found[0]).ip)
                     for net, found in guest.addresses.items() if found}
        entry = {"name": guest.name, "state": guest.state, "addresses": addresses}
        if addresses:
            entry["address"] = next(iter(addresses.values()))
        out.append(entry)
    return out


def build(status: LabStatus, groups: dict[str, list[str]], access: Access,
          guests: dict[str, list[dict]] | None = None, domain_type: str = "qemu") -> Inventory:
    """The inventory of the lab STATUS describes. GROUPS: host → its groups from the lab file. GUESTS:
    host → the guests it runs, as `lxdkvm_guests` (see playbooks/guests.yml). DOMAIN_TYPE: the libvirt
    domain type a guest of the user's own should ask for here (`guests.accel.domain_type`)."""
    guests = guests or {}
    lab = status.lab
    nat = status.nat_networks
    inventory = Inventory()
    lab_group = f"lab_{group_name(lab)}"
    for host in status.hosts:
        name = host.name
        hostvars: dict = {}
        address = host.management_address(nat)
        if address:
            hostvars["ansible_host"] = address
        hostvars.update({
            "ansible_user": access.user,
            "ansible_ssh_private_key_file": str(access.private_key),
            "ansible_ssh_common_args": access.ssh_common_args,
            "ansible_python_interpreter": PYTHON,
            "lxdkvm_lab": lab,
            "lxdkvm_project": status.project,
            "lxdkvm_addresses": {net: str(ipaddress.IPv4Interface(addrs[0]).ip)
                                 for net, addrs in host.addresses.items() if addrs},
            # the guests this host runs (playbooks/guests.yml starts them, verify.yml pings them)
            "lxdkvm_guests": list(guests.get(name, _guest_vars(host))),
            # for your own domains (community.libvirt.virt): kvm or qemu, as lxdkvm's `accel: auto` decides
            "lxdkvm_libvirt_domain_type": domain_type,
        })
        inventory.hosts[name] = hostvars
        member_of = [lab_group, *(f"net_{group_name(net)}" for net in host.addresses),
                     *(group_name(g) for g in groups.get(name, []))]
        for group in dict.fromkeys(member_of):
            inventory.groups.setdefault(group, []).append(name)
    return Inventory(inventory.hosts, {g: sorted(h) for g, h in sorted(inventory.groups.items())},
                     list(status.warnings))


def live(session, lab: str | Path | None) -> Inventory:
    """The inventory of LAB (a lab file, or the name of a lab that is up) as the daemon has it now."""
    from ..lab import sshkeys
    from ..lab import status as status_mod
    from ..lab.load import lab_name
    from ..lab.objects import GROUPS

    name = lab_name(lab)
    lxd = session.lab(t.project_name(name))
    status = status_mod.read(lxd, name)
    if not status.exists:
        raise LxdkvmError(f"lab {name} is not up; `lxdkvm up` it first")
    access = Access(sshkeys.LAB_USER, sshkeys.private_key_path(name), sshkeys.known_hosts_path(name))
    for path in (access.private_key, access.known_hosts):
        if not path.is_file():
            raise LxdkvmError(f"lab {name} has no {path}; run `lxdkvm up` for it again")
    configured = {host: info["config"].get(GROUPS, "") for host, info in lxd.instances.all().items()}
    groups, problems = read_groups(configured)
    built = build(status, groups, access, domain_type=domain_type())
    built.warnings += problems
    return built


def domain_type() -> str:
    """kvm or qemu for a guest of the user's own on this machine: what lxdkvm knows of its KVM (a CPU
    without vmx/svm answers at once; otherwise the verdict kept for this kernel and tiny guest build)."""
    from ..guests import accel, kvmboot, tiny
    from ..machine import hostcaps

    if hostcaps.hardware_virt(hostcaps.read_host()) is None:
        return accel.domain_type(kvmboot.cached(False, ""))
    return accel.domain_type(kvmboot.cached(True, tiny.current_key()))


def read_groups(configured: dict[str, object]) -> tuple[dict[str, list[str]], list[str]]:
    """Each host's groups from its `user.lxdkvm.groups` as the daemon has it (host → "a,b"): only group
    names of the lab file's rule are kept; (host → groups, warnings about the others)."""
    from .. import readback

    groups, warnings = {}, []
    for host, text in configured.items():
        if not readback.host_name(host):
            continue  # the status left it out, and said so
        names = text.split(",") if isinstance(text, str) else [text]
        groups[host] = [g for g in names if readback.group(g)]
        problems = [f"its group {readback.defanged(g)}" for g in names if g and not readback.group(g)]
        warnings += [f"{w} (left out)" for w in readback.summarised(host, problems)]
    return groups, warnings


# ------------------------------------------------------------------------------------------ writers
class Unsafe(str):
    """A string Ansible must never template: `!unsafe` in YAML, `{"__ansible_unsafe": ...}` in JSON."""


UNSAFE_KEY = "__ansible_unsafe"
TEMPLATE_MARKS = ("{{", "{%", "{#", "#jinja2:")  # what makes Ansible (Jinja) treat a string as a template


def unsafe(value: object) -> object:
    """VALUE with every string in it (not the keys) an `Unsafe`."""
    if isinstance(value, str):
        return Unsafe(value)
    if isinstance(value, dict):
        return {k: unsafe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [unsafe(v) for v in value]
    return value


def _json_marks(value: object) -> object:
    if isinstance(value, Unsafe):
        return {UNSAFE_KEY: str(value)}
    if isinstance(value, dict):
        return {k: _json_marks(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_marks(v) for v in value]
    return value


def to_json(inventory: Inventory) -> dict:
    """The JSON of an inventory script (what `ansible-inventory --list` prints), every string variable
    marked unsafe."""
    hostvars = {host: _json_marks(unsafe(hostvars)) for host, hostvars in inventory.hosts.items()}
    out: dict = {"_meta": {"hostvars": hostvars}, "all": {"children": ["ungrouped", *inventory.groups]}}
    out.update({group: {"hosts": hosts} for group, hosts in inventory.groups.items()})
    return out


def to_yaml_data(inventory: Inventory) -> dict:
    """Ansible's YAML inventory: variables once, under `all.hosts` (every string an `Unsafe`); groups list
    their hosts."""
    return {"all": {"hosts": {host: unsafe(hostvars) for host, hostvars in inventory.hosts.items()},
                    "children": {group: {"hosts": dict.fromkeys(hosts)} for group, hosts in inventory.groups.items()}}}


def _yaml(data: dict) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(Unsafe, lambda dumper, value: dumper.represent_scalar("!unsafe", str(value)))
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=False, allow_unicode=False)


def _ini_value(host: str, key: str, value: object) -> str:
    # the INI inventory splits a line like a shell and reads each value as a Python literal when it can;
    # it has no unsafe mark, so a value Ansible would template (or one that breaks the line) is refused
    text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    if any(mark in text for mark in TEMPLATE_MARKS) or t.printable(text, len(text)) != text:
        raise LxdkvmError(f"host {t.printable(host)}: variable {t.printable(key)} holds text Ansible would "
                          "template or that breaks an INI line; use --format yaml or json (they mark it "
                          "unsafe)")
    return text


def to_ini(inventory: Inventory) -> str:
    lines = ["[all]"]
    for host, hostvars in inventory.hosts.items():
        pairs = (shlex.quote(f"{k}={_ini_value(host, k, v)}") for k, v in hostvars.items())
        lines.append(" ".join([host, *pairs]))
    for group, hosts in inventory.groups.items():
        lines += ["", f"[{group}]", *hosts]
    return "\n".join(lines) + "\n"


def render(inventory: Inventory, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(to_json(inventory), indent=2) + "\n"
    if fmt == "yaml":
        return _yaml(to_yaml_data(inventory))
    if fmt == "ini":
        return to_ini(inventory)
    raise LxdkvmError(f"--format must be yaml, ini or json, not {fmt!r}")
