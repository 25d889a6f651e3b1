"""Guests' memory in a host: saved (libvirt's managed save: memory and device state to the host's disk,
the guest stopped) before the host is snapshotted, and resumed from it afterwards, or after a restore. A
guest resumed from its save keeps its boot, processes, in-memory files and addresses."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from .. import readback
from ..errors import LxdkvmError
from ..lxd.batch import run_batch
from ..templating import render_template

if TYPE_CHECKING:
    from ..lxd.instances import Instances

LIBVIRT_WAIT_S = 90  # after a host's restore, its libvirtd answers within this (it starts with the host)


def _check(host: str, what: str, answers: dict[str, tuple[int, str]]) -> None:
    failed = {name: text for name, (code, text) in answers.items() if code != 0}
    if failed:
        lines = "; ".join(f"{name}: {text.strip()[-300:] or 'no answer'}" for name, text in sorted(failed.items()))
        raise LxdkvmError(f"{host}: could not {what} {', '.join(sorted(failed))}: {lines}")


def save(client: Instances, host: str, guests: list[str]) -> None:
    """Save GUESTS' memory in HOST (all at once), each to be resumed running."""
    if guests:
        _check(host, "save the memory of", run_batch(client, host, {
            g: f"virsh -q managedsave --running {shlex.quote(g)}" for g in guests}, timeout=300))


def pin_leases(client: Instances, host: str, guest: str, leases: dict[str, str]) -> None:
    """Give the saved state of GUEST in HOST the addresses its DHCP NICs hold (LEASES: MAC → IPv4, from
    the lab's DHCP server), so its traffic filter passes them as soon as it resumes
    (libvirt/pin-leases.py says why)."""
    pairs = [f"{mac}={ip}" for mac, ip in sorted(leases.items()) if readback.MAC.fullmatch(mac) and readback.address(ip)]
    if not pairs:
        return
    script = render_template("libvirt", "pin-leases.py")
    result = client.execute(host, ["python3", "-c", script, guest, *pairs], timeout=60)
    if result.exit_code != 0:
        raise LxdkvmError(f"{host}: could not keep the DHCP addresses of {guest} in its saved state: "
                          f"{readback.defanged(result.stderr.strip()[-300:])}")


def resume(client: Instances, host: str, guests: list[str], wait_for_libvirt: bool = False) -> None:
    """Resume GUESTS in HOST from their saved memory; with WAIT_FOR_LIBVIRT, first wait until libvirtd
    answers (a host that has just started; also when it has no guests, so a restored host is ready)."""
    if wait_for_libvirt:
        _check(host, "reach libvirtd for", run_batch(client, host, {"libvirtd": (
            f"i=0; until virsh -q list --all >/dev/null 2>&1; do i=$((i+1)); "
            f"[ $i -gt {LIBVIRT_WAIT_S * 5} ] && {{ echo 'libvirtd did not answer in {LIBVIRT_WAIT_S} s'; "
            f"exit 1; }}; sleep 0.2; done")}, timeout=LIBVIRT_WAIT_S + 30))
    if not guests:
        return
    _check(host, "resume", run_batch(client, host, {g: f"virsh -q start {shlex.quote(g)}" for g in guests},
                                     timeout=300))
