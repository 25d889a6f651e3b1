"""The doctor's verdicts on recorded hosts."""

from dataclasses import replace

from lxdkvm import doctor
from lxdkvm.kvmprobe import ProbeResult
from lxdkvm.lxd.server import ServerFacts
from lxdkvm.machine.hostcaps import DeviceFacts
from lxdkvm.machine.storage import BtrfsSupport

from ..conftest import load_host

PROBE_OK = ProbeResult(ok=True, step="done", api_version=12, exits=["IO(port=0x10,value=0x42,dir=out)", "HLT"])
SERVER = ServerFacts(socket="/var/lib/lxd/unix.socket", reachable=True, version="5.0.2",
                     pools=[{"name": "default", "driver": "btrfs", "source": ""}],
                     networks=[{"name": "lxdkvmbr0", "type": "bridge", "managed": True, "ipv4": "10.87.0.1/24"}])


BTRFS_OK = BtrfsSupport(True, "btrfs in the kernel, mkfs.btrfs and loop devices available")
NO_BTRFS = BtrfsSupport(False, "mkfs.btrfs is missing: apt-get install btrfs-progs")


def by_name(checks):
    return {c.name: c for c in checks}


def test_pvm_sandbox_can_run_a_lab_with_tcg_warning():
    checks = by_name(doctor.diagnose(load_host("pvm-sandbox"), PROBE_OK, SERVER, BTRFS_OK))
    assert doctor.verdict(list(checks.values()))
    assert checks["cpu"].status == "WARN" and "TCG" in checks["cpu"].fix
    assert checks["kvm probe"].status == "PASS" and "HLT" in checks["kvm probe"].evidence
    assert checks["module tun"].status == "PASS" and "left out" in checks["module tun"].fix
    assert checks["module kvm_intel"].status == "PASS" and "kvm_pvm" in checks["module kvm_intel"].fix
    assert checks["/dev/vhost-net"].status == "WARN"
    assert checks["root subuid"].status == "PASS" and "151 containers" in checks["root subuid"].evidence


def test_intel_workstation_passes_with_nested():
    checks = by_name(doctor.diagnose(load_host("intel-workstation"), PROBE_OK, SERVER, BTRFS_OK))
    assert checks["cpu"].status == "PASS" and "vmx" in checks["cpu"].evidence
    assert checks["nested kvm_intel"].status == "PASS"
    assert checks["module vhost_vsock"].status == "PASS"


def test_no_kvm_device_fails():
    facts = load_host("amd-server")
    facts.devices["/dev/kvm"] = DeviceFacts(path="/dev/kvm", exists=False)
    probe = ProbeResult(ok=False, step="open", errno=2, error="no /dev/kvm")
    checks = doctor.diagnose(facts, probe, SERVER, BTRFS_OK)
    assert not doctor.verdict(checks)
    assert by_name(checks)["/dev/kvm"].status == "FAIL"
    assert by_name(checks)["root subuid"].status == "WARN"  # 65536 ids: no room for isolated maps


def test_unreachable_lxd_fails_with_fix():
    down = ServerFacts(socket="/var/lib/lxd/unix.socket", reachable=False, error="LXD is not running")
    checks = doctor.diagnose(load_host("pvm-sandbox"), PROBE_OK, down, BTRFS_OK)
    assert not doctor.verdict(checks)
    assert "lxdkvm setup" in by_name(checks)["lxd"].fix


def test_missing_extension_fails():
    old = replace(SERVER, missing_extensions=["projects_networks"])
    assert by_name(doctor.diagnose(load_host("pvm-sandbox"), PROBE_OK, old, BTRFS_OK))["lxd api"].status == "FAIL"


def test_storage_row_reports_the_pool_hosts_would_use():
    on_btrfs = by_name(doctor.diagnose(load_host("pvm-sandbox"), PROBE_OK, SERVER, NO_BTRFS))
    assert on_btrfs["host storage"].status == "PASS" and "default (btrfs)" in on_btrfs["host storage"].evidence
    dir_only = replace(SERVER, pools=[{"name": "default", "driver": "dir", "source": ""}])
    will_create = by_name(doctor.diagnose(load_host("pvm-sandbox"), PROBE_OK, dir_only, BTRFS_OK))["host storage"]
    assert will_create.status == "PASS" and "lxdkvm-cow (btrfs, to be created" in will_create.evidence
    fallback = by_name(doctor.diagnose(load_host("pvm-sandbox"), PROBE_OK, dir_only, NO_BTRFS))["host storage"]
    assert fallback.status == "WARN" and "btrfs-progs" in fallback.evidence + fallback.fix


def test_a_cluster_is_reported_with_its_members_and_what_can_host_labs():
    from lxdkvm.cluster.placement import Cluster, Member

    members = (Member("m1", "Online", ("default",), "100.64.40.11"), Member("m2", "Online", ("default",)),
               Member("m3", "Offline", ("default",), message="No heartbeat for 20s"))
    clustered = replace(SERVER, networks=[], cluster=Cluster(members, tunnel_mtu=1450))
    checks = by_name(doctor.diagnose(load_host("pvm-sandbox"), PROBE_OK, clustered, BTRFS_OK))
    assert "lxd network" not in checks  # a cluster needs no management bridge of lxdkvm's
    assert checks["lxd cluster"].status == "WARN"
    assert "3 members" in checks["lxd cluster"].evidence and "can host labs: m1, m2" in checks["lxd cluster"].evidence
    assert "m3: No heartbeat for 20s" in checks["lxd cluster"].fix
    assert checks["cluster networks"].status == "PASS" and "MTU 1450" in checks["cluster networks"].evidence
    healthy = replace(clustered, cluster=Cluster(members[:2], tunnel_mtu=1450))
    assert by_name(doctor.diagnose(load_host("pvm-sandbox"), PROBE_OK, healthy, BTRFS_OK))["lxd cluster"].status == "PASS"
    single = by_name(doctor.diagnose(load_host("pvm-sandbox"), PROBE_OK, SERVER, BTRFS_OK))
    assert "lxd cluster" not in single and single["lxd network"].status == "PASS"  # nothing changes for one daemon
