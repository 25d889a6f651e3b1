"""The guests a lab wants, as plain data: one libvirt domain per guest, on the host the lab file names.

Pure: a `topology.Lab`, the guest images' build keys and what is known of KVM here (`Verdict`)
in, `GuestSpec`s out. What may not change without recreating a guest is its `spec`,
kept in the domain's metadata (see `plan`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ..labfile import topology as t
from . import domain as d
from .accel import Verdict, choose

SPEC_VERSION = 2  # 2: every NIC filtered (domain.GUEST_FILTER): guests of version 1 are made anew


@dataclass(frozen=True)
class GuestSpec:
    name: str
    host: str
    domain: d.GuestDomain
    paths: d.GuestPaths
    spec: dict  # what needs a new domain when it changes
    disk_mib: int
    expect: tuple[tuple[str, str | None], ...]  # (network, "ADDR/PFX" or None: a lease in the subnet)
    accel_note: str = ""  # why the accelerator is what it is, when the lab file said `auto`
    base_disk: str | None = None  # a Debian guest's disk stands on this shared base (in the host)
    user_data: str | None = None  # cloud-init user-data (Debian guests), in the guest's NoCloud seed
    ready_text: str | None = None  # a guest from an imported image: console text that says it booted
    boot_timeout: float | None = None  # a guest from an imported image: the lab file's `ready.timeout`

    @property
    def marker(self) -> bool:
        """Whether the guest prints lxdkvm's boot marker (lxdkvm's own images) with its boot id."""
        return self.spec.get("image") != "file"

    @property
    def metadata(self) -> str:
        return json.dumps(self.spec, sort_keys=True, separators=(",", ":"))


def guest_spec(lab: t.Lab, guest: t.Guest, tiny_key: str, verdict: Verdict,
               debian_key: str | None = None, files: dict[str, tuple[str, int]] | None = None) -> GuestSpec:
    """FILES: the imported images the lab's guests use, name → (key, virtual size in MiB)."""
    paths = d.paths(guest.name, tiny_key)
    debian, imported = guest.disk == "debian", guest.disk == "file"
    kernel, initrd, base_disk, disk_mib = paths.kernel, paths.initrd, None, guest.disk_mib
    if debian:
        if debian_key is None:
            raise ValueError(f"guest {guest.name}: a Debian guest needs the Debian disk's build key")
        base = d.debian_paths(debian_key)
        kernel, initrd, base_disk = base.kernel, base.initrd, base.disk
    if imported:
        if not files or guest.disk_file not in files:
            raise ValueError(f"guest {guest.name}: no imported image {guest.disk_file!r}")
        file_key, virtual_mib = files[guest.disk_file]
        kernel, initrd, base_disk = "", "", d.file_image_path(file_key)
        disk_mib = max(guest.disk_mib, virtual_mib)
    nics, expect = [], []
    for index, att in enumerate(guest.attachments):
        net = lab.network(att.network)
        address = f"{att.ipv4}/{net.subnet.prefixlen}" if att.ipv4 else None
        gateway = str(net.gateway) if net.gateway and index == 0 else None  # one default route
        dhcp_server = str(net.gateway) if net.gateway and address is None else None
        nics.append(d.GuestNic(att.bridge, d.mac_for(lab.name, guest.name, index), address, gateway, dhcp_server))
        expect.append((att.network, address))
    chosen, note = choose(guest, verdict)
    spec = {"v": SPEC_VERSION, "lab": lab.name, "host": guest.host, "tiny": tiny_key, "accel": chosen,
            "vcpus": guest.vcpus, "memory_mib": guest.memory_mib, "disk_mib": disk_mib,
            "nics": [[n.bridge, n.mac, n.address or "dhcp", n.gateway or ""] for n in nics]}
    user_data = hashlib.sha256((guest.user_data or "").encode()).hexdigest()[:12]
    if debian:  # a new user-data is a new cloud-init instance (the instance-id hashes the spec)
        spec.update({"image": "debian", "debian": debian_key, "user_data": user_data})
    if imported:
        spec.update({"image": "file", "file": guest.disk_file, "file_key": file_key, "user_data": user_data})
    domain = d.GuestDomain(
        name=guest.name, kernel=kernel, initrd=initrd, memory_mib=guest.memory_mib,
        vcpus=guest.vcpus, accel=chosen, nics=tuple(nics),
        disk=paths.disk if (debian or imported or disk_mib) else None,
        serial_log=paths.serial_log, agent_socket=paths.agent_socket,
        metadata=json.dumps(spec, sort_keys=True, separators=(",", ":")),
        root="/dev/vda" if debian else None, seed=paths.seed if (debian or imported) else None,
    )
    return GuestSpec(guest.name, guest.host, domain, paths, spec, disk_mib, tuple(expect), note,
                     base_disk, guest.user_data, guest.ready_console,
                     float(guest.ready_timeout) if guest.ready_timeout else None)


def desired(lab: t.Lab, tiny_key: str, verdict: Verdict, debian_key: str | None = None,
            files: dict[str, tuple[str, int]] | None = None) -> dict[str, GuestSpec]:
    return {g.name: guest_spec(lab, g, tiny_key, verdict, debian_key, files) for g in lab.guests}
