"""`lxdkvm snapshot|restore`: a whole lab at one moment, its running guests' memory included.

Taking one: every running guest's memory is saved in its host (all hosts at once), then LXD snapshots
every host (copy-on-write on the lab's pool), then the guests resume; the guests are resumed whatever
failed, and a snapshot that is not whole is deleted again. Restoring: every host back as it was
(running or stopped), hosts made since deleted, and every guest that was running resumed from its
saved memory, on the host it was on then. The lab file in force is kept with the snapshot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import LxdkvmError
from ..labfile import read as labread
from ..labfile import topology as t
from ..lab import state
from ..lab.load import LAB_COPY, lab_name
from ..lab.lock import LabLock
from ..lab.objects import MARK
from ..lab.pool import run_pool
from . import guests as saved
from . import record

Report = Callable[[str, str], None]  # (host or "lab", message)
HOSTS_AT_ONCE = 8
DIRECTORY = "snapshots"


def _path(lab: str, name: str) -> Path:
    return state.path(lab) / DIRECTORY / f"{record.check_name(name)}.json"


def listing(lab: str | Path | None) -> list[record.Snapshot]:
    """The lab's snapshots, oldest first."""
    name = lab_name(lab)
    directory = state.path(name) / DIRECTORY
    found = [record.from_json(p.read_text(), str(p)) for p in sorted(directory.glob("*.json"))
             if record.NAME.match(p.stem)] if directory.is_dir() else []
    return sorted(found, key=lambda s: (s.created, s.name))


def read(lab: str, name: str) -> record.Snapshot:
    path = _path(lab, name)
    if not path.is_file():
        raise LxdkvmError(f"lab {lab} has no snapshot {name} (`lxdkvm snapshot list {lab}`)")
    found = record.from_json(path.read_text(), str(path))
    if (found.name, found.lab) != (name, lab):
        raise LxdkvmError(f"{path}: it is snapshot {found.name} of lab {found.lab}, not {name} of {lab}")
    return found


def _each(items: dict, job: Callable[[str, object], object]) -> tuple[dict, dict[str, BaseException]]:
    """JOB(host, item) for every host at once; (results, errors) by host: one failing does not stop the others."""
    return run_pool({h: (lambda _cancel, h=h, i=i: job(h, i)) for h, i in items.items()}, HOSTS_AT_ONCE,
                    threading.Event())


def _raise(what: str, errors: dict[str, BaseException]) -> None:
    if errors:
        raise LxdkvmError(f"{what}:\n" + "\n".join(f"  {h}: {e}" for h, e in sorted(errors.items())))


def _scope(session, lab: str):
    lxd = session.lab(t.project_name(lab))
    if lxd.config() is None:
        raise LxdkvmError(f"lab {lab} is not up (`lxdkvm up` first)")
    return lxd


def _observe(lxd, report: Report) -> tuple[dict[str, record.Host], dict[str, list[str]]]:
    """Each host's state, and the state of each guest in the running ones (running → SAVED); and the MACs
    of each running guest's DHCP NICs."""
    from ..guests import runtime

    hosts = lxd.instances.all()
    for host, info in hosts.items():
        if info["status"] not in record.HOST_STATES:
            raise LxdkvmError(f"{host} is {info['status']}: a snapshot needs every host running or stopped")

    def guests_of(host: str, info: dict) -> tuple[record.Host, dict[str, list[str]]]:
        if info["status"] != "Running":
            return record.Host("Stopped"), {}
        found = runtime.observe(lxd.instances, host, lambda m: report(host, m))
        dhcp = {g: [nic[1] for nic in (d["spec"] or {}).get("nics", []) if nic[2] == "dhcp"]
                for g, d in found.items() if d["state"] == "running"}
        return record.Host("Running", {g: record.SAVED if d["state"] == "running" else d["state"]
                                       for g, d in found.items()}), dhcp

    results, errors = _each(hosts, guests_of)
    _raise("could not read the lab's hosts", errors)
    return ({h: r[0] for h, r in results.items()},
            {g: macs for _r, dhcp in results.values() for g, macs in dhcp.items() if macs})


def _save(lxd, lab: str, host: str, guests: list[str], dhcp: dict[str, list[str]]) -> None:
    """Save GUESTS' memory in HOST, their DHCP NICs' addresses pinned in it (`guests.pin_leases`)."""
    saved.save(lxd.instances, host, guests)
    if any(g in dhcp for g in guests):
        bridges = [b for b, c in lxd.networks.managed().items() if c.get(MARK) == lab]
        leases = lxd.networks.leases(bridges)
        for guest in guests:
            if guest in dhcp:
                saved.pin_leases(lxd.instances, host, guest,
                                 {m: leases[m] for m in dhcp[guest] if m in leases})


def take(session, lab: str | Path | None, name: str | None, report: Report) -> record.Snapshot:
    lab = lab_name(lab)
    name = record.check_name(name or record.default_name())
    with LabLock(lab, "snapshot"):
        path = _path(lab, name)
        if path.exists():
            raise LxdkvmError(f"lab {lab} already has a snapshot {name}: delete it first or choose another name")
        lxd = _scope(session, lab)
        copy = state.path(lab) / LAB_COPY
        lab_file = copy.read_text() if copy.is_file() else ""
        started = time.monotonic()
        hosts, dhcp = _observe(lxd, report)
        to_save = {h: r.saved for h, r in hosts.items() if r.saved}
        try:
            _, errors = _each(to_save, lambda h, guests: _save(lxd, lab, h, guests, dhcp))
            _raise("could not save the guests' memory, so no snapshot was taken", errors)
            report("lab", f"saved the memory of {sum(map(len, to_save.values()))} guests; snapshotting "
                          f"{len(hosts)} hosts")
            done, errors = _each(hosts, lambda h, _r: lxd.instances.snapshot(h, name))
            if errors:
                _each({h: None for h in done}, lambda h, _r: lxd.instances.delete_snapshot(h, name))
                _raise("could not snapshot every host, so the snapshot was deleted again", errors)
        finally:
            _, errors = _each(to_save, lambda h, guests: saved.resume(lxd.instances, h, guests))
        _raise("the snapshot was taken, but guests did not resume", errors)
        taken = record.Snapshot(name, lab, time.time(), time.monotonic() - started, hosts, lab_file)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(record.to_json(taken))
        return taken


@dataclass
class Restored:
    snapshot: record.Snapshot
    differences: list[str]
    deleted: list[str]  # hosts made after the snapshot
    seconds: float


def _lab_of(text: str, source: str) -> t.Lab | None:
    if not text:
        return None
    parsed, problems, _positions = labread.parse(text, source)
    return None if problems else parsed


def _restore_host(lxd, host: str, name: str, then: record.Host, now_status: str) -> None:
    """HOST back to snapshot NAME: its disk and config, running or stopped as it was, its guests resumed."""
    if now_status != "Stopped":
        lxd.instances.stop(host, force=True)  # what runs now is thrown away: no need to shut it down
    lxd.instances.restore(host, name)
    if then.status == "Running":
        lxd.instances.start(host)
        saved.resume(lxd.instances, host, then.saved, wait_for_libvirt=True)


def _before_restore(lxd, lab: str, snapshot: record.Snapshot) -> tuple[dict[str, dict], list[str]]:
    """(the hosts LXD has now, the differences in words); raises, changing nothing, when a host of the
    snapshot is gone or lost its LXD snapshot."""
    now = lxd.instances.all()
    missing = sorted(h for h in snapshot.hosts if h not in now)
    if missing:
        raise LxdkvmError(f"host {', '.join(missing)} of snapshot {snapshot.name} no longer exists (LXD deleted "
                          "its snapshots with it): nothing was changed")
    lost = sorted(h for h in snapshot.hosts if snapshot.name not in lxd.instances.snapshots(h))
    if lost:
        raise LxdkvmError(f"LXD has no snapshot {snapshot.name} of host {', '.join(lost)}: nothing was changed")
    copy = state.path(lab) / LAB_COPY
    then = _lab_of(snapshot.lab_file, f"snapshot {snapshot.name}")
    current = _lab_of(copy.read_text(), str(copy)) if copy.is_file() else None
    differences = record.differences(then, current) if then else []
    differences += [f"host {h} was made after the snapshot: restore deletes it"
                    for h in sorted(set(now) - set(snapshot.hosts))
                    if not any(d.startswith(f"host {h} ") for d in differences)]
    return now, differences


def restore(session, lab: str | Path | None, name: str, report: Report) -> Restored:
    lab = lab_name(lab)
    with LabLock(lab, "restore"):
        snapshot = read(lab, record.check_name(name))
        lxd = _scope(session, lab)
        now, differences = _before_restore(lxd, lab, snapshot)
        for line in differences:
            report("lab", line)
        started = time.monotonic()
        extra = sorted(set(now) - set(snapshot.hosts))
        _, errors = _each({h: None for h in extra}, lambda h, _x: lxd.instances.delete(h))
        _raise("could not delete the hosts made after the snapshot", errors)
        _, errors = _each(snapshot.hosts, lambda h, then: _restore_host(lxd, h, snapshot.name, then,
                                                                          now[h]["status"]))
        _raise(f"could not restore every host of snapshot {snapshot.name} (run the restore again)", errors)
        if snapshot.lab_file:
            (state.state_dir(lab) / LAB_COPY).write_text(snapshot.lab_file)
        return Restored(snapshot, differences, extra, time.monotonic() - started)


def delete(session, lab: str | Path | None, name: str) -> list[str]:
    """Delete snapshot NAME of LAB from every host and its record; the hosts it was deleted from."""
    lab = lab_name(lab)
    with LabLock(lab, "snapshot delete"):
        snapshot = read(lab, record.check_name(name))
        lxd = _scope(session, lab)
        present = lxd.instances.all()
        done, errors = _each({h: None for h in snapshot.hosts if h in present},
                             lambda h, _x: lxd.instances.delete_snapshot(h, snapshot.name))
        _raise(f"could not delete snapshot {snapshot.name} everywhere (run the delete again)", errors)
        _path(lab, name).unlink()
        return sorted(h for h, deleted in done.items() if deleted)
