"""A Debian 12 guest in a lab, against real LXD, libvirt and QEMU (TCG): built offline, its own
copy-on-write disk on a base every host has, cloud-init user-data from the lab file, `verify`, a live
migration that moves only its overlay, a second `up` that does nothing, and `down` leaving LXD as it was."""

import json

import pytest

from .test_labs import LABS, lxd_snapshot, lxdkvm, on

pytestmark = pytest.mark.integration
LAB = LABS / "valid" / "debian.yaml"
PROJECT = "lxdkvm-deb"


def guest_run(*command: str, ok: bool = True):
    return lxdkvm("guest-exec", "deb", "deb-1", "--", *command, ok=ok, timeout=120)


@pytest.fixture(scope="module")
def lab_up(lxd):
    before = lxd_snapshot()
    lxdkvm("down", "deb", ok=False)
    try:
        yield lxdkvm("up", str(LAB), timeout=1500)
    finally:
        lxdkvm("down", "deb", ok=False, timeout=300)
    assert lxd_snapshot() == before, "down left something behind"


def test_the_debian_guest_boots_with_its_user_data(lab_up):
    assert "lab deb is up: 2 hosts and 1 guests ready" in lab_up.stdout
    assert guest_run("cat", "/etc/lxdkvm-hello").stdout == "hello from user-data\n"  # write_files
    assert guest_run("cat", "/run/lxdkvm-runcmd").stdout.strip() == "deb-1"  # runcmd, and its hostname
    assert "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"" in guest_run("cat", "/etc/os-release").stdout
    assert "10.215.20.51/24" in guest_run("ip", "-4", "-o", "addr", "show").stdout
    state = guest_run("systemctl", "is-system-running", ok=False).stdout.strip()
    assert state in ("running", "degraded"), state
    # its disk is an overlay on the shared base image in the host
    info = json.loads(on(PROJECT, "dhost-1", "qemu-img", "info", "-U", "--output=json",
                         "/var/lib/lxdkvm/guests/deb-1/disk.qcow2").stdout)
    assert info["backing-filename"].endswith("/disk.qcow2") and "/debian/" in info["backing-filename"]


def test_verify_passes(lab_up):
    report = json.loads(lxdkvm("verify", "deb", "--json").stdout)
    assert report["summary"]["FAIL"] == 0, [c for c in report["checks"] if c["result"] == "FAIL"]
    assert any(c["scope"] == "guest deb-1" and c["name"] == "booted" for c in report["checks"])


def test_the_debian_guest_migrates_with_its_overlay(lab_up):
    boot_id = guest_run("cat", "/proc/sys/kernel/random/boot_id").stdout.strip()
    moved = json.loads(lxdkvm("migrate", "deb", "deb-1", "--to", "dhost-2", "--json", timeout=600).stdout)
    print(json.dumps({k: v for k, v in moved.items() if k != "job"}), flush=True)
    assert moved["same_boot"] and moved["boot_id_after"] == boot_id and moved["address_answers"]
    assert moved["disk_copied"] and moved["to"] == "dhost-2"
    assert guest_run("cat", "/etc/lxdkvm-hello").stdout == "hello from user-data\n"  # its disk came along
    again = lxdkvm("up", str(LAB), timeout=600)
    assert "nothing to do" in again.stdout
