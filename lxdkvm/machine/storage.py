"""Which LXD storage pool lab hosts go on: copy-on-write when the host can, `dir` otherwise.

On a copy-on-write pool (btrfs, zfs, lvm-thin) a new instance is a snapshot of the unpacked image;
on `dir` LXD copies and uid-shifts the whole rootfs for every instance.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

COW_DRIVERS = ("btrfs", "zfs", "lvm")
COW_POOL = "lxdkvm-cow"
LOOP_SIZE = "30GiB"


@dataclass(frozen=True)
class BtrfsSupport:
    ok: bool
    reason: str


@dataclass(frozen=True)
class PoolChoice:
    name: str
    driver: str
    create: bool  # the pool does not exist yet and lxdkvm would create it
    cow: bool
    reason: str
    config: tuple[tuple[str, str], ...] = ()


def btrfs_support(root: str | Path = "/") -> BtrfsSupport:
    """Can LXD make a loop-file btrfs pool here? Kernel support, mkfs.btrfs and loop devices."""
    root = Path(root)
    try:
        filesystems = (root / "proc/filesystems").read_text().split()
    except OSError:
        filesystems = []
    if "btrfs" not in filesystems:
        return BtrfsSupport(False, "the kernel has no btrfs (not in /proc/filesystems)")
    if not (shutil.which("mkfs.btrfs") or (root / "usr/sbin/mkfs.btrfs").exists()
            or (root / "sbin/mkfs.btrfs").exists()):
        return BtrfsSupport(False, "mkfs.btrfs is missing: apt-get install btrfs-progs")
    if not (root / "dev/loop-control").exists():
        return BtrfsSupport(False, "no /dev/loop-control: loop devices are unavailable")
    return BtrfsSupport(True, "btrfs in the kernel, mkfs.btrfs and loop devices available")


def choose_pool(pools: list[dict], btrfs: BtrfsSupport) -> PoolChoice:
    """Prefer an existing copy-on-write pool, then a new loop-backed btrfs pool, then `dir`."""
    for driver in COW_DRIVERS:
        for pool in pools:
            if pool["driver"] == driver:
                return PoolChoice(pool["name"], driver, create=False, cow=True,
                                  reason=f"existing {driver} pool: instances are snapshots of the image")
    if btrfs.ok:
        return PoolChoice(COW_POOL, "btrfs", create=True, cow=True,
                          reason=f"no copy-on-write pool yet; {btrfs.reason}: a {LOOP_SIZE} "
                                 "loop-file btrfs pool makes instances snapshots of the image",
                          config=(("size", LOOP_SIZE),))
    existing_dir = next((p for p in pools if p["driver"] == "dir"), None)
    name = existing_dir["name"] if existing_dir else "default"
    return PoolChoice(name, "dir", create=existing_dir is None, cow=False,
                      reason=f"no copy-on-write pool possible ({btrfs.reason}): `dir` copies every rootfs")


def mebibytes(size: str) -> int | None:
    """"30GiB" → 30720 (the sizes lxdkvm gives pools it makes)."""
    units = {"MiB": 1, "GiB": 1024, "TiB": 1024 * 1024}
    for unit, factor in units.items():
        if size.endswith(unit) and size[: -len(unit)].isdigit():
            return int(size[: -len(unit)]) * factor
    return None
