"""Bake a KVM-host image: the base image with libvirt and QEMU installed, configured and verified.

Hosts launched from it are ready in seconds instead of installing packages through cloud-init. The
bake is keyed by the base image and the user-data that configures it, like the base image build.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from . import hostcaps, image, kvmhost
from . import profile as profile_mod
from .errors import LxdkvmError
from .lxd import Lxd
from .templating import data_dir

BAKE_VERSION = "1"
DEFAULT_ALIAS = "lxdkvm/kvm-host"
CONTENTS = ("libvirt-daemon-system", "qemu-system-x86", "qemu-utils")

Report = Callable[[str], None]


@dataclass
class BakeResult:
    alias: str
    fingerprint: str
    key: str
    action: str  # "up to date" or "baked"
    properties: dict[str, str]


def bake_key(base_fingerprint: str) -> str:
    user_data = profile_mod.user_data(profile_mod.portable("intel"))
    clean = (data_dir("images") / "bake-clean.sh").read_bytes()
    digest = hashlib.sha256(f"{BAKE_VERSION}\0{base_fingerprint}\0{user_data}\0".encode() + clean)
    return digest.hexdigest()[:16]


def bake(from_alias: str = image.DEFAULT_ALIAS, alias: str = DEFAULT_ALIAS, force: bool = False,
         report: Report = lambda _msg: None) -> BakeResult:
    client = Lxd()
    base = client.image_by_alias(from_alias)
    if not base:
        raise LxdkvmError(f"no base image {from_alias}: run `lxdkvm image build` first")
    key = bake_key(base["fingerprint"])
    existing = client.image_by_alias(alias)
    if existing and existing["properties"].get("lxdkvm.key") == key and not force:
        return BakeResult(alias, existing["fingerprint"], key, "up to date", existing["properties"])

    name = f"lxdkvm-bake-{key[:8]}"
    for leftover in (client.delete_instance, client.delete_profile):  # from an interrupted bake
        leftover(name)
    kvm_gid = int(base["properties"].get("lxdkvm.kvm_gid", "0"))
    spec = profile_mod.for_host(hostcaps.read_host(), kvm_gid=kvm_gid)
    try:
        client.apply_profile(name, profile_mod.parse(profile_mod.render(spec)))
        kvmhost.launch(client, name, from_alias, ["default", name],
                       report=lambda _host, stage: report(f"bake container: {stage}"))
        versions = client.execute(name, ["dpkg-query", "-W", "-f", "${Package}=${Version} ", *CONTENTS])
        report("cleaning the container for reuse (cloud-init, machine-id, ssh keys, caches, logs)")
        clean = client.execute(name, ["sh", "-c", (data_dir("images") / "bake-clean.sh").read_text()])
        if clean.exit_code != 0:
            raise LxdkvmError(f"cleaning the bake container failed: {clean.stderr.strip()[-300:]}")
        report("stopping and publishing")
        client.stop(name)
        release = base["properties"].get("release", "")
        properties = {
            **{k: v for k, v in base["properties"].items() if k in ("os", "release", "architecture")},
            **image.stamp_properties(f"Debian {release} KVM host: libvirt + QEMU (lxdkvm"),
            "variant": "lxdkvm-kvm-host", "lxdkvm.key": key, "lxdkvm.kvm_gid": str(kvm_gid), "lxdkvm.base": base["fingerprint"],
            "lxdkvm.contains": versions.stdout.strip(),
        }
        fingerprint = client.publish(name, alias, properties, properties["description"])
    finally:
        client.delete_instance(name)
        client.delete_profile(name)
    return BakeResult(alias, fingerprint, key, "baked", properties)
