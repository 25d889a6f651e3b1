"""What a lab snapshot is, as plain data: its name, each host's state and each guest's state at that
moment, and the lab file in force then. Kept as JSON in the lab's state directory (root only); read back
strictly, since a file can be edited or damaged between the two commands."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

from ..errors import LxdkvmError
from ..labfile import checks
from ..labfile import topology as t
from ..labfile.guestchecks import GUEST_NAME

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
NAME_RULE = "a snapshot name is 1-40 lowercase letters, digits and '-', starting with a letter or digit"
HOST_STATES = ("Running", "Stopped")
SAVED = "saved"  # a guest whose memory the snapshot holds (it was running); any other state is kept as is
VERSION = 1


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise LxdkvmError(f"{name!r} is not a snapshot name: {NAME_RULE}")
    return name


def default_name(now: float | None = None) -> str:
    return time.strftime("s-%Y%m%d-%H%M%S", time.gmtime(now))


@dataclass(frozen=True)
class Host:
    status: str  # Running or Stopped, as LXD had it
    guests: dict[str, str] = field(default_factory=dict)  # guest → SAVED, or the state libvirt had

    @property
    def saved(self) -> list[str]:
        return sorted(g for g, state in self.guests.items() if state == SAVED)


@dataclass(frozen=True)
class Snapshot:
    name: str
    lab: str
    created: float  # seconds since the epoch
    seconds: float  # how long taking it took
    hosts: dict[str, Host]
    lab_file: str  # the file the lab's last `up` used

    def as_dict(self) -> dict:
        return {"version": VERSION, "name": self.name, "lab": self.lab, "created": self.created,
                "seconds": round(self.seconds, 3), "lab_file": self.lab_file,
                "hosts": {h: {"status": r.status, "guests": dict(sorted(r.guests.items()))}
                          for h, r in sorted(self.hosts.items())}}

    def summary(self) -> dict:
        """What `snapshot list` shows of it."""
        return {"name": self.name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
                "seconds": round(self.seconds, 3), "hosts": len(self.hosts),
                "guests_saved": sum(len(h.saved) for h in self.hosts.values()),
                "guests_off": sum(len(h.guests) - len(h.saved) for h in self.hosts.values())}


def to_json(snapshot: Snapshot) -> str:
    return json.dumps(snapshot.as_dict(), indent=1) + "\n"


def from_json(text: str, where: str) -> Snapshot:
    """A snapshot record, every field checked; LxdkvmError naming WHERE and the field otherwise."""
    def bad(what: str) -> LxdkvmError:
        return LxdkvmError(f"{where}: not a valid lxdkvm snapshot record ({what})")

    try:
        data = json.loads(text)
    except ValueError as exc:
        raise bad(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise bad("unknown version")
    name, lab, hosts = data.get("name"), data.get("lab"), data.get("hosts")
    if not isinstance(name, str) or not NAME.match(name):
        raise bad("name")
    if not isinstance(lab, str) or not checks.LAB_NAME.match(lab):
        raise bad("lab")
    numbers = [data.get("created"), data.get("seconds")]
    if not all(isinstance(n, (int, float)) and not isinstance(n, bool) and n >= 0 for n in numbers):
        raise bad("created/seconds")
    if not isinstance(data.get("lab_file"), str) or not isinstance(hosts, dict):
        raise bad("lab_file/hosts")
    return Snapshot(name, lab, float(numbers[0]), float(numbers[1]),
                    {h: _host(h, r, bad) for h, r in hosts.items()}, data["lab_file"])


def _host(name: object, record: object, bad) -> Host:
    if not isinstance(name, str) or not checks.HOST_NAME.match(name) or not isinstance(record, dict):
        raise bad(f"host {name!r}")
    guests = record.get("guests")
    if record.get("status") not in HOST_STATES or not isinstance(guests, dict):
        raise bad(f"host {name}: status/guests")
    for guest, state in guests.items():
        if not isinstance(guest, str) or not GUEST_NAME.match(guest) or not isinstance(state, str) \
                or not re.fullmatch(r"[a-z ]{1,20}", state):
            raise bad(f"host {name}: guest {guest!r}")
    return Host(record["status"], dict(guests))


def differences(then: t.Lab, now: t.Lab | None) -> list[str]:
    """What differs between the lab file a snapshot was taken with (THEN) and the one in force NOW, in
    words, each with what `restore` does about it."""
    if now is None:
        return []
    lines = []
    for what, old, new in (("host", {h.name for h in then.hosts}, {h.name for h in now.hosts}),
                           ("network", {n.name for n in then.networks}, {n.name for n in now.networks}),
                           ("guest", {g.name for g in then.guests}, {g.name for g in now.guests})):
        for name in sorted(new - old):
            lines.append(f"{what} {name} is in the lab file now, not in the snapshot: "
                         + ("restore deletes it" if what == "host" else
                            "restore leaves it to the next `up`" if what == "network" else
                            "it goes with the host it is on"))
        for name in sorted(old - new):
            lines.append(f"{what} {name} is in the snapshot, not in the lab file now: restore brings it back")
    changed = sorted(h.name for h in then.hosts if now.host(h.name) and now.host(h.name) != h)
    lines += [f"host {name} is declared differently now: restore brings back its snapshot's settings"
              for name in changed]
    return lines
