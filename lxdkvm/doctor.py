"""Can this host run a KVM lab? One check per row: PASS / WARN / FAIL, the evidence, and the fix.

``diagnose()`` is pure: it takes the host facts, the KVM probe result and the LXD server facts; and
``limit_checks()``, the machine's kernel limits against the number of hosts a lab (or this machine's
memory) brings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .kvmprobe import ProbeResult
from .lxd.server import REQUIRED_EXTENSIONS, ServerFacts
from .machine import hostcaps, limits, storage

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


@dataclass
class Check:
    name: str
    status: str
    evidence: str
    fix: str = ""


def _cpu(facts: hostcaps.HostFacts) -> list[Check]:
    virt = hostcaps.hardware_virt(facts)
    vendor = facts.cpu_vendor or "unknown vendor"
    if virt:
        checks = [Check("cpu", PASS, f"{vendor}, {facts.cpu_model}: {virt} advertised")]
    else:
        checks = [Check("cpu", WARN, f"{vendor}, {facts.cpu_model}: no vmx/svm flag in /proc/cpuinfo",
                        "hardware virtualization is not advertised; if KVM still works (paravirtual "
                        "KVM), nested guests may hang: run them under TCG (domain type='qemu')")]
    for module, value in sorted(facts.nested.items()):
        on = value.strip().upper() in ("1", "Y")
        checks.append(Check(f"nested {module}", PASS if on else WARN, f"{module}.nested={value}",
                            "" if on else f"enable nested virtualization: options {module} nested=1"))
    return checks


def _kvm(facts: hostcaps.HostFacts, probe: ProbeResult) -> list[Check]:
    dev = facts.devices["/dev/kvm"]
    if not dev.exists:
        node = Check("/dev/kvm", FAIL, "missing", "load kvm and kvm_intel/kvm_amd, or enable "
                     "virtualization in the firmware")
    else:
        node = Check("/dev/kvm", PASS, f"char {dev.major}:{dev.minor} owner {dev.uid}:{dev.gid} mode {dev.mode}")
    if probe.ok:
        result = Check("kvm probe", PASS, f"API {probe.api_version}; KVM_RUN exits {', '.join(probe.exits)}")
    else:
        result = Check("kvm probe", FAIL, f"failed at {probe.step}: {probe.error}",
                       "run `lxdkvm probe-kvm` as root; see the error above")
    return [node, result]


def _modules(facts: hostcaps.HostFacts) -> list[Check]:
    checks = []
    essential = {"kvm", *hostcaps.vendor_modules(facts)}
    for status in hostcaps.all_module_status(facts):
        evidence = f"{status.state}: {'; '.join(status.evidence)}"
        if status.state == "absent":
            level = FAIL if status.name == "kvm" else WARN
            fix = f"the kernel lacks {status.name}: the profile leaves it out"
            if status.name in essential and status.name != "kvm" and "kvm_pvm" in facts.sysfs_modules:
                level, fix = PASS, "not needed: KVM here is kvm_pvm (paravirtual)"
        elif not status.lxd_ok:
            level = PASS
            evidence += "; no /sys/module entry and modprobe cannot load it"
            fix = "built in: usable, but left out of linux.kernel_modules (LXD would fail to start the container)"
        else:
            level, fix = PASS, ""
        checks.append(Check(f"module {status.name}", level, evidence, fix))
    return checks


def _devices(facts: hostcaps.HostFacts) -> list[Check]:
    checks = []
    for path, module in hostcaps.DEVICES.items():
        if path == "/dev/kvm":
            continue  # reported with the probe
        dev = facts.devices[path]
        if dev.exists and dev.is_char:
            checks.append(Check(path, PASS, f"char {dev.major}:{dev.minor} owner {dev.uid}:{dev.gid} mode {dev.mode}"))
        else:
            level = WARN
            fix = {"tun": "guests get no tap networking: load tun (modprobe tun)"}.get(
                module, f"optional: load {module} for vhost acceleration; the profile leaves the device out")
            checks.append(Check(path, level, "missing", fix))
    return checks


def _lxd(server: ServerFacts) -> list[Check]:
    if not server.reachable:
        setup = "lxdkvm setup --daemon incus" if server.daemon == "Incus" else "lxdkvm setup"
        return [Check("lxd", FAIL, server.error, f"run `{setup}` (installs, starts and initialises {server.daemon})")]
    why = f"; {server.reason}" if server.reason else ""
    checks = [Check("lxd", PASS, f"{server.daemon} {server.version} on {server.socket} "
                                 f"(firewall {server.firewall or '?'}{why})")]
    if server.missing_extensions:
        checks.append(Check("lxd api", FAIL, f"missing extensions: {', '.join(server.missing_extensions)}",
                            "upgrade LXD to 5.0 or later (or Incus to 6.0)"))
    else:
        checks.append(Check("lxd api", PASS, f"has {', '.join(REQUIRED_EXTENSIONS)}"))
    if server.pools:
        pools = ", ".join(f"{p['name']} ({p['driver']})" for p in server.pools)
        checks.append(Check("lxd storage", PASS, pools))
    else:
        checks.append(Check("lxd storage", WARN, "no storage pool", "run `lxdkvm setup`"))
    checks += _root_filesystems(server)
    bridges = [n for n in server.networks if n["managed"] and n["type"] == "bridge"]
    if server.cluster is not None:
        checks += _cluster(server.cluster)
    elif bridges:
        checks.append(Check("lxd network", PASS, ", ".join(f"{n['name']} {n['ipv4']}" for n in bridges)))
    else:
        checks.append(Check("lxd network", WARN, "no managed bridge", "run `lxdkvm setup`"))
    return checks


def _root_filesystems(server: ServerFacts) -> list[Check]:
    """How a new host's files get the host's ids: mounted idmapped (nothing to do at first start) or
    chowned by the daemon (~0.5 CPU-s per host on LXD 5.0.2; docs/container-cost.md)."""
    if server.daemon == "Incus":
        return [Check("host root filesystems", PASS, "Incus mounts them idmapped where the kernel can")]
    if not server.idmapped_roots:
        return []
    fast = sorted(pool for pool, why in server.idmapped_roots.items() if not why)
    slow = {pool: why for pool, why in sorted(server.idmapped_roots.items()) if why}
    if fast and not slow:
        return [Check("host root filesystems", PASS, f"mounted idmapped by lxdkvm on {', '.join(fast)}, so "
                      "LXD does not chown each new host's files at its first start")]
    detail = "; ".join(f"{pool}: {why}" for pool, why in slow.items())
    return [Check("host root filesystems", WARN if not fast else PASS,
                  (f"mounted idmapped on {', '.join(fast)}; on the other pools " if fast else "")
                  + f"LXD chowns each new host's files at its first start ({detail})",
                  "" if fast else "hosts start ~0.5 CPU-s slower each: a kernel with idmapped mounts on the "
                  "pool's filesystem, and LXDKVM_IDMAPPED_ROOTS not set to off")]


def _cluster(cluster) -> list[Check]:
    """An LXD cluster: its members, their state, which can host labs, what a stretched network carries."""
    members = ", ".join(f"{m.name} {m.status.lower()}{f' ({m.address})' if m.address else ''}"
                        for m in sorted(cluster.members, key=lambda m: m.name))
    able = [m.name for m in cluster.members if m.can_host]
    down = [m for m in cluster.members if not m.can_host]
    if not able:
        state = Check("lxd cluster", FAIL, f"{len(cluster.members)} members, none can host labs: {members}",
                      "`lxc cluster list` says why; bring a member back")
    elif down:
        state = Check("lxd cluster", WARN, f"{len(cluster.members)} members ({members}); can host labs: "
                      f"{', '.join(sorted(able))}", "; ".join(f"{m.name}: {m.message or m.status}" for m in down)
                      + " — hosts placed there cannot start")
    else:
        state = Check("lxd cluster", PASS, f"{len(cluster.members)} members ({members}); can host labs: "
                      f"{', '.join(sorted(able))}; groups: {', '.join(cluster.groups) or 'none'}")
    if cluster.tunnel_mtu is None:
        tunnel = Check("cluster networks", WARN, "the MTU between members is unknown (no interface holds a "
                       "member's cluster address)", "lab networks keep their MTU: make sure it fits a vxlan tunnel")
    else:
        tunnel = Check("cluster networks", PASS, f"lab networks are stretched over the members by vxlan "
                       f"(multicast): at most MTU {cluster.tunnel_mtu}")
    return [state, tunnel]


def _storage(server: ServerFacts, btrfs: storage.BtrfsSupport) -> list[Check]:
    if not server.reachable:
        return []
    choice = storage.choose_pool(server.pools, btrfs)
    what = f"{choice.name} ({choice.driver}{', to be created by `lxdkvm setup`' if choice.create else ''})"
    if choice.cow:
        return [Check("host storage", PASS, f"{what}: {choice.reason}")]
    return [Check("host storage", WARN, f"{what}: {choice.reason}",
                  "install btrfs-progs (or create a zfs/btrfs/lvm pool) for instances in seconds")]


def _idmaps(facts: hostcaps.HostFacts) -> list[Check]:
    checks = []
    for label, ranges in (("subuid", facts.subuid), ("subgid", facts.subgid)):
        if not ranges:
            checks.append(Check(f"root {label}", WARN, f"no range for root in /etc/{label}",
                                f"add e.g. root:1000000:1000000000 to /etc/{label}; without it only "
                                "shared id maps work"))
            continue
        capacity = hostcaps.isolated_capacity(ranges)
        text = ", ".join(f"{start}:{count}" for start, count in ranges)
        level = PASS if capacity >= 1 else WARN
        checks.append(Check(f"root {label}", level,
                            f"{text}: room for {capacity} containers with isolated id maps",
                            "" if capacity else f"enlarge root's range in /etc/{label}"))
    return checks


def limit_checks(values: Mapping[str, int | None], hosts: int, lab: str | None = None) -> list[Check]:
    """Each kernel limit that lab hosts share (VALUES: the machine's, `limits.read`) against HOSTS hosts: lab
    LAB's (then too low is a FAIL: its `up` will not finish), or as many as this machine's memory holds
    (then a WARN: a lab that large would not come up)."""
    who = f"lab {lab} ({hosts} hosts) needs" if lab else f"the {hosts} idle hosts this machine's memory holds need"
    checks = []
    for limit in limits.LIMITS:
        value = values.get(limit.key)
        if value is None:
            continue  # this kernel has no such setting
        need, holds = limit.needed(hosts), limit.holds(value)
        if value >= need:
            checks.append(Check(limit.key, PASS, f"{value}: room for about {holds} lab hosts; {who} {need}"))
            continue
        checks.append(Check(limit.key, FAIL if lab else WARN,
                            f"{value}: room for about {holds} lab hosts, {who} {need} "
                            f"(about {limit.per_host} each: {limit.what})",
                            f"`lxdkvm setup` (or `up`) raises it to {limit.setting}, LXD's production value, in "
                            f"{limits.CONF}; by hand: sysctl -w {limit.key}={limit.setting}"))
    return checks


IMPAIR = {"loss": ("nftables' random numbers in a bridge table (numgen)", "nf_tables with nft_numgen"),
          "rate": ("the token-bucket qdisc (tbf)", "sch_tbf (CONFIG_NET_SCH_TBF)"),
          "delay": ("the netem qdisc", "sch_netem (CONFIG_NET_SCH_NETEM)")}


def impair_checks(kernel: Mapping[str, bool]) -> list[Check]:
    """Which impairments `lxdkvm impair` can set here (KERNEL: `machine.impair.probe`, tried in a
    throwaway network namespace). A missing one is a warning: labs run, that impairment is refused."""
    checks = []
    for kind, (how, module) in IMPAIR.items():
        if kernel.get(kind):
            checks.append(Check(f"impair {kind}", PASS, f"{how} works (tried in a temporary netns)"))
        else:
            checks.append(Check(f"impair {kind}", WARN, f"{how} failed in a temporary netns (or not root)",
                                f"`lxdkvm impair --{kind}` is refused here; it needs a kernel with {module}"))
    return checks


def diagnose(facts: hostcaps.HostFacts, probe: ProbeResult, server: ServerFacts,
             btrfs: storage.BtrfsSupport) -> list[Check]:
    return [*_cpu(facts), *_kvm(facts, probe), *_modules(facts), *_devices(facts), *_lxd(server),
            *_storage(server, btrfs), *_idmaps(facts)]


def verdict(checks: list[Check]) -> bool:
    """A lab can run here when nothing failed (warnings allowed)."""
    return not any(c.status == FAIL for c in checks)

