"""Which daemon lxdkvm talks to, LXD or Incus (the same API, a different socket), and why.

LXD is the default wherever it is installed or running, so nothing changes for a machine that has it.
Incus is used when asked for (`--daemon incus` or `LXDKVM_DAEMON=incus`: `settings.Settings.daemon`) or
when it is the only one present. `LXD_DIR` (and `INCUS_DIR` for Incus) still name a daemon's directory.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import LxdkvmError
from ..settings import DAEMON_ENV as ENV
from ..settings import Settings

CHOICES = ("lxd", "incus")
LXD_SOCKETS = ("/var/snap/lxd/common/lxd/unix.socket", "/var/lib/lxd/unix.socket")
INCUS_DIR = "/var/lib/incus"
INCUSD = "/usr/libexec/incus/incusd"  # Debian's incus-base puts the daemon here, not on PATH
NAMES = {"lxd": "LXD", "incus": "Incus"}
CLIENTS = {"lxd": "lxc", "incus": "incus"}


@dataclass(frozen=True)
class Daemon:
    kind: str  # "lxd" or "incus"
    socket: str
    reason: str  # why this daemon: the setting, or what was found on the machine

    @property
    def name(self) -> str:
        return NAMES[self.kind]

    @property
    def client(self) -> str:
        """Its command-line client (`lxc` or `incus`)."""
        return CLIENTS[self.kind]

    @property
    def state_dir(self) -> str:
        return os.path.dirname(self.socket)


def lxd_present() -> bool:
    """LXD's socket exists or its package is installed."""
    return (any(os.path.exists(p) for p in LXD_SOCKETS) or bool(shutil.which("lxd"))
            or Path("/usr/sbin/lxd").exists() or Path("/usr/bin/lxd").exists())


def incus_present() -> bool:
    """Incus's socket exists or its daemon is installed."""
    return os.path.exists(os.path.join(INCUS_DIR, "unix.socket")) or Path(INCUSD).exists()


def _incus_socket(settings: Settings) -> str:
    return os.path.join(settings.incus_dir or INCUS_DIR, "unix.socket")


def _lxd_socket() -> str:
    return next((p for p in LXD_SOCKETS if os.path.exists(p)), LXD_SOCKETS[-1])


def others(chosen: Daemon, settings: Settings) -> list[Daemon]:
    """The other daemon of this machine, when its socket is there: LXD and Incus both take isolated id
    ranges from root's one subordinate range, so whoever chooses a range must see both."""
    candidates = [Daemon("lxd", _lxd_socket(), "the other daemon"),
                  Daemon("incus", _incus_socket(settings), "the other daemon")]
    return [d for d in candidates if d.kind != chosen.kind and os.path.exists(d.socket)]


def selected(settings: Settings) -> Daemon:
    """The daemon lxdkvm talks to. Raises LxdkvmError for an unknown daemon setting."""
    choice = settings.daemon.strip().lower()
    if choice not in ("", "auto", *CHOICES):
        raise LxdkvmError(f"{ENV}={settings.daemon!r} is not a daemon lxdkvm knows: use lxd or incus "
                          "(or leave it unset: LXD where it is installed, else Incus)")
    if settings.lxd_dir and choice != "incus":
        path = os.path.join(settings.lxd_dir, "unix.socket")
        kind = "incus" if os.path.realpath(settings.lxd_dir) == os.path.realpath(INCUS_DIR) else "lxd"
        return Daemon(kind, path, f"LXD_DIR={settings.lxd_dir}")
    if choice == "incus":
        return Daemon("incus", _incus_socket(settings), f"{ENV}=incus")
    if choice == "lxd":
        return Daemon("lxd", _lxd_socket(), f"{ENV}=lxd")
    if lxd_present():
        return Daemon("lxd", _lxd_socket(), "LXD is installed (the default)")
    if incus_present():
        return Daemon("incus", _incus_socket(settings), "only Incus is installed")
    return Daemon("lxd", _lxd_socket(), "neither is installed: LXD is the default")
