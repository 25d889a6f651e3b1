"""Lab networks do not reach the machine (lab/fence.py), tried for real from hosts and guests of labs on
LXD and on Incus: a TCP service on the machine bound to every address is not reached through the lab's
gateway, the machine's LAN address, another bridge's address or a link-local metadata address; another
lab's host is not reached; what a lab needs still works (DHCP leases, DNS through the gateway, the outside
through NAT); a lab file's `open:` opens exactly its port, and `plan` said so first; `down` removes the
lab's table. Observed from inside the hosts and guests (their own sockets), and with `nft` on the machine.
"""

import socket
import subprocess
import threading
from pathlib import Path

import pytest

from ..integration.test_incus import incus, incus_ready  # noqa: F401  (fixture)
from ..integration.test_incus import lxdkvm as lxdkvm_on
from ..integration.test_labs import lxdkvm, on

pytestmark = pytest.mark.integration
METADATA = "169.254.169.254"
LAB_A = """\
name: {name}
networks:
  - name: mgmt
    subnet: {base}.10.0/24
{open}  - {{name: data, subnet: {base}.20.0/24, mode: isolated}}
hosts:
  - name: {host}
    networks: [mgmt, {{network: data, ipv4: {base}.20.11}}]
    limits: {{memory: 1GiB}}
{guests}"""
GUEST = """guests:
  - {{name: {host}-vm, host: {host}, memory: 96MiB, networks: [mgmt, {{network: data, ipv4: {base}.20.51}}]}}
"""
PROBE = """\
import socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), 3).close()
        print(target, "open")
    except OSError as exc:
        print(target, "closed", type(exc).__name__)
"""


class Listener:
    """A TCP service on this machine, on every address (0.0.0.0), answering each connection."""

    def __init__(self) -> None:
        self.server = socket.create_server(("0.0.0.0", 0))
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.server.close()


def machine_addresses() -> dict[str, str]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    return {f.split()[1]: f.split()[3].split("/")[0] for f in out.splitlines() if " lo " not in f}


def nft_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout


def write(tmp_path: Path, name: str, base: str, host: str, guests: bool = False, open_port: int = 0) -> Path:
    opened = f"    open: [{{machine: tcp/{open_port}}}]\n" if open_port else ""
    text = LAB_A.format(name=name, base=base, host=host, open=opened,
                        guests=GUEST.format(host=host, base=base) if guests else "")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def probe(run, targets: list[str]) -> dict[str, str]:
    """Connect from inside a host (RUN: its exec) to each HOST:PORT: target → open | closed."""
    out = run(["python3", "-c", PROBE, *targets]).stdout
    return {line.split()[0]: line.split()[1] for line in out.splitlines() if len(line.split()) >= 2}


@pytest.fixture(scope="module")
def machine_service():
    listener = Listener()
    added = subprocess.run(["ip", "addr", "add", f"{METADATA}/32", "dev", "lo"], capture_output=True).returncode == 0
    yield listener
    listener.close()
    if added:
        subprocess.run(["ip", "addr", "del", f"{METADATA}/32", "dev", "lo"], check=False)


@pytest.fixture(scope="module")
def two_labs(baked_image, machine_service, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fence")
    a = write(folder, "itest-fence-a", "10.229", "fa-1", guests=True)
    b = write(folder, "itest-fence-b", "10.228", "fb-1")
    for name in ("itest-fence-a", "itest-fence-b"):
        lxdkvm("down", name, ok=False)
    plan = lxdkvm("plan", str(a)).stdout
    assert "firewall" in plan and "lxdkvm-itest-fence-a" in plan
    lxdkvm("up", str(a))
    lxdkvm("up", str(b))
    yield a, b
    lxdkvm("down", "itest-fence-a")
    lxdkvm("down", "itest-fence-b")
    assert "lxdkvm-itest-fence" not in nft_tables()  # down removed both labs' tables


def test_the_machine_is_not_reached_from_a_lab_host(two_labs, machine_service):
    port = machine_service.port
    targets = [f"{address}:{port}" for address in (*machine_addresses().values(), METADATA)]
    assert "10.229.10.1" in " ".join(targets)  # the lab's own gateway is among them
    found = probe(lambda cmd: on("lxdkvm-itest-fence-a", "fa-1", *cmd), targets)
    assert found == dict.fromkeys(targets, "closed"), found
    assert machine_service.accepted == 0


def test_what_a_lab_needs_still_works(two_labs):
    run = lambda *cmd: on("lxdkvm-itest-fence-a", "fa-1", *cmd)  # noqa: E731
    assert run("getent", "hosts", "deb.debian.org").stdout.strip()  # DNS through the gateway's dnsmasq
    assert probe(lambda cmd: run(*cmd), ["deb.debian.org:80"]) == {"deb.debian.org:80": "open"}  # NAT out
    assert "10.229.10." in run("ip", "-4", "-o", "addr", "show").stdout  # a DHCP lease on mgmt


def test_another_lab_is_not_reached_either_way(two_labs):
    listen = "python3 -c \"import socket,time; s=socket.create_server(('0.0.0.0', 18090)); time.sleep(60)\""
    for project, host, peer_project, peer in (("lxdkvm-itest-fence-b", "fb-1", "lxdkvm-itest-fence-a", "fa-1"),
                                              ("lxdkvm-itest-fence-a", "fa-1", "lxdkvm-itest-fence-b", "fb-1")):
        subprocess.Popen(["lxc", "exec", "--project", peer_project, peer, "--", "sh", "-c", listen],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = "10.229" if peer == "fa-1" else "10.228"
        address = next(a.split("/")[0] for a in on(peer_project, peer, "ip", "-4", "-o", "addr", "show")
                       .stdout.split() if a.startswith(f"{base}.10."))
        found = probe(lambda cmd, p=project, h=host: on(p, h, *cmd), [f"{address}:18090"])
        assert found == {f"{address}:18090": "closed"}, (host, peer, found)


def test_a_guest_does_not_reach_the_machine(two_labs, machine_service):
    targets = [f"{address} {machine_service.port}" for address in ("10.229.10.1", *machine_addresses().values())]
    script = "; ".join(f"nc -w 3 {t} </dev/null && echo {t.replace(' ', ':')} open || echo {t.replace(' ', ':')} closed"
                       for t in targets)
    out = lxdkvm("guest-exec", "itest-fence-a", "fa-1-vm", "--", "sh", "-c", script, ok=False).stdout
    assert "open" not in out.replace("closed", "") and out.count("closed") == len(targets), out
    assert machine_service.accepted == 0


def test_open_lets_exactly_its_port_through_and_plan_shows_it(two_labs, machine_service, tmp_path):
    opened = write(tmp_path, "itest-fence-a", "10.229", "fa-1", guests=True, open_port=machine_service.port)
    plan = lxdkvm("plan", str(opened)).stdout
    assert f"opens mgmt → this machine tcp/{machine_service.port}" in plan.replace("\n", " ").replace("│", " ")
    lxdkvm("up", str(opened))
    run = lambda cmd: on("lxdkvm-itest-fence-a", "fa-1", *cmd)  # noqa: E731
    found = probe(run, [f"10.229.10.1:{machine_service.port}", f"10.229.10.1:{machine_service.port + 1}"])
    assert found == {f"10.229.10.1:{machine_service.port}": "open",
                     f"10.229.10.1:{machine_service.port + 1}": "closed"}, found
    lxdkvm("up", str(two_labs[0]))  # closed again as the original file says
    assert probe(run, [f"10.229.10.1:{machine_service.port}"])[f"10.229.10.1:{machine_service.port}"] == "closed"


def test_a_lab_on_incus_does_not_reach_the_machine(incus_ready, machine_service, tmp_path):  # noqa: F811
    path = write(tmp_path, "itest-fence-i", "10.227", "fi-1")
    lxdkvm_on("down", "itest-fence-i", ok=False)
    lxdkvm_on("up", str(path))
    try:
        targets = [f"{address}:{machine_service.port}" for address in (*machine_addresses().values(), METADATA)]
        run = lambda cmd: incus("exec", "--project", "lxdkvm-itest-fence-i", "fi-1", "--", *cmd)  # noqa: E731
        assert probe(run, targets) == dict.fromkeys(targets, "closed")
        assert probe(run, ["deb.debian.org:80"]) == {"deb.debian.org:80": "open"}
    finally:
        lxdkvm_on("down", "itest-fence-i")
    assert "lxdkvm-itest-fence-i" not in nft_tables()
