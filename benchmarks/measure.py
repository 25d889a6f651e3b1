"""What the benchmark scripts share: a container's idle memory, the machine line, a busy machine, the
migration lab, and the subnets the benchmarks' labs take."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The 10.N.0.0/16 ranges the benchmarks' labs take their subnets from. No test uses one of them
# (tests/unit/test_benchmark_subnets.py), so a benchmark and the suite can run on one machine at once:
# a lab refuses a subnet that a route of the machine already covers.
SUBNETS = range(243, 254)
# Two hosts on an isolated network and two 256 MiB tiny guests on the first, one without a disk (memory
# and device state only) and one with a 256 MiB disk: what migration.py and transport.py move.
MIGRATION_LAB = """
name: {name}
networks:
  - {{name: data, subnet: {base}.20.0/24, mode: isolated}}
hosts:
  - name: {prefix}-[1-2]
    networks: [{{network: data, ipv4: {base}.20.11}}]
guests:
  - name: mem-only
    host: {prefix}-1
    memory: 256MiB
    networks: [{{network: data, ipv4: {base}.20.51}}]
  - name: with-disk
    host: {prefix}-1
    memory: 256MiB
    disk: {{size: 256MiB}}
    networks: [{{network: data, ipv4: {base}.20.52}}]
"""


def migration_lab(name: str, prefix: str, base: str) -> str:
    """MIGRATION_LAB named NAME, its hosts PREFIX-1 and PREFIX-2 at BASE.20.11 and .12 (BASE: "10.N")."""
    return MIGRATION_LAB.format(name=name, prefix=prefix, base=base)


def lxdkvm(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    """`lxdkvm ARGS` run as a person runs it (its own process, start-up included): (wall seconds, result)."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "lxdkvm", *args], capture_output=True, text=True, check=False)
    return time.monotonic() - start, done


@contextmanager
def busy_cores(busy: bool = True) -> Iterator[None]:
    """While the block runs, a process spins on every core of the machine (none when BUSY is false)."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(os.cpu_count() or 1)] if busy else []
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


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


def machine_lines(lxd_version: str, storage: str, daemon: str = "LXD") -> str:
    """The date and machine lines of a results file (markdown list items); DAEMON: "LXD" or "Incus"."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
            f"- machine: {os.cpu_count()} cores, {memory:.0f} GiB,\n"
            f"  kernel {platform.release()}, {daemon} {lxd_version}, {storage}")


def _payload(instance: str, project: str) -> str:
    return f"lxc.payload.{instance}" if project == "default" else f"lxc.payload.{project}_{instance}"


def cpu_seconds(instance: str, project: str = "default") -> float:
    """CPU time used so far by everything in a container (its cgroup: v1 cpuacct.usage, or v2
    cpu.stat usage_usec)."""
    payload = _payload(instance, project)
    v1, v2 = Path(f"/sys/fs/cgroup/cpuacct/{payload}/cpuacct.usage"), Path(f"/sys/fs/cgroup/{payload}/cpu.stat")
    if v1.exists():
        return int(v1.read_text()) / 1e9
    if v2.exists():
        for line in v2.read_text().splitlines():
            field, _, value = line.partition(" ")
            if field == "usage_usec":
                return int(value) / 1e6
    raise RuntimeError(f"no cpu cgroup found for {project}/{instance}")


def machine_busy_seconds() -> float:
    """CPU-seconds the whole machine spent busy since boot (all cores; /proc/stat minus idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def daemon_seconds(names: tuple[str, ...] = ("lxd", "incusd"), state_dirs: tuple[str, ...] = (
        "/var/lib/lxd", "/var/lib/incus")) -> float:
    """CPU-seconds of the machine's container daemon process(es) themselves: the remap of a new
    container's filesystem runs there. Not their reaped children: those include every command run by
    exec, whose CPU the container's cgroup already counts. Daemons with another state directory
    (LXD_DIR/INCUS_DIR, e.g. a cluster sandbox) are not counted."""
    total = 0.0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            text = (proc / "stat").read_text()
            comm = text[text.index("(") + 1:text.rindex(")")]
            if comm not in names:
                continue
            env = dict(v.split("=", 1) for v in (proc / "environ").read_text().split("\0") if "=" in v)
        except OSError:
            continue
        if env.get("LXD_DIR", env.get("INCUS_DIR", state_dirs[names.index(comm)])) not in state_dirs:
            continue
        fields = text[text.rindex(")") + 2:].split()
        total += sum(int(v) for v in fields[11:13]) / os.sysconf("SC_CLK_TCK")
    return total
