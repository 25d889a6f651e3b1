"""Build lxdkvm's base container image offline with debootstrap and import it into LXD.

The build is cached outside the repository, keyed by everything that shapes the image (release,
packages, templates, build steps), so a second build is instant: either LXD already has the image with
that key, or the cached tarballs are imported again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths
from ..errors import LxdkvmError
from ..templating import data_dir, render_template

# Bump when the build steps below change in a way the key would not otherwise see.
BUILD_VERSION = "1"
DEFAULT_ALIAS = "lxdkvm/base"
DEFAULT_RELEASE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# systemd as init, cloud-init and what it needs (python3-cffi-backend: a virtual dependency that
# debootstrap does not resolve; locales: cloud-init's locale module fails without it), ifupdown and a
# DHCP client for cloud-init's network config, ssh, sudo, python3 and tools a lab host is used with.
PACKAGES = ["systemd", "systemd-sysv", "dbus", "cloud-init", "python3-cffi-backend", "locales",
            "openssh-server", "sudo", "python3", "iproute2", "ifupdown", "isc-dhcp-client",
            "ca-certificates", "netbase", "procps", "iputils-ping", "less"]
MIN_FREE_BYTES = 4 * 1024**3

Report = Callable[[str], None]


@dataclass(frozen=True)
class Recipe:
    release: str = DEFAULT_RELEASE
    mirror: str = DEFAULT_MIRROR
    packages: tuple[str, ...] = tuple(PACKAGES)
    arch: str = "amd64"

    def key(self) -> str:
        """Hash of everything that decides the image's content (the mirror only decides where from)."""
        digest = hashlib.sha256()
        digest.update(json.dumps([BUILD_VERSION, self.release, self.arch, sorted(self.packages)]).encode())
        folder = data_dir("images")
        for path in sorted([folder / "metadata.yaml.j2", *(folder / "templates").rglob("*")]):
            if path.is_file():
                digest.update(str(path.relative_to(folder)).encode())
                digest.update(path.read_bytes())
        return digest.hexdigest()[:16]


@dataclass
class BuildResult:
    alias: str
    fingerprint: str
    key: str
    action: str  # "up to date", "alias added", "imported from cache", "built"
    properties: dict[str, str] = field(default_factory=dict)


def cache_root() -> Path:
    return paths.cache_root()


def _preflight(recipe: Recipe, need_build: bool) -> None:
    if os.geteuid() != 0:
        raise LxdkvmError("building an image needs root (debootstrap, chroot): run it as root")
    if not need_build:
        return
    if not shutil.which("debootstrap"):
        raise LxdkvmError("debootstrap is not installed: apt-get install debootstrap (or run `lxdkvm setup`)")
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    if free < MIN_FREE_BYTES:
        raise LxdkvmError(f"not enough disk space in {root}: {free / 1024**3:.1f} GiB free, "
                          f"{MIN_FREE_BYTES / 1024**3:.0f} GiB needed")
    import urllib.request  # here: only a build needs HTTP (and it is slow to import)

    url = f"{recipe.mirror.rstrip('/')}/dists/{recipe.release}/Release"
    try:
        with urllib.request.urlopen(url, timeout=20) as response:  # noqa: S310 - http(s) mirror URL
            response.read(1)
    except OSError as exc:  # urllib.error.URLError is an OSError
        raise LxdkvmError(f"the Debian archive is unreachable: {url}: {getattr(exc, 'reason', exc)}") from None


def _chroot(rootfs: Path, *command: str) -> str:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(["chroot", str(rootfs), *command], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise LxdkvmError(f"in the image: {' '.join(command)} failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def _debootstrap(recipe: Recipe, rootfs: Path, report: Report) -> None:
    command = ["debootstrap", "--variant=minbase", f"--arch={recipe.arch}",
               f"--include={','.join(recipe.packages)}", recipe.release, str(rootfs), recipe.mirror]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    phase = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-8:]
        # One progress line per phase (Retrieving, Validating, Extracting, Installing, Configuring...).
        verb = line[3:].split(" ", 1)[0] if line.startswith("I: ") else ""
        if verb and verb != phase:
            phase = verb
            report(f"debootstrap: {line[3:]}")
    if proc.wait() != 0:
        raise LxdkvmError("debootstrap failed: " + " | ".join(tail[-3:]))


def _customise(rootfs: Path) -> dict[str, str]:
    """Make the rootfs a reusable image: services can start, identity is made fresh per instance."""
    (rootfs / "usr/sbin/policy-rc.d").unlink(missing_ok=True)  # its `exit 101` stops every service
    # A fixed kvm group in the image, so its GID is known (recorded as an image property).
    if "kvm:" not in (rootfs / "etc/group").read_text():
        _chroot(rootfs, "groupadd", "--system", "kvm")
    kvm_gid = next(line.split(":")[2] for line in (rootfs / "etc/group").read_text().splitlines()
                   if line.startswith("kvm:"))
    (rootfs / "etc/locale.gen").write_text("en_US.UTF-8 UTF-8\n")
    _chroot(rootfs, "locale-gen")
    (rootfs / "etc/default/locale").write_text("LANG=en_US.UTF-8\n")
    # Per-instance identity: systemd makes a machine-id at first boot, cloud-init makes ssh host keys.
    (rootfs / "etc/machine-id").write_text("")
    (rootfs / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    # debootstrap copied the build machine's resolver; the instance's DHCP client writes its own.
    (rootfs / "etc/resolv.conf").unlink(missing_ok=True)
    (rootfs / "etc/resolv.conf").write_text("")
    (rootfs / "etc/network/interfaces").write_text(
        "# lxdkvm: cloud-init writes eth0's configuration to interfaces.d/\n"
        "auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n")
    _chroot(rootfs, "apt-get", "clean")
    for leftover in ("var/lib/apt/lists", "var/log"):
        for path in (rootfs / leftover).rglob("*"):
            if path.is_file():
                path.unlink()
    return {"kvm_gid": kvm_gid}


def stamp_properties(description: str) -> dict[str, str]:
    """The image properties that record when it was made (description gets the date appended)."""
    now = time.gmtime()
    return {"description": f"{description}, {time.strftime('%Y%m%d', now)})",
            "serial": time.strftime("%Y%m%d_%H%M", now),
            "build_date": time.strftime("%Y-%m-%dT%H:%M:%SZ", now)}


def _metadata(recipe: Recipe, key: str, extra: dict[str, str]) -> tuple[str, dict[str, str]]:
    properties = {
        "os": "debian", "release": recipe.release, "architecture": recipe.arch, "variant": "lxdkvm-base",
        **stamp_properties(f"Debian {recipe.release} {recipe.arch} (lxdkvm base"),
        "lxdkvm.key": key, "lxdkvm.kvm_gid": extra["kvm_gid"],
        "lxdkvm.packages": ",".join(recipe.packages),
    }
    text = render_template("images", "metadata.yaml.j2", lxd_arch="x86_64",
                           creation_date=int(time.time()), properties=properties)
    return text, properties


def _pack(rootfs: Path, out: Path, metadata_text: str, report: Report) -> None:
    meta = out / "meta.tar.gz"
    with tarfile.open(meta, "w:gz") as tar:
        info = tarfile.TarInfo("metadata.yaml")
        body = metadata_text.encode()
        info.size, info.mtime = len(body), int(time.time())
        tar.addfile(info, io.BytesIO(body))
        tar.add(data_dir("images") / "templates", arcname="templates")
    report("packing rootfs.tar.gz")
    proc = subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", str(rootfs),
                           "-I", "gzip -1", "-cf", str(out / "rootfs.tar.gz"), "."],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise LxdkvmError(f"packing the rootfs failed: {proc.stderr.strip()[-300:]}")


def build(session, recipe: Recipe = Recipe(), alias: str = DEFAULT_ALIAS, force: bool = False,
          report: Report = lambda _msg: None) -> BuildResult:
    """The base image under ALIAS in the session's daemon: found, pointed at, imported from the cache or
    built by debootstrap, whichever is the least work."""
    images = session.images
    images.conn  # noqa: B018 - the daemon being down is reported before any work
    key = recipe.key()
    existing = images.by_alias(alias)
    if existing and existing["properties"].get("lxdkvm.key") == key and not force:
        return BuildResult(alias, existing["fingerprint"], key, "up to date", existing["properties"])
    same = None if force else images.with_property("lxdkvm.key", key)
    if same:  # LXD has this image under another alias: LXD refuses a second copy, and needs none
        report(f"LXD has this image as {', '.join(same['aliases']) or same['fingerprint'][:12]}: adding {alias}")
        images.point_alias(alias, same["fingerprint"], same["properties"].get("description", ""))
        return BuildResult(alias, same["fingerprint"], key, "alias added", same["properties"])

    cached = cache_root() / "images" / key
    need_build = force or not (cached / "complete").exists()
    _preflight(recipe, need_build)
    if need_build:
        work = cache_root() / "images" / f"{key}.work"
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(cached, ignore_errors=True)
        try:
            rootfs = work / "rootfs"
            report(f"debootstrap {recipe.release} ({len(recipe.packages)} packages) from {recipe.mirror}")
            _debootstrap(recipe, rootfs, report)
            report("customising the rootfs")
            extra = _customise(rootfs)
            text, properties = _metadata(recipe, key, extra)
            _pack(rootfs, work, text, report)
            (work / "properties.json").write_text(json.dumps(properties, indent=1))
            shutil.rmtree(rootfs)
            (work / "complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            work.rename(cached)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    properties = json.loads((cached / "properties.json").read_text())
    report(f"importing into LXD as {alias}")
    fingerprint, imported = images.import_split(cached / "meta.tar.gz", cached / "rootfs.tar.gz", alias,
                                                description=properties["description"])
    action = "alias added" if not imported else "built" if need_build else "imported from cache"
    return BuildResult(alias, fingerprint, key, action, properties)


def kvm_gid(session, alias: str) -> int:
    """The kvm group's GID inside an lxdkvm image (recorded when the image was built)."""
    found = session.images.by_alias(alias)
    if not found:
        raise LxdkvmError(f"no image {alias} in LXD: run `lxdkvm image build`")
    value = found["properties"].get("lxdkvm.kvm_gid", "")
    if not value.isdigit():
        raise LxdkvmError(f"image {alias} does not record its kvm GID (not built by lxdkvm?)")
    return int(value)
