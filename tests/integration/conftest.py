"""Fixtures that stand on a real LXD daemon: installed, started and initialised when missing."""

import contextlib
import os
import uuid

import pytest

from lxdkvm.guests import hostprep
from lxdkvm.hosts import profile as profile_mod
from lxdkvm.hosts import readiness
from lxdkvm.images import base as image_mod
from lxdkvm.lxd import setup
from lxdkvm.lxd.session import Session
from lxdkvm.machine import hostcaps

pytestmark = pytest.mark.integration


def _log(message: str) -> None:
    print(f"[lxd] {message}", flush=True)


@pytest.fixture(scope="session")
def lxd() -> Session:
    """The tests' session with the machine's daemon (installed, started and initialised when missing)."""
    if os.geteuid() != 0:
        pytest.fail("the integration tests need root: they install, start and drive LXD")
    session = Session()
    setup.ensure_lxd(session, _log)
    return session


@pytest.fixture(scope="session")
def base_image(lxd) -> image_mod.BuildResult:
    return image_mod.build(lxd, report=_log)


@pytest.fixture(scope="session")
def baked_image(lxd, base_image):
    """The KVM-host image, baked from the base image when its inputs changed (instant when up to date)."""
    from lxdkvm.images import bake

    return bake.bake(lxd, base_image.alias, report=lambda msg: _log(f"bake: {msg}"))


@pytest.fixture(scope="session")
def unique() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture(scope="session")
def kvm_host(lxd, base_image, unique):
    """A KVM host container from the base image and the for-host profile, deleted afterwards."""
    name = f"lxdkvm-it-{unique}"
    kvm_gid = int(base_image.properties["lxdkvm.kvm_gid"])
    spec = profile_mod.for_host(hostcaps.read_host(), kvm_gid=kvm_gid)
    lxd.profiles.apply(name, profile_mod.parse(profile_mod.render(spec)))
    try:
        took = readiness.launch(lxd.instances, name, base_image.alias, ["default", name],
                              report=lambda host, msg: _log(f"{host}: {msg}"))
        _log(f"{name} ready: {took}")
        yield {"name": name, "kvm_gid": kvm_gid, "ready": took}
    finally:
        lxd.instances.delete(name)
        lxd.profiles.delete(name)


@contextlib.contextmanager
def baked_host(lxd: Session, name: str):
    """A KVM host container from the baked image (baked when missing) with its own for-host profile, on
    the hosts' pool; deleted with its profile afterwards, also on failure."""
    from lxdkvm.images import bake

    image = lxd.images.by_alias(bake.DEFAULT_ALIAS)
    if image is None:  # the base image first: bake needs it
        image = bake.bake(lxd, image_mod.build(lxd, report=_log).alias).__dict__
    spec = profile_mod.for_host(hostcaps.read_host(), kvm_gid=int(image["properties"]["lxdkvm.kvm_gid"]),
                                install_packages=False)
    lxd.profiles.apply(name, profile_mod.parse(profile_mod.render(spec)))
    try:
        pool = setup.ensure_hosts_pool(lxd)
        readiness.launch(lxd.instances, name, bake.DEFAULT_ALIAS, ["default", name], pool=pool.name)
        hostprep.define_filter(lxd.instances, name)  # as a lab's hosts have it: every guest NIC names it
        yield name
    finally:
        lxd.instances.delete(name)
        lxd.profiles.delete(name)

