"""A lab's own files on this machine: its SSH key pair, its known_hosts, guests' console logs.

`$LXDKVM_STATE_DIR/labs/<lab>` (default `/var/lib/lxdkvm/labs/<lab>`), mode 0700: only root reads a
lab's private key. `up` makes it, `down` removes it with everything in it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .. import paths
from ..errors import LxdkvmError

DEFAULT_ROOT = "/var/lib/lxdkvm"


def root() -> Path:
    return paths.labs_root()


def path(lab_name: str) -> Path:
    """Where LAB_NAME's state lives, whether or not it exists (nothing is created)."""
    if not lab_name or "/" in lab_name or lab_name in (".", ".."):
        raise LxdkvmError(f"{lab_name!r} is not a lab name")
    return root() / lab_name


def state_dir(lab_name: str) -> Path:
    """LAB_NAME's state directory, created (mode 0700, also when it existed with a looser mode)."""
    directory = path(lab_name)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
    except OSError as exc:
        raise LxdkvmError(f"cannot create the lab's state directory {directory}: {exc.strerror}") from None
    return directory


def remove(lab_name: str) -> bool:
    """Delete LAB_NAME's state directory and everything in it; False when there was none."""
    directory = path(lab_name)
    if not directory.exists():
        return False
    try:
        shutil.rmtree(directory)
    except OSError as exc:
        raise LxdkvmError(f"cannot remove the lab's state directory {directory}: {exc.strerror}") from None
    return True
