"""The plain-data parts of a live migration (lxdkvm/guests/migration.py): what a destination must have,
where the source reaches it, the `virsh` line with its downtime budget, and what libvirt and qemu-img
answer, read as untrusted text."""

from __future__ import annotations

import ipaddress

import pytest

from lxdkvm.errors import LxdkvmError
from lxdkvm.guests.migration import (
    _boot_id,
    allocated_mib,
    jobinfo,
    listen_addresses,
    migrate_command,
    pick_address,
    room_mib,
    target_problem,
)
from lxdkvm.guests.ops import Located

GUEST = Located("vm-1", "kvm-1", {"memory_mib": 256, "nics": [["br-data", "52:54:00:00:00:01", "10.9.0.5/24", ""]]})


def facts(net="lo eth0 br-data", available="2048", limit="max", used="0") -> dict[str, tuple[int, str]]:
    return {"net": (0, net.replace(" ", "\n")), "available": (0, available), "limit": (0, limit), "used": (0, used)}


def test_a_destination_needs_the_guests_bridges_and_its_memory():
    assert target_problem(GUEST, "kvm-2", facts()) == ""
    assert "kvm-2 is not on the network(s) of guest vm-1 (no br-data in kvm-2)" in \
        target_problem(GUEST, "kvm-2", facts(net="lo eth0"))
    assert "kvm-2 has 200 MiB of memory left, guest vm-1 needs 256 MiB" in \
        target_problem(GUEST, "kvm-2", facts(available="200"))


def test_a_hosts_memory_limit_bounds_what_its_kernel_calls_available():
    assert room_mib(facts(available="4096", limit=str(1024 * 2**20), used=str(900 * 2**20))) == 124
    assert room_mib(facts(available="4096", limit="max")) == 4096  # cgroup v2 without a limit
    assert room_mib(facts(available="4096", limit=str(2**63 - 4096))) == 4096  # cgroup v1 without a limit
    assert room_mib(facts(available="lots", limit="-1")) == 0  # what is not a number is no room


def test_the_source_reaches_the_listener_address_on_a_network_it_shares():
    dropin = "[Socket]\nListenStream=\nListenStream=10.9.1.12:16514\nListenStream=10.9.0.12:16514\n"
    listening = listen_addresses(dropin)
    assert listening == [ipaddress.IPv4Address("10.9.1.12"), ipaddress.IPv4Address("10.9.0.12")]
    mine = [ipaddress.IPv4Interface("127.0.0.1/8"), ipaddress.IPv4Interface("10.9.0.11/24")]
    assert pick_address("kvm-1", "kvm-2", mine, listening) == ipaddress.IPv4Address("10.9.0.12")
    with pytest.raises(LxdkvmError, match="share no isolated lab network"):
        pick_address("kvm-1", "kvm-2", [ipaddress.IPv4Interface("10.8.0.11/24")], listening)


def test_a_listener_line_that_is_not_an_address_is_left_out():
    assert listen_addresses("ListenStream=999.1.1.1:16514\nListenStream=10.0.0.1:16514; rm -rf /\n") == []


def test_a_live_move_sets_its_downtime_budget_and_may_converge_by_throttling():
    line = migrate_command("vm-1", "10.9.0.12", max_downtime_ms=40)
    assert line.startswith("virsh migrate-setmaxdowntime vm-1 40 && virsh migrate --live --auto-converge --tls ")
    assert "qemu+tls://10.9.0.12/system --migrateuri tcp://10.9.0.12 --listen-address 10.9.0.12" in line
    offline = migrate_command("vm-1", "10.9.0.12", live=False, copy_storage="all")
    assert offline.startswith("virsh migrate --copy-storage-all --tls ")  # a paused guest has no downtime to budget
    for budget in (0, 60001):
        with pytest.raises(LxdkvmError, match="1 to 60000 ms"):
            migrate_command("vm-1", "10.9.0.12", max_downtime_ms=budget)


def test_libvirts_job_statistics_are_numbers_in_mib_and_ms():
    text = ("Job type:         Completed\nTime elapsed:     1805         ms\nData remaining:   0.000 B\n"
            "Memory processed: 91.257 MiB\nMemory total:     1.000 GiB\nTotal downtime:   70           ms\n"
            "Auto converge throttle: 20\nIteration:        3\n")
    job = jobinfo(text)
    assert job["Time elapsed"] == 1805 and job["Total downtime"] == 70 and job["Iteration"] == 3
    assert job["Memory processed"] == pytest.approx(91.257) and job["Memory total"] == 1024
    assert job["Data remaining"] == 0 and job["Auto converge throttle"] == 20
    assert "Job type" not in job


def test_the_disk_written_is_qemu_imgs_allocated_size_or_nothing():
    assert allocated_mib('{"actual-size": 67371008, "format": "qcow2"}') == 64.2
    for hostile in ('{"actual-size": "1e99"}', '{"actual-size": -5}', "[1]", "not json", '{"actual-size": 1.5}'):
        assert allocated_mib(hostile) == 0.0


def test_a_boot_id_is_a_line_that_is_one_whatever_else_the_batch_merged_in():
    boot = "885aa64e-af09-49a7-a07c-e59b51a6b748"
    assert _boot_id(f"guest-agent: retrying\n{boot}\n") == boot
    assert _boot_id(f"{boot}; rm -rf /\n") == "" and _boot_id("") == ""
