"""The lab pipeline, in one screen: load → check → prepare → plan → apply (hosts ready, then guests) →
status. `lxdkvm up|plan|down|status|verify` and the `invoke lab-*` tasks call these functions.

Each takes the command's `lxd.session.Session`: one connection to the daemon for the whole command.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import LxdkvmError
from ..labfile import topology as t
from . import apply, hostkeys, impair, links, objects, prepare, sshfiles, sshkeys, state
from . import fence as fence_mod
from . import status as status_mod
from .load import NO_ALLOWANCES, Allowances, lab_name, load, remember, remembered
from .lock import LabLock
from .plan import Observed, Plan, make_plan, teardown_plan

Report = Callable[[str, str], None]  # (host or "lab", message)


def observe(lxd, guests: bool = False) -> Observed:
    """What the daemon has for the lab (LXD: its `LabScope`); with GUESTS, also the libvirt domains inside
    its running hosts."""
    from ..machine import nftables

    project = lxd.config()
    fence = nftables.digest(fence_mod.table_name(lxd.project.removeprefix(t.PROJECT_PREFIX)))
    if project is None:
        return Observed(None, lxd.networks.managed(), {}, {}, fence=fence)
    have = Observed(project, lxd.networks.managed(), lxd.profiles.all(), lxd.instances.all(), fence=fence)
    if guests:
        from ..guests import runtime

        have.guests = {host: runtime.observe(lxd.instances, host, have.warnings.append)
                       for host, info in have.instances.items() if info["status"] == "Running"}
    return have


def _guest_images(lab: t.Lab, say: Callable[[str], None]):
    """What the lab's guests are made from (built once, cached), or None for a lab without guests."""
    if not lab.guests:
        return None
    from . import guestapply

    return guestapply.images(lab, say)


def _desired(lab: t.Lab, lxd, prepared: prepare.Prepared, have: Observed, built) -> objects.Desired:
    """What the lab needs: on a cluster, each host on a member (existing hosts stay where they are); its
    guests as libvirt domains, from BUILT (`_guest_images`)."""
    from ..machine import hostcaps

    located = {name: info.get("location", "") for name, info in have.instances.items()}
    subnets = [net for net, _device in hostcaps.interface_subnets()]
    want = objects.desired(lab, prepared.pool, prepared.kvm_profile, lxd.cluster(), located, subnets)
    if built is None:
        return want
    from . import guestapply

    return dataclasses.replace(want, guests=guestapply.desired(lab, built))


def plan(session, path: str | Path | None, allow: Allowances = NO_ALLOWANCES) -> tuple[t.Lab, Plan]:
    lab = load(path, session, allow)
    lxd = session.lab(lab.project)
    built = _guest_images(lab, lambda _m: None)
    have = observe(lxd, guests=True)
    return lab, make_plan(_desired(lab, lxd, prepare.planned(session, lab), have, built), have)


@dataclass
class UpResult:
    lab: t.Lab
    plan: Plan
    applied: apply.Applied
    recovered: str  # a stale lock that was taken over, if any
    guests: object = None  # guests.provision.GuestsApplied


def up(session, path: str | Path | None, report: Report, workers: int = apply.DEFAULT_WORKERS,
       allow: Allowances = NO_ALLOWANCES) -> UpResult:
    from ..lxd import setup

    say = lambda message: report("lab", message)
    lab = load(path, session, allow)  # nothing is touched before the file is known to be right
    with LabLock(lab.name, "up") as lock:
        if lock.recovered:
            say(lock.recovered)
        setup.ensure_lxd(session, say)  # installs, starts and initialises LXD on a fresh machine
        lab = load(path, session, allow)  # again, now that LXD surely answers (images, pools, other labs' ids)
        sshkeys.ensure_keypair(lab.name)  # before the profile: its user-data carries the public key
        prepared = prepare.prepare(session, lab, say)
        lxd = session.lab(lab.project)
        built = _guest_images(lab, say)
        have = observe(lxd, guests=True)  # what hosts reported that was left out: in the plan's warnings
        want = _desired(lab, lxd, prepared, have, built)
        the_plan = make_plan(want, have)
        applied = apply.Applied() if the_plan.empty else apply.apply(lxd, lab, want, the_plan, report, workers)
        reached = hostkeys.trust(lxd, lab.name, say)
        sshfiles.write(lab.name, {host: next(iter(found), None) for host, found in reached.items()}, say)
        links.declared(lxd, lab, say)  # the lab file's impaired links, on the hosts' veths of now
        from . import guestapply  # after the hosts: guests live inside them

        guests = guestapply.apply(lxd, lab, want, the_plan, have, built, report)
        remember(lab, path)
        return UpResult(lab, the_plan, applied, lock.recovered, guests)


def down(session, lab: str | Path | None, report: Report) -> tuple[Plan, float]:
    name = lab_name(lab)
    with LabLock(name, "down") as lock:
        if lock.recovered:
            report("lab", lock.recovered)
        lxd = session.lab(t.project_name(name))
        the_plan = teardown_plan(name, lxd.project, observe(lxd))
        seconds = apply.teardown(lxd, the_plan, report)
        if links.remove(name):  # after the hosts: their veths (and qdiscs) went with them
            report("lab", f"deleting table bridge {impair.table_name(name)} (impaired links)")
        state.remove(name)  # its SSH keys, known_hosts and ssh config (and anything else kept for it)
        sshfiles.refresh()  # a bare host name it had may be another lab's alone now
        return the_plan, seconds


def status(session, lab: str | Path | None, guests: bool = True) -> status_mod.LabStatus:
    """The lab as the daemon has it (see `status.read`)."""
    name = lab_name(lab)
    return status_mod.read(session.lab(t.project_name(name)), name, guests)


def verify(session, lab: str | Path | None, say: Callable[[str], None] = lambda _m: None) -> tuple[t.Lab, list]:
    from . import verify as verify_mod

    the_lab = remembered(session, lab)
    the_status = status(session, the_lab.name)
    if not the_status.exists:
        raise LxdkvmError(f"lab {the_lab.name} is not up (`lxdkvm up` first)")
    return the_lab, verify_mod.verify(session.lab(the_lab.project), the_lab, the_status, say)
