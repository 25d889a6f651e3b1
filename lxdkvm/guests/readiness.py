"""Bringing a guest up, stage by stage, like a host's readiness: the stages are data (`STAGES` for
lxdkvm's own images, which print a boot marker; `FILE_STAGES` for imported images, which do not), each a
name, when it applies and what it does; a failure names the guest and the stage.

lxdkvm's images: defined → started → boot marker → addresses (the marker reports them).
Imported images: defined → started → console text (the lab file's `ready.console`) or running → addresses
(the static ones and the DHCP leases of its MACs, each answering ping from its host).
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import readback
from ..errors import LxdkvmError
from ..labfile import topology as t
from . import agent, debian, domain, runtime, seed, tiny
from .spec import GuestSpec

Report = Callable[[str, str], None]
BOOT_TIMEOUT = 180.0
DEBIAN_BOOT_TIMEOUT = 600.0  # systemd and cloud-init under TCG: ~21 s alone, much more several at once
# libvirt 9.0 in an unprivileged container sometimes loses a race creating a cgroup v1 controller (cpuset,
# freezer) for a domain when domains start at the same moment (or just after the last one stopped); a
# retry succeeds.
CGROUP_RACE = "Failed to create v1 controller"


class GuestFailed(LxdkvmError):
    def __init__(self, guest: str, stage: str, detail: str) -> None:
        super().__init__(f"guest {guest}: stage '{stage}' failed: {detail}")
        self.guest, self.stage = guest, stage


@dataclass
class Bringing:
    """One guest on its way up: where, what was asked, and what the stages found so far."""
    lxd: object  # the lab's `lxd.session.LabScope`
    lab: t.Lab
    spec: GuestSpec
    host: str
    verbs: set[str]
    after: int = 0  # the serial log's size before this boot: a marker counts only after it
    found: dict = field(default_factory=dict)  # the boot marker (or its stand-in for imported images)
    deadline: float = 0.0  # imported images: booted and addresses share one `ready.timeout`
    took: dict[str, float] = field(default_factory=dict)

    @property
    def instances(self):
        return self.lxd.instances


@dataclass(frozen=True)
class GuestStage:
    name: str
    run: Callable[[Bringing], None]  # raises LxdkvmError when the stage fails
    applies: Callable[[Bringing], bool] = lambda _b: True


# ------------------------------------------------------------------------------------ the stages
def _define(b: Bringing) -> None:
    spec, paths, q = b.spec, b.spec.paths, shlex.quote
    disk = ""
    if spec.base_disk:  # a Debian guest or an imported image: its own copy-on-write disk on the shared base
        size = spec.disk_mib if spec.spec.get("image") == "file" else max(spec.disk_mib, debian.SIZE_MIB)
        disk = (f"[ -e {q(paths.disk)} ] || qemu-img create -q -f qcow2 -F qcow2 -b {q(spec.base_disk)} "
                f"{q(paths.disk)} {size}M && ")
    elif spec.disk_mib:
        disk = f"[ -e {q(paths.disk)} ] || qemu-img create -q -f qcow2 {q(paths.disk)} {spec.disk_mib}M && "
    runtime.run(b.instances, b.host, f"mkdir -p {q(paths.directory)} && {disk}true")
    if spec.base_disk:
        b.instances.push(b.host, paths.seed, seed.seed_iso(spec.name, spec.spec, spec.domain.nics, spec.user_data))
    b.instances.push(b.host, paths.xml, domain.domain_xml(spec.domain).encode())
    runtime.run(b.instances, b.host, f"virsh -q define {shlex.quote(paths.xml)} >/dev/null")


def _start(b: Bringing, attempts: int = 6) -> None:
    for attempt in range(attempts):
        result = b.instances.execute(b.host, ["virsh", "-q", "start", b.spec.name])
        if result.exit_code == 0:
            return
        if CGROUP_RACE not in result.stderr or attempt == attempts - 1:
            raise LxdkvmError(f"{b.host}: virsh start {b.spec.name}: {result.stderr.strip()[-600:]}")
        time.sleep(0.3 * (attempt + 1))


def _running(b: Bringing) -> bool:
    return b.instances.execute(b.host, ["virsh", "-q", "domstate", b.spec.name]).stdout.strip() == "running"


def _wait_boot(b: Bringing, limit: float, text: str | None = None) -> dict:
    command = ["python3", agent.AGENT_PATH, "wait-boot", b.spec.paths.serial_log, "--after-bytes", str(b.after),
               "--timeout", str(int(limit)), *(["--text", text] if text is not None else [])]
    result = b.instances.execute(b.host, command, timeout=limit + 30)
    if result.exit_code != 0:
        shown = f"no {text!r}" if text is not None else "no boot marker"
        raise LxdkvmError(result.stderr.strip()[-1500:] or f"{shown} within {limit:.0f}s")
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise LxdkvmError(f"the agent in {b.host} answered {readback.defanged(result.stdout)}, "
                          "not JSON") from None


def _marker(b: Bringing) -> None:
    """The guest's boot marker, when it has the shape lxdkvm's guests print (`readback.marker_problem`):
    the host and the guest write it, so nothing else of it is kept."""
    found = _wait_boot(b, DEBIAN_BOOT_TIMEOUT if b.spec.base_disk else BOOT_TIMEOUT)
    problem = readback.marker_problem({k: found.get(k) for k in ("name", "boot_id", "addrs")}
                                      if isinstance(found, dict) else found)
    if problem:
        raise LxdkvmError(f"{b.host} reported {problem}")
    b.found = {"name": found["name"], "boot_id": found["boot_id"],
               "addrs": {k: v for k, v in found["addrs"].items() if v}}


def check_addresses(lab: t.Lab, spec: GuestSpec, marker: dict) -> str:
    """What is missing from the addresses a boot marker reports, or ""."""
    have = [ipaddress.IPv4Interface(a) for a in (marker.get("addrs") or {}).values()]
    missing = []
    for network, address in spec.expect:
        subnet = lab.network(network).subnet
        if address is not None and ipaddress.IPv4Interface(address) not in have:
            missing.append(f"no {address} on {network}")
        elif address is None and not any(a.ip in subnet for a in have):
            missing.append(f"no DHCP lease in {subnet} on {network}")
    return "; ".join(missing)


def _marked_addresses(b: Bringing) -> None:
    problem = check_addresses(b.lab, b.spec, b.found)
    if problem:
        raise LxdkvmError(f"{problem} (the guest reported {b.found.get('addrs')})")


def _console(b: Bringing) -> None:
    b.deadline = time.monotonic() + (b.spec.boot_timeout or BOOT_TIMEOUT)
    b.found = _wait_boot(b, b.spec.boot_timeout or BOOT_TIMEOUT, b.spec.ready_text or "")


def _still_running(b: Bringing) -> None:
    b.deadline = time.monotonic() + (b.spec.boot_timeout or BOOT_TIMEOUT)
    time.sleep(2.0)  # a disk that does not boot makes QEMU stop (or the guest power off) quickly
    state = b.instances.execute(b.host, ["virsh", "-q", "domstate", b.spec.name]).stdout.strip()
    if state != "running":
        raise LxdkvmError(f"the domain is {state or 'gone'}; its console: `lxdkvm console {b.lab.name} "
                          f"{b.spec.name}` (log {b.spec.paths.serial_log})")


def _pinged_addresses(b: Bringing) -> None:
    """Each static address, and the DHCP lease of each other NIC, answers ping from the guest's host."""
    limit = b.spec.boot_timeout or BOOT_TIMEOUT
    deadline = b.deadline or time.monotonic() + limit
    wanted = {network: (address.split("/")[0] if address else None, nic.mac)
              for (network, address), nic in zip(b.spec.expect, b.spec.domain.nics, strict=True)}
    found_at: dict[str, str] = {}
    while True:
        dhcp = [b.lab.bridge(n) for n, (a, _m) in wanted.items() if a is None]
        leases = b.lxd.networks.leases(dhcp) if dhcp else {}
        for network, (address, mac) in wanted.items():
            candidate = address or leases.get(mac)
            if network not in found_at and candidate and b.instances.execute(
                    b.host, ["ping", "-c", "1", "-W", "1", candidate]).exit_code == 0:
                found_at[network] = candidate
        if len(found_at) == len(wanted):
            b.found = {**b.found, "name": b.spec.name, "boot_id": "", "addrs": found_at}
            return
        if time.monotonic() >= deadline:
            missing = [f"{n}: {a or 'a DHCP lease for ' + m} does not answer ping from {b.host}"
                       for n, (a, m) in wanted.items() if n not in found_at]
            raise LxdkvmError("; ".join(missing) + f" within {limit:.0f}s")
        time.sleep(1.0)


def _new(b: Bringing) -> bool:
    return bool(b.verbs & {"create", "recreate"})


def _not_running(b: Bringing) -> bool:
    """Whether the guest must be started; when it runs already (an earlier run stopped after starting it),
    its last boot marker counts, so the serial log is read from there."""
    log = shlex.quote(b.spec.paths.serial_log)
    if _running(b):
        last = runtime.run(b.instances, b.host, f"grep -a -b -o '{tiny.MARKER}' {log} 2>/dev/null"
                                                " | tail -n1 | cut -d: -f1").strip()
        b.after = int(last) if last.isdigit() else 0
        return False
    b.after = int(runtime.run(b.instances, b.host, f"stat -c %s {log} 2>/dev/null || echo 0").strip() or 0)
    return True


DEFINED = GuestStage("defined", _define, _new)
STARTED = GuestStage("started", _start, _not_running)
STAGES = [DEFINED, STARTED, GuestStage("boot marker", _marker), GuestStage("addresses", _marked_addresses)]
FILE_STAGES = [DEFINED, STARTED,
               GuestStage("console text", _console, lambda b: bool(b.spec.ready_text)),
               GuestStage("running", _still_running, lambda b: not b.spec.ready_text),
               GuestStage("addresses", _pinged_addresses)]


# ------------------------------------------------------------------------------------ one guest
def bring_up(lxd, lab: t.Lab, spec: GuestSpec, verbs: set[str], report: Report,
             host: str | None = None) -> dict[str, object]:
    """Define (when new or changed), start and wait for SPEC's guest through its stages, on HOST (default:
    the lab file's; a guest `migrate` moved is started where it is); returns its boot marker and timings.
    LXD: the lab's `LabScope`."""
    b = Bringing(lxd, lab, spec, host or spec.host, verbs)
    if "recreate" in verbs:
        report(spec.name, "removing the old domain")
        runtime.remove(b.instances, b.host, spec.name)
    for stage in STAGES if spec.marker else FILE_STAGES:
        if not stage.applies(b):
            continue
        report(spec.name, f"… {stage.name}")
        start = time.monotonic()
        try:
            stage.run(b)
        except LxdkvmError as exc:
            raise GuestFailed(spec.name, stage.name, str(exc)) from None
        b.took[stage.name] = round(time.monotonic() - start, 1)
        report(spec.name, f"{stage.name}: ok ({b.took[stage.name]}s)")
    report(spec.name, "ready")
    return {"marker": b.found, "took": b.took}
