"""What a lab stands on, made to exist before its objects: the storage pool its hosts go on and their
image (built and baked on demand), and the kvm-host profile for that image. Shared by every lab; never
deleted by `down`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import LxdkvmError
from ..hosts import profile as profile_mod
from ..images import bake, base
from ..labfile import topology as t
from ..machine import hostcaps, storage
from . import sshkeys


@dataclass
class Prepared:
    pool: str
    kvm_profile: dict


def kvm_profile(image_properties: dict[str, str], ssh_key: str = "") -> dict:
    """The kvm-host profile for hosts of this image: baked images need no package installs. SSH_KEY: the
    lab's public key, for its SSH user (see sshkeys)."""
    gid = image_properties.get("lxdkvm.kvm_gid", "0")
    spec = profile_mod.for_host(hostcaps.read_host(), kvm_gid=int(gid) if gid.isdigit() else 0,
                                install_packages="lxdkvm.contains" not in image_properties)
    spec.ssh_user, spec.ssh_key = sshkeys.LAB_USER, ssh_key
    return profile_mod.parse(profile_mod.render(spec))


def prepare(session, lab: t.Lab, say: Callable[[str], None]) -> Prepared:
    """Make the lab's pool and image exist."""
    from ..lxd import setup

    pool = setup.ensure_hosts_pool(session, say).name if lab.storage == "auto" else lab.storage
    found = session.images.by_alias(lab.image)
    if lab.image == t.DEFAULT_IMAGE and session.server.clustered():  # baking needs this machine's LXD
        if found is None:
            raise LxdkvmError(f"the LXD cluster has no image {lab.image}: bake it on this machine's LXD "
                              "(`lxdkvm image bake`) and copy it (`lxc image export` then `lxc image import`; "
                              "`lxdkvm cluster sandbox up` does it for the sandbox)")
    elif lab.image == t.DEFAULT_IMAGE:  # lxdkvm's own image: (re)built and (re)baked when its inputs change
        if found is None:
            say(f"image {lab.image} is missing: building the base image and baking it (a few minutes, once)")
        base.build(session, report=say)
        baked = bake.bake(session, report=say)
        if baked.action != "up to date":
            say(f"image {lab.image}: {baked.action} ({baked.fingerprint[:12]})")
        found = session.images.by_alias(baked.alias)
    if found is None:
        raise LxdkvmError(f"LXD has no image {lab.image}")
    return Prepared(pool, kvm_profile(found["properties"], sshkeys.public_key(lab.name)))


def planned(session, lab: t.Lab) -> Prepared:
    """What `prepare` would decide, without creating anything (for `plan`)."""
    if lab.storage == "auto":
        pool = storage.choose_pool(session.server.facts().pools, storage.btrfs_support()).name
    else:
        pool = lab.storage
    found = session.images.by_alias(lab.image)
    return Prepared(pool, kvm_profile(found["properties"] if found else {"lxdkvm.contains": "(to be baked)"},
                                      sshkeys.public_key(lab.name)))
