"""The lab's guests: what they are made from (`images`, built once and cached), the domains the lab wants
(`desired`), and executing a plan's guest actions, after the hosts are ready: prepare each host that has guests work,
then bring guests up in parallel (each through its stages), remove the ones the lab no longer has."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import LxdkvmError
from ..guests import debian, hostprep, kvmboot, readiness, runtime, spec, store, tiny
from ..labfile import topology as t
from ..machine import hostcaps
from . import pki
from .objects import Desired
from .plan import Observed, Plan
from .pool import REPAIR, UpFailed, run_pool

Report = Callable[[str, str], None]
DEFAULT_WORKERS = 4  # TCG boots are CPU-bound


@dataclass(frozen=True)
class Images:
    """What a lab's guests are made from, built (or found in the cache) once per `up` or `plan`."""
    tiny: tiny.TinyArtifacts
    debian: debian.DebianDisk | None  # only when a guest uses it
    verdict: kvmboot.Verdict  # what is known of KVM for guests here
    files: tuple[store.StoredImage, ...] = ()  # the imported images the lab's guests boot


def images(lab: t.Lab, say: Callable[[str], None]) -> Images:
    artifacts = tiny.build(report=say)
    disk = debian.build(report=say) if any(g.disk == "debian" for g in lab.guests) else None
    verdict = kvmboot.cached(hostcaps.hardware_virt(hostcaps.read_host()) is not None, artifacts.key)
    files = []
    for name in sorted({g.disk_file for g in lab.guests if g.disk == "file" and g.disk_file}):
        found = store.get(name)
        if found is None:
            raise LxdkvmError(f"no imported guest image {name}: `lxdkvm guest-image import FILE --name {name}`")
        files.append(found)
    return Images(artifacts, disk, verdict, tuple(files))


def desired(lab: t.Lab, built: Images) -> dict[str, spec.GuestSpec]:
    return spec.desired(lab, built.tiny.key, built.verdict, built.debian.key if built.debian else None,
                        {f.name: (f.key, f.virtual_mib) for f in built.files})


def credentials(lab: t.Lab, host: t.Host):
    """HOST's TLS credentials for migrations (`lab.pki`), or None when it takes no migrations."""
    addresses = hostprep.migration_addresses(lab, host)
    return pki.host_credentials(lab.name, host.name, addresses) if addresses else None


def _unprepared(lxd, lab: t.Lab) -> bool:
    """A host of a lab with guests that has not been made ready for guests yet (e.g. a host added
    without guests of its own: it must still take migrations)."""
    if not lab.guests:
        return False
    return any(not hostprep.prepared(lxd.instances, lab, host, credentials(lab, host)) for host in lab.hosts)


def _probed(lab: t.Lab, want: Desired, conn, hosts: list[str], built: Images, report: Report) -> Desired:
    """`accel: auto` guests on a CPU with vmx/svm: the first time, boot the tiny guest under KVM in a
    host, remember the verdict, and choose their accelerator by it."""
    if not hosts or built.verdict.kvm != kvmboot.UNKNOWN or not any(g.accel == "auto" for g in lab.guests):
        return want
    report(hosts[0], "probing whether a guest kernel boots under this machine's KVM")
    verdict = kvmboot.probe(conn, hosts[0], built.tiny)
    kvmboot.remember(built.tiny.key, verdict)
    report(hosts[0], f"KVM for guests: {verdict.kvm} ({verdict.evidence})")
    return dataclasses.replace(want, guests=desired(lab, dataclasses.replace(built, verdict=verdict)))


@dataclass
class GuestsApplied:
    markers: dict[str, dict] = field(default_factory=dict)  # guest → its boot marker
    took: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0


def apply(lxd, lab: t.Lab, want: Desired, plan: Plan, have: Observed, built: Images | None, report: Report,
          workers: int = DEFAULT_WORKERS) -> GuestsApplied:
    """Execute PLAN's guest actions through LXD (the lab's `LabScope`); BUILT: the lab's guest images (None
    for a lab without guests)."""
    actions = plan.select("guest")
    if built is None or (not actions and not _unprepared(lxd, lab)):
        return GuestsApplied()
    start = time.monotonic()
    conn = lxd.instances
    located = {name: host for host, domains in have.guests.items() for name in domains}
    for action in plan.select("guest", "delete"):
        report(action.name, "deleting (not in the lab file)")
        runtime.remove(conn, located[action.name], action.name)
    for action in plan.select("guest", "recreate"):
        old_host = located.get(action.name)
        if old_host and old_host != want.guests[action.name].host:
            report(action.name, f"removing from {old_host}")
            runtime.remove(conn, old_host, action.name)

    verbs: dict[str, set[str]] = {}
    for action in plan.select("guest", "create", "recreate", "start"):
        verbs.setdefault(action.name, set()).add(action.verb)
    # every host of a lab with guests: any of them may receive a guest by `lxdkvm migrate`
    hosts = sorted(h.name for h in lab.hosts)
    issued = {host: credentials(lab, lab.host(host)) for host in hosts}  # one at a time: the first makes the CA

    def prepare(host: str, _cancel: threading.Event) -> None:
        report(host, "preparing for guests (guest images, agent, guest filter, migration listener)")
        hostprep.prepare_host(conn, lab, lab.host(host), built.tiny, built.debian, built.files, issued[host])

    _, errors = run_pool({h: (lambda c, h=h: prepare(h, c)) for h in hosts}, workers, threading.Event())
    if errors:
        raise UpFailed("\n".join(str(e) for e in errors.values()) + "\n" + REPAIR)
    want = _probed(lab, want, conn, hosts, built, report)
    for name in sorted(verbs):
        if want.guests[name].accel_note:
            report(name, want.guests[name].accel_note)

    applied = GuestsApplied()

    def one(name: str, _cancel: threading.Event) -> dict:
        # only a start keeps the guest where it is (a migrated guest's host is not the lab file's)
        host = located.get(name) if verbs[name] == {"start"} else None
        return readiness.bring_up(lxd, lab, want.guests[name], verbs[name], report, host)

    results, errors = run_pool({n: (lambda c, n=n: one(n, c)) for n in sorted(verbs)}, workers, threading.Event())
    if errors:
        raise UpFailed("\n".join(str(e) for e in errors.values()) + "\n" + REPAIR)
    for name, result in results.items():
        applied.markers[name] = result["marker"]
        applied.took[name] = result["took"]
    applied.seconds = round(time.monotonic() - start, 1)
    return applied
