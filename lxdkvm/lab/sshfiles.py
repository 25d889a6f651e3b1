"""A lab's ssh config on this machine (`sshconfig` renders it): what `lxdkvm ssh-config` prints and what
`up` writes to the lab's state directory (`ssh_config`, beside its key and known_hosts), for a user's
`Include /var/lib/lxdkvm/labs/LAB/ssh_config`.

Beside it `up` keeps a record of the lab's hosts and their management addresses (`ssh_hosts.json`). A bare
host name is unambiguous when no other recorded lab has a host of that name; since another lab's `up` or
`down` can change that, every recorded lab's config is rewritten from its record whenever one lab's
hosts change (under a lock, each file replaced atomically). Labs brought up without a record (older
lxdkvm) have no ssh config, so they claim no name.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable
from pathlib import Path

from ..errors import LxdkvmError
from . import sshkeys, state
from . import sshconfig

RECORD = "ssh_hosts.json"
LOCK = ".ssh_config.lock"


def access(lab: str) -> sshconfig.Access:
    return sshconfig.Access(sshkeys.LAB_USER, sshkeys.private_key_path(lab), sshkeys.known_hosts_path(lab))


def config_path(lab: str) -> Path:
    return state.path(lab) / sshconfig.CONFIG


def usable(addresses: dict[str, str | None]) -> tuple[dict[str, str], list[str]]:
    """The hosts an ssh config can name (host → address), and a warning for each one left out."""
    kept, warnings = {}, []
    for host, address in sorted(addresses.items()):
        if not address:
            warnings.append(f"{host}: no address on a NAT network (this machine reaches none other): "
                            "left out of the ssh config")
            continue
        try:
            kept[sshconfig.check("host", host)] = sshconfig.check("address", address)
        except LxdkvmError as exc:
            warnings.append(f"{exc} (left out)")
    return kept, warnings


def records() -> dict[str, dict[str, str]]:
    """Every lab's recorded hosts (lab → host → address); a record that does not parse is skipped."""
    found = {}
    root = state.root()
    for path in sorted(root.glob(f"*/{RECORD}")) if root.is_dir() else ():
        try:
            data = json.loads(path.read_text())
            lab = sshconfig.check("lab", path.parent.name)
            found[lab] = {sshconfig.check("host", h): sshconfig.check("address", a) for h, a in data.items()}
        except (OSError, ValueError, AttributeError, LxdkvmError):
            continue
    return found


def text(lab: str, addresses: dict[str, str], known: dict[str, dict[str, str]]) -> str:
    """LAB's ssh config, its bare names decided against the other labs KNOWN (`records()`)."""
    others = {other: set(hosts) for other, hosts in known.items()}
    bare = sshconfig.bare_names(lab, set(addresses), others)
    return sshconfig.render(lab, addresses, access(lab), bare)


class _Locked:
    """The state directory's ssh-config lock: one rewrite of every lab's config at a time."""

    def __enter__(self):
        root = state.root()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.handle = open(root / LOCK, "a")  # noqa: SIM115 - held until __exit__
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *_exc) -> None:
        self.handle.close()


def _rewrite_all(known: dict[str, dict[str, str]]) -> list[str]:
    """Every recorded lab's config again; a lab whose config cannot be written safely (e.g. a state
    directory whose path ssh would expand) has none, and a warning says why."""
    warnings = []
    for lab, addresses in known.items():
        if not state.path(lab).is_dir():
            continue
        try:
            sshkeys.write_atomic(config_path(lab), text(lab, addresses, known).encode(), 0o600)
        except LxdkvmError as exc:
            config_path(lab).unlink(missing_ok=True)
            warnings.append(f"lab {lab}: no ssh config: {exc}")
        except OSError:
            if state.path(lab).is_dir():
                raise
            # that lab went down meanwhile (`down` removes its directory without this lock)
    return warnings


def write(lab: str, addresses: dict[str, str | None], say: Callable[[str], None] = lambda _m: None) -> Path:
    """Record LAB's hosts (host → management address) and write its ssh config, and every other recorded
    lab's again (a bare name they had may now be ambiguous)."""
    kept, warnings = usable(addresses)
    for warning in warnings:
        say(warning)
    with _Locked():
        directory = state.state_dir(lab)
        sshkeys.write_atomic(directory / RECORD, (json.dumps(kept, indent=1, sort_keys=True) + "\n").encode(),
                             0o600)
        warnings = _rewrite_all(records())
    for warning in warnings:
        say(warning)
    return config_path(lab)


def refresh() -> None:
    """Rewrite every recorded lab's config (after a lab went down: its bare names may be free again);
    nothing at all where no lab has a record."""
    if not records():
        return
    with _Locked():
        _rewrite_all(records())


def live(session, lab: str) -> tuple[str, list[str]]:
    """LAB's ssh config as its hosts are now (read through LXD), and warnings about hosts left out."""
    from . import status as status_mod
    from ..labfile import topology as t

    found = status_mod.read(session.lab(t.project_name(lab)), lab, guests=False)
    if not found.exists:
        raise LxdkvmError(f"lab {lab} is not up; `lxdkvm up` it first")
    for path in (sshkeys.private_key_path(lab), sshkeys.known_hosts_path(lab)):
        if not path.is_file():
            raise LxdkvmError(f"lab {lab} has no {path}; run `lxdkvm up` for it again")
    nat = found.nat_networks
    kept, warnings = usable({h.name: h.management_address(nat) for h in found.hosts if h.running})
    return text(lab, kept, records()), [*found.warnings, *warnings]
