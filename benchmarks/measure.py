"""What both benchmark scripts read from the machine: a container's idle memory, and the machine line."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def anon_bytes(instance: str, project: str = "default") -> int:
    """Anonymous memory of a container's cgroup (v1 total_rss, or v2 anon). LXD names the cgroup
    lxc.payload.<name>, or lxc.payload.<project>_<name> outside the default project."""
    payload = f"lxc.payload.{instance}" if project == "default" else f"lxc.payload.{project}_{instance}"
    for path, key in ((f"/sys/fs/cgroup/memory/{payload}/memory.stat", "total_rss"),
                      (f"/sys/fs/cgroup/{payload}/memory.stat", "anon")):
        if os.path.exists(path):
            for line in Path(path).read_text().splitlines():
                field, _, value = line.partition(" ")
                if field == key:
                    return int(value)
    raise RuntimeError(f"no memory cgroup found for {project}/{instance}")


def machine_lines(lxd_version: str, storage: str) -> str:
    """The date and machine lines of a results file (markdown list items)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
            f"- machine: {os.cpu_count()} cores, {memory:.0f} GiB,\n"
            f"  kernel {platform.release()}, LXD {lxd_version}, {storage}")
