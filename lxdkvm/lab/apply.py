"""Execute a plan against LXD: project, networks and profiles first, then the hosts on a bounded worker
pool, each through its readiness stages; removals last. And the reverse for `down`.

Every step is safe to repeat: a run that is interrupted anywhere leaves objects that the next plan
sees and completes (a host that is not marked ready is verified again, a stopped one is started).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import LxdkvmError
from ..hosts import readiness
from ..labfile import topology as t
from ..lxd import idmaps
from ..lxd.instances import creating
from ..machine import hostcaps, nftables
from .objects import READY, Desired
from .plan import Plan
from .pool import failure, run_pool

Report = Callable[[str, str], None]  # (host or "lab", what is happening)
DEFAULT_WORKERS = 10


@dataclass
class Applied:
    took: dict[str, dict[str, float]] = field(default_factory=dict)  # host → stage → seconds
    seconds: float = 0.0


def address_stage(lab: t.Lab, host: t.Host) -> readiness.Stage:
    """The last readiness stage: each NIC has the address the lab file declares (a static one, or a
    DHCP lease inside the network's subnet)."""
    wanted = [(a.bridge, lab.network(a.network), a.ipv4) for a in host.attachments]

    def check(output: str) -> str:
        have: dict[str, list[ipaddress.IPv4Interface]] = {}
        for line in output.splitlines():
            fields = line.split()
            if len(fields) >= 4 and fields[2] == "inet":
                have.setdefault(fields[1].split("@")[0], []).append(ipaddress.IPv4Interface(fields[3]))
        missing = []
        for device, net, ip in wanted:
            addresses = have.get(device, [])
            if ip is not None and ipaddress.IPv4Interface(f"{ip}/{net.subnet.prefixlen}") not in addresses:
                missing.append(f"{device} has no {ip}/{net.subnet.prefixlen}")
            elif ip is None and net.dhcp and not any(a.ip in net.subnet for a in addresses):
                missing.append(f"{device} has no DHCP lease in {net.subnet} yet")
        return "; ".join(missing)

    return readiness.Stage("addresses as declared", ["ip", "-4", "-o", "addr", "show"], 120,
                         ("ip", "addr", "show"), check=check)


def host_stages(lab: t.Lab, host: t.Host) -> list[readiness.Stage]:
    return [*readiness.STAGES, address_stage(lab, host)]


def _make(lxd, want: Desired, name: str, verbs: set[str], report: Report, idmapped_root: bool,
          idmap_base: int | None = None, without_nics: bool = False) -> None:
    """Create NAME (deleting the old one first for a recreate); not started. WITHOUT_NICS: its NICs are
    added by `_bring_up` right before it starts, once its networks exist."""
    spec = want.instances[name]
    if "recreate" in verbs:
        report(name, "deleting the old container")
        lxd.instances.delete(name)
    report(name, f"creating on {spec.target}" if spec.target else "creating")
    devices = {k: v for k, v in spec.devices.items() if v.get("type") != "nic"} if without_nics else spec.devices
    lxd.instances.create(name, spec.image, spec.profiles, spec.config, devices, spec.target,
                         idmapped_root and not spec.target and "raw.lxc" not in spec.config, idmap_base)


def _bring_up(lxd, lab: t.Lab, want: Desired, name: str, verbs: set[str], report: Report,
              cancel: threading.Event, poll: float, idmapped_root: bool = False,
              made: bool = False, nics_later: bool = False) -> dict[str, float]:
    """Make NAME (unless MADE already; NICS_LATER: made without its NICs, added now), start it and wait
    until every readiness stage passes."""
    if verbs & {"create", "recreate"} and not made:
        _make(lxd, want, name, verbs, report, idmapped_root)
    if nics_later:
        report(name, "adding its network devices")
        lxd.instances.set_devices(name, want.instances[name].devices)
    if verbs & {"create", "recreate", "start"}:
        report(name, "starting")
        lxd.instances.start(name)
    report(name, "running")
    host = next(h for h in lab.hosts if h.name == name)
    took = readiness.wait_ready(lxd.instances, name, report, host_stages(lab, host), poll=poll, cancel=cancel)
    lxd.instances.set_key(name, READY, "true")
    return took


def _makes_all(lxd, want: Desired, verbs: dict[str, set[str]]) -> bool:
    """Whether `_make_all` may make the new hosts at once: on one machine, not a cluster (see there)."""
    return (not want.members
            and any(v & {"create", "recreate"} for v in verbs.values()))


def _make_all(lxd, want: Desired, verbs: dict[str, set[str]], report: Report, idmapped_root: bool,
              workers: int, cancel: threading.Event, without_nics: bool = False) -> set[str]:
    """Make every new host at once, each isolated one with an id range lxdkvm chooses, under the lock that
    otherwise makes LXD 5.0 create one container at a time (it would give containers created at the same
    moment the same range). The ranges avoid those of the machine's other daemon too (LXD and Incus take
    them from root's one subordinate range). Returns the hosts made; none (each host is then made by its
    own worker, one at a time) on a cluster, or when the ranges cannot be chosen as LXD would."""
    if not _makes_all(lxd, want, verbs):
        return set()
    new = sorted(name for name, v in verbs.items() if v & {"create", "recreate"})
    specs = {name: want.instances[name] for name in new}
    isolated = [name for name, spec in specs.items() if spec.config.get("security.idmap.isolated") == "true"
                and not any(key in spec.config for key in ("security.idmap.base", "security.idmap.size"))]
    host = hostcaps.read_host()
    with creating():
        # a recreated host's old range counts as taken: it is still there until its worker deletes it
        taken = idmaps.isolated_maps(lxd.session.connection(), lxd.session.settings)
        bases = hostcaps.free_isolated_bases(host.subuid, host.subgid, taken, len(isolated))
        if bases is None:
            return set()
        chosen = dict(zip(isolated, bases, strict=False))
        jobs = {name: (lambda _c, n=name: _make(lxd, want, n, verbs[n], report, idmapped_root, chosen.get(n),
                                                without_nics)) for name in new}
        _, errors = run_pool(jobs, workers, cancel)
    if errors:
        raise failure(errors)
    return set(new)


def _apply_network(lxd, lab: t.Lab, want: Desired, name: str, verb: str, report: Report) -> None:
    report("lab", f"{verb} network {name}")
    config = want.networks[name]
    if verb == "update":
        lxd.networks.update(name, config)
    else:
        lxd.networks.create(name, config, f"lxdkvm lab {lab.name}: network {config['user.lxdkvm.network']}",
                           list(want.members))


def _nics_in_profiles(want: Desired) -> bool:
    """Whether a profile of the lab gives hosts a NIC itself (then a host needs its network to exist
    when it is created)."""
    return any(device.get("type") == "nic" for profile in want.profiles.values()
               for device in (profile.get("devices") or {}).values())


def _idmapped_roots(lxd, want: Desired, report: Report) -> bool:
    """Whether new hosts get their root filesystem mounted idmapped instead of chowned by LXD at first
    start (docs/container-cost.md)."""
    pool = want.profiles.get("default", {}).get("devices", {}).get("root", {}).get("pool", "")
    why_not = lxd.session.server.idmapped_roots(pool) if pool else "no root pool"
    if why_not and lxd.session.daemon.kind == "lxd":
        report("lab", f"LXD chowns each new host's files at its first start ({why_not})")
    return not why_not


def apply(lxd, lab: t.Lab, want: Desired, plan: Plan, report: Report, workers: int = DEFAULT_WORKERS,
          poll: float = 0.5) -> Applied:
    """Execute PLAN's host, network, profile and project actions through LXD (the lab's `LabScope`)."""
    if plan.conflicts:
        raise LxdkvmError("cannot apply the plan:\n" + "\n".join(f"  {c}" for c in plan.conflicts))
    start = time.monotonic()
    _fence_and_project(lxd, lab, want, plan, report)
    verbs: dict[str, set[str]] = {}
    for action in plan.select("host", "create", "recreate", "start", "verify"):
        verbs.setdefault(action.name, set()).add(action.verb)
    # New hosts made at once (`_make_all`) are made while their lab's new networks are created (LXD waits
    # 0.5 s after starting a network's dnsmasq), without their NICs, which they get once the networks
    # exist. Not when a profile has a NIC of its own: a host needs its network when it is created.
    overlap = _makes_all(lxd, want, verbs) and not _nics_in_profiles(want)
    meanwhile = [a.name for a in plan.select("network", "create")] if overlap else []
    for action in plan.select("network", "create", "update"):
        if action.name not in meanwhile:
            _apply_network(lxd, lab, want, action.name, action.verb, report)
    cancel = threading.Event()
    # before any thread starts: the probe forks
    idmapped = _idmapped_roots(lxd, want, report) if any(v & {"create", "recreate"} for v in verbs.values()) \
        else False
    with ThreadPoolExecutor(max_workers=max(1, len(meanwhile))) as executor:
        networks = [executor.submit(_apply_network, lxd, lab, want, name, "create", report)
                    for name in meanwhile]
        try:
            for action in plan.select("profile", "create", "update"):
                report("lab", f"{action.verb} profile {action.name}")
                lxd.profiles.apply(action.name, want.profiles[action.name])
            removed = {a.name: (lambda _c, n=a.name: lxd.instances.delete(n))
                       for a in plan.select("host", "delete")}
            for name in removed:
                report(name, "deleting (not in the lab file)")
            _, errors = run_pool(removed, workers, cancel)
            if errors:
                raise failure(errors)
            made = _make_all(lxd, want, verbs, report, idmapped, workers, cancel, without_nics=overlap)
        finally:
            for future in networks:
                future.result()  # a network LXD refused: its own error (the next `up` creates it)
    for action in plan.select("host", "update"):
        report(action.name, f"updating: {action.reason}")
        spec = want.instances[action.name]
        lxd.instances.update(action.name, spec.config, spec.devices, spec.profiles)
    jobs = {name: (lambda c, n=name, v=v: _bring_up(lxd, lab, want, n, v, report, c, poll, idmapped, n in made,
                                                    overlap and n in made))
            for name, v in sorted(verbs.items())}
    took, errors = run_pool(jobs, workers, cancel)
    if errors:
        raise failure(errors, list(took))
    _delete_unused(lxd, plan, report)
    return Applied(took, round(time.monotonic() - start, 1))  # type: ignore[arg-type]


def _fence_and_project(lxd, lab: t.Lab, want: Desired, plan: Plan, report: Report) -> None:
    """The lab's firewall table on this machine (before any host can start), then its project."""
    for action in plan.select("firewall", "create", "update"):
        report("lab", f"{action.verb} firewall table {action.name} on this machine")
        nftables.load(want.fence.text)
    if plan.select("project", "create"):
        report("lab", f"creating project {want.project}")
        lxd.session.projects.create(want.project, want.project_config, f"lxdkvm lab {lab.name} ({lab.source})")


def _delete_unused(lxd, plan: Plan, report: Report) -> None:
    """Profiles and networks the lab file no longer has, once no host uses them."""
    for action in plan.select("profile", "delete"):
        report("lab", f"deleting profile {action.name}")
        lxd.profiles.delete(action.name)
    for action in plan.select("network", "delete"):
        report("lab", f"deleting network {action.name}")
        lxd.networks.delete(action.name)


def teardown(lxd, plan: Plan, report: Report, workers: int = DEFAULT_WORKERS) -> float:
    """Delete what `plan.teardown_plan` lists: hosts in parallel, then profiles, networks, project."""
    if plan.conflicts:
        raise LxdkvmError("\n".join(plan.conflicts))
    start = time.monotonic()
    jobs = {}
    for action in plan.select("host"):
        report(action.name, "deleting")
        jobs[action.name] = lambda _c, n=action.name: lxd.instances.delete(n)
    _, errors = run_pool(jobs, workers, threading.Event())
    if errors:
        raise LxdkvmError("\n".join(f"{name}: {exc}" for name, exc in errors.items()))
    for action in plan.select("profile"):
        lxd.profiles.delete(action.name)
    for action in plan.select("network"):
        report("lab", f"deleting network {action.name}")
        lxd.networks.delete(action.name)
    if plan.select("project"):
        report("lab", f"deleting project {plan.project}")
        lxd.session.projects.delete(plan.project)
    for action in plan.select("firewall"):  # last: the lab stays fenced while anything of it is left
        report("lab", f"deleting firewall table {action.name}")
        nftables.remove(action.name)
    return round(time.monotonic() - start, 1)
