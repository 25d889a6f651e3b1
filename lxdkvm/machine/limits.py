"""The machine's kernel limits a lab of N hosts runs into, what each host takes of them, and the values
lxdkvm sets so the lab sizes this machine can hold come up.

Every lab host is a container in a user namespace that root (the daemon) owns, and the kernel charges a
namespace's inotify instances and watches to its owner (`ucounts`): all hosts together share root's
`fs.inotify.max_user_*`. Debian's default of 128 instances stops the 24th or so host at boot ("Failed to
create control group inotify object: Too many open files", systemd in the host). Each host also puts its
addresses in the machine's neighbour tables (one per NAT network it is on, and its guests' when they are
bridged there) and its tasks under `kernel.pid_max`.

`PER_HOST` is what one lab host takes, measured in a running KVM host with libvirtd and a guest
(tests/integration/test_limits.py checks a real host stays within it); `BASE` is what the machine
itself may take first. `SETTINGS` are LXD's production-setup values
(https://documentation.ubuntu.com/lxd/en/latest/reference/server_settings/), which hold for any number
of hosts this machine's memory can hold: `ensure` writes them to `CONF` (only raising, never lowering
what the machine already has) and applies them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

CONF = "/etc/sysctl.d/60-lxdkvm.conf"
PROC_SYS = "/proc/sys"
IDLE_HOST_MIB = 128  # what an idle lab host takes of the machine's memory, with room (measured: 87 MiB)


@dataclass(frozen=True)
class Limit:
    key: str  # the sysctl
    per_host: int  # what one lab host takes of it
    base: int  # what the machine itself may take of it before any host
    setting: int  # the value lxdkvm sets (LXD's production setup)
    what: str  # what runs out, in a person's words

    def needed(self, hosts: int) -> int:
        return self.base + self.per_host * hosts

    def holds(self, value: int) -> int:
        """How many lab hosts VALUE leaves room for."""
        return max(0, (value - self.base) // self.per_host)


LIMITS = (  # per host: twice what a KVM host with libvirtd running took here (8 instances, 30 watches, 30 tasks)
    Limit("fs.inotify.max_user_instances", 16, 32, 1048576,
          "inotify instances, shared by every host: systemd in a host cannot boot without them"),
    Limit("fs.inotify.max_user_watches", 64, 8192, 1048576,
          "inotify watches, shared by every host"),
    Limit("net.ipv4.neigh.default.gc_thresh3", 4, 256, 8192,
          "the machine's ARP table: each host's address on each NAT network, and its bridged guests'"),
    Limit("net.ipv6.neigh.default.gc_thresh3", 4, 256, 8192,
          "the machine's IPv6 neighbour table"),
    Limit("kernel.pid_max", 200, 4096, 4194304,
          "process and thread ids: a host's systemd, libvirtd and its guests' QEMU threads"),
)


def path_of(key: str, root: str = PROC_SYS) -> Path:
    return Path(root, *key.split("."))


def read(root: str = PROC_SYS) -> dict[str, int | None]:
    """The machine's value of each limit (None: this kernel has no such setting)."""
    values: dict[str, int | None] = {}
    for limit in LIMITS:
        try:
            values[limit.key] = int(path_of(limit.key, root).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            values[limit.key] = None
    return values


def capacity_by_memory(mem_total: int) -> int:
    """How many idle lab hosts MEM_TOTAL bytes of memory hold."""
    return mem_total // 2**20 // IDLE_HOST_MIB


def conf_text(values: Mapping[str, int | None]) -> str:
    """/etc/sysctl.d/60-lxdkvm.conf: each limit at lxdkvm's setting, or at the machine's own value where
    that is higher, with where the values come from."""
    lines = ["# Written by lxdkvm (`lxdkvm setup`, `lxdkvm up`): kernel limits that many lab hosts share.",
             "# Values from LXD's production setup guide (reference/server_settings); a value the machine",
             "# already had higher is kept. Remove this file and reboot to go back to the kernel's defaults."]
    for limit in LIMITS:
        if values.get(limit.key) is None:
            continue
        lines += [f"# {limit.what}: about {limit.per_host} per lab host",
                  f"{limit.key} = {max(limit.setting, values[limit.key] or 0)}"]
    return "\n".join(lines) + "\n"


def ensure(report: Callable[[str], None] = lambda _m: None, root: str = PROC_SYS, conf: str = CONF) -> list[str]:
    """Raise every limit below lxdkvm's setting, now (in ROOT) and at boot (CONF); the keys raised. A
    machine that does not let it (a read-only /proc/sys, as in a container) is told, not stopped: `doctor`
    says which lab sizes its limits hold."""
    values = read(root)
    low = [limit for limit in LIMITS if values[limit.key] is not None and values[limit.key] < limit.setting]
    wanted, target, raised = conf_text(values), Path(conf), []
    try:
        if not (target.exists() and target.read_text() == wanted):
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            partial.write_text(wanted)
            partial.replace(target)
    except OSError as exc:
        report(f"warning: cannot write {conf} ({exc.strerror}): the limits below are raised until reboot only")
    for limit in low:
        try:
            path_of(limit.key, root).write_text(f"{limit.setting}\n")
        except OSError as exc:
            report(f"warning: cannot raise {limit.key} from {values[limit.key]} ({exc.strerror}): it holds "
                   f"about {limit.holds(values[limit.key] or 0)} lab hosts (`lxdkvm doctor`)")
            continue
        report(f"raised {limit.key} from {values[limit.key]} to {limit.setting} ({limit.what}; {conf})")
        raised.append(limit.key)
    return raised
