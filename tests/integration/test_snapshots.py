"""Snapshots of a whole lab against real LXD, libvirt and QEMU: a lab with guests on two hosts, one guest
counting in memory, one shut off, one host without guests. After a snapshot the guests run on where they
were; then things change (a file written in a guest and in a host, a guest migrated, a guest started, a
host stopped, a host added), and `restore` brings back every host and every guest as it was: the same
boot, the counter going on from where it was, the files gone, the guest back on its host, the shut-off
guest shut off, the stopped host running, the added host gone, and `verify` passing (the DHCP NICs of
resumed guests pass traffic at once).

Observed with `lxc exec` and `virsh` in the hosts, not through lxdkvm's own status."""

import json
import subprocess
import time

import pytest

from .. import jsonschemas
from .test_labs import lxc_json, lxd_snapshot, lxdkvm, on

pytestmark = pytest.mark.integration
PROJECT = "lxdkvm-snaps"
LAB = """
name: snaps
networks:
  - {name: mgmt, subnet: 10.221.10.0/24}
  - {name: data, subnet: 10.221.20.0/24, mode: isolated}
hosts:
  - name: sn-[1-2]
    networks: [mgmt, {network: data, ipv4: 10.221.20.11}]
  - name: sn-3
    networks: [mgmt]
guests:
  - name: counter
    host: sn-1
    networks: [{network: data, ipv4: 10.221.20.51}, mgmt]
  - name: other
    host: sn-2
    networks: [mgmt]
  - name: sleeper
    host: sn-2
    networks: [{network: data, ipv4: 10.221.20.53}]
"""
COUNT = "i=0; while :; do i=$((i+1)); echo $i > /run/counter; sleep 0.1; done"


def guest(name: str, *command: str, ok: bool = True):
    return lxdkvm("guest-exec", "snaps", name, "--", *command, ok=ok, timeout=120)


def domains(host: str) -> dict[str, str]:
    out = on(PROJECT, host, "virsh", "-q", "list", "--all").stdout
    return {f[1]: " ".join(f[2:]) for f in (line.split() for line in out.splitlines()) if len(f) >= 3}


def counter() -> int:
    return int(guest("counter", "cat", "/run/counter").stdout)


def host_states() -> dict[str, str]:
    return {i["name"]: i["status"] for i in lxc_json("list", "--project", PROJECT)}


@pytest.fixture(scope="module")
def lab(lxd, tmp_path_factory):
    before = lxd_snapshot()
    path = tmp_path_factory.mktemp("snaps") / "snaps.yaml"
    path.write_text(LAB)
    lxdkvm("down", "snaps", ok=False)
    try:
        lxdkvm("up", str(path), timeout=900)
        yield path
    finally:
        lxdkvm("down", "snaps", ok=False, timeout=300)
    assert lxd_snapshot() == before, "down left something behind (snapshots included)"


@pytest.fixture(scope="module")
def taken(lab):
    """The counting guest started, `sleeper` shut off, then snapshot `one` taken."""
    on(PROJECT, "sn-2", "virsh", "destroy", "sleeper")
    guest("counter", "sh", "-c", f"({COUNT}) >/dev/null 2>&1 &")
    time.sleep(1)
    boot_id = guest("counter", "cat", "/proc/sys/kernel/random/boot_id").stdout.strip()
    before = counter()
    started = time.monotonic()
    result = lxdkvm("snapshot", "snaps", "one", "--json")
    seconds = time.monotonic() - started
    return {"boot_id": boot_id, "before": before, "after": counter(), "doc": json.loads(result.stdout),
            "seconds": seconds}


def test_a_snapshot_saves_every_running_guest_and_they_run_on(taken):
    doc = taken["doc"]
    assert jsonschemas.problems("snapshot-create", doc) == []
    assert (doc["name"], doc["hosts"], doc["guests_saved"], doc["guests_off"]) == ("one", 3, 2, 1)
    for host in ("sn-1", "sn-2", "sn-3"):  # LXD has the snapshot of every host
        assert snapshots_of(host) == ["one"]
    assert domains("sn-1") == {"counter": "running"}
    assert domains("sn-2") == {"other": "running", "sleeper": "shut off"}
    # the guest went on counting in the same boot: its memory was saved and resumed, not rebooted
    assert taken["after"] > taken["before"]
    assert guest("counter", "cat", "/proc/sys/kernel/random/boot_id").stdout.strip() == taken["boot_id"]
    # no managed-save file left behind in the running hosts
    assert on(PROJECT, "sn-1", "virsh", "dominfo", "counter").stdout.count("Managed save:   no") == 1
    listed = json.loads(lxdkvm("snapshot", "list", "snaps", "--json").stdout)
    assert jsonschemas.problems("snapshot-list", listed) == []
    assert [s["name"] for s in listed["snapshots"]] == ["one"]
    from lxdkvm import Lab  # the Python API lists the same snapshot, with the hosts' states it recorded

    (found,) = Lab.attach("snaps").snapshots()
    assert found.name == "one" and found.hosts["sn-2"].guests == {"other": "saved", "sleeper": "shut off"}


def test_resumed_guests_pass_traffic_on_their_dhcp_nics_at_once(taken):
    """A filter that had to learn a DHCP NIC's address again would drop everything until the guest renews
    its lease; the address is pinned in the saved state instead."""
    checks = json.loads(lxdkvm("verify", "snaps", "--json", ok=False).stdout)["checks"]
    failed = [c for c in checks if c["result"] == "FAIL" and "sleeper" not in c["scope"]]
    assert not failed, failed


def test_restore_brings_back_every_host_and_guest_as_they_were(lab, taken, tmp_path):
    written = counter()
    guest("counter", "sh", "-c", "echo later > /run/later")
    on(PROJECT, "sn-3", "sh", "-c", "echo later > /root/later")
    lxdkvm("migrate", "snaps", "counter", "--to", "sn-2", timeout=300)
    on(PROJECT, "sn-2", "virsh", "start", "sleeper")
    subprocess_stop("sn-3")
    bigger = tmp_path / "snaps.yaml"  # a host added since: restore says so and deletes it
    bigger.write_text(LAB.replace("  - name: sn-3\n", "  - name: sn-[3-4]\n"))
    lxdkvm("up", str(bigger), timeout=900)
    assert host_states()["sn-4"] == "Running" and host_states()["sn-3"] == "Running"
    subprocess_stop("sn-3")

    started = time.monotonic()
    result = lxdkvm("restore", "snaps", "one", "--json", timeout=600)
    seconds = time.monotonic() - started
    doc = json.loads(result.stdout)
    assert jsonschemas.problems("restore", doc) == [] and doc["deleted"] == ["sn-4"]
    assert "host sn-4 is in the lab file now, not in the snapshot: restore deletes it" in result.stderr
    assert host_states() == {"sn-1": "Running", "sn-2": "Running", "sn-3": "Running"}
    assert domains("sn-1") == {"counter": "running"}  # back on the host it was on
    assert domains("sn-2") == {"other": "running", "sleeper": "shut off"}
    assert guest("counter", "cat", "/proc/sys/kernel/random/boot_id").stdout.strip() == taken["boot_id"]
    resumed = counter()
    assert taken["before"] <= resumed < written, (taken, resumed, written)  # its memory as it was then
    time.sleep(1)
    assert counter() > resumed  # and the counting process runs on
    assert guest("counter", "cat", "/run/later", ok=False).returncode != 0
    assert on(PROJECT, "sn-3", "cat", "/root/later").returncode != 0
    checks = json.loads(lxdkvm("verify", "snaps", "--json", ok=False).stdout)["checks"]
    failed = [c for c in checks if c["result"] == "FAIL" and "sleeper" not in c["scope"]]
    assert not failed, failed
    print(f"snapshot {taken['seconds']:.1f} s, restore {seconds:.1f} s")


def test_bad_names_and_missing_snapshots_change_nothing(lab, taken):
    for args in (["snapshot", "snaps", "Bad;Name"], ["restore", "snaps", "../one"],
                 ["restore", "snaps", "nope"], ["snapshot", "delete", "snaps", "nope"]):
        result = lxdkvm(*args, ok=False)
        assert result.returncode != 0 and result.stderr.strip(), args
    assert "no snapshot nope" in lxdkvm("restore", "snaps", "nope", ok=False).stderr
    duplicate = lxdkvm("snapshot", "snaps", "one", ok=False)
    assert duplicate.returncode != 0 and "already has a snapshot one" in duplicate.stderr
    assert snapshots_of("sn-1") == ["one"]


def test_delete_removes_the_snapshot_from_every_host(lab, taken):
    lxdkvm("snapshot", "delete", "snaps", "one")
    for host in ("sn-1", "sn-2", "sn-3"):
        assert snapshots_of(host) == []
    assert json.loads(lxdkvm("snapshot", "list", "snaps", "--json").stdout) == {"ok": True, "snapshots": []}


def snapshots_of(host: str) -> list[str]:
    """The names of HOST's snapshots, as LXD has them."""
    out = subprocess.run(["lxc", "query", f"/1.0/instances/{host}/snapshots?project={PROJECT}&recursion=1"],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return sorted(s["name"] for s in json.loads(out))


def subprocess_stop(host: str) -> None:
    subprocess.run(["lxc", "stop", "--force", "--project", PROJECT, host], check=True, timeout=120)
