"""nftables tables lxdkvm owns on this machine (`lab.fence`): load one, read which one is in place, remove
one. The one place lxdkvm runs `nft`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from ..errors import LxdkvmError

INSTALL = "apt-get install nftables (`lxdkvm setup` does)"


def _nft(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    program = shutil.which("nft") or "/usr/sbin/nft"
    try:
        done = subprocess.run([program, *args], input=stdin, capture_output=True, text=True, timeout=60,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LxdkvmError(f"nft {' '.join(args)} failed: {exc} ({INSTALL})") from None
    if check and done.returncode != 0:
        raise LxdkvmError(f"nft {' '.join(args)} failed: {done.stderr.strip()[-600:]}")
    return done


def load(script: str) -> None:
    """Run SCRIPT (`nft -f -`): all of it or nothing, in one transaction."""
    _nft("-f", "-", stdin=script)


def digest(table: str) -> str | None:
    """The digest in lxdkvm's comment on `inet TABLE`, "" for a table without one, None when it does not
    exist."""
    done = _nft("list", "table", "inet", table, check=False)
    if done.returncode != 0:
        return None
    found = re.search(r'comment "lxdkvm lab \S+ ([0-9a-f]{16})"', done.stdout)
    return found.group(1) if found else ""


def remove(table: str) -> bool:
    """Delete `inet TABLE`; False when there was none."""
    if digest(table) is None:
        return False
    _nft("delete", "table", "inet", table)
    return True


def available() -> bool:
    return bool(shutil.which("nft") or os.path.exists("/usr/sbin/nft"))
