"""One `up` or `down` per lab at a time.

An flock on /run/lxdkvm/labs/<lab>.lock. The kernel drops the lock when its process dies, however it
dies, so a lock left by a killed run never blocks the next one; the pid written into the file lets
the next run say whose lock it was.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Self

from .. import paths
from ..errors import LxdkvmError


class LabBusy(LxdkvmError):
    """Another lxdkvm process is changing this lab."""


def lock_dir() -> Path:
    return paths.lab_locks()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LabLock:
    """`with LabLock(lab, "up") as lock:` — raises LabBusy when another run holds it.
    `lock.recovered` describes a lock left behind by a process that is gone, if there was one."""

    def __init__(self, lab: str, command: str) -> None:
        self.path = lock_dir() / f"{lab}.lock"
        self.lab, self.command = lab, command
        self.recovered = ""
        self._handle = None

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid, _, what = handle.read().strip().partition(" ")
            handle.close()
            holder = f"pid {pid} ({what})" if pid.isdigit() else "another lxdkvm process"
            raise LabBusy(f"lab {self.lab} is busy: {holder} holds {self.path}; wait for it to finish "
                          "or stop it") from None
        handle.seek(0)
        previous = handle.read().split()
        if previous and previous[0].isdigit() and int(previous[0]) != os.getpid():
            pid = int(previous[0])
            state = "still running but no longer holding it" if _alive(pid) else "no longer running"
            self.recovered = f"recovered the lock of an interrupted run (pid {pid}, {state})"
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} `lxdkvm {self.command}` since {time.strftime('%H:%M:%S')}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._handle:
            self._handle.seek(0)
            self._handle.truncate()  # an empty file: released cleanly
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
