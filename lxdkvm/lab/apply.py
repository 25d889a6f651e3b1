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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import LxdkvmError
from ..hosts import readiness
from ..labfile import topology as t
from ..lxd import LabLxd
from ..lxd.client import creating
from ..machine import hostcaps
from .objects import READY, Desired
from .plan import Plan

Report = Callable[[str, str], None]  # (host or "lab", what is happening)
DEFAULT_WORKERS = 10


class UpFailed(LxdkvmError):
    """At least one host did not come up; the message says which, at which stage, and why."""


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


def _make(want: Desired, name: str, verbs: set[str], report: Report, idmapped_root: bool,
          idmap_base: int | None = None, without_nics: bool = False) -> None:
    """Create NAME (deleting the old one first for a recreate); not started. WITHOUT_NICS: its NICs are
    added by `_bring_up` right before it starts, once its networks exist."""
    conn = LabLxd(want.project)
    spec = want.instances[name]
    if "recreate" in verbs:
        report(name, "deleting the old container")
        conn.delete_lab_instance(name)
    report(name, f"creating on {spec.target}" if spec.target else "creating")
    devices = {k: v for k, v in spec.devices.items() if v.get("type") != "nic"} if without_nics else spec.devices
    conn.create_instance(name, spec.image, spec.profiles, spec.config, devices, spec.target,
                         idmapped_root and not spec.target and "raw.lxc" not in spec.config, idmap_base)


def _bring_up(lab: t.Lab, want: Desired, name: str, verbs: set[str], report: Report,
              cancel: threading.Event, poll: float, idmapped_root: bool = False,
              made: bool = False, nics_later: bool = False) -> dict[str, float]:
    """Make NAME (unless MADE already; NICS_LATER: made without its NICs, added now), start it and wait
    until every readiness stage passes."""
    conn = LabLxd(want.project)
    if verbs & {"create", "recreate"} and not made:
        _make(want, name, verbs, report, idmapped_root)
    if nics_later:
        report(name, "adding its network devices")
        conn.set_instance_devices(name, want.instances[name].devices)
    if verbs & {"create", "recreate", "start"}:
        report(name, "starting")
        conn.start_instance(name)
    report(name, "running")
    host = next(h for h in lab.hosts if h.name == name)
    took = readiness.wait_ready(conn.scoped, name, report, host_stages(lab, host), poll=poll, cancel=cancel)
    conn.set_instance_key(name, READY, "true")
    return took


def _makes_all(lxd: LabLxd, want: Desired, verbs: dict[str, set[str]]) -> bool:
    """Whether `_make_all` may make the new hosts at once: on one machine, not a cluster (see there)."""
    return (not want.members
            and any(v & {"create", "recreate"} for v in verbs.values()))


def _make_all(lxd: LabLxd, want: Desired, verbs: dict[str, set[str]], report: Report, idmapped_root: bool,
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
        bases = hostcaps.free_isolated_bases(host.subuid, host.subgid, lxd.isolated_maps(), len(isolated))
        if bases is None:
            return set()
        chosen = dict(zip(isolated, bases, strict=False))
        jobs = {name: (lambda _c, n=name: _make(want, n, verbs[n], report, idmapped_root, chosen.get(n),
                                                without_nics)) for name in new}
        _, errors = _run_pool(jobs, workers, cancel)
    if errors:
        raise _failure(errors)
    return set(new)


def _apply_network(lxd: LabLxd, lab: t.Lab, want: Desired, name: str, verb: str, report: Report) -> None:
    report("lab", f"{verb} network {name}")
    config = want.networks[name]
    if verb == "update":
        lxd.update_network(name, config)
    else:
        lxd.create_network(name, config, f"lxdkvm lab {lab.name}: network {config['user.lxdkvm.network']}",
                           list(want.members))


def _nics_in_profiles(want: Desired) -> bool:
    """Whether a profile of the lab gives hosts a NIC itself (then a host needs its network to exist
    when it is created)."""
    return any(device.get("type") == "nic" for profile in want.profiles.values()
               for device in (profile.get("devices") or {}).values())


def _idmapped_roots(lxd: LabLxd, want: Desired, report: Report) -> bool:
    """Whether new hosts get their root filesystem mounted idmapped instead of chowned by LXD at first
    start (docs/container-cost.md)."""
    pool = want.profiles.get("default", {}).get("devices", {}).get("root", {}).get("pool", "")
    why_not = lxd.idmapped_roots(pool) if pool else "no root pool"
    if why_not and lxd.daemon.kind == "lxd":
        report("lab", f"LXD chowns each new host's files at its first start ({why_not})")
    return not why_not


def _run_pool(jobs: dict[str, Callable[[threading.Event], object]], workers: int,
              cancel: threading.Event) -> tuple[dict[str, object], dict[str, BaseException]]:
    """Run jobs on a bounded pool. The first failure sets `cancel`, so the others stop cleanly;
    Ctrl-C does the same and is raised once every worker has stopped."""
    results: dict[str, object] = {}
    errors: dict[str, BaseException] = {}
    if not jobs:
        return results, errors
    executor = ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs))))
    futures: dict[str, Future] = {}

    def done(future: Future) -> None:
        if future.exception() is not None:
            cancel.set()

    try:
        for name, job in jobs.items():
            futures[name] = executor.submit(job, cancel)
            futures[name].add_done_callback(done)
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except Exception as exc:  # noqa: BLE001 - collected and reported per host
                errors[name] = exc
    except KeyboardInterrupt:
        cancel.set()
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return results, errors


def _failure(errors: dict[str, BaseException]) -> UpFailed:
    first = [e for e in errors.values() if not isinstance(e, readiness.Cancelled)]
    lines = [str(e) for e in first] + [str(e) for e in errors.values() if isinstance(e, readiness.Cancelled)]
    return UpFailed("\n".join(lines) + "\nrun `lxdkvm up` again to repair, or `lxdkvm down` to remove the lab")


def apply(lab: t.Lab, want: Desired, plan: Plan, report: Report, workers: int = DEFAULT_WORKERS,
          poll: float = 0.5) -> Applied:
    if plan.conflicts:
        raise LxdkvmError("cannot apply the plan:\n" + "\n".join(f"  {c}" for c in plan.conflicts))
    start = time.monotonic()
    lxd = LabLxd(want.project)
    if plan.select("project", "create"):
        report("lab", f"creating project {want.project}")
        lxd.create_project(want.project_config, f"lxdkvm lab {lab.name} ({lab.source})")
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
        networks = [executor.submit(_apply_network, LabLxd(want.project), lab, want, name, "create", report)
                    for name in meanwhile]
        try:
            for action in plan.select("profile", "create", "update"):
                report("lab", f"{action.verb} profile {action.name}")
                lxd.apply_lab_profile(action.name, want.profiles[action.name])
            removed = {a.name: (lambda _c, n=a.name: LabLxd(want.project).delete_lab_instance(n))
                       for a in plan.select("host", "delete")}
            for name in removed:
                report(name, "deleting (not in the lab file)")
            _, errors = _run_pool(removed, workers, cancel)
            if errors:
                raise _failure(errors)
            made = _make_all(lxd, want, verbs, report, idmapped, workers, cancel, without_nics=overlap)
        finally:
            for future in networks:
                future.result()  # a network LXD refused: its own error (the next `up` creates it)
    for action in plan.select("host", "update"):
        report(action.name, f"updating: {action.reason}")
        spec = want.instances[action.name]
        lxd.update_instance(action.name, spec.config, spec.devices, spec.profiles)
    jobs = {name: (lambda c, n=name, v=v: _bring_up(lab, want, n, v, report, c, poll, idmapped, n in made,
                                                    overlap and n in made))
            for name, v in sorted(verbs.items())}
    took, errors = _run_pool(jobs, workers, cancel)
    if errors:
        raise _failure(errors)
    for action in plan.select("profile", "delete"):
        report("lab", f"deleting profile {action.name}")
        lxd.delete_lab_profile(action.name)
    for action in plan.select("network", "delete"):
        report("lab", f"deleting network {action.name}")
        lxd.delete_network(action.name)
    return Applied(took, round(time.monotonic() - start, 1))  # type: ignore[arg-type]


def teardown(plan: Plan, report: Report, workers: int = DEFAULT_WORKERS) -> float:
    """Delete what `plan.teardown_plan` lists: hosts in parallel, then profiles, networks, project."""
    if plan.conflicts:
        raise LxdkvmError("\n".join(plan.conflicts))
    start = time.monotonic()
    lxd = LabLxd(plan.project)
    jobs = {}
    for action in plan.select("host"):
        report(action.name, "deleting")
        jobs[action.name] = lambda _c, n=action.name: LabLxd(plan.project).delete_lab_instance(n)
    _, errors = _run_pool(jobs, workers, threading.Event())
    if errors:
        raise LxdkvmError("\n".join(f"{name}: {exc}" for name, exc in errors.items()))
    for action in plan.select("profile"):
        lxd.delete_lab_profile(action.name)
    for action in plan.select("network"):
        report("lab", f"deleting network {action.name}")
        lxd.delete_network(action.name)
    if plan.select("project"):
        report("lab", f"deleting project {plan.project}")
        lxd.delete_project()
    return round(time.monotonic() - start, 1)
