"""Does a guest kernel really boot under this machine's KVM? `accel: auto` asks before choosing KVM.

A CPU with vmx/svm is not enough: a paravirtual or nested KVM can pass the KVM API probe and still hang a
stock kernel early in its boot (this machine kind's PVM KVM does, after "Probing EDD"). So the first time
a lab with `accel: auto` guests comes up on a machine with hardware virtualization, lxdkvm boots the
tiny guest under KVM in one of its hosts and waits for its boot marker; the verdict is kept per kernel
release and tiny guest build, on this machine.
"""

from __future__ import annotations

import json
import os
import shlex
from typing import TYPE_CHECKING

from ..paths import kvm_guest_boot
from . import agent, domain, hostprep, tiny
from .accel import BOOTS, HANGS, NO_HARDWARE, UNKNOWN, Verdict

if TYPE_CHECKING:
    from ..lxd.instances import Instances

__all__ = ["BOOTS", "HANGS", "NO_HARDWARE", "UNKNOWN", "Verdict", "cached", "probe", "remember"]

PROBE_GUEST = "lxdkvm-kvm-boot-probe"
PROBE_TIMEOUT = 20.0  # the tiny guest reaches its marker in ~0.5 s under working KVM, ~2 s under TCG


def _cache_file():
    return kvm_guest_boot()


def _cache_key(tiny_key: str) -> str:
    return f"{os.uname().release}/{tiny_key}"


def cached(hardware_virt: bool, tiny_key: str) -> Verdict:
    """What is known without booting anything: no vmx/svm, or an earlier probe's verdict, or unknown."""
    if not hardware_virt:
        return Verdict(NO_HARDWARE, "no vmx/svm in /proc/cpuinfo")
    try:
        found = json.loads(_cache_file().read_text()).get(_cache_key(tiny_key))
    except (OSError, ValueError):
        found = None
    return Verdict(found["kvm"], found["evidence"]) if found else Verdict(UNKNOWN)


def remember(tiny_key: str, verdict: Verdict) -> None:
    path = _cache_file()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    known[_cache_key(tiny_key)] = {"kvm": verdict.kvm, "evidence": verdict.evidence}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(known, indent=1, sort_keys=True))


def probe(client: Instances, host: str, artifacts: tiny.TinyArtifacts, timeout: float = PROBE_TIMEOUT) -> Verdict:
    """Boot the tiny guest under KVM in HOST (a transient domain, no NIC) and wait for its boot marker."""
    hostprep.push_tiny(client, host, artifacts)
    agent.push_agent(client, host)
    paths = domain.paths(PROBE_GUEST, artifacts.key)
    xml = domain.domain_xml(domain.GuestDomain(
        name=PROBE_GUEST, kernel=paths.kernel, initrd=paths.initrd, memory_mib=128, vcpus=1, accel="kvm",
        serial_log=paths.serial_log))
    q = shlex.quote
    client.execute(host, ["sh", "-c", f"virsh -q destroy {PROBE_GUEST} >/dev/null 2>&1; rm -f {q(paths.serial_log)}; "
                                      f"mkdir -p {q(paths.directory)}"])
    client.push(host, paths.xml, xml.encode())
    try:
        started = client.execute(host, ["virsh", "-q", "create", paths.xml])
        if started.exit_code != 0:
            return Verdict(HANGS, f"QEMU did not start under KVM: {started.stderr.strip()[-300:]}")
        waited = client.execute(host, ["python3", agent.AGENT_PATH, "wait-boot", paths.serial_log,
                                       "--timeout", str(int(timeout))], timeout=timeout + 30)
        if waited.exit_code == 0:
            return Verdict(BOOTS, f"the tiny guest reached its boot marker under KVM in {host}")
        console = client.execute(host, ["tail", "-c", "2000", paths.serial_log]).stdout
        last = [line.strip() for line in console.splitlines() if line.strip()][-1:]
        shown = f"the console's last line: {last[0][:160]}" if last else "the console stayed empty"
        return Verdict(HANGS, f"no boot marker within {timeout:.0f} s under KVM in {host}; {shown}")
    finally:
        client.execute(host, ["sh", "-c", f"virsh -q destroy {PROBE_GUEST} >/dev/null 2>&1; "
                                          f"rm -rf {q(paths.directory)}; true"])
