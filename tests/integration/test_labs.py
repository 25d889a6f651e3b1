"""Labs against a real LXD: up → up again (no-op) → status → reachability → down; edits converge; a kill
during `up` is repaired; two labs side by side; a busy lock; bad lab files create nothing.

LXD is observed through the `lxc` client, independently of lxdkvm's own code."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lxdkvm.lab.load import load
from lxdkvm.lab.lock import LabLock
from lxdkvm.labfile.topology import LabInvalid
from lxdkvm.lxd.session import Session
from lxdkvm.machine import hostcaps

pytestmark = pytest.mark.integration
LABS = Path(__file__).parent.parent / "labs"
THREE = (LABS / "valid" / "three-hosts.yaml").read_text()


def lxdkvm(*args: str, ok: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "lxdkvm", *args], capture_output=True, text=True,
                          timeout=timeout)
    print(f"$ lxdkvm {' '.join(args)} → {proc.returncode}\n{proc.stdout}{proc.stderr}", flush=True)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def lxc_json(*args: str):
    return json.loads(subprocess.run(["lxc", *args, "--format", "json"], check=True, capture_output=True,
                                     text=True).stdout)


def lxd_snapshot(query=None) -> dict:
    """Every project, network, and the instances and profiles of every project; QUERY (default `lxc …
    --format json`) asks another daemon's client, e.g. Incus's."""
    query = query or lxc_json
    projects = sorted(p["name"] for p in query("project", "list"))
    return {
        "projects": projects,
        "networks": sorted(n["name"] for n in query("network", "list") if n["managed"]),
        "instances": sorted(f"{i['project']}/{i['name']}" for i in query("list", "--all-projects")),
        "profiles": sorted(f"{p}/{pr['name']}" for p in projects for pr in query("profile", "list", "--project", p)),
    }


def on(project: str, host: str, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["lxc", "exec", "--project", project, host, "--", *command],
                          capture_output=True, text=True, timeout=60)


def reaches(project: str, host: str, address: str) -> bool:
    return on(project, host, "ping", "-c", "1", "-W", "1", address).returncode == 0


def write_lab(tmp_path: Path, text: str, name: str, subnet_base: str) -> Path:
    """THREE renamed, on its own subnets (10.203.* → subnet_base.*), so scenarios never collide."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace("itest-three", name).replace("10.203.", f"{subnet_base}."))
    return path


@pytest.fixture
def teardown():
    labs = []
    yield labs.append
    for lab in labs:
        lxdkvm("down", str(lab), ok=False)


@pytest.fixture(scope="module")
def ready_image(baked_image):
    return baked_image


def test_lab_lifecycle_up_noop_status_reachability_down(ready_image, teardown, tmp_path):
    path = tmp_path / "three-hosts.yaml"
    path.write_text(THREE)
    teardown(path)
    before = lxd_snapshot()
    project = "lxdkvm-itest-three"

    first = lxdkvm("up", str(path))
    assert "3 hosts ready" in first.stdout
    for stage in ("exec works", "cloud-init finished", "libvirtd active", "kvm probe as qemu user",
                  "addresses as declared"):
        for host in ("node-1", "node-2", "node-3"):
            assert f"{host}: {stage}: ok" in first.stderr
    created = {i["name"]: (i["created_at"], i["last_used_at"]) for i in lxc_json("list", "--project", project)}
    assert sorted(created) == ["node-1", "node-2", "node-3"]

    second = lxdkvm("up", str(path))
    assert "nothing to do" in second.stdout
    again = {i["name"]: (i["created_at"], i["last_used_at"]) for i in lxc_json("list", "--project", project)}
    assert again == created  # nothing recreated or restarted

    status = json.loads(lxdkvm("status", str(path), "--json").stdout)
    hosts = {h["name"]: h for h in status["hosts"]}
    assert all(h["ready"] and h["state"] == "Running" for h in hosts.values())
    assert hosts["node-1"]["addresses"]["data"] == ["10.203.20.11/24"]
    assert hosts["node-2"]["addresses"]["data"] == ["10.203.20.12/24"]
    assert hosts["node-3"]["addresses"]["mgmt"] == ["10.203.10.20/24"]
    assert "data" not in hosts["node-3"]["addresses"]
    mgmt = {name: h["addresses"]["mgmt"][0].split("/")[0] for name, h in hosts.items()}
    assert all(addr.startswith("10.203.10.") for addr in mgmt.values())
    assert on(project, "node-1", "cat", "/sys/class/net/eth1/mtu").stdout.strip() == "9000"
    assert on(project, "node-1", "cat", "/sys/class/net/br-data/mtu").stdout.strip() == "9000"  # in-host bridge

    # every pair shares mgmt; node-1 and node-2 share data; node-3 is not on data and cannot reach it
    for src in hosts:
        for dst, addr in mgmt.items():
            if src != dst:
                assert reaches(project, src, addr), f"{src} → {dst} on mgmt"
    assert reaches(project, "node-1", "10.203.20.12") and reaches(project, "node-2", "10.203.20.11")
    assert not reaches(project, "node-3", "10.203.20.11")
    assert not reaches(project, "node-3", "10.203.20.12")
    # the isolated segment has no gateway: node-1 cannot leave it through data
    assert "10.203.20.0/24 dev br-data" in on(project, "node-1", "ip", "route").stdout
    # a host with a static address on a NAT network still has its default route through the gateway
    assert "default via 10.203.10.1 dev br-mgmt" in on(project, "node-3", "ip", "route").stdout

    exec_result = lxdkvm("exec", "--lab", str(path), "node-2", "--", "hostname")
    assert exec_result.stdout.strip() == "node-2"

    down = lxdkvm("down", str(path))
    assert "deleted 3 hosts, 2 networks" in down.stdout
    assert lxd_snapshot() == before
    assert "nothing to delete" in lxdkvm("down", str(path)).stdout  # idempotent


def test_an_edited_lab_converges(ready_image, teardown, tmp_path):
    path = write_lab(tmp_path, THREE, "itest-edit", "10.204")
    teardown(path)
    project = "lxdkvm-itest-edit"
    lxdkvm("up", str(path))
    node1_created = next(i["created_at"] for i in lxc_json("list", "--project", project) if i["name"] == "node-1")

    # grow the range by one (node-3 becomes a range member: recreated), drop nothing, raise memory
    edited = path.read_text().replace("node-[1-2]", "node-[1-3]").replace("  - name: node-3\n", "  - name: node-4\n") \
        .replace("memory: 1GiB", "memory: 1536MiB")
    path.write_text(edited)
    plan = lxdkvm("plan", str(path)).stdout
    assert "update" in plan and "limits.memory 1GiB → 1536MiB" in plan
    assert "create" in plan and "node-4" in plan and "recreate" in plan
    lxdkvm("up", str(path))
    instances = {i["name"]: i for i in lxc_json("list", "--project", project)}
    assert sorted(instances) == ["node-1", "node-2", "node-3", "node-4"]
    assert instances["node-1"]["created_at"] == node1_created  # changed in place, not recreated
    assert instances["node-1"]["config"]["limits.memory"] == "1536MiB"
    limit = on(project, "node-1", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout.strip()
    assert limit == str(1536 * 1024 * 1024)
    assert on(project, "node-3", "ip", "-4", "-o", "addr", "show", "br-data").stdout.count("10.204.20.13/24") == 1

    # remove a host
    path.write_text(edited.replace("node-[1-3]", "node-[1-2]"))
    lxdkvm("up", str(path))
    assert sorted(i["name"] for i in lxc_json("list", "--project", project)) == ["node-1", "node-2", "node-4"]
    assert "nothing to do" in lxdkvm("up", str(path)).stdout


def test_a_kill_during_up_is_repaired_by_the_next_up(ready_image, teardown, tmp_path):
    path = write_lab(tmp_path, THREE, "itest-kill", "10.205")
    teardown(path)
    project = "lxdkvm-itest-kill"
    proc = subprocess.Popen([sys.executable, "-m", "lxdkvm", "up", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill as soon as the first host exists
        listing = subprocess.run(["lxc", "list", "--project", project, "--format", "csv", "-c", "n"],
                                 capture_output=True, text=True).stdout.split()
        if listing:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert listing, "up never created a host"
    status = json.loads(lxdkvm("status", str(path), "--json").stdout)
    assert not all(h["ready"] for h in status["hosts"]) or len(status["hosts"]) < 3

    repaired = lxdkvm("up", str(path))
    assert "recovered the lock of an interrupted run" in repaired.stderr
    status = json.loads(lxdkvm("status", str(path), "--json").stdout)
    assert [h["name"] for h in status["hosts"]] == ["node-1", "node-2", "node-3"]
    assert all(h["ready"] for h in status["hosts"])
    assert "nothing to do" in lxdkvm("up", str(path)).stdout


def test_two_labs_side_by_side(ready_image, teardown, tmp_path):
    one = write_lab(tmp_path, THREE, "itest-one", "10.206")
    two = write_lab(tmp_path, THREE, "itest-two", "10.207")
    teardown(one)
    teardown(two)
    procs = [subprocess.Popen([sys.executable, "-m", "lxdkvm", "up", str(p)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for p in (one, two)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    for lab in (one, two):
        status = json.loads(lxdkvm("status", str(lab), "--json").stdout)
        assert len(status["hosts"]) == 3 and all(h["ready"] for h in status["hosts"])
    # same host names in both labs, each in its own project; the data segments are separate
    assert not reaches("lxdkvm-itest-one", "node-1", "10.207.20.12")
    lxdkvm("down", str(one))
    status = json.loads(lxdkvm("status", str(two), "--json").stdout)
    assert all(h["ready"] for h in status["hosts"])
    assert reaches("lxdkvm-itest-two", "node-1", "10.207.20.12")
    assert "nothing to do" in lxdkvm("up", str(two)).stdout


def test_a_busy_lab_is_refused_with_a_clear_message(lxd, tmp_path):
    path = write_lab(tmp_path, THREE, "itest-busy", "10.208")
    before = lxd_snapshot()
    with LabLock("itest-busy", "up"):
        result = lxdkvm("up", str(path), ok=False)
    assert result.returncode == 1
    assert f"lab itest-busy is busy: pid {os.getpid()}" in result.stderr
    assert lxd_snapshot() == before


def test_a_failing_stage_names_host_stage_and_log_and_the_others_come_up(ready_image, teardown, tmp_path):
    text = THREE.replace("itest-three", "itest-fail").replace("10.203.", "10.209.") + """
profiles:
  - name: broken
    config:
      cloud-init.vendor-data: |
        #!/bin/sh
        echo lxdkvm-test-broken-runcmd >&2; exit 3
"""
    text = text.replace("  - name: node-3\n", "  - name: node-3\n    profiles: [broken]\n")
    path = tmp_path / "fail.yaml"
    path.write_text(text)
    teardown(path)
    result = lxdkvm("up", str(path), ok=False)
    assert result.returncode == 1
    assert "node-3: stage 'cloud-init finished' failed" in result.stderr
    assert "lxdkvm-test-broken-runcmd" in result.stderr  # the log tail
    assert "run `lxdkvm up` again to repair" in result.stderr
    # a host that fails does not stop the others: they finish, and are said to be ready
    assert "2 of 3 are ready: node-1, node-2" in result.stderr
    hosts = {h["name"]: h for h in json.loads(lxdkvm("status", "itest-fail", "--json").stdout)["hosts"]}
    assert hosts["node-1"]["ready"] and hosts["node-2"]["ready"] and not hosts["node-3"]["ready"]


def test_invalid_lab_files_are_rejected_and_create_nothing(lxd):
    before = lxd_snapshot()
    paths = sorted((LABS / "invalid").glob("*.yaml"))
    if hostcaps.hardware_virt(hostcaps.read_host()):  # `accel: kvm` is fine where the CPU has vmx/svm
        paths = [p for p in paths if p.stem != "51-guest-kvm-without-hardware-virtualization"]
    for path in paths:  # first make sure none of them is valid on this machine (it would be created)
        with pytest.raises(LabInvalid):
            load(path, Session())
    for path in paths:
        result = lxdkvm("up", str(path), ok=False, timeout=60)
        assert result.returncode == 2, path.name
        first = path.with_suffix(".expected").read_text().splitlines()[0]
        location = first.split(": ", 1)[0].split(":", 1)[1]  # the line number of the first problem
        if path.stem not in ("37-too-many-cpus", "38-not-enough-subordinate-ids"):  # depend on this machine
            assert f"{path}:{location}:" in result.stderr, path.name
        assert "nothing was changed" in result.stderr
    assert lxd_snapshot() == before
