"""What `up` must do to make LXD match a lab, and why: the difference between `Desired` and `Observed`.

Pure. `lxdkvm plan` prints the plan; `up` executes it (see `provision`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..cluster.stretch import KEYS as STRETCH_KEYS
from ..machine.idmapmount import IDMAPPED_ROOT
from .objects import MARK, NETWORK, READY, SPEC, Desired

# Instance config keys LXD or lxdkvm keep for themselves: never a reason to change anything.
UNMANAGED_PREFIXES = ("volatile.", "image.", READY)
# Network keys lxdkvm sets (see labobjects.network_config); others LXD or a person may add are left alone.
NETWORK_KEYS = {"ipv4.address", "ipv4.nat", "ipv4.dhcp", "ipv4.dhcp.ranges", "ipv6.address", "bridge.mtu",
                *STRETCH_KEYS}


@dataclass
class Observed:
    """What LXD has now, as plain data (see `pipeline.observe`)."""
    project: dict[str, str] | None = None  # the lab project's config; None: no project
    networks: dict[str, dict[str, str]] = field(default_factory=dict)  # every network: name → config
    profiles: dict[str, dict] = field(default_factory=dict)  # in the project
    instances: dict[str, dict] = field(default_factory=dict)  # in the project: status, config, devices, profiles
    guests: dict[str, dict[str, dict]] = field(default_factory=dict)  # running host → domain → {state, spec}
    warnings: list[str] = field(default_factory=list)  # what hosts reported that was not passed on (readback)
    fence: str | None = None  # the digest of the lab's nftables table on this machine; None: no table


@dataclass(frozen=True)
class Action:
    verb: str  # create | update | recreate | delete | start | verify
    kind: str  # project | network | firewall | profile | host | guest
    name: str
    reason: str


@dataclass
class Plan:
    lab: str
    project: str
    actions: list[Action] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # objects in the way that are not the lab's
    warnings: list[str] = field(default_factory=list)  # what hosts reported that was not passed on (readback)

    @property
    def empty(self) -> bool:
        return not self.actions and not self.conflicts

    def select(self, kind: str, *verbs: str) -> list[Action]:
        return [a for a in self.actions if a.kind == kind and (not verbs or a.verb in verbs)]

    def hosts(self, *verbs: str) -> list[str]:
        return sorted({a.name for a in self.select("host", *verbs)})


def _changes(want: dict[str, str], have: dict[str, str], keys: set[str] | None = None) -> list[str]:
    """Human-readable differences, e.g. "limits.memory 1GiB → 2GiB"."""
    out = []
    for key in sorted(keys if keys is not None else set(want) | set(have)):
        if want.get(key) != have.get(key):
            old, new = have.get(key, "(unset)"), want.get(key, "(unset)")
            if "\n" in f"{old}{new}" or len(f"{old}{new}") > 60:
                out.append(f"{key} changed")
            else:
                out.append(f"{key} {old} → {new}")
    return out


def _spec_changes(want: dict, have_json: str | None) -> list[str]:
    if not have_json:
        return ["not made by lxdkvm (no spec recorded)"]
    try:
        have = json.loads(have_json)
    except ValueError:
        return ["its recorded spec is unreadable"]
    out = []
    for key in sorted(set(want) | set(have)):
        if want.get(key) != have.get(key):
            old, new = have.get(key), want.get(key)
            out.append(f"{key} {old} → {new}" if isinstance(new, str) and "\n" not in new and
                       isinstance(old, str) else f"{key} changed")
    return out


def _managed(config: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in config.items() if not k.startswith(UNMANAGED_PREFIXES)}


def _made_by_lxdkvm(have: dict[str, str], want: dict[str, str]) -> dict[str, str]:
    """HAVE without the keys lxdkvm set when it made the host, which the lab file does not give: its id
    range (`security.idmap.base`, chosen by lxdkvm) and a root mounted idmapped (how its disk was made).
    Both stay as they are for the host's life."""
    own = {"security.idmap.base": have.get("security.idmap.base"), "raw.lxc": IDMAPPED_ROOT}
    return {k: v for k, v in have.items() if k in want or own.get(k, object()) != v}


def _hosts(want: Desired, have: Observed) -> list[Action]:
    actions = []
    for name, spec in sorted(want.instances.items()):
        current = have.instances.get(name)
        if current is None:
            actions.append(Action("create", "host", name, f"new host on {spec.target}" if spec.target else "new host"))
            continue
        spec_changes = _spec_changes(spec.spec, current["config"].get(SPEC))
        where = current.get("location", "")
        if spec.allowed and where not in spec.allowed:
            spec_changes.append(f"placement: it is on {where or 'no member'}, the lab file wants "
                                f"{' or '.join(spec.allowed)}")
        if spec_changes:
            actions.append(Action("recreate", "host", name, "; ".join(spec_changes)))
            continue
        changes = _changes(_managed(spec.config), _made_by_lxdkvm(_managed(current["config"]), spec.config))
        if list(current["profiles"]) != spec.profiles:
            changes.append(f"profiles {', '.join(current['profiles'])} → {', '.join(spec.profiles)}")
        if current["devices"] != spec.devices:
            changes.append("network devices changed")
        if changes:
            actions.append(Action("update", "host", name, "; ".join(changes)))
        if current["status"] != "Running":
            actions.append(Action("start", "host", name, f"it is {current['status'].lower()}"))
        elif current["config"].get(READY) != "true":
            actions.append(Action("verify", "host", name, "not verified ready yet (an earlier run stopped)"))
    for name in sorted(set(have.instances) - set(want.instances)):
        actions.append(Action("delete", "host", name, "not in the lab file"))
    return actions


def _networks(want: Desired, have: Observed, conflicts: list[str]) -> list[Action]:
    actions = []
    for name, config in sorted(want.networks.items()):
        current = have.networks.get(name)
        if current is None:
            actions.append(Action("create", "network", name, f"new network {config[NETWORK]}"))
            continue
        owner = current.get(MARK)
        if owner != want.lab:
            whose = f"lab {owner}'s" if owner else "not made by lxdkvm"
            conflicts.append(f"network {name} already exists and is {whose}; rename network "
                             f"'{config[NETWORK]}' or the lab")
            continue
        ours = {k for k in current if k in NETWORK_KEYS or k.startswith("user.lxdkvm.")}
        changes = _changes(config, current, set(config) | ours)
        if changes:
            actions.append(Action("update", "network", name, "; ".join(changes)))
    for name, current in sorted(have.networks.items()):
        if current.get(MARK) == want.lab and name not in want.networks:
            actions.append(Action("delete", "network", name,
                                  f"network {current.get(NETWORK, name)} is not in the lab file"))
    return actions


def _profiles(want: Desired, have: Observed) -> list[Action]:
    actions = []
    for name, body in sorted(want.profiles.items()):
        current = have.profiles.get(name)
        if current is None:  # a new project: LXD makes its (empty) default profile, lxdkvm fills it
            actions.append(Action("update", "profile", name, "root disk for the lab's hosts") if name == "default"
                           else Action("create", "profile", name, "new profile"))
            continue
        changes = [part for part, empty in (("description", ""), ("config", {}), ("devices", {}))
                   if (current.get(part) or empty) != (body.get(part) or empty)]
        if changes:
            actions.append(Action("update", "profile", name, f"{', '.join(changes)} changed"))
    for name in sorted(set(have.profiles) - set(want.profiles)):
        actions.append(Action("delete", "profile", name, "not in the lab file"))
    return actions


def _guest_changes(want: dict, have: dict) -> list[str]:
    out = []
    for key in sorted(set(want) | set(have)):
        if want.get(key) != have.get(key):
            old, new = have.get(key), want.get(key)
            out.append(f"{key} {old} → {new}" if isinstance(new, (str, int)) and isinstance(old, (str, int))
                       else f"{key} changed")
    return out


def _guests(want: Desired, have: Observed, host_actions: list[Action]) -> list[Action]:
    """Guests live inside hosts: a new or recreated host gets all its guests anew; otherwise each guest is
    compared with the spec recorded in its domain. Domains lxdkvm did not make are never touched."""
    renewed = {a.name for a in host_actions if a.verb in ("create", "recreate")}
    gone = {a.name for a in host_actions if a.verb == "delete"}
    actions, where = [], {}
    for host, domains in have.guests.items():
        for name, info in domains.items():
            if info.get("spec") and info["spec"].get("lab") == want.lab:
                where[name] = (host, info)
    for name, spec in sorted(want.guests.items()):
        if spec.host in renewed:
            actions.append(Action("create", "guest", name, f"new guest on {spec.host} (a new container)"))
            continue
        found = where.get(name)
        if found is None:
            actions.append(Action("create", "guest", name, f"new guest on {spec.host}"))
            continue
        host, info = found
        if host != spec.host and info["spec"].get("host") != host:
            actions.append(Action("recreate", "guest", name, f"moves from {host} to {spec.host}"))
            continue
        # a guest `lxdkvm migrate` moved stays where it was moved (its metadata says so); `up` leaves it
        changes = _guest_changes({k: v for k, v in spec.spec.items() if k != "host"},
                                 {k: v for k, v in info["spec"].items() if k != "host"})
        if changes:
            actions.append(Action("recreate", "guest", name, "; ".join(changes)))
        elif info["state"] != "running":
            actions.append(Action("start", "guest", name, f"it is {info['state'] or 'not running'}"))
    for name, (host, _info) in sorted(where.items()):
        if host in gone or host in renewed:
            continue
        if name not in want.guests:
            actions.append(Action("delete", "guest", name, f"not in the lab file (on {host})"))
    return actions


def _fence(want: Desired, have: Observed) -> list[Action]:
    """The lab's nftables table: made before any host starts, replaced when its rules changed."""
    fence = want.fence
    if fence is None:
        return []
    opened = "; opens " + ", ".join(o.describe() for o in fence.openings) if fence.openings else ""
    if have.fence is None:
        return [Action("create", "firewall", fence.table,
                       "the lab's networks reach the outside through NAT and nothing else of this machine" + opened)]
    if have.fence != fence.digest:
        return [Action("update", "firewall", fence.table, "its rules changed" + opened)]
    return []


def make_plan(want: Desired, have: Observed) -> Plan:
    plan = Plan(want.lab, want.project, warnings=list(have.warnings))
    if have.project is None:
        plan.actions.append(Action("create", "project", want.project, f"new lab {want.lab}"))
    elif have.project.get(MARK) != want.lab:
        plan.conflicts.append(f"LXD project {want.project} exists and is not lab {want.lab}'s; "
                              "rename the lab")
        return plan
    plan.actions += _networks(want, have, plan.conflicts)
    plan.actions += _fence(want, have)
    plan.actions += _profiles(want, have)
    plan.actions += _hosts(want, have)
    plan.actions += _guests(want, have, plan.select("host"))
    return plan


def teardown_plan(lab: str, project: str, have: Observed) -> Plan:
    """What `down` deletes: the lab's hosts, profiles, networks and project, and nothing else."""
    plan = Plan(lab, project)
    if have.project is not None and have.project.get(MARK) != lab:
        plan.conflicts.append(f"LXD project {project} is not lab {lab}'s; not touching it")
        return plan
    plan.actions += [Action("delete", "host", n, "down") for n in sorted(have.instances)]
    plan.actions += [Action("delete", "profile", n, "down") for n in sorted(have.profiles) if n != "default"]
    plan.actions += [Action("delete", "network", n, "down")
                     for n, config in sorted(have.networks.items()) if config.get(MARK) == lab]
    if have.fence is not None:
        plan.actions.append(Action("delete", "firewall", f"lxdkvm-{lab}", "down"))
    if have.project is not None:
        plan.actions.append(Action("delete", "project", project, "down"))
    return plan
