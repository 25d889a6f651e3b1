"""Bake a KVM-host image: the base image with libvirt and QEMU installed, configured and verified.

Hosts launched from it are ready in seconds instead of installing packages through cloud-init. The
bake is keyed by the base image and the user-data that configures it, like the base image build.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import LxdkvmError
from ..hosts import profile as profile_mod
from ..hosts import readiness
from ..machine import hostcaps
from ..templating import data_dir
from . import base as image

BAKE_VERSION = "1"
DEFAULT_ALIAS = "lxdkvm/kvm-host"
CONTENTS = ("libvirt-daemon-system", "qemu-system-x86", "qemu-utils")
# What the bake runs inside the container, and the meta-data template that goes with the lean boot.
BAKE_FILES = ("bake-lean-boot.sh", "bake-clean.sh", "bake-meta-data.tpl", "cloud-init-boot.py")
CLOUD_INIT_BOOT = "/usr/local/sbin/lxdkvm-cloud-init-boot"  # where the lean boot's unit runs it

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
    scripts = b"".join((data_dir("images") / f).read_bytes() for f in BAKE_FILES)
    digest = hashlib.sha256(f"{BAKE_VERSION}\0{base_fingerprint}\0{user_data}\0".encode() + scripts)
    return digest.hexdigest()[:16]


def bake(session, from_alias: str = image.DEFAULT_ALIAS, alias: str = DEFAULT_ALIAS, force: bool = False,
         report: Report = lambda _msg: None) -> BakeResult:
    images, instances, profiles = session.images, session.instances, session.profiles
    base = images.by_alias(from_alias)
    if not base:
        raise LxdkvmError(f"no base image {from_alias}: run `lxdkvm image build` first")
    key = bake_key(base["fingerprint"])
    existing = images.by_alias(alias)
    if existing and existing["properties"].get("lxdkvm.key") == key and not force:
        return BakeResult(alias, existing["fingerprint"], key, "up to date", existing["properties"])

    name = f"lxdkvm-bake-{key[:8]}"
    for leftover in (instances.delete, profiles.delete):  # from an interrupted bake
        leftover(name)
    kvm_gid = int(base["properties"].get("lxdkvm.kvm_gid", "0"))
    spec = profile_mod.for_host(hostcaps.read_host(), kvm_gid=kvm_gid)
    try:
        profiles.apply(name, profile_mod.parse(profile_mod.render(spec)))
        readiness.launch(instances, name, from_alias, ["default", name],
                         report=lambda _host, stage: report(f"bake container: {stage}"))
        versions = instances.execute(name, ["dpkg-query", "-W", "-f", "${Package}=${Version} ", *CONTENTS])
        instances.push(name, CLOUD_INIT_BOOT, (data_dir("images") / "cloud-init-boot.py").read_bytes(), mode="0755")
        for script, what in (("bake-lean-boot.sh", "trimming the boot (cloud-init stages, unneeded units)"),
                             ("bake-clean.sh", "cleaning for reuse (cloud-init, machine-id, ssh keys, caches, logs)")):
            report(what)
            result = instances.execute(name, ["sh", "-c", (data_dir("images") / script).read_text()])
            if result.exit_code != 0:
                raise LxdkvmError(f"{script} failed in the bake container: {result.stderr.strip()[-300:]}")
        instances.put_template(name, "cloud-init-meta.tpl",
                               (data_dir("images") / "bake-meta-data.tpl").read_bytes())
        report("stopping and publishing")
        instances.stop(name)
        release = base["properties"].get("release", "")
        properties = {
            **{k: v for k, v in base["properties"].items() if k in ("os", "release", "architecture")},
            **image.stamp_properties(f"Debian {release} KVM host: libvirt + QEMU (lxdkvm"),
            "variant": "lxdkvm-kvm-host", "lxdkvm.key": key, "lxdkvm.kvm_gid": str(kvm_gid), "lxdkvm.base": base["fingerprint"],
            "lxdkvm.contains": versions.stdout.strip(),
        }
        fingerprint = images.publish(name, alias, properties, properties["description"])
    finally:
        instances.delete(name)
        profiles.delete(name)
    return BakeResult(alias, fingerprint, key, "baked", properties)
