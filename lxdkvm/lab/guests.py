"""A person's actions on one guest of a lab that is up: find it, run a command in it, reach its console,
move it to another host (`guests.ops` does the work inside the hosts)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import LxdkvmError
from ..labfile import topology as t
from .load import lab_name
from .lock import LabLock

Warn = Callable[[str], None]  # what a host reported that was left out (readback)


def _find(session, lab: str | Path | None, guest: str, warn: Warn):
    """(lab name, its `LabScope`, its running hosts, where GUEST runs)."""
    from ..guests import ops

    name = lab_name(lab)
    lxd = session.lab(t.project_name(name))
    hosts = sorted(h for h, info in lxd.instances.all().items() if info["status"] == "Running")
    return name, lxd, hosts, ops.locate(lxd.instances, hosts, name, guest, warn)


def guest_exec(session, lab: str | Path | None, guest: str, command: list[str],
               timeout: float = 60, warn: Warn = lambda _m: None) -> tuple[str, str, int]:
    """(stdout, stderr, exit code) of COMMAND run in GUEST (through lxdkvm's agent in it)."""
    from ..guests import ops

    _name, lxd, _hosts, where = _find(session, lab, guest, warn)
    return ops.guest_exec(lxd.instances, where, command, timeout)


def console_host(session, lab: str | Path | None, guest: str, warn: Warn = lambda _m: None) -> tuple[str, str]:
    """(project, host) where GUEST's console is (`virsh console GUEST` there)."""
    name, _lxd, _hosts, where = _find(session, lab, guest, warn)
    return t.project_name(name), where.host


def migrate(session, lab: str | Path | None, guest: str, to: str, live: bool = True,
            say: Callable[[str], None] = lambda _m: None, warn: Warn = lambda _m: None,
            max_downtime_ms: int | None = None) -> dict:
    """Move GUEST to host TO (`guests.migration.migrate`), within MAX_DOWNTIME_MS (default: its default)."""
    from ..guests import migration

    name, lxd, hosts, where = _find(session, lab, guest, warn)
    if to not in hosts:
        raise LxdkvmError(f"lab {name} has no running host {to} (running: {', '.join(hosts) or 'none'})")
    with LabLock(name, "migrate"):
        return migration.migrate(lxd.instances, where, to, live, say,
                                 max_downtime_ms or migration.MAX_DOWNTIME_MS)
