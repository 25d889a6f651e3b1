"""lxdkvm's tiny guest in a real lab host: TCG guests from guests.domain XML on an in-host bridge boot to
their marker with the declared addresses, answer ping, run commands through the agent, keep a logged
console, see their disk, reboot with a new boot id and power off on request."""

import json
import shlex
import time

import pytest

from lxdkvm.guests import agent, hostprep, tiny
from lxdkvm.guests import domain as gd

from .conftest import baked_host

pytestmark = pytest.mark.integration

BRIDGE, GATEWAY = "br-t", "192.168.77.1"
GUESTS = {  # name → (address or None for DHCP, disk)
    "tiny-1": ("192.168.77.11/24", True),
    "tiny-2": ("192.168.77.12/24", False),
    "tiny-3": (None, False),
}


def sh(lxd, host, script, ok=True, timeout=300):
    result = lxd.instances.execute(host, ["sh", "-c", script], timeout=timeout)
    if ok:
        assert result.exit_code == 0, f"{script}\n{result.stdout}{result.stderr}"
    return result


def guest_exec(lxd, host, name, command, timeout=60):
    sock = gd.paths(name).agent_socket
    return lxd.instances.execute(host, ["python3", agent.AGENT_PATH, "exec", sock, "--timeout", str(timeout), "--",
                              "sh", "-c", command], timeout=timeout + 15)


@pytest.fixture(scope="module")
def host(lxd, unique):
    """A lab host from the baked KVM-host image (baked when missing) with the tiny guest's files, the
    agent and a bridge 192.168.77.1/24 serving DHCP from dnsmasq; deleted afterwards."""
    with baked_host(lxd, f"lxdkvm-it-tiny-{unique}") as name:
        artifacts = tiny.build()
        hostprep.push_tiny(lxd.instances, name, artifacts)
        sh(lxd, name, f"mkdir -p {gd.GUESTS_DIR}")
        agent.push_agent(lxd.instances, name)
        sh(lxd, name, f"ip link add {BRIDGE} type bridge stp_state 0 && ip addr add {GATEWAY}/24 dev {BRIDGE}"
                      f" && ip link set {BRIDGE} up"
                      " && { [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]"
                      " || sysctl -qw net.bridge.bridge-nf-call-iptables=0; }"
                      f" && dnsmasq --interface={BRIDGE} --bind-interfaces --port=0 --no-resolv"
                      " --dhcp-range=192.168.77.100,192.168.77.150,1h --pid-file=/run/lxdkvm-it-dnsmasq.pid")
        yield {"name": name, "key": artifacts.key}


@pytest.fixture(scope="module")
def guests(lxd, host):
    """Define the three guests, start them together and wait for each one's marker (timed in the host)."""
    name = host["name"]
    for guest, (address, disk) in GUESTS.items():
        paths = gd.paths(guest, host["key"])
        sh(lxd, name, f"mkdir -p {paths.directory}")
        if disk:
            sh(lxd, name, f"qemu-img create -q -f qcow2 {paths.disk} 64M")
        nic = gd.GuestNic(BRIDGE, gd.mac_for("it", guest, 0), address, GATEWAY if address else None)
        xml = gd.domain_xml(gd.GuestDomain(
            name=guest, kernel=paths.kernel, initrd=paths.initrd, memory_mib=128, vcpus=1, accel="tcg",
            nics=(nic,), disk=paths.disk if disk else None, serial_log=paths.serial_log,
            agent_socket=paths.agent_socket, metadata=json.dumps({"test": guest})))
        lxd.instances.push(name, paths.xml, xml.encode())
        sh(lxd, name, f"virsh -q define {paths.xml}")
    try:
        waits = " ".join(
            f"(python3 {agent.AGENT_PATH} wait-boot {gd.paths(g).serial_log} --timeout 180 > /tmp/{g}.marker;"
            f" echo $? $(date +%s%N) > /tmp/{g}.end) &" for g in GUESTS)
        # retried: libvirt 9.0 in an unprivileged host sometimes fails a start with "Failed to create v1
        # controller cpuset for group" (a cgroup slice being created or removed by another domain)
        starts = " ".join(f"n=0; until date +%s%N > /tmp/{g}.start; virsh -q start {g} > /dev/null; do"
                          " n=$((n + 1)); [ $n -lt 5 ] || exit 1; sleep 0.3; done;" for g in GUESTS)
        sh(lxd, name, f"{starts} {waits} wait", timeout=240)
        booted = {}
        for g in GUESTS:
            start = int(sh(lxd, name, f"cat /tmp/{g}.start").stdout)
            code, end = sh(lxd, name, f"cat /tmp/{g}.end").stdout.split()
            tail = sh(lxd, name, f"tail -n 30 {gd.paths(g).serial_log}", ok=False).stdout
            assert code == "0", f"{g}: no boot marker; serial log:\n{tail}"
            booted[g] = {**json.loads(sh(lxd, name, f"cat /tmp/{g}.marker").stdout),
                         "seconds": (int(end) - start) / 1e9}
            print(f"[tiny] {g}: virsh start → boot marker {booted[g]['seconds']:.1f}s {booted[g]['addrs']}")
        yield booted
    finally:
        for g in GUESTS:
            sh(lxd, name, f"virsh -q destroy {g}; virsh -q undefine {g}", ok=False)


def test_each_guest_prints_its_marker_with_a_boot_id_and_its_address(guests):
    for g, (address, _) in GUESTS.items():
        marker = guests[g]
        assert marker["name"] == g
        assert len(marker["boot_id"]) == 36 and marker["boot_id"].count("-") == 4
        if address:
            assert marker["addrs"] == {"eth0": address}
        else:  # a lease from the host's dnsmasq
            assert marker["addrs"]["eth0"].startswith("192.168.77.1") and marker["addrs"]["eth0"].endswith("/24")
    assert len({m["boot_id"] for m in guests.values()}) == len(GUESTS)


def test_the_host_pings_each_guest(lxd, host, guests):
    for g in GUESTS:
        address = guests[g]["addrs"]["eth0"].split("/")[0]
        sh(lxd, host["name"], f"ping -c 2 -W 3 {address}")


def test_a_guest_pings_the_others_through_exec(lxd, host, guests):
    for other in ("tiny-2", "tiny-3"):
        address = guests[other]["addrs"]["eth0"].split("/")[0]
        result = guest_exec(lxd, host["name"], "tiny-1", f"ping -c 2 -W 3 {address}")
        assert result.exit_code == 0, result.stdout + result.stderr
        assert "2 packets received" in result.stdout


def test_exec_returns_output_and_exit_codes(lxd, host, guests):
    result = guest_exec(lxd, host["name"], "tiny-2", "echo hi; exit 3")
    assert (result.stdout, result.exit_code) == ("hi\n", 3)
    both = guest_exec(lxd, host["name"], "tiny-2", "echo out; echo err >&2; hostname")
    assert (both.stdout, both.exit_code) == ("out\nerr\ntiny-2\n", 0)
    took = sh(lxd, host["name"], "t=$(date +%s%N); for i in 1 2 3 4 5; do python3 "
              f"{agent.AGENT_PATH} exec {gd.paths('tiny-2').agent_socket} -- true || exit 1; done;"
              " echo $(( ($(date +%s%N) - t) / 5000000 ))").stdout
    print(f"[tiny] exec round trip (python3 start + RUN/OUT/END): {int(took)} ms")
    timed_out = lxd.instances.execute(host["name"], ["python3", agent.AGENT_PATH, "exec", gd.paths("tiny-2").agent_socket,
                                           "--timeout", "1", "--", "sleep", "3"])
    assert timed_out.exit_code == 124
    time.sleep(2.5)  # the server finishes the sleep; the next command is not confused by its late answer
    assert guest_exec(lxd, host["name"], "tiny-2", "echo again").stdout == "again\n"


def test_the_console_is_a_logged_pty_with_the_kernel_banner_before_the_marker(lxd, host, guests):
    for g in GUESTS:
        log = sh(lxd, host["name"], f"cat {gd.paths(g).serial_log}").stdout
        assert "Linux version" in log and log.index("Linux version") < log.index(tiny.MARKER)
        tty = sh(lxd, host["name"], f"virsh ttyconsole {g}").stdout.strip()
        assert tty.startswith("/dev/pts/")
    # what is typed on the console reaches the guest's shell, and its answer reaches the log
    before = len(sh(lxd, host["name"], f"cat {gd.paths('tiny-1').serial_log}").stdout)
    # QEMU notices an opened pty within a second and drops what arrives before: hold it open around the write
    sh(lxd, host["name"], "exec 3<>$(virsh ttyconsole tiny-1); sleep 2; printf 'echo console-$((6*7))\\r' >&3;"
                          " sleep 2")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        log = sh(lxd, host["name"], f"cat {gd.paths('tiny-1').serial_log}").stdout
        if "console-42" in log[before:]:
            break
        time.sleep(0.5)
    assert "console-42" in log[before:]


def test_a_guest_with_a_qcow2_disk_sees_vda(lxd, host, guests):
    result = guest_exec(lxd, host["name"], "tiny-1", "ls /dev/vda && cat /sys/block/vda/size")
    assert result.exit_code == 0 and result.stdout.split() == ["/dev/vda", str(64 * 2048)]
    assert guest_exec(lxd, host["name"], "tiny-2", "ls /dev/vda").exit_code != 0


def test_domain_keeps_the_metadata(lxd, host, guests):
    out = sh(lxd, host["name"], f"virsh -q metadata tiny-1 {gd.METADATA_NS}").stdout
    assert json.loads(out.split(">", 1)[1].rsplit("<", 1)[0]) == {"test": "tiny-1"}


def test_reboot_gives_a_new_marker_after_the_old_one(lxd, host, guests):
    log = gd.paths("tiny-2").serial_log
    offset = int(sh(lxd, host["name"], f"stat -c %s {shlex.quote(log)}").stdout)
    guest_exec(lxd, host["name"], "tiny-2", "reboot -f", timeout=3)
    again = sh(lxd, host["name"], f"python3 {agent.AGENT_PATH} wait-boot {log} --after-bytes {offset} --timeout 120")
    marker = json.loads(again.stdout)
    assert marker["boot_id"] != guests["tiny-2"]["boot_id"]
    assert marker["addrs"] == {"eth0": "192.168.77.12/24"}
    assert guest_exec(lxd, host["name"], "tiny-2", "cat /proc/sys/kernel/random/boot_id").stdout.strip() == \
        marker["boot_id"]


def test_poweroff_is_a_command_like_any_other(lxd, host, guests):
    result = guest_exec(lxd, host["name"], "tiny-3", "poweroff -f", timeout=10)
    assert result.exit_code == agent.UNREACHABLE and "closed the connection" in result.stderr
    deadline = time.monotonic() + 30
    while sh(lxd, host["name"], "virsh domstate tiny-3").stdout.strip() != "shut off":
        assert time.monotonic() < deadline, "tiny-3 did not stop"
        time.sleep(0.5)
