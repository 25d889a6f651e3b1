"""What a lab's `guests:` mean, checked before anything is created: names, hosts, networks, addresses,
memory and CPUs, acceleration, sizes, images and user-data. Pure, like `checks` (which calls `check`).

Sizes have floors and ceilings here, where QEMU or qemu-img would refuse them only after the lab's
hosts exist: a guest's memory at least GUEST_MIN_MEMORY_MIB (what lxdkvm's own domain XML requires,
`guests.domain.domain_xml`; the tiny guest is run with 96-128 MiB), a Debian guest's at least
DEBIAN_MIN_MEMORY_MIB; a disk at least 1 MiB and no size beyond what any machine has (`read`), and a
disk at most the free space of the storage pool (`Machine.pool_free_mib`, when the daemon says).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterator

from . import topology as t
from .userdata import user_data_problem

GUEST_NAME = re.compile(r"^[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
MAX_NICS = 8
# What a guest costs its host beyond its own memory: QEMU itself and TCG's translation cache (a 128 MiB
# tiny guest's QEMU is ~220 MiB resident here, docs/guests-benchmarks.md).
QEMU_OVERHEAD_MIB = 96
GUEST_MIN_MEMORY_MIB = 32  # guests.domain.domain_xml refuses less (a unit test keeps the two the same)


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else (f"known: {', '.join(choices)}" if choices else "")


def _names(lab: t.Lab) -> Iterator[t.Problem]:
    hosts = {h.name for h in lab.hosts}
    first: dict[str, t.Guest] = {}
    for guest in lab.guests:
        where = f"{guest.path}.name"
        if not GUEST_NAME.fullmatch(guest.name):
            yield t.Problem(where, f"'{guest.name}' is not a valid guest name", "use up to 63 letters, digits "
                            "and hyphens, starting with a letter and not ending with a hyphen", guest.line)
        elif guest.name in hosts:
            yield t.Problem(where, f"guest '{guest.name}' has the name of a host",
                            "give guests and hosts different names (commands take either)", guest.line)
        if guest.name in first:
            yield t.Problem(where, f"guest '{guest.name}' is declared twice",
                            f"the first one is on line {first[guest.name].line}; rename one", guest.line)
        first.setdefault(guest.name, guest)


def _placement(lab: t.Lab, guest: t.Guest, said: set[str]) -> Iterator[t.Problem]:
    host = lab.host(guest.host)
    if host is None:
        if guest.path not in said:
            said.add(guest.path)
            yield t.Problem(f"{guest.path}.host", f"no host '{guest.host}' in this lab",
                            _suggest(guest.host, [h.name for h in lab.hosts]),
                            lab.line_of(f"{guest.path}.host", guest.line))
        return
    if len(guest.attachments) > MAX_NICS:
        yield t.Problem(f"{guest.path}.networks", f"{len(guest.attachments)} networks (at most {MAX_NICS})",
                        "attach a guest to fewer networks", guest.line)
    on_host = {a.network for a in host.attachments}
    seen: set[str] = set()
    for att in guest.attachments:
        where = f"{att.path}.network"
        if lab.network(att.network) is None:
            if att.path not in said:
                said.add(att.path)
                yield t.Problem(where, f"no network '{att.network}' in this lab",
                                _suggest(att.network, [n.name for n in lab.networks]), att.line)
        elif att.network not in on_host:
            if att.path not in said:
                said.add(att.path)
                yield t.Problem(where, f"host '{host.name}' is not on network '{att.network}'",
                                f"a guest reaches a lab network through its host's bridge: add '{att.network}' "
                                f"to host {host.name}'s networks, or use one of: {', '.join(sorted(on_host))}",
                                att.line)
        elif att.network in seen:
            yield t.Problem(where, f"guest '{guest.name}' is on '{att.network}' twice",
                            "list each network once per guest", att.line)
        seen.add(att.network)


def _address(lab: t.Lab, guest: t.Guest, att: t.Attachment,
             taken: dict[ipaddress.IPv4Address, str]) -> Iterator[t.Problem]:
    net = lab.network(att.network)
    if net is None:
        return
    where = f"{att.path}.ipv4"
    if att.ipv4 is None:
        if not net.dhcp:
            yield t.Problem(where, f"guest '{guest.name}' has no address on '{net.name}', which has no DHCP",
                            f"give it a static `ipv4:` in {net.subnet}", att.line)
        return
    ip, label = att.ipv4, f"{att.ipv4} (guest {guest.name})"
    if ip not in net.subnet:
        yield t.Problem(where, f"{label} is outside network '{net.name}' ({net.subnet})",
                        f"use an address in {net.subnet}", att.line)
    elif ip in (net.subnet.network_address, net.subnet.broadcast_address) or ip == net.gateway:
        yield t.Problem(where, f"{label} is the network, broadcast or gateway address of '{net.name}'",
                        "use a host address", att.line)
    elif net.dhcp_range and net.dhcp_range[0] <= ip <= net.dhcp_range[1]:
        low, high = net.dhcp_range
        yield t.Problem(where, f"{label} is inside the DHCP range of '{net.name}' ({low}-{high})",
                        f"use an address below {low}", att.line)
    elif ip in taken:
        yield t.Problem(where, f"{label} is also given to {taken[ip]}", "give every host and guest its own "
                        "address (a range of guests counts up from the address given)", att.line)
    else:
        taken[ip] = f"guest {guest.name}"


def _addresses(lab: t.Lab) -> Iterator[t.Problem]:
    taken = {att.ipv4: f"host {host.name}" for host in lab.hosts for att in host.attachments if att.ipv4}
    for guest in lab.guests:
        if lab.host(guest.host) is None:
            continue
        for att in guest.attachments:
            yield from _address(lab, guest, att, taken)


def _resources(lab: t.Lab, cpus: int | None, memory: int | None, hardware_virt: bool | None
               ) -> Iterator[t.Problem]:
    said: set[str] = set()
    per_host: dict[str, list[t.Guest]] = {}
    for guest in lab.guests:
        per_host.setdefault(guest.host, []).append(guest)
        if guest.path in said:
            continue
        if cpus and guest.vcpus > cpus:
            said.add(guest.path)
            yield t.Problem(f"{guest.path}.vcpus", f"{guest.vcpus} vCPUs, but this machine has {cpus}",
                            f"use at most {cpus}", lab.line_of(f"{guest.path}.vcpus", guest.line))
        if guest.accel == "kvm" and hardware_virt is False:
            said.add(guest.path)
            yield t.Problem(f"{guest.path}.accel", "this machine's CPU has no hardware virtualization "
                            "(no vmx/svm in /proc/cpuinfo)", "use `accel: auto` (TCG here) or `tcg`",
                            lab.line_of(f"{guest.path}.accel", guest.line))
    for host_name, guests in per_host.items():
        host = lab.host(host_name)
        if host is None:
            continue
        limit = t.mebibytes(host.memory) if host.memory else None
        if limit is None and memory:
            limit = memory // 2**20
        total = sum(g.memory_mib + QEMU_OVERHEAD_MIB for g in guests)
        if limit is not None and total > limit:
            whose = f"host {host_name}'s memory limit" if host.memory else "this machine's memory"
            yield t.Problem(f"{guests[-1].path}.memory", f"guests on {host_name} need {total} MiB with QEMU's "
                            f"overhead ({QEMU_OVERHEAD_MIB} MiB each), more than "
                            f"{whose} ({limit} MiB)", f"give {host_name} more memory under `limits:` or its "
                            "guests less", lab.line_of(f"{guests[-1].path}.memory", guests[-1].line))


DEBIAN_MIN_MEMORY_MIB = 512  # what a Debian guest (systemd, cloud-init) was measured to boot with
DEBIAN_DISK_MIB = 2048  # the Debian guest disk's filesystem (lxdkvm.guests.debian.SIZE_MIB)
USER_DATA_HINT = "give a #cloud-config document (or a mapping) of at most 32 levels, without aliases that expand"


def _images(lab: t.Lab, images: dict[str, int] | None = None) -> Iterator[t.Problem]:
    said: set[str] = set()
    for guest in lab.guests:
        if guest.path in said:
            continue
        said.add(guest.path)
        line = lab.line_of(f"{guest.path}.user_data", guest.line)
        if guest.disk == "debian":
            if guest.memory_mib < DEBIAN_MIN_MEMORY_MIB:
                yield t.Problem(f"{guest.path}.memory", f"{guest.memory_mib} MiB is too little for a Debian guest",
                                f"give it at least {DEBIAN_MIN_MEMORY_MIB}MiB",
                                lab.line_of(f"{guest.path}.memory", guest.line))
            if guest.disk_mib and guest.disk_mib < DEBIAN_DISK_MIB:
                yield t.Problem(f"{guest.path}.disk.size", f"{guest.disk_mib} MiB is smaller than the Debian "
                                f"disk ({DEBIAN_DISK_MIB} MiB)", f"use at least {DEBIAN_DISK_MIB // 1024}GiB, or "
                                "leave `size` out", lab.line_of(f"{guest.path}.disk.size", guest.line))
            if problem := user_data_problem(guest.user_data):
                yield t.Problem(f"{guest.path}.user_data", problem, USER_DATA_HINT, line)
        elif guest.disk == "file":
            yield from _file_image(lab, guest, images)
            if problem := user_data_problem(guest.user_data):  # the image's cloud-init reads a NoCloud seed
                yield t.Problem(f"{guest.path}.user_data", problem, USER_DATA_HINT, line)
        elif guest.user_data is not None:
            yield t.Problem(f"{guest.path}.user_data", "the tiny guest runs no cloud-init",
                            "use `disk: debian` for a guest that reads user-data", line)
        if guest.disk != "file" and (guest.ready_console is not None or guest.ready_timeout is not None):
            yield t.Problem(f"{guest.path}.ready", "`ready` is for a guest booted from an imported image",
                            "lxdkvm's own guests print a boot marker: remove `ready`",
                            lab.line_of(f"{guest.path}.ready", guest.line))


def _file_image(lab: t.Lab, guest: t.Guest, images: dict[str, int] | None) -> Iterator[t.Problem]:
    """An imported image is named, never a path: only images this machine's owner imported can boot."""
    if images is None:
        return
    where, line = f"{guest.path}.disk.file", lab.line_of(f"{guest.path}.disk.file", guest.line)
    if guest.disk_file not in images:
        hint = _suggest(guest.disk_file or "", sorted(images))
        yield t.Problem(where, f"no imported guest image '{guest.disk_file}' on this machine",
                        f"import it with `lxdkvm guest-image import FILE --name {guest.disk_file}`"
                        + (f" ({hint})" if hint else ""), line)
    elif guest.disk_mib and guest.disk_mib < images[guest.disk_file]:
        yield t.Problem(f"{guest.path}.disk.size", f"{guest.disk_mib} MiB is smaller than image "
                        f"{guest.disk_file} ({images[guest.disk_file]} MiB)", "leave `size` out, or give at "
                        "least the image's size", lab.line_of(f"{guest.path}.disk.size", guest.line))


def _sizes(lab: t.Lab, pool_free_mib: int | None) -> Iterator[t.Problem]:
    """Each guest's memory and disk between their floor and their ceiling (once per entry of guests)."""
    said: set[str] = set()
    for guest in lab.guests:
        if guest.path in said:
            continue
        said.add(guest.path)
        where, disk = f"{guest.path}.memory", f"{guest.path}.disk.size"
        if guest.memory_mib < GUEST_MIN_MEMORY_MIB:
            yield t.Problem(where, f"{guest.memory_mib} MiB is less than a guest needs ({GUEST_MIN_MEMORY_MIB} "
                            "MiB)", "give it at least 128MiB (the default)", lab.line_of(where, guest.line))
        if pool_free_mib is not None and guest.disk_mib > pool_free_mib:
            yield t.Problem(disk, f"{guest.disk_mib} MiB is more than the storage pool has free "
                            f"({pool_free_mib} MiB)", "use a smaller disk, or free space in the pool",
                            lab.line_of(disk, guest.line))


def check(lab: t.Lab, cpus: int | None = None, memory: int | None = None, hardware_virt: bool | None = None,
          images: dict[str, int] | None = None, pool_free_mib: int | None = None) -> list[t.Problem]:
    said: set[str] = set()
    problems = list(_names(lab))
    for guest in lab.guests:
        problems += _placement(lab, guest, said)
    problems += _addresses(lab)
    problems += _resources(lab, cpus, memory, hardware_virt)
    problems += _images(lab, images)
    problems += _sizes(lab, pool_free_mib)
    return problems
