"""What one run of lxdkvm was asked to talk to, as a value: which daemon (LXD or Incus), which daemon
directory, and whether new hosts' root filesystems are mounted idmapped.

Read once from the environment (`from_env`), then overridden by the command line (`--daemon`,
`--lxd-dir`) with `dataclasses.replace`; the CLI hands the value down instead of writing environment
variables. `child_env` is what a program lxdkvm starts (`lxc exec`, `incus exec`) needs to reach the
same daemon.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DAEMON_ENV = "LXDKVM_DAEMON"
IDMAPPED_ROOTS_ENV = "LXDKVM_IDMAPPED_ROOTS"  # "off": let LXD chown new hosts' files (docs/security.md)


@dataclass(frozen=True)
class Settings:
    daemon: str = ""  # "lxd", "incus", or "" / "auto": LXD where it is installed, else Incus
    lxd_dir: str = ""  # a daemon's directory (its unix.socket), e.g. a member of the sandbox cluster
    incus_dir: str = ""  # Incus's directory when not /var/lib/incus
    idmapped_roots: bool = True  # False: LXD chowns each new host's files at its first start

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(daemon=env.get(DAEMON_ENV, ""), lxd_dir=env.get("LXD_DIR", ""),
                   incus_dir=env.get("INCUS_DIR", ""),
                   idmapped_roots=env.get(IDMAPPED_ROOTS_ENV, "") != "off")

    def child_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """BASE (default: this process's environment) plus what makes `lxc`/`incus` reach this daemon."""
        env = dict(os.environ if base is None else base)
        for key, value in (("LXD_DIR", self.lxd_dir), ("INCUS_DIR", self.incus_dir), (DAEMON_ENV, self.daemon)):
            if value:
                env[key] = value
        return env
