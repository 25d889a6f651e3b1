"""lxdkvm's Debian guest disk in a real lab host: a TCG guest on a qcow2 overlay of the base disk, with a
NoCloud seed ISO, boots systemd and cloud-init to the boot marker with its declared address; the system
is running, user-data's runcmd ran, the instance has its own identity and answers ssh with the key from
user-data (host key checked)."""

import json
import shlex
import subprocess
import time

import pytest

from lxdkvm.guests import agent, debian, seed
from lxdkvm.guests import domain as gd

from .conftest import baked_host
from .test_tiny_guest import guest_exec, sh

pytestmark = pytest.mark.integration

BRIDGE, GATEWAY, ADDRESS = "br-d", "192.168.79.1", "192.168.79.21/24"
GUEST = "deb-1"
BOOT_TIMEOUT = 600
OVERLAY_MIB = 3072  # larger than the base disk: cloud-init grows the filesystem


@pytest.fixture(scope="module")
def disk():
    took = time.monotonic()
    built = debian.build()
    print(f"[debian] disk {built.key}: {time.monotonic() - took:.1f}s (cached when fast), "
          f"{built.path.stat().st_size / 2**20:.0f} MiB qcow2, {built.size_mib} MiB filesystem")
    return built


@pytest.fixture(scope="module")
def host(lxd, unique, disk):
    """A lab host from the baked image with the Debian disk (as a base image), the agent and a bridge."""
    with baked_host(lxd, f"lxdkvm-it-deb-{unique}") as name:
        where = gd.debian_paths(disk.key)
        sh(lxd, name, f"mkdir -p {where.directory} {gd.GUESTS_DIR}")
        for source, target in ((disk.path, where.disk), (disk.kernel, where.kernel), (disk.initrd, where.initrd)):
            with open(source, "rb") as data:
                lxd.instances.push(name, target, data)
        agent.push_agent(lxd.instances, name)
        sh(lxd, name, f"ip link add {BRIDGE} type bridge stp_state 0 && ip addr add {GATEWAY}/24 dev {BRIDGE}"
                      f" && ip link set {BRIDGE} up"
                      " && { [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]"
                      " || sysctl -qw net.bridge.bridge-nf-call-iptables=0; }")
        yield {"name": name, "where": where}


@pytest.fixture(scope="module")
def keypair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ssh")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "id")], check=True)
    return {"private": (folder / "id").read_bytes(), "public": (folder / "id.pub").read_text().strip()}


def user_data(public_key: str) -> str:
    return ("#cloud-config\n"
            f"users:\n  - name: lab\n    shell: /bin/bash\n    ssh_authorized_keys: [{json.dumps(public_key)}]\n"
            "runcmd:\n  - [sh, -c, 'echo ran-$((6*7)) > /var/lib/lxdkvm-it-runcmd']\n")


@pytest.fixture(scope="module")
def guest(lxd, host, keypair):
    """One Debian guest (TCG, 2 vCPUs, 512 MiB) on an overlay of the base disk; started and timed."""
    name, where = host["name"], host["where"]
    paths = gd.paths(GUEST)
    nic = gd.GuestNic(BRIDGE, gd.mac_for("it", GUEST, 0), ADDRESS, GATEWAY)
    spec = {"test": GUEST, "disk": where.disk}
    sh(lxd, name, f"mkdir -p {paths.directory} && qemu-img create -q -f qcow2 -F qcow2 -b {where.disk}"
                  f" {paths.disk} {OVERLAY_MIB}M")
    lxd.instances.push(name, paths.seed, seed.seed_iso(GUEST, spec, (nic,), user_data(keypair["public"])))
    xml = gd.domain_xml(gd.GuestDomain(
        name=GUEST, kernel=where.kernel, initrd=where.initrd, memory_mib=512, vcpus=2, accel="tcg",
        nics=(nic,), disk=paths.disk, serial_log=paths.serial_log, agent_socket=paths.agent_socket,
        metadata=json.dumps(spec), root="/dev/vda", seed=paths.seed))
    lxd.instances.push(name, paths.xml, xml.encode())
    sh(lxd, name, f"virsh -q define {paths.xml}")
    try:
        started = time.monotonic()
        sh(lxd, name, f"n=0; until virsh -q start {GUEST} > /dev/null; do n=$((n + 1)); [ $n -lt 5 ] || exit 1;"
                      " sleep 0.3; done")
        waited = lxd.instances.execute(name, ["python3", agent.AGENT_PATH, "wait-boot", paths.serial_log, "--timeout",
                                    str(BOOT_TIMEOUT)], timeout=BOOT_TIMEOUT + 30)
        seconds = time.monotonic() - started
        log = sh(lxd, name, f"tail -c 6000 {shlex.quote(paths.serial_log)}", ok=False).stdout
        assert waited.exit_code == 0, f"no boot marker within {BOOT_TIMEOUT}s; serial log:\n{log}"
        marker = json.loads(waited.stdout)
        print(f"[debian] {GUEST}: virsh start → boot marker {seconds:.1f}s {marker['addrs']}")
        yield {**marker, "seconds": seconds}
    finally:
        sh(lxd, name, f"virsh -q destroy {GUEST}; virsh -q undefine {GUEST}; rm -rf {paths.directory}", ok=False)


def run(lxd, host, command, timeout=120):
    result = guest_exec(lxd, host["name"], GUEST, command, timeout=timeout)
    assert result.exit_code == 0, f"{command}: {result.exit_code}\n{result.stdout}{result.stderr}"
    return result.stdout


def test_the_marker_comes_after_cloud_init_with_the_declared_address(guest):
    assert guest["name"] == GUEST
    assert guest["addrs"] == {"eth0": ADDRESS}
    assert len(guest["boot_id"]) == 36


def test_systemd_runs_and_cloud_init_is_done(lxd, host, guest):
    state = guest_exec(lxd, host["name"], GUEST, "systemctl is-system-running --wait", timeout=300).stdout.strip()
    print(f"[debian] system {state}; failed units: "
          f"{run(lxd, host, 'systemctl --failed --no-legend --plain').strip() or 'none'}; "
          f"{run(lxd, host, 'systemd-analyze time | head -n1').strip()}")
    assert state in ("running", "degraded")
    assert "status: done" in run(lxd, host, "cloud-init status --long")
    assert run(lxd, host, "cat /proc/1/comm").strip() == "systemd"
    source, fstype, options = run(lxd, host, "findmnt -no SOURCE,FSTYPE,OPTIONS /").split()
    assert (source, fstype, options.split(",")[0]) == ("/dev/vda", "ext4", "rw")
    size_mib = int(run(lxd, host, "df --output=size -m / | tail -n1"))
    assert size_mib > debian.SIZE_MIB + (OVERLAY_MIB - debian.SIZE_MIB) // 2, "cloud-init did not grow the disk"


def test_user_data_ran_and_the_instance_has_its_own_identity(lxd, host, guest):
    assert run(lxd, host, "cat /var/lib/lxdkvm-it-runcmd").strip() == "ran-42"
    assert run(lxd, host, "hostname").strip() == GUEST
    assert len(run(lxd, host, "cat /etc/machine-id").strip()) == 32
    assert run(lxd, host, "cat /var/lib/cloud/data/instance-id").strip().startswith(f"{GUEST}-")
    assert run(lxd, host, "id -un lab").strip() == "lab"


def test_the_host_pings_the_guest_and_ssh_checks_its_host_key(lxd, host, guest, keypair):
    address = ADDRESS.split("/")[0]
    sh(lxd, host["name"], f"ping -c 2 -W 3 {address}")
    host_key = run(lxd, host, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()
    lxd.instances.push(host["name"], "/root/it-deb-id", keypair["private"], mode="0600")
    lxd.instances.push(host["name"], "/root/it-deb-known", f"{address} {host_key[0]} {host_key[1]}\n".encode())
    result = sh(lxd, host["name"], "ssh -i /root/it-deb-id -o UserKnownHostsFile=/root/it-deb-known"
                                   " -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=20"
                                   f" lab@{address} 'hostname; id -un'", timeout=120)
    assert result.stdout.split() == [GUEST, "lab"]
