"""LXD's failures reach the user as LXD's own words and what to do, through lxdkvm's own commands, against
a real LXD; and an image LXD already has gets the alias asked for instead of a refusal."""

import io
import json
import subprocess
import sys
import tarfile
import time
import uuid

import pytest

from lxdkvm.images import base

pytestmark = pytest.mark.integration

# Profiles of containers LXD cannot start on this machine kind: (config, devices, what LXD must say).
UNSTARTABLE = {
    "kernel-module": ({"linux.kernel_modules": "nosuchmodule"}, {},
                      ("nosuchmodule", "modprobe", "lxdkvm doctor")),
    "missing-device": ({}, {"nodev": {"type": "unix-char", "source": "/dev/lxdkvm-no-such-device",
                                      "required": "true"}},
                       ('Failed to start device "nodev"', 'required: "false"')),
}


def lxdkvm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lxdkvm", *args], capture_output=True, text=True,
                          timeout=600, check=False)


def lxd_state(lxd) -> dict:
    """What these tests could leave behind: instances, profiles, images and aliases."""
    aliases = lxd.connection().client.api.images.aliases.get(params={"recursion": "1"}).json()["metadata"]
    return {"instances": sorted(i.name for i in lxd.connection().client.instances.all()),
            "profiles": sorted(p.name for p in lxd.connection().client.profiles.all()),
            "images": sorted(i.fingerprint for i in lxd.connection().client.images.all()),
            "aliases": sorted((a["name"], a["target"]) for a in aliases)}


def hosts_pool(lxd) -> str:
    """An existing pool (copy-on-write when there is one): --pool keeps `launch` from creating one."""
    pools = lxd.server.facts().pools
    return next((p["name"] for p in pools if p["driver"] in ("btrfs", "zfs", "lvm")), pools[0]["name"])


@pytest.mark.parametrize("case", sorted(UNSTARTABLE))
def test_a_container_lxd_cannot_start_shows_lxds_reason_and_leaves_nothing(lxd, base_image, unique, case):
    config, devices, said = UNSTARTABLE[case]
    name = f"lxdkvm-it-{case}-{unique}"
    before = lxd_state(lxd)
    lxd.profiles.apply(name, {"description": "lxdkvm test: cannot start", "config": config, "devices": devices})
    try:
        proc = lxdkvm("launch", name, "--image", base_image.alias, "--profile", "default", "--profile", name,
                      "--pool", hosts_pool(lxd))
        print(proc.stderr)
        assert proc.returncode == 1
        message = proc.stderr
        assert f"{name}: LXD could not start the container: " in message
        for words in said:
            assert words in message
        assert "what to do:" in message
        assert "HTTP" not in message and "Traceback" not in message
        assert not lxd.instances.exists(name)  # the container LXD could not start was deleted again
    finally:
        lxd.instances.delete(name)
        lxd.profiles.delete(name)
    assert lxd_state(lxd) == before


def alias_targets(*names: str) -> dict[str, str]:
    listed = json.loads(subprocess.run(["lxc", "image", "alias", "list", "--format", "json"],
                                       capture_output=True, text=True, check=True).stdout)
    return {a["name"]: a["target"] for a in listed if a["name"] in names}


def test_image_build_of_an_image_lxd_has_adds_the_alias(lxd, base_image, unique):
    other = f"lxdkvm-it/other-{unique}"
    before = lxd_state(lxd)
    try:
        proc = lxdkvm("image", "build", "--alias", other)
        assert proc.returncode == 0, proc.stderr
        assert f"image {other}: alias added (fingerprint {base_image.fingerprint[:12]}" in proc.stdout
        assert alias_targets(base.DEFAULT_ALIAS, other) == {base.DEFAULT_ALIAS: base_image.fingerprint,
                                                             other: base_image.fingerprint}
        assert lxd_state(lxd)["images"] == before["images"]  # nothing was imported
        again = lxdkvm("image", "build", "--alias", other)
        assert again.returncode == 0 and f"image {other}: up to date" in again.stdout
    finally:
        subprocess.run(["lxc", "image", "alias", "delete", other], capture_output=True, check=False)
    assert lxd_state(lxd) == before


def tiny_split_image(folder, unique):
    """A split image of a few bytes (metadata tarball + rootfs tarball), unique to this run."""
    metadata = (f"architecture: x86_64\ncreation_date: {int(time.time())}\n"
                f"properties:\n  description: lxdkvm test image {unique}\n").encode()
    paths = []
    for name, member, body in (("meta.tar.gz", "metadata.yaml", metadata),
                               ("rootfs.tar.gz", "etc/lxdkvm-test", unique.encode())):
        path = folder / name
        with tarfile.open(path, "w:gz") as tar:
            info = tarfile.TarInfo(member)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        paths.append(path)
    return paths


def test_importing_an_image_lxd_already_has_points_the_alias_at_it(lxd, tmp_path):
    unique = uuid.uuid4().hex[:6]
    first, second = f"lxdkvm-it/tiny-{unique}", f"lxdkvm-it/tiny-again-{unique}"
    metadata, rootfs = tiny_split_image(tmp_path, unique)
    before = lxd_state(lxd)
    fingerprint = None
    try:
        fingerprint, imported = lxd.images.import_split(metadata, rootfs, first)
        assert imported
        # LXD refuses the same upload ("Image with same fingerprint already exists"): the alias is added
        again, imported = lxd.images.import_split(metadata, rootfs, second)
        assert (again, imported) == (fingerprint, False)
        assert alias_targets(first, second) == {first: fingerprint, second: fingerprint}
    finally:
        if fingerprint:
            lxd.images.delete(fingerprint)
    assert lxd_state(lxd) == before
