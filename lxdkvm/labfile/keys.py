"""The instance config keys a lab file may set (hosts' `config:`, `defaults.config`, profiles' `config:`),
as data: key (or prefix) → validator of its value → what it means. An allow-list: a key that is not in
`KEYS` is refused, whatever LXD would make of it — LXD's legacy spellings (the `blacklist`/`whitelist`
seccomp keys turned seccomp off while only the current names were refused), `volatile.*`, `image.*`,
keys a newer LXD adds, typos.

Values are data, never syntax: LXD writes some keys into the container's raw LXC config one per line
(`linux.sysctl.*`, `environment.*`), so a line break in a value was a new line of LXC config
(`lxc.hook.pre-start`, run as root on the machine). Each validator says what the value is; only the keys
marked `multiline` may hold line breaks at all (`controls` refuses them everywhere else, before this).

Keys that undo the container's confinement are in the table too, marked `unconfined`: they pass only
with `--allow-unconfined` (`Allowances.unconfined`), and only when their value is the one that undoes it
(`security.privileged: false` is fine). docs/labs.md shows `table()`; a test keeps the two the same.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from . import topology as t
from . import values as v
from .confine import UNCONFINED_FLAG, Allowances
from .userdata import vendor_data_problem

ALWAYS: Callable[[str], bool] = lambda _value: True  # noqa: E731
NOT_FALSE: Callable[[str], bool] = lambda value: not v.is_false(value)  # noqa: E731
DOCS = "docs/labs.md lists the keys a lab file may set"


@dataclass(frozen=True)
class Key:
    """An instance option a lab may set: NAME is the key, or a prefix ending in "." whose REST says what
    may follow; CHECK validates the value; UNCONFINED(value) says when it needs --allow-unconfined."""
    name: str
    check: v.Check
    means: str
    rest: v.Check | None = None
    unconfined: Callable[[str], bool] | None = None
    why: str = ""  # what an unconfined key would expose
    multiline: bool = False  # may hold line breaks and tabs (`controls`)


def _any_text(_value: str) -> str | None:
    return None


v.described(_any_text, "any text (lines)")
_vendor_data = v.described(vendor_data_problem, "cloud-init vendor-data (#cloud-config without the keys "
                           "the kvm-host user-data sets, a #! script or MIME)")
RLIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
           "rss", "rtprio", "rttime", "sigpending", "stack")
# Sysctls a container's own namespaces hold (network; IPC: SysV shared memory, messages, semaphores and
# POSIX message queues; the user namespace's own ucount limits, bounded by the machine's): setting one
# changes nothing outside the host. Any other sysctl is the machine's.
SYSCTL = v.matches(r"net\.[a-z0-9_]{1,32}(\.[A-Za-z0-9_-]{1,32}){1,5}|kernel\.(shm[a-z_]{1,16}|msg[a-z_]{1,16}"
                   r"|sem)|fs\.mqueue\.[a-z_]{1,32}|user\.max_[a-z_]{1,32}",
                   "a sysctl of the host's own namespaces (net.*, kernel.shm*, kernel.msg*, kernel.sem, "
                   "fs.mqueue.*, user.max_*)")
CLOUD_INIT = ("cloud-init.vendor-data", "user.vendor-data")
PRIVILEGED = "a privileged container's root is the machine's root"
RAW = ("raw.* (lxc, idmap, apparmor, seccomp, qemu) goes to LXC/QEMU unchecked and can undo every other "
       "confinement, e.g. map the machine's root or mount its files")
IDMAP = ("it chooses which of the machine's uids/gids the host maps (base) or how many it takes (size): it "
         "could share ids with other containers or use up the ids other labs need")
MODULES = "LXD loads these modules into the machine's kernel, as root, before the host starts"
INTERCEPT = ("LXD then performs these system calls (mknod, mount, setxattr, bpf, sched_setscheduler, "
             "sysinfo) as root on the machine on the container's behalf")
NVIDIA = "it mounts the machine's NVIDIA driver, libraries and devices into the host"
INTERCEPTED = ("bpf", "bpf.devices", "mknod", "mount", "mount.shift", "sched_setscheduler", "setxattr",
               "sysinfo")

KEYS: tuple[Key, ...] = (
    Key("boot.autostart", v.boolean, "start the host when LXD starts"),
    Key("boot.autostart.delay", v.COUNT, "seconds to wait after starting it before starting the next"),
    Key("boot.autostart.priority", v.COUNT, "the order in which hosts start (highest first)"),
    Key("boot.host_shutdown_timeout", v.COUNT, "seconds LXD waits for it to shut down"),
    Key("boot.stop.priority", v.COUNT, "the order in which hosts stop (highest first)"),
    Key("environment.", v.one_line, "an environment variable of `lxc exec`",
        rest=v.matches(r"[A-Za-z_][A-Za-z0-9_]{0,127}", "a variable name (letters, digits, _)")),
    Key("limits.cpu.allowance", v.CPU_ALLOWANCE, "how much CPU time it may use"),
    Key("limits.cpu.priority", v.PRIORITY, "its CPU priority against other instances"),
    Key("limits.disk.priority", v.PRIORITY, "its I/O priority"),
    Key("limits.memory.enforce", v.one_of("hard", "soft"), "whether the memory limit is hard or soft"),
    Key("limits.memory.swap", v.boolean, "whether it may swap"),
    Key("limits.memory.swap.priority", v.PRIORITY, "how soon it is swapped out"),
    Key("limits.network.priority", v.PRIORITY, "its network priority (older LXD)"),
    Key("limits.processes", v.integer(1, 2**31 - 1), "the most processes it may run"),
    *(Key(f"limits.hugepages.{size}", v.positive_size, f"a ceiling on its {size} huge pages")
      for size in ("64KB", "1MB", "2MB", "1GB")),
    Key("limits.kernel.", v.RLIMIT, "a resource limit (setrlimit) of its processes",
        rest=v.matches("|".join(RLIMITS), "a resource limit's name (as, core, cpu, … stack: setrlimit(2))")),
    Key("linux.sysctl.", v.SYSCTL_VALUE, "a sysctl of its own namespaces", rest=SYSCTL),
    Key("migration.incremental.memory", v.boolean, "incremental memory transfer when moved"),
    Key("migration.incremental.memory.goal", v.integer(0, 100), "the share of memory in sync before it stops"),
    Key("migration.incremental.memory.iterations", v.UINT32, "the most transfer rounds"),
    Key("migration.stateful", v.boolean, "stateful stop, start and snapshots"),
    Key("security.nesting", v.boolean, "nested containers (inside its own user namespace)"),
    Key("security.protection.delete", v.boolean, "LXD will not delete it (`lxdkvm down` fails until removed)"),
    Key("security.protection.shift", v.boolean, "LXD will not shift its file ids"),
    Key("security.devlxd", v.boolean, "whether /dev/lxd is there (off only narrows)"),
    Key("security.syscalls.deny", v.SYSCALLS, "system calls to deny, on top of the default list", multiline=True),
    Key("security.syscalls.deny_compat", v.boolean, "deny the compat_* system calls"),
    Key("security.syscalls.deny_default", v.boolean, "LXD's default seccomp deny list (only true)",
        unconfined=v.is_false, why="turning it off drops LXD's default seccomp deny list"),
    Key("snapshots.schedule", v.SCHEDULE, "when LXD snapshots it"),
    Key("snapshots.schedule.stopped", v.boolean, "snapshot it when stopped too"),
    Key("snapshots.pattern", v.SNAPSHOT_PATTERN, "the snapshots' names"),
    Key("snapshots.expiry", v.EXPIRY, "when snapshots are deleted"),
    Key("user.", v.one_line, "free-form data (not user.lxdkvm.*, lxdkvm's own)",
        rest=v.matches(r"[a-z0-9][a-z0-9._-]{0,127}", "a user key (a-z 0-9 . _ -)")),
    *(Key(name, _vendor_data, "cloud-init vendor-data: runs besides the kvm-host profile's user-data",
          multiline=True) for name in CLOUD_INIT),
    # ---- undo the confinement: only with --allow-unconfined
    Key("security.privileged", v.boolean, "a privileged container", unconfined=NOT_FALSE, why=PRIVILEGED),
    *(Key(f"raw.{name}", _any_text, f"raw {name} configuration", unconfined=ALWAYS, why=RAW, multiline=True)
      for name in ("apparmor", "idmap", "lxc", "qemu", "qemu.conf", "seccomp")),
    Key("security.idmap.base", v.UINT32, "the first machine id it maps", unconfined=ALWAYS, why=IDMAP),
    Key("security.idmap.size", v.UINT32, "how many ids it maps", unconfined=ALWAYS, why=IDMAP),
    Key("linux.kernel_modules", v.MODULES, "modules to load", unconfined=ALWAYS, why=MODULES),
    Key("linux.kernel_modules.load", v.one_of("boot", "ondemand"), "when to load them", unconfined=ALWAYS,
        why=MODULES),
    *(Key(f"security.syscalls.intercept.{name}", v.boolean, f"LXD handles {name}", unconfined=NOT_FALSE,
          why=INTERCEPT) for name in INTERCEPTED),
    Key("security.syscalls.intercept.mount.allowed", v.FILESYSTEMS, "file systems it may mount", unconfined=ALWAYS,
        why=INTERCEPT),
    Key("security.syscalls.intercept.mount.fuse", v.one_line, "mounts redirected to FUSE", unconfined=ALWAYS,
        why=INTERCEPT),
    Key("security.syscalls.allow", v.SYSCALLS, "system calls to allow (the only ones)", unconfined=ALWAYS,
        why="it replaces LXD's default seccomp deny list with your own list", multiline=True),
    Key("security.devlxd.images", v.boolean, "/dev/lxd serves images", unconfined=NOT_FALSE,
        why=("/dev/lxd then serves every image in LXD's store (other labs' and private ones) to the "
             "container")),
    Key("nvidia.runtime", v.boolean, "the machine's NVIDIA runtime", unconfined=ALWAYS, why=NVIDIA),
    *(Key(f"nvidia.{name}", v.one_line, f"NVIDIA {name}", unconfined=ALWAYS, why=NVIDIA)
      for name in ("driver.capabilities", "require.cuda", "require.driver")),
)
EXACT = {key.name: key for key in KEYS if not key.name.endswith(".")}
PREFIXES = sorted((key for key in KEYS if key.name.endswith(".")), key=lambda k: -len(k.name))

MANAGED_KEYS = {  # set by lxdkvm itself: key → what to write instead
    "limits.cpu": "set `limits: {cpu: N}` instead",
    "limits.memory": "set `limits: {memory: SIZE}` instead",
    "security.idmap.isolated": "set `idmap: isolated` or `idmap: shared` instead",
    "cloud-init.network-config": "declare addresses under the host's `networks:` instead",
    "user.network-config": "declare addresses under the host's `networks:` instead",
    "cloud-init.user-data": ("the kvm-host profile's user-data sets up /dev/kvm, libvirt and the lab's SSH user; "
                             "give your own cloud-config as cloud-init.vendor-data (merged with it)"),
    "user.user-data": ("the kvm-host profile's user-data sets up /dev/kvm, libvirt and the lab's SSH user; "
                       "give your own cloud-config as cloud-init.vendor-data (merged with it)"),
}
# LXD still reads these old spellings of current keys; a lab file never may (not even unconfined).
LEGACY = {
    "security.syscalls.blacklist_default": "security.syscalls.deny_default",
    "security.syscalls.blacklist_compat": "security.syscalls.deny_compat",
    "security.syscalls.blacklist": "security.syscalls.deny",
    "security.syscalls.whitelist": "security.syscalls.allow",
}
LXD_OWN = ("volatile.", "image.")  # LXD's record of the instance and of its image
KEY_SYNTAX = v.matches(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,255}", "")


def lookup(key: str) -> Key | None:
    """The entry of KEY: the key itself, else the longest prefix it starts with."""
    return EXACT.get(key) or next((p for p in PREFIXES if key.startswith(p.name)), None)


def multiline(key: str) -> bool:
    """Whether KEY's value may hold line breaks and tabs (`controls` asks before the schema)."""
    entry = lookup(key)
    return entry is not None and entry.multiline


def _unknown(key: str) -> tuple[str, str]:
    if key in LEGACY:
        return (f"is LXD's old name for {LEGACY[key]}: lab files use the current names only",
                f"write {LEGACY[key]} (the same rules apply to it)")
    if key.startswith(LXD_OWN):
        return "is LXD's own record of the instance, not an option", "remove it"
    names = [*EXACT, *(p.name + "*" for p in PREFIXES)]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return (f"'{key}' is not an instance option a lab file may set",
            f"did you mean '{close[0]}'?" if close else DOCS)


def config_problem(key: str, value: str, allow: Allowances) -> tuple[str, str] | None:
    """(message, hint) when a lab file may not set KEY to VALUE, else None."""
    if key in MANAGED_KEYS:
        return "is set by lxdkvm", MANAGED_KEYS[key]
    if key.startswith("user.lxdkvm."):
        return "is lxdkvm's own bookkeeping", "choose another user.* key"
    entry = lookup(key) if KEY_SYNTAX(key) is None else None
    if entry is None or key in LEGACY:
        return _unknown(key)
    if entry.rest is not None and (reason := entry.rest(key.removeprefix(entry.name))):
        return f"'{key.removeprefix(entry.name)}' {reason}", f"{entry.name}* keys: {entry.means}; {DOCS}"
    if reason := entry.check(value):  # a multi-line value is not repeated in the message
        return reason if entry.multiline else f"'{t.printable(value, 60)}' {reason}", f"{key} takes {v.accepts(entry.check)}"
    if entry.unconfined is not None and entry.unconfined(value) and not allow.unconfined:
        return (f"is refused: {entry.why}", f"lab hosts stay confined; remove it, or pass {UNCONFINED_FLAG} "
                "if you trust this lab file")
    return None


WHEN = {ALWAYS: "", NOT_FALSE: " (false is fine)", v.is_false: " (only false; true is fine)"}


def _cell(text: str) -> str:
    return text.replace("*", "\\*").replace("|", "\\|")


def table(unconfined: bool) -> str:
    """The keys as a Markdown table: those a lab may set, or (UNCONFINED) those that need the flag."""
    if unconfined:
        rows = ["| key | value | refused unless --allow-unconfined, because |", "| --- | --- | --- |"]
        rows += [f"| `{k.name}` | {_cell(v.accepts(k.check) + WHEN[k.unconfined])} | {_cell(k.why)} |"
                 for k in KEYS if k.unconfined is not None]
    else:
        rows = ["| key | value | what it does |", "| --- | --- | --- |"]
        rows += [f"| `{k.name}{'NAME' if k.rest else ''}` | {_cell(v.accepts(k.check))} | {_cell(k.means)}"
                 f"{_cell('; NAME is ' + v.accepts(k.rest)) if k.rest else ''} |"
                 for k in KEYS if k.unconfined is None or k.unconfined is v.is_false]
    return "\n".join(rows) + "\n"
