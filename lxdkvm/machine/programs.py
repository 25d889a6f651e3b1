"""The programs lxdkvm runs on this machine, each with the Debian package that has it.

`lxdkvm setup` (and so `invoke lab-up`) installs the packages of the missing ones; the tests install
theirs the same way (tests/programs.py). tests/unit/test_programs.py reads every call of a program in
the code and fails when one is not listed here, so a newcomer's fresh machine never meets a missing one.
The daemons' own programs are in DAEMONS: setup installs LXD's with the tools, incussetup Incus's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ..errors import LxdkvmError

# program -> Debian 12 package. Everything lxdkvm runs on the machine itself (not inside a host).
TOOLS: dict[str, str] = {
    "iptables": "iptables",          # the daemon's NAT bridge, the cluster sandbox's NAT
    "nft": "nftables",               # the fence of a lab's networks (lab/fence.py)
    "dnsmasq": "dnsmasq-base",       # the daemon's bridges' DHCP and DNS
    "debootstrap": "debootstrap",    # the base image (images/base.py)
    "unsquashfs": "squashfs-tools",  # the daemon unpacks images with these
    "xz": "xz-utils",
    "mkfs.btrfs": "btrfs-progs",     # the copy-on-write pool for hosts (machine/storage.py)
    "mkfs.ext4": "e2fsprogs",        # the Debian guest's disk (guests/debian.py)
    "qemu-img": "qemu-utils",        # guest images (guests/store.py, guests/debian.py)
    "dpkg-deb": "dpkg",              # the guest kernel's packages (guests/debs.py)
    "apt-cache": "apt",
    "dot": "graphviz",               # `lxdkvm graph -f svg|png`
    "ip": "iproute2",                # addresses and routes of this machine, the cluster sandbox's links
    "tc": "iproute2",                # impaired links' qdiscs (machine/impair.py)
    "tcpdump": "tcpdump",            # `lxdkvm capture` (machine/capture.py)
    "nsenter": "util-linux",         # the cluster sandbox
    "unshare": "util-linux",
    "losetup": "mount",
    "umount": "mount",
    "chroot": "coreutils",
    "tar": "tar",
    "sh": "dash",
    "apt-get": "apt",
    "python3": "python3",
}

# Programs lxdkvm never runs itself: the clients docs/tools.md points at a lab (`lxdkvm ssh-config`, `lxdkvm
# uri`), installed by setup like TOOLS but without Recommends (virtinst's would pull a desktop: virt-viewer).
CLIENTS: dict[str, str] = {
    "ssh": "openssh-client",         # ssh HOST.LAB through the lab's ssh config
    "virsh": "libvirt-clients",      # virsh -c qemu+ssh://lab@HOST.LAB/system
    "virt-install": "virtinst",      # a guest defined and started in a lab host from the machine
}

# Run only where they are there by definition: not installed by anyone.
GIVEN: dict[str, str] = {
    "systemctl": "called only where systemd is PID 1 (/run/systemd/system), to start the daemon",
}

# The daemons' clients and servers: LXD's from Debian 12, Incus's from bookworm-backports (incussetup).
DAEMONS: dict[str, dict[str, str]] = {
    "lxd": {"lxd": "lxd", "lxc": "lxd-client"},
    "incus": {"incus": "incus-client"},
}

Report = Callable[[str], None]


def present(program: str) -> bool:
    """Whether PROGRAM is on PATH or in /usr/sbin (root's PATH is not everybody's)."""
    return bool(shutil.which(program)) or any(Path(d, program).exists() for d in ("/usr/sbin", "/sbin"))


def missing(programs: Mapping[str, str]) -> list[str]:
    return [p for p in programs if not present(p)]


def packages_for(programs: Iterable[str], table: Mapping[str, str]) -> list[str]:
    """The packages of PROGRAMS, once each, in TABLE's order."""
    wanted = set(programs)
    return list(dict.fromkeys(package for program, package in table.items() if program in wanted))


def apt_install(packages: Iterable[str], what: str, report: Report, recommends: bool = True) -> None:
    """Install PACKAGES from Debian's archive (after refreshing its lists: a fresh machine has none); with
    RECOMMENDS False, without the packages they only recommend."""
    packages = list(packages)
    if os.geteuid() != 0:
        raise LxdkvmError(f"{what} is not installed and installing it needs root: "
                          f"apt-get install {' '.join(packages)}")
    report(f"installing {' '.join(packages)} (apt)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *([] if recommends else ["--no-install-recommends"]), *packages]
    for command in (["apt-get", "update", "-q"], install):
        proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-3:]
            raise LxdkvmError(f"{' '.join(command[:2])} failed: {' | '.join(tail)}")


def ensure(table: Mapping[str, str], what: str, report: Report, recommends: bool = True) -> list[str]:
    """Install the packages of TABLE's missing programs; the packages installed."""
    absent = missing(table)
    if not absent:
        return []
    packages = packages_for(absent, table)
    apt_install(packages, f"{what} ({', '.join(absent)})", report, recommends)
    return packages
