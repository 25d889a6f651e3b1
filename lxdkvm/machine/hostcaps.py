"""What this Linux host can provide to a KVM lab: CPU, kernel modules, character devices, id ranges.

``read_host()`` gathers raw evidence from a filesystem root into ``HostFacts`` (plain, JSON-able data,
so tests can load facts recorded on other machines). The decision functions below it are pure.
"""

from __future__ import annotations

import gzip
import ipaddress
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Modules a KVM lab host wants, with the kernel config symbol and the misc device that prove them.
MODULES: dict[str, dict[str, str]] = {
    "kvm": {"config": "CONFIG_KVM", "misc": "kvm"},
    "kvm_intel": {"config": "CONFIG_KVM_INTEL"},
    "kvm_amd": {"config": "CONFIG_KVM_AMD"},
    "vhost": {"config": "CONFIG_VHOST"},
    "vhost_net": {"config": "CONFIG_VHOST_NET", "misc": "vhost-net"},
    "vhost_vsock": {"config": "CONFIG_VHOST_VSOCK", "misc": "vhost-vsock"},
    "vhost_scsi": {"config": "CONFIG_VHOST_SCSI", "misc": "vhost-scsi"},
    "tun": {"config": "CONFIG_TUN", "misc": "tun"},
    "tap": {"config": "CONFIG_TAP"},
    "bridge": {"config": "CONFIG_BRIDGE"},
    "br_netfilter": {"config": "CONFIG_BRIDGE_NETFILTER"},
}
VENDOR_MODULES = {"GenuineIntel": "kvm_intel", "AuthenticAMD": "kvm_amd"}
# KVM backends that are neither VT-x nor AMD-V (e.g. the paravirtual PVM of some cloud sandboxes).
OTHER_KVM_BACKENDS = ("kvm_pvm",)

# Character devices a KVM host container wants, and the module behind each.
DEVICES: dict[str, str] = {
    "/dev/kvm": "kvm",
    "/dev/net/tun": "tun",
    "/dev/vhost-net": "vhost_net",
    "/dev/vhost-vsock": "vhost_vsock",
    "/dev/vhost-scsi": "vhost_scsi",
}

ISOLATED_IDMAP_SIZE = 65536


@dataclass
class DeviceFacts:
    path: str
    exists: bool
    is_char: bool = False
    major: int | None = None
    minor: int | None = None
    uid: int | None = None
    gid: int | None = None
    mode: str | None = None  # octal permission bits, e.g. "0600"


@dataclass
class HostFacts:
    """Raw evidence about a host. Everything is a plain value so it can be recorded as JSON."""

    kernel: str
    cpu_vendor: str
    cpu_model: str
    cpu_flags: list[str]
    nested: dict[str, str]  # vendor module -> value of its `nested` parameter
    sysfs_modules: list[str]  # names under /sys/module
    loaded_modules: list[str]  # names in /proc/modules
    builtin_modules: list[str]  # names in /lib/modules/$(uname -r)/modules.builtin
    module_files: list[str]  # modules with a .ko under /lib/modules/$(uname -r) (from modules.dep)
    modules_supported: bool  # kernel built with CONFIG_MODULES and not booted with `nomodule`
    kernel_config: dict[str, str]  # CONFIG_* symbol of each of MODULES -> y, m or n; empty if unknown
    misc_devices: dict[str, int]  # /proc/misc: name -> minor
    devices: dict[str, DeviceFacts]
    subuid: list[tuple[int, int]] = field(default_factory=list)  # root's ranges (start, count)
    subgid: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict) -> "HostFacts":
        data = dict(data)
        data["devices"] = {k: DeviceFacts(**v) for k, v in data["devices"].items()}
        data["subuid"] = [tuple(r) for r in data.get("subuid", [])]
        data["subgid"] = [tuple(r) for r in data.get("subgid", [])]
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _cpuinfo(root: Path) -> tuple[str, str, list[str]]:
    vendor = model = ""
    flags: list[str] = []
    for line in _read(root / "proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "vendor_id" and not vendor:
            vendor = value
        elif key == "model name" and not model:
            model = value
        elif key == "flags" and not flags:
            flags = value.split()
    return vendor, model, flags


def _kernel_config(root: Path, kernel: str) -> tuple[dict[str, str], bool | None]:
    """The y/m value of the module symbols, and whether CONFIG_MODULES is set (None: no config found)."""
    text = ""
    config_gz = root / "proc/config.gz"
    if config_gz.exists():
        try:
            text = gzip.decompress(config_gz.read_bytes()).decode(errors="replace")
        except OSError:
            text = ""
    if not text:
        text = _read(root / f"boot/config-{kernel}")
    if not text:
        return {}, None
    wanted = {m["config"] for m in MODULES.values()}
    values: dict[str, str] = dict.fromkeys(wanted, "n")  # "n": the config was read and says not set
    modules = False
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name == "CONFIG_MODULES" and value == "y":
            modules = True
        if name in wanted and value in ("y", "m"):
            values[name] = value
    return values, modules


def _module_names(text: str) -> list[str]:
    names = []
    for line in text.splitlines():
        path = line.split(":", 1)[0].strip()
        if path:
            base = os.path.basename(path)
            for suffix in (".ko.zst", ".ko.xz", ".ko.gz", ".ko"):
                if base.endswith(suffix):
                    names.append(base[: -len(suffix)].replace("-", "_"))
                    break
    return sorted(set(names))


def _device(root: Path, path: str) -> DeviceFacts:
    try:
        st = os.stat(root / path.lstrip("/"))
    except OSError:
        return DeviceFacts(path=path, exists=False)
    return DeviceFacts(
        path=path, exists=True, is_char=stat.S_ISCHR(st.st_mode),
        major=os.major(st.st_rdev), minor=os.minor(st.st_rdev),
        uid=st.st_uid, gid=st.st_gid, mode=f"{stat.S_IMODE(st.st_mode):04o}",
    )


def _subids(root: Path, name: str, user: str = "root") -> list[tuple[int, int]]:
    ranges = []
    for line in _read(root / "etc" / name).splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, "0") and parts[1].isdigit() and parts[2].isdigit():
            ranges.append((int(parts[1]), int(parts[2])))
    return ranges


def read_host(root: str | Path = "/") -> HostFacts:
    """Gather the evidence. Reads files only; never loads a module or opens a device."""
    root = Path(root)
    kernel = _read(root / "proc/sys/kernel/osrelease").strip() or os.uname().release
    vendor, model, flags = _cpuinfo(root)
    sysfs = sorted(p.name for p in (root / "sys/module").iterdir()) if (root / "sys/module").is_dir() else []
    nested = {}
    for module in (*VENDOR_MODULES.values(), *OTHER_KVM_BACKENDS):
        value = _read(root / f"sys/module/{module}/parameters/nested").strip()
        if value:
            nested[module] = value
    moddir = root / "lib/modules" / kernel
    config, config_modules = _kernel_config(root, kernel)
    cmdline = _read(root / "proc/cmdline").split()
    modules_supported = (
        config_modules is not False
        and "nomodule" not in cmdline
        and _read(root / "proc/sys/kernel/modules_disabled").strip() in ("", "0")
        and moddir.is_dir()
    )
    misc = {}
    for line in _read(root / "proc/misc").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            misc[parts[1]] = int(parts[0])
    return HostFacts(
        kernel=kernel, cpu_vendor=vendor, cpu_model=model,
        cpu_flags=sorted(f for f in flags if f in ("vmx", "svm", "hypervisor")),
        nested=nested, sysfs_modules=sysfs,
        loaded_modules=sorted(line.split()[0] for line in _read(root / "proc/modules").splitlines() if line),
        builtin_modules=_module_names(_read(moddir / "modules.builtin")),
        module_files=_module_names(_read(moddir / "modules.dep")),
        modules_supported=modules_supported, kernel_config=config, misc_devices=misc,
        devices={path: _device(root, path) for path in DEVICES},
        subuid=_subids(root, "subuid"), subgid=_subids(root, "subgid"),
    )


# ---------------------------------------------------------------- decisions (pure)

@dataclass
class ModuleStatus:
    name: str
    state: str  # loaded | builtin | loadable | absent
    lxd_ok: bool  # may be listed in linux.kernel_modules: LXD will not fail to start the container
    evidence: list[str]


def module_status(facts: HostFacts, name: str) -> ModuleStatus:
    info = MODULES.get(name, {})
    evidence: list[str] = []
    in_sysfs = name in facts.sysfs_modules
    config = facts.kernel_config.get(info.get("config", ""), "")
    misc = info.get("misc")
    if in_sysfs:
        evidence.append(f"/sys/module/{name}")
    if name in facts.loaded_modules:
        evidence.append("listed in /proc/modules")
    if name in facts.builtin_modules:
        evidence.append("listed in modules.builtin")
    if config in ("y", "m"):
        evidence.append(f"{info['config']}={config}")
    elif config == "n":
        evidence.append(f"{info['config']} is not set")
    if misc and misc in facts.misc_devices:
        evidence.append(f"misc device '{misc}' registered (minor {facts.misc_devices[misc]})")
    if name in facts.module_files:
        evidence.append(f"{name}.ko present")

    if name in facts.loaded_modules:
        state = "loaded"
    elif (name in facts.builtin_modules or config == "y" or in_sysfs
          or (misc is not None and misc in facts.misc_devices)):
        state = "builtin"
    elif facts.modules_supported and (name in facts.module_files or config == "m"):
        state = "loadable"
    else:
        state = "absent"
    # LXD runs `modprobe NAME` for every listed module without /sys/module/NAME; modprobe succeeds
    # for a module it can load, or a built-in one that modules.builtin lists.
    lxd_ok = in_sysfs or state == "loadable" or (
        state == "builtin" and facts.modules_supported and name in facts.builtin_modules)
    if state == "absent" and not config:
        evidence.append("no trace in sysfs, /proc/modules, modules.builtin, kernel config or /proc/misc")
    return ModuleStatus(name=name, state=state, lxd_ok=lxd_ok, evidence=evidence)


def vendor_modules(facts: HostFacts) -> list[str]:
    """The KVM vendor module(s) of this host: kvm_intel/kvm_amd by CPU, plus any other backend present."""
    names = [VENDOR_MODULES[facts.cpu_vendor]] if facts.cpu_vendor in VENDOR_MODULES else []
    names += [m for m in OTHER_KVM_BACKENDS if m in facts.sysfs_modules]
    return names


def wanted_modules(facts: HostFacts) -> list[str]:
    """Every module a KVM lab host on this machine would like, in a stable order."""
    vendors = vendor_modules(facts)
    rest = [m for m in MODULES if m not in ("kvm", *VENDOR_MODULES.values())]
    return ["kvm", *vendors, *rest]


def all_module_status(facts: HostFacts) -> list[ModuleStatus]:
    return [module_status(facts, name) for name in wanted_modules(facts)]


def hardware_virt(facts: HostFacts) -> str | None:
    """'vmx', 'svm' or None."""
    return next((f for f in ("vmx", "svm") if f in facts.cpu_flags), None)


def mem_total(root: str | Path = "/") -> int | None:
    """This machine's RAM in bytes (MemTotal of /proc/meminfo), or None when it cannot be read."""
    for line in _read(Path(root) / "proc/meminfo").splitlines():
        name, _, value = line.partition(":")
        if name == "MemTotal" and (fields := value.split()) and fields[0].isdigit():
            return int(fields[0]) * 1024  # the kernel writes kB and means KiB
    return None


def routes(root: str | Path = "/") -> list[tuple[ipaddress.IPv4Network, str]]:
    """This machine's IPv4 routes other than the default route: (destination, device)."""
    found = []
    for line in _read(Path(root) / "proc/net/route").splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest = ipaddress.IPv4Address(bytes.fromhex(fields[1])[::-1])
        mask = ipaddress.IPv4Address(bytes.fromhex(fields[7])[::-1])
        net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
        if net.prefixlen:
            found.append((net, fields[0]))
    return found


def parse_interface_subnets(ip_output: str) -> list[tuple[ipaddress.IPv4Network, str]]:
    """(subnet, device) of each line of `ip -o -4 addr show`."""
    found = []
    for line in ip_output.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "inet":
            found.append((ipaddress.IPv4Network(fields[3], strict=False), fields[1].split("@")[0]))
    return found


def interface_subnets() -> list[tuple[ipaddress.IPv4Network, str]]:
    """The subnets of this machine's IPv4 addresses, on every interface whether up or down: a bridge
    whose daemon is stopped keeps its address but loses its route (so `routes` misses it)."""
    import subprocess

    try:
        proc = subprocess.run(["ip", "-o", "-4", "addr", "show"], check=False, capture_output=True, text=True)
    except OSError:
        return []
    return parse_interface_subnets(proc.stdout)


def isolated_capacity(ranges: list[tuple[int, int]]) -> int:
    """How many containers with an isolated 65536-id map fit in root's subordinate ranges."""
    # LXD gives the first block to the shared (default) map and isolated maps the blocks after it.
    return max(0, sum(count // ISOLATED_IDMAP_SIZE for _, count in ranges) - 1)


def free_isolated_bases(subuid: list[tuple[int, int]], subgid: list[tuple[int, int]],
                        taken: list[tuple[int, int]], count: int) -> list[int] | None:
    """First host ids of COUNT isolated id maps that overlap neither each other nor TAKEN ((first id,
    size) of the maps containers hold), chosen as LXD 5.0 chooses one (the lowest gap after the shared
    map's first block, in root's subordinate range). None when root's uid and gid ranges differ (LXD's
    own choice is then not this one) or when they do not fit."""
    if not subuid or not subgid or subuid[0] != subgid[0]:
        return None
    start, size = subuid[0]
    end, offset = start + size, start + ISOLATED_IDMAP_SIZE
    bases: list[int] = []
    busy = sorted(taken)
    while len(bases) < count:
        moved = True
        while moved:  # until the block at OFFSET overlaps no map: skip past each one it overlaps
            moved = False
            for first, length in busy:
                if first < offset + ISOLATED_IDMAP_SIZE and first + length > offset:
                    offset, moved = first + length, True
        if offset + ISOLATED_IDMAP_SIZE > end:
            return None
        bases.append(offset)
        busy = sorted([*busy, (offset, ISOLATED_IDMAP_SIZE)])
        offset += ISOLATED_IDMAP_SIZE
    return bases
