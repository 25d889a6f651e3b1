"""A hostile guest against its host and its lab, for real, on LXD and on Incus: it cannot borrow another
host's address (ARP or IP: libvirt's `lxdkvm-guest` filter on every guest NIC), so it cannot reach its
host's libvirt or QEMU's migration ports as that host; it cannot be a DHCP server for the lab network;
it sends no IPv6 (so no router advertisement) beyond its host;
the migration ports answer the lab's hosts only; and libvirt's TLS listener refuses a client without a
certificate of the lab's own CA (one of another CA included), even from a lab host.

Observed from inside hosts and guests (their neighbour tables, their own sockets), not through lxdkvm."""

import subprocess
import time

import pytest

from ..integration.test_incus import incus_ready  # noqa: F401  (fixture)
from ..integration.test_incus import lxdkvm as lxdkvm_on

pytestmark = pytest.mark.integration
BASE = {"lxd": "10.225", "incus": "10.224"}
LAB = """\
name: itest-guard-{daemon}
networks:
  - {{name: mgmt, subnet: {base}.10.0/24}}
  - {{name: data, subnet: {base}.20.0/24, mode: isolated}}
hosts:
  - name: gh-[1-2]
    networks: [mgmt, {{network: data, ipv4: {base}.20.11}}]
    limits: {{memory: 1GiB}}
guests:
  - {{name: attacker, host: gh-1, memory: 96MiB, networks: [{{network: data, ipv4: {base}.20.51}}]}}
  - {{name: victim, host: gh-2, memory: 96MiB, networks: [{{network: data, ipv4: {base}.20.52}}]}}
"""
TLS_CLIENT = """\
# python3 tls.py [CERT KEY] ADDRESS: a TLS client of libvirt's listener at ADDRESS, with or without a cert.
# After the handshake libvirtd checks the client's certificate and sends one byte, 1, to a client it
# accepts (virnetclient.c: "If we make the grade, it will send us a '\\1' byte"); one it refuses gets a
# TLS alert or a closed connection (TLS 1.3 tells a client so only after the handshake).
import socket, ssl, sys
host = sys.argv[-1]
ctx = ssl.create_default_context(cafile="/etc/pki/CA/cacert.pem")
if len(sys.argv) == 4:
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
try:
    s = ctx.wrap_socket(socket.create_connection((host, 16514), 5), server_hostname=host)
    s.settimeout(5)
    got = s.recv(1)
    print("accepted: libvirtd's byte 1" if got == b"\\x01" else f"refused: {got!r} from the server")
except (ssl.SSLError, OSError) as exc:
    print("refused", exc)
"""


class Lab:
    def __init__(self, daemon: str) -> None:
        self.daemon, self.base = daemon, BASE[daemon]
        self.name = f"itest-guard-{daemon}"
        self.project = f"lxdkvm-{self.name}"

    def lxdkvm(self, *args: str, ok: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        return lxdkvm_on(*args, daemon=self.daemon, ok=ok, timeout=timeout)

    def on(self, host: str, *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        client = "lxc" if self.daemon == "lxd" else "incus"
        return subprocess.run([client, "exec", "--project", self.project, host, "--", *command],
                              capture_output=True, text=True, timeout=timeout, check=False)

    def guest(self, guest: str, script: str, timeout: float = 60) -> str:
        return self.lxdkvm("guest-exec", self.name, guest, "--timeout", str(timeout), "--", "sh", "-c", script,
                           ok=False, timeout=timeout + 60).stdout

    def address(self, last: int) -> str:
        return f"{self.base}.20.{last}"


@pytest.fixture(scope="module", params=["lxd", "incus"])
def lab(request, baked_image, tmp_path_factory):
    if request.param == "incus":
        request.getfixturevalue("incus_ready")
    lab = Lab(request.param)
    path = tmp_path_factory.mktemp(lab.name) / "lab.yaml"
    path.write_text(LAB.format(daemon=request.param, base=lab.base))
    lab.lxdkvm("down", lab.name, ok=False)
    lab.lxdkvm("up", str(path))
    yield lab
    lab.lxdkvm("down", lab.name)


def mac_of(lab: Lab, host: str, address: str) -> str:
    """The MAC HOST's neighbour table holds for ADDRESS ("" when none)."""
    fields = lab.on(host, "ip", "neigh", "show", address).stdout.split()
    return fields[fields.index("lladdr") + 1] if "lladdr" in fields else ""


def test_a_guest_cannot_borrow_a_hosts_address(lab):
    host_1, host_2, own = lab.address(11), lab.address(12), lab.address(51)
    assert lab.guest("attacker", f"ping -c 1 -W 2 {host_1} >/dev/null && echo reached").strip() == "reached"
    lab.on("gh-1", "ping", "-c", "1", "-W", "2", host_2)
    real = mac_of(lab, "gh-1", host_2)
    assert real, "gh-1 knows gh-2's MAC"
    mine = lab.guest("attacker", "cat /sys/class/net/eth0/address").strip()
    # the attacker takes gh-2's address, announces it (gratuitous ARP) and drops its own
    out = lab.guest("attacker", f"ip addr del {own}/24 dev eth0; ip addr add {host_2}/24 dev eth0 && "
                                f"arping -U -c 3 -I eth0 -s {host_2} {host_2}; "
                                f"for port in 16514 16509; do nc -w 3 {host_1} $port </dev/null && echo $port open "
                                f"|| echo $port closed; done; "
                                f"ping -c 2 -W 2 {host_1} >/dev/null && echo ping reached || echo ping lost; "
                                f"ip addr del {host_2}/24 dev eth0; ip addr add {own}/24 dev eth0", timeout=90)
    assert "16514 closed" in out and "16509 closed" in out and "ping lost" in out, out
    assert mac_of(lab, "gh-1", host_2) in (real, ""), "gh-1 learnt the attacker's MAC for gh-2's address"
    assert mac_of(lab, "gh-1", host_2) != mine
    assert lab.guest("attacker", f"ping -c 2 -W 2 {host_1} >/dev/null && echo reached").strip() == "reached"


def test_a_guest_is_no_dhcp_server(lab):
    config = (f"start {lab.address(200)}\\nend {lab.address(210)}\\ninterface eth0\\n"
              "lease_file /tmp/udhcpd.leases\\nopt router 10.255.255.1\\n")
    started = lab.guest("attacker", f"printf '{config}' > /tmp/udhcpd.conf && touch /tmp/udhcpd.leases && "
                                    "udhcpd /tmp/udhcpd.conf && sleep 1 && pidof udhcpd")
    assert started.strip(), "the attacker's DHCP server runs"
    try:
        asked = lab.guest("victim", "udhcpc -i eth0 -n -q -t 4 -T 1 -s /bin/true 2>&1; echo exit $?", timeout=60)
        assert "exit 1" in asked and "lease of" not in asked and "obtained" not in asked, asked
        # the server did answer: its offers are what the filter dropped on the attacker's host
        counters = lab.on("gh-1", "ebtables", "-t", "nat", "-L", "--Lc").stdout
        dropped = [line for line in counters.splitlines() if "--ip-sport 67 -j DROP" in line]
        assert dropped and any(int(line.split("pcnt = ")[1].split()[0]) > 0 for line in dropped), counters
    finally:
        lab.guest("attacker", "killall udhcpd")


def _echo_requests_seen(lab: Lab, host: str) -> int:
    """How many ICMPv6 echo requests HOST has received (its kernel's own counter)."""
    for line in lab.on(host, "cat", "/proc/net/snmp6").stdout.splitlines():
        if line.startswith("Icmp6InEchos "):
            return int(line.split()[1])
    raise AssertionError(f"{host} has no Icmp6InEchos counter")


def test_a_guest_sends_no_ipv6_so_no_router_advertisement(lab):
    """The filter passes IPv4, ARP and QEMU's announce from a guest and drops every other layer-2 protocol:
    IPv6 (router advertisements are ICMPv6) never leaves its host. The control: gh-1 itself sends the same
    all-nodes echo on the lab network and gh-2 counts it; the guest's echoes reach the filter's last
    rule on gh-1 and gh-2 counts none of them."""
    before = _echo_requests_seen(lab, "gh-2")
    lab.on("gh-1", "sh", "-c", "ping -6 -c 3 -i 0.2 -W 1 ff02::1%br-data >/dev/null 2>&1 || "
                               "ping -6 -c 3 -i 0.2 -W 1 -I br-data ff02::1")
    time.sleep(1)
    control = _echo_requests_seen(lab, "gh-2")
    assert control > before, "gh-2 does not count gh-1's IPv6 echo requests: the probe cannot see a leak"
    tap = lab.on("gh-1", "sh", "-c", "virsh -q domiflist attacker | awk 'NR==1 {print $1}'").stdout.strip()

    def dropped() -> int:  # frames the last rule of the guest's chain (drop everything else) has counted
        rules = [line for line in lab.on("gh-1", "ebtables", "-t", "nat", "-L", f"libvirt-I-{tap}", "--Lc")
                 .stdout.splitlines() if "pcnt = " in line]
        assert rules and rules[-1].startswith("-j DROP"), rules
        return int(rules[-1].split("pcnt = ")[1].split()[0])

    last_before = dropped()
    sent = lab.guest("attacker", "ping -6 -c 5 -i 0.2 -W 1 -I eth0 ff02::1 >/dev/null 2>&1; "
                                 "cat /proc/net/snmp6 | grep '^Icmp6OutEchos '")
    assert int(sent.split()[1]) >= 5, f"the guest did not send its IPv6 echo requests: {sent!r}"
    time.sleep(1)
    assert _echo_requests_seen(lab, "gh-2") == control, "an IPv6 frame from a guest reached another host"
    assert dropped() >= last_before + 5, "the guest's IPv6 frames did not end at the filter's last rule"


def test_the_migration_ports_answer_the_lab_hosts_only(lab):
    """QEMU's migration and disk streams listen on 49152-49215 during a move: a service there on gh-1 is
    reached by gh-2 and not by a guest on gh-1's own bridge."""
    host_1 = lab.address(11)
    server = subprocess.Popen(["lxc" if lab.daemon == "lxd" else "incus", "exec", "--project", lab.project, "gh-1",
                               "--", "python3", "-c",
                               f"import socket,time; s=socket.create_server(('{host_1}', 49160)); time.sleep(30)"])
    try:
        time.sleep(2)
        peer = lab.on("gh-2", "bash", "-c", f"exec 3<>/dev/tcp/{host_1}/49160 && echo connected")
        assert "connected" in peer.stdout, peer.stderr
        guest = lab.guest("attacker", f"nc -w 3 {host_1} 49160 </dev/null && echo connected || echo refused")
        assert "refused" in guest and "connected" not in guest, guest
    finally:
        server.kill()


def test_libvirt_refuses_a_client_without_the_labs_certificate(lab, tmp_path):
    from lxdkvm.lab import pki

    host_1 = lab.address(11)
    key, cert = pki.new_authority("someone-else")
    other = pki.issue("someone-else", key, cert, "gh-2", [])
    for name, data in (("tls.py", TLS_CLIENT.encode()), ("other-cert.pem", other.cert), ("other-key.pem", other.key)):
        (tmp_path / name).write_bytes(data)
        subprocess.run(["lxc" if lab.daemon == "lxd" else "incus", "file", "push", "--project", lab.project,
                        str(tmp_path / name), f"gh-2/tmp/{name}"], check=True, capture_output=True)
    anonymous = lab.on("gh-2", "python3", "/tmp/tls.py", host_1).stdout
    foreign = lab.on("gh-2", "python3", "/tmp/tls.py", "/tmp/other-cert.pem", "/tmp/other-key.pem", host_1).stdout
    own_cert = lab.on("gh-2", "python3", "/tmp/tls.py", "/etc/pki/libvirt/clientcert.pem",
                      "/etc/pki/libvirt/private/clientkey.pem", host_1).stdout
    assert own_cert.startswith("accepted"), own_cert  # the probe tells the two apart
    assert anonymous.startswith("refused") and foreign.startswith("refused"), (anonymous, foreign)
    own = lab.on("gh-2", "virsh", "-c", f"qemu+tls://{host_1}/system", "-q", "list", "--all")
    assert own.returncode == 0 and "attacker" in own.stdout, own.stderr
