"""A user's tests of their lab: two hosts ready with libvirt, and a guest that survives live migration."""

import uuid

from conftest import GUEST, host_of

BOOT_ID = ["cat", "/proc/sys/kernel/random/boot_id"]


def test_two_hosts_are_ready_and_the_guest_booted(lab):
    status = lab.status()
    assert sorted(host.name for host in status.hosts) == ["kvm-1", "kvm-2"]
    (guest,) = status.guests
    assert guest.name == GUEST and guest.booted and guest.addresses == {"data": ["10.234.20.51/24"]}


def test_libvirt_runs_on_every_host(lab):
    for host in ("kvm-1", "kvm-2"):
        assert lab.exec(host, ["systemctl", "is-active", "libvirtd"]).check().stdout.strip() == "active"


def test_a_guest_survives_live_migration(lab):
    source = host_of(lab, GUEST)
    target = "kvm-2" if source == "kvm-1" else "kvm-1"
    boot_id = lab.guest_exec(GUEST, BOOT_ID).check().stdout.strip()
    token = uuid.uuid4().hex  # a file in the guest's memory: /run is a tmpfs in the tiny guest
    lab.guest_exec(GUEST, f"echo {token} > /run/token && grep -q ' /run tmpfs ' /proc/mounts").check()

    moved = lab.migrate(GUEST, target)

    assert moved.ok, moved.raw
    assert (moved.source, moved.target, moved.over) == (source, target, "10.234.20.1" + target[-1])
    assert moved.boot_id_before == moved.boot_id_after == boot_id
    assert host_of(lab, GUEST) == target
    assert lab.guest_exec(GUEST, BOOT_ID).check().stdout.strip() == boot_id  # the same boot, not a restart
    assert lab.guest_exec(GUEST, ["cat", "/run/token"]).check().stdout.strip() == token
    # reachable where it went, from the host it left, over the isolated network
    assert lab.exec(source, ["ping", "-c", "2", "-W", "2", "10.234.20.51"]).ok
