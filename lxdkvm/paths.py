"""Every directory and file lxdkvm keeps on this machine, in one place.

- state (`$LXDKVM_STATE_DIR`, default /var/lib/lxdkvm): each lab's files (`labs/<lab>`: its SSH keys,
  known_hosts, the lab file its last `up` used), imported guest images, what is known of KVM for guests;
  the sandbox cluster (`$LXDKVM_SANDBOX_DIR`, default /var/lib/lxdkvm/cluster-sandbox);
- run (`$LXDKVM_RUN_DIR`, default /run/lxdkvm): locks, gone at reboot like the processes holding them;
- cache (`$LXDKVM_CACHE`, default `$XDG_CACHE_HOME/lxdkvm` or ~/.cache/lxdkvm): image builds, rebuilt on
  demand.

The environment variables are the user's (and the tests'); lxdkvm itself never sets them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

STATE_DEFAULT = "/var/lib/lxdkvm"
RUN_DEFAULT = "/run/lxdkvm"


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def state_root(env: Mapping[str, str] | None = None) -> Path:
    return Path(_env(env).get("LXDKVM_STATE_DIR") or STATE_DEFAULT)


def labs_root(env: Mapping[str, str] | None = None) -> Path:
    """Where each lab's state directory is (`lab.state`)."""
    return state_root(env) / "labs"


def guest_images(env: Mapping[str, str] | None = None) -> Path:
    """Guest images root imported (`guests.store`)."""
    return state_root(env) / "guest-images"


def kvm_guest_boot(env: Mapping[str, str] | None = None) -> Path:
    """What is known of KVM for guests on this machine (`guests.kvmboot`)."""
    return state_root(env) / "kvm-guest-boot.json"


def sandbox_root(env: Mapping[str, str] | None = None) -> Path:
    """The sandbox cluster's daemons and namespaces (`cluster.sandbox`)."""
    return Path(_env(env).get("LXDKVM_SANDBOX_DIR") or f"{STATE_DEFAULT}/cluster-sandbox")


def run_dir(env: Mapping[str, str] | None = None) -> Path:
    return Path(_env(env).get("LXDKVM_RUN_DIR") or RUN_DEFAULT)


def lab_locks(env: Mapping[str, str] | None = None) -> Path:
    """One lock file per lab (`lab.lock`)."""
    return run_dir(env) / "labs"


def create_lock(env: Mapping[str, str] | None = None) -> Path:
    """Serialises container creations in which the daemon allocates an id range (`lxd.instances`)."""
    return run_dir(env) / "create.lock"


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    env = _env(env)
    return Path(env.get("LXDKVM_CACHE") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lxdkvm"))
