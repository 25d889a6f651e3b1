"""Fixtures that stand on a real LXD daemon: installed, started and initialised when missing."""

import contextlib
import os
import uuid

import pytest

from lxdkvm.hosts import profile as profile_mod
from lxdkvm.hosts import readiness
from lxdkvm.images import base as image
from lxdkvm.lxd import Lxd, setup
from lxdkvm.machine import hostcaps

pytestmark = pytest.mark.integration


def _log(message: str) -> None:
    print(f"[lxd] {message}", flush=True)


@pytest.fixture(scope="session")
def lxd() -> Lxd:
    if os.geteuid() != 0:
        pytest.fail("the integration tests need root: they install, start and drive LXD")
    return setup.ensure_lxd(_log)


@pytest.fixture(scope="session")
def base_image(lxd) -> image.BuildResult:
    return image.build(report=_log)


@pytest.fixture(scope="session")
def unique() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture(scope="session")
def kvm_host(lxd, base_image, unique):
    """A KVM host container from the base image and the for-host profile, deleted afterwards."""
    name = f"lxdkvm-it-{unique}"
    kvm_gid = int(base_image.properties["lxdkvm.kvm_gid"])
    spec = profile_mod.for_host(hostcaps.read_host(), kvm_gid=kvm_gid)
    lxd.apply_profile(name, profile_mod.parse(profile_mod.render(spec)))
    try:
        took = readiness.launch(lxd, name, base_image.alias, ["default", name],
                              report=lambda host, msg: _log(f"{host}: {msg}"))
        _log(f"{name} ready: {took}")
        yield {"name": name, "kvm_gid": kvm_gid, "ready": took}
    finally:
        lxd.delete_instance(name)
        lxd.delete_profile(name)


@contextlib.contextmanager
def baked_host(lxd: Lxd, name: str):
    """A KVM host container from the baked image (baked when missing) with its own for-host profile, on
    the hosts' pool; deleted with its profile afterwards, also on failure."""
    from lxdkvm.images import bake

    image = lxd.image_by_alias(bake.DEFAULT_ALIAS) or bake.bake().__dict__
    spec = profile_mod.for_host(hostcaps.read_host(), kvm_gid=int(image["properties"]["lxdkvm.kvm_gid"]),
                                install_packages=False)
    lxd.apply_profile(name, profile_mod.parse(profile_mod.render(spec)))
    try:
        pool = setup.ensure_hosts_pool(lxd)
        readiness.launch(lxd, name, bake.DEFAULT_ALIAS, ["default", name], pool=pool.name)
        yield name
    finally:
        lxd.delete_instance(name)
        lxd.delete_profile(name)

