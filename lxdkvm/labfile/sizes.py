"""A host's memory limit, checked before anything exists: ASCII digits (the schema's pattern), strictly
positive, at least what a KVM host needs and at most what this machine has. LXD would refuse `0B` or
`0%` only once the container exists, and a limit too small for libvirt and one guest would only show
as a guest that cannot start.

The floor, HOST_MIN_MEMORY_MIB = 256 MiB: one default tiny guest (128 MiB, plus QEMU's own 96 MiB,
`guestchecks.QEMU_OVERHEAD_MIB`) and the idle host itself (~12 MiB of anonymous memory,
docs/lab-benchmarks.md). A guest's own floors are `guestchecks`'.
"""

from __future__ import annotations

from . import topology as t
from .values import MAX_BYTES, SHARE, size_bytes

HOST_MIN_MEMORY_MIB = 256


def host_memory_bytes(size: str, machine_bytes: int | None) -> int | None:
    """`2GiB` → bytes; `50%` → that share of MACHINE_BYTES (as LXD reads limits.memory), None when the
    machine's memory is not known; None for anything that is not a size."""
    share = SHARE.fullmatch(size)
    if share:
        return int(share.group(1)) * machine_bytes // 100 if machine_bytes else None
    return size_bytes(size)


def _problem(host: t.Host, message: str, hint: str) -> t.Problem:
    return t.Problem(f"{host.path}.limits.memory", message, hint, host.line)


def memory_problem(host: t.Host, machine_bytes: int | None) -> t.Problem | None:
    """Why HOST's `limits.memory` cannot work here (zero, below the floor, beyond the machine), or None."""
    if not host.memory:
        return None
    share = SHARE.fullmatch(host.memory)
    if (int(share.group(1)) if share else size_bytes(host.memory)) == 0:
        return _problem(host, f"{host.memory} is no memory at all", f"give a KVM host at least "
                        f"{HOST_MIN_MEMORY_MIB}MiB")
    size = host_memory_bytes(host.memory, machine_bytes)
    if size is None:
        return None  # a share of a machine whose memory is not known
    if machine_bytes and size > machine_bytes:
        have = f"{machine_bytes / 2**30:.1f}GiB"
        return _problem(host, f"{host.memory}, but this machine has {have} of memory",
                        f"use at most {have} (or a share such as 50%)")
    if size > MAX_BYTES:
        return _problem(host, f"{host.memory} is more memory than any machine has", "use a size such as 2GiB")
    if size < HOST_MIN_MEMORY_MIB * 2**20:
        return _problem(host, f"{host.memory} is less than a KVM host needs ({HOST_MIN_MEMORY_MIB} MiB)",
                        f"give it at least {HOST_MIN_MEMORY_MIB}MiB: libvirt, and a 128 MiB guest with "
                        "QEMU's own 96 MiB")
    return None
