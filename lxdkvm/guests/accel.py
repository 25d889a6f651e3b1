"""Which accelerator a guest gets: what is known of KVM for guests on this machine (a `Verdict`, found by
`kvmboot`) and the choice it leads to for `accel: auto`. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from ..labfile import topology as t

NO_HARDWARE, BOOTS, HANGS, UNKNOWN = "no-hardware", "boots", "hangs", "unknown"


@dataclass(frozen=True)
class Verdict:
    kvm: str  # NO_HARDWARE | BOOTS | HANGS | UNKNOWN
    evidence: str = ""


def choose(guest: t.Guest, verdict: Verdict) -> tuple[str, str]:
    """The accelerator a guest gets, and why when the lab file left it to lxdkvm (`auto`): KVM only
    where the CPU has hardware virtualization and a guest kernel really boots under it."""
    if guest.accel != "auto":
        return guest.accel, ""
    if verdict.kvm == BOOTS:
        return "kvm", ""
    if verdict.kvm == UNKNOWN:
        return "kvm", "kvm: to be confirmed by a probe boot under KVM when the lab comes up"
    if verdict.kvm == HANGS:
        return "tcg", f"tcg: a guest kernel does not boot under this machine's KVM ({verdict.evidence})"
    return "tcg", "tcg: this machine's CPU has no hardware virtualization (no vmx/svm)"


def domain_type(verdict: Verdict) -> str:
    """The libvirt domain type (`<domain type=...>`) a guest that is not lxdkvm's should ask for on this
    machine: kvm only where a guest kernel is known to boot under its KVM, qemu (TCG) otherwise — also
    while nothing is known yet (no `accel: auto` guest has come up here since the kernel changed)."""
    return "kvm" if verdict.kvm == BOOTS else "qemu"
