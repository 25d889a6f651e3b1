"""Packet capture against a real LXD, real hosts and real guests: `lxdkvm capture` on the machine's bridge
sees the ICMP between two hosts and between guests on different hosts; inside a host (its network
namespace, the machine's tcpdump) it sees the ICMP between two guests on that host, which never reaches
the machine's bridge. The files are pcapng, read back by tcpdump -r; SIGTERM and --count end a capture
cleanly; a bad filter is refused before anything is captured.

Run alone: python3 -m pytest tests/integration/test_capture.py"""

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .test_labs import lxd_snapshot, lxdkvm

pytestmark = pytest.mark.integration
LAB = Path(__file__).parent.parent / "labs" / "valid" / "capture.yaml"
NAME, PROJECT = "net-capture", "lxdkvm-net-capture"
HOST = {"cap-1": "10.240.2.11", "cap-2": "10.240.2.12"}
GUEST = {"vm-1": "10.240.2.51", "vm-2": "10.240.2.52", "vm-3": "10.240.2.53"}
PROBE = (Path(__file__).parent / "netprobe.py").read_text()
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


def ours() -> dict:
    return {kind: [n for n in names if NAME in n] for kind, names in lxd_snapshot().items()}


@contextlib.contextmanager
def capture_lab():
    """The capture lab up for the block, and nothing of it left afterwards (also for test_impair_migration)."""
    assert not any(ours().values()), f"a previous run left the lab up: lxdkvm down {NAME}"
    try:
        lxdkvm("up", str(LAB), timeout=1200)
        yield
    finally:
        lxdkvm("down", str(LAB), ok=False, timeout=600)
    assert not any(ours().values())


@pytest.fixture(scope="module")
def lab(lxd, baked_image):
    with capture_lab():
        yield


class Capture:
    """`lxdkvm capture` running in the background, ended by SIGTERM (or its --count)."""

    def __init__(self, path: Path, *args: str) -> None:
        self.path = path
        self.proc = subprocess.Popen([sys.executable, "-m", "lxdkvm", "capture", NAME, "data", *args, "-w",
                                      str(path)], stderr=subprocess.PIPE, text=True)
        self.first = self.proc.stderr.readline()  # "capturing on …": tcpdump is being started
        assert "capturing on" in self.first, self.first
        self.said = ""
        time.sleep(1.5)  # and opens the interface

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, rest = self.proc.communicate(timeout=60)
        self.said = self.first + rest
        print(self.said)
        assert self.proc.returncode == 0, self.said
        return self.said


def icmp(path: Path) -> list[str]:
    """The ICMP lines tcpdump reads from the file (which must be pcapng)."""
    assert path.read_bytes()[:4] == PCAPNG_MAGIC
    done = subprocess.run(["tcpdump", "-n", "-r", str(path)], capture_output=True, text=True, check=True)
    return [line for line in done.stdout.splitlines() if " ICMP echo " in line]


def host_ping(source: str, target: str, count: int = 3) -> None:
    done = subprocess.run(["lxc", "exec", "--project", PROJECT, source, "--", "python3", "-", "ping", target,
                           str(count), "0.2"], input=PROBE, capture_output=True, text=True, timeout=60)
    assert json.loads(done.stdout)["received"] == count, done.stdout + done.stderr


def guest_ping(guest: str, target: str, count: int = 3) -> None:
    done = lxdkvm("guest-exec", NAME, guest, "--", "ping", "-c", str(count), target, timeout=120)
    assert f"{count} packets received" in done.stdout


def between(lines: list[str], a: str, b: str) -> tuple[int, int]:
    """(requests a → b, replies b → a) among tcpdump's ICMP LINES."""
    return (sum(f"IP {a} > {b}: ICMP echo request" in line for line in lines),
            sum(f"IP {b} > {a}: ICMP echo reply" in line for line in lines))


def test_the_machine_bridge_shows_icmp_between_hosts_and_stops_at_count(lab, tmp_path):
    path = tmp_path / "hosts.pcapng"
    cap = Capture(path, "--filter", f"icmp and host {HOST['cap-1']}", "--count", "6")
    host_ping("cap-1", HOST["cap-2"])
    cap.proc.wait(timeout=60)  # --count ends it by itself
    assert "6 packets written" in cap.stop()
    assert between(icmp(path), HOST["cap-1"], HOST["cap-2"]) == (3, 3)


def test_guests_on_one_host_are_seen_inside_it_and_not_on_the_machine(lab, tmp_path):
    inside, machine = tmp_path / "inside.pcapng", tmp_path / "machine.pcapng"
    caps = [Capture(inside, "--host", "cap-1", "--filter", "icmp"), Capture(machine, "--filter", "icmp")]
    guest_ping("vm-1", GUEST["vm-2"])
    guest_ping("vm-1", GUEST["vm-3"])  # vm-3 runs on cap-2: its frames cross the machine's bridge
    for cap in caps:
        cap.stop()
    seen_inside, seen_outside = icmp(inside), icmp(machine)
    assert between(seen_inside, GUEST["vm-1"], GUEST["vm-2"]) == (3, 3)
    assert between(seen_outside, GUEST["vm-1"], GUEST["vm-2"]) == (0, 0)
    assert between(seen_outside, GUEST["vm-1"], GUEST["vm-3"]) == (3, 3)


def test_stdout_streams_pcapng_that_a_reader_reads_as_it_comes(lab):
    proc = subprocess.Popen([sys.executable, "-m", "lxdkvm", "capture", NAME, "data", "--filter", "icmp",
                             "--count", "2", "-w", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader = subprocess.Popen(["tcpdump", "-n", "-r", "-"], stdin=proc.stdout, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader holds it now
    time.sleep(3)
    host_ping("cap-2", HOST["cap-1"], 1)
    assert proc.wait(timeout=30) == 0
    read, _ = reader.communicate(timeout=30)
    assert between(read.splitlines(), HOST["cap-2"], HOST["cap-1"]) == (1, 1)


def test_bad_filters_names_and_counts_are_refused_before_capturing(lab, tmp_path):
    out = tmp_path / "never.pcapng"
    for args, words in [(("--filter", "icmp and hots 10.0.0.1"), "does not compile"),
                        (("--filter", "icmp; reboot"), "is not a capture filter"),
                        (("--filter", "-w /etc/passwd"), "is not a capture filter"),
                        (("--count", "0"), "is not between 1"),
                        (("--host", "cap-9"), "no host 'cap-9'")]:
        result = lxdkvm("capture", NAME, "data", *args, "-w", str(out), ok=False)
        assert result.returncode == 1 and words in result.stderr
    assert "is not a network's name" in lxdkvm("capture", NAME, "../x", "-w", str(out), ok=False).stderr
    assert not out.exists()
