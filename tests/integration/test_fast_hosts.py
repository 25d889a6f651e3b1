"""New hosts made the fast way, against a real LXD (observed through `lxc` and the host's own files, not
lxdkvm's code): each host's root filesystem mounted idmapped instead of chowned at first start, isolated
id ranges chosen by lxdkvm so the hosts are created at once, the lab's networks addressed while they
are, every readiness stage in one exec. And the states an interruption leaves are repaired."""

import json
import subprocess
from pathlib import Path

import pytest

from lxdkvm.lab import pipeline
from lxdkvm.lxd.session import Session
from lxdkvm.machine.idmapmount import IDMAPPED_ROOT

from .test_labs import lxc_json, lxd_snapshot, on

pytestmark = pytest.mark.integration
LAB = """name: itest-fast
networks:
  - {name: mgmt, subnet: 10.218.10.0/24, mode: nat}
  - {name: data, subnet: 10.218.20.0/24, mode: isolated}
hosts:
  - name: fast-[1-3]
    networks: [mgmt, {network: data, ipv4: 10.218.20.11}]
  - name: fast-shared
    idmap: shared
    networks: [mgmt]
"""
PROJECT = "lxdkvm-itest-fast"
ISOLATED = ["fast-1", "fast-2", "fast-3"]
HOSTS = [*ISOLATED, "fast-shared"]  # made together: a shared map needs no range and no lock


def config(host: str, key: str) -> str:
    return subprocess.run(["lxc", "config", "get", "--project", PROJECT, host, key], check=True,
                          capture_output=True, text=True).stdout.strip()


def query(path: str) -> dict:
    return json.loads(subprocess.run(["lxc", "query", path], check=True, capture_output=True, text=True).stdout)


def rootfs(host: str) -> Path:
    """The host's root filesystem as this machine sees it (in LXD's storage pool)."""
    pool = query(f"/1.0/instances/{host}?project={PROJECT}")["expanded_devices"]["root"]["pool"]
    return Path(f"/var/lib/lxd/storage-pools/{pool}/containers/{PROJECT}_{host}/rootfs")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    path = tmp_path_factory.mktemp("fast") / "itest-fast.yaml"
    path.write_text(LAB)
    pipeline.down(Session(), "itest-fast", lambda *_: None)
    before = lxd_snapshot()
    messages: list[tuple[str, str]] = []
    pipeline.up(Session(), path, lambda host, message: messages.append((host, message)))
    yield path, messages
    pipeline.down(Session(), "itest-fast", lambda *_: None)
    assert lxd_snapshot() == before  # nothing of the lab is left


def test_every_host_is_ready_and_lxd_chowned_nothing(lab):
    _path, messages = lab
    assert {host for host, message in messages if message == "ready"} == set(HOSTS)
    assert not [m for _h, m in messages if "chowns" in m]  # lxdkvm found idmapped mounts usable here
    for host in HOSTS:
        assert config(host, "raw.lxc") == IDMAPPED_ROOT
        # the disk is recorded as already having the host's map, so LXD did not chown it at first start
        assert json.loads(config(host, "volatile.last_state.idmap")) == json.loads(config(host, "volatile.idmap.next"))
        assert "idmapped" in on(PROJECT, host, "findmnt", "-no", "OPTIONS", "/").stdout.split(",")
        # on disk the files stay owned as in the image (0:0), and the host sees them as its root's
        passwd = (rootfs(host) / "etc" / "passwd").stat()
        assert (passwd.st_uid, passwd.st_gid) == (0, 0)
        assert on(PROJECT, host, "stat", "-c", "%u:%g", "/etc/passwd").stdout.strip() == "0:0"


def test_hosts_stay_unprivileged_on_ranges_of_their_own(lab):
    ranges = {}
    for host in ISOLATED:
        inside, first, size = on(PROJECT, host, "cat", "/proc/self/uid_map").stdout.split()
        assert inside == "0" and int(first) > 0 and size == "65536"
        assert config(host, "security.idmap.isolated") == "true"
        assert config(host, "security.idmap.base") == first  # chosen by lxdkvm, as LXD would have
        ranges[host] = int(first)
    others = [int(c["expanded_config"]["volatile.idmap.base"]) for c in lxc_json("list", "--all-projects")
              if c["expanded_config"].get("security.idmap.isolated") == "true"
              and not (c["project"] == PROJECT and c["name"] in ISOLATED)]
    bases = [*ranges.values(), *others]
    assert all(abs(a - b) >= 65536 for i, a in enumerate(bases) for b in bases[i + 1:])


def test_files_a_host_writes_are_its_root_s_on_disk_and_after_a_restart(lab):
    assert on(PROJECT, "fast-2", "sh", "-c", "echo kept > /root/written-inside").returncode == 0
    written = (rootfs("fast-2") / "root" / "written-inside").stat()
    assert (written.st_uid, written.st_gid) == (0, 0)
    subprocess.run(["lxc", "restart", "--project", PROJECT, "fast-2"], check=True, timeout=120)
    assert on(PROJECT, "fast-2", "stat", "-c", "%u %n", "/root/written-inside").stdout.split()[0] == "0"
    assert "idmapped" in on(PROJECT, "fast-2", "findmnt", "-no", "OPTIONS", "/").stdout


def test_networks_got_their_addresses_and_a_second_up_changes_nothing(lab):
    path, _messages = lab
    mgmt = query("/1.0/networks/itest-fast-mgmt")["config"]
    assert mgmt["ipv4.address"] == "10.218.10.1/24" and mgmt["ipv4.nat"] == "true"
    # hosts got their NICs after their creation, and LXD wrote each one's DHCP host entry as it does for
    # a NIC present from the start
    entries = Path("/var/lib/lxd/networks/itest-fast-mgmt/dnsmasq.hosts")
    for host in HOSTS:
        mac = config(host, "volatile.eth0.hwaddr")
        assert (entries / f"{PROJECT}_{host}.eth0").read_text().startswith(mac)
    _lab, again = pipeline.plan(Session(), path)
    assert again.empty, [(a.verb, a.name, a.reason) for a in again.actions]


def test_a_host_made_but_never_started_is_started_right_by_the_next_up(lab):
    """What `up` leaves when it stops between creating a host and starting it: no NICs yet, the disk as
    the image has it, `volatile.last_state.idmap` still "[]". The next `up` adds the NICs and records
    the map before the first start, so LXD chowns nothing (a chown under an idmapped mount would make
    every file unreadable)."""
    path, _messages = lab
    subprocess.run(["lxc", "stop", "--force", "--project", PROJECT, "fast-3"], check=True, timeout=60)
    for nic in ("eth0", "eth1"):
        subprocess.run(["lxc", "config", "device", "remove", "--project", PROJECT, "fast-3", nic], check=True)
    subprocess.run(["lxc", "config", "set", "--project", PROJECT, "fast-3", "volatile.last_state.idmap=[]"],
                   check=True)
    messages: list[tuple[str, str]] = []
    result = pipeline.up(Session(), path, lambda host, message: messages.append((host, message)))
    assert [(a.verb, a.name) for a in result.plan.actions] == [("update", "fast-3"), ("start", "fast-3")]
    assert ("fast-3", "ready") in messages
    passwd = (rootfs("fast-3") / "etc" / "passwd").stat()
    assert (passwd.st_uid, passwd.st_gid) == (0, 0)
    assert on(PROJECT, "fast-3", "stat", "-c", "%u:%g", "/etc/passwd").stdout.strip() == "0:0"
    checks = pipeline.verify(Session(), path)[1]
    assert not [c for c in checks if c.result == "FAIL"], checks


def test_the_machine_is_the_one_lxdkvm_probed(lab):
    """The tests above mean something only where LXD itself would have chowned: LXD 5.0.2 (its own
    probe fails on this kernel) with the kernel able to mount idmapped."""
    environment = query("/1.0")["environment"]
    assert environment["server"] == "lxd" and environment["kernel_features"]["idmapped_mounts"] == "true"
    pool = rootfs("fast-1").parent.parent.parent.name
    assert Session().server.probe().idmapped_roots[pool] == ""  # what `doctor` reports for the hosts' pool
