"""The in-host agent against a fake guest: a thread speaking the command server's protocol on a unix
socket (echoing requests first, like a tty that has not been put in raw mode yet), and serial logs."""

import base64
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lxdkvm.guests import agent

AGENT = Path(agent.__file__)


class FakeGuest:
    """Accepts one connection at a time, like QEMU's unix chardev, and answers RUN lines."""

    def __init__(self, path: Path, answer, echo: bool = True, noise: bytes = b"") -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.answer, self.echo, self.noise = answer, echo, noise
        self.requests: list[str] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                buffer = b""
                open_ = True
                while open_ and (chunk := conn.recv(4096)):
                    buffer += chunk
                    while open_ and b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        open_ = self.handle(conn, line.decode())

    def handle(self, conn: socket.socket, line: str) -> bool:
        if self.echo:
            conn.sendall(line.encode() + b"\r\n")
        verb, request_id, payload = line.split(" ")
        assert verb == "RUN"
        command = base64.b64decode(payload).decode()
        self.requests.append(command)
        reply = self.answer(command)
        if reply is None:
            return True  # never answers
        if reply == "close":
            return False  # like QEMU when the guest powers off
        output, code = reply
        conn.sendall(self.noise + f"OUT stale-id {base64.b64encode(b'not mine').decode()}\n".encode())
        conn.sendall(f"OUT {request_id} {base64.b64encode(output).decode()}\n".encode())
        time.sleep(0.01)  # the END line arrives in a later read
        conn.sendall(f"END {request_id} {code}\n".encode())
        return True

    def close(self) -> None:
        self.server.close()


def run_agent(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(AGENT), *args], capture_output=True, timeout=timeout,
                          check=False)


@pytest.fixture
def sock_path(tmp_path):
    return tmp_path / "guest.agent"


def test_exec_returns_output_and_exit_code_through_the_framing(sock_path):
    guest = FakeGuest(sock_path, lambda cmd: (b"hi\n\x00\xffbinary", 3), noise=b"garbage \x1b[6n\n")
    try:
        proc = run_agent("exec", str(sock_path), "--", "sh", "-c", "echo hi; exit 3")
        assert proc.returncode == 3, proc.stderr
        assert proc.stdout == b"hi\n\x00\xffbinary"
        assert guest.requests == ["sh -c 'echo hi; exit 3'"]
        assert run_agent("exec", str(sock_path), "--", "ls /dev | wc -l").returncode == 3
        assert guest.requests[-1] == "ls /dev | wc -l"  # one word is a shell line as it is
    finally:
        guest.close()


def test_run_command_in_process_and_one_client_at_a_time(sock_path):
    guest = FakeGuest(sock_path, lambda cmd: (cmd.encode(), 0), echo=False)
    results = []

    def client(i: int) -> None:
        results.append(agent.run_command(str(sock_path), f"echo {i}", timeout=10))

    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [(f"echo {i}".encode(), 0) for i in range(5)]
    finally:
        guest.close()


def test_exec_times_out_with_124(sock_path):
    guest = FakeGuest(sock_path, lambda cmd: None)
    try:
        start = time.monotonic()
        proc = run_agent("exec", str(sock_path), "--timeout", "1", "--", "sleep", "99")
        assert proc.returncode == 124 and b"no answer" in proc.stderr
        assert time.monotonic() - start < 10
    finally:
        guest.close()


def test_exec_says_so_when_the_socket_is_missing_or_the_guest_goes_away(sock_path, monkeypatch):
    monkeypatch.setattr(agent, "CONNECT_RETRY", 0.3)
    with pytest.raises(agent.Unreachable, match="no agent socket .*is the guest running"):
        agent.run_command(str(sock_path), "true", timeout=5)
    guest = FakeGuest(sock_path, lambda cmd: "close")
    try:
        proc = run_agent("exec", str(sock_path), "--", "poweroff", "-f")
        assert proc.returncode == 125 and b"closed the connection" in proc.stderr
    finally:
        guest.close()


def test_exec_needs_a_command(sock_path):
    assert run_agent("exec", str(sock_path)).returncode == 2


MARKER = "LXDKVM-GUEST-BOOTED name=web-1 boot_id=1b2c3d4e-0000-4000-8000-000000000001 addrs=eth0=10.0.0.5/24,eth1="


def test_parse_marker():
    assert agent.parse_marker("junk\x1b[0m" + MARKER) == {
        "name": "web-1", "boot_id": "1b2c3d4e-0000-4000-8000-000000000001",
        "addrs": {"eth0": "10.0.0.5/24", "eth1": ""}}
    assert agent.parse_marker("Kernel command line: console=ttyS0 lxdkvm.name=web-1") is None


def test_wait_boot_finds_the_marker_after_an_offset_and_waits_for_a_whole_line(tmp_path):
    log = tmp_path / "serial.log"
    first = f"[    0.0] Linux version 6.1\n\n{MARKER}\n/ # "
    log.write_text(first)
    proc = run_agent("wait-boot", str(log), "--timeout", "5")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["boot_id"].startswith("1b2c3d4e") and found["addrs"]["eth0"] == "10.0.0.5/24"
    assert found["offset"] == len(first) - len("/ # ")

    # a reboot: the old marker is before the offset; the new one is written in two pieces
    def reboot() -> None:
        time.sleep(0.5)
        with log.open("a") as f:
            f.write("reboot: Restarting system\n[    0.0] Linux version 6.1\n" + MARKER.replace("0001", "0002")[:40])
            f.flush()
            time.sleep(0.5)
            f.write(MARKER.replace("0001", "0002")[40:] + "\n")

    writer = threading.Thread(target=reboot)
    writer.start()
    proc = run_agent("wait-boot", str(log), "--after-bytes", str(found["offset"]), "--timeout", "10")
    writer.join()
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["boot_id"].endswith("0002")


def test_wait_boot_times_out_with_the_log_tail(tmp_path):
    log = tmp_path / "serial.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)) + "Kernel panic - not syncing\n")
    proc = run_agent("wait-boot", str(log), "--timeout", "0.5")
    assert proc.returncode == 1 and proc.stdout == b""
    assert b"no boot marker" in proc.stderr and b"Kernel panic" in proc.stderr and b"line 99" in proc.stderr
    assert b"line 10\n" not in proc.stderr
    missing = run_agent("wait-boot", str(tmp_path / "none.log"), "--timeout", "0.3")
    assert missing.returncode == 1 and b"No such file" in missing.stderr


def test_agent_is_standard_library_only():
    tree = AGENT.read_text()
    imports = {line.split()[1].split(".")[0] for line in tree.splitlines()
               if line.startswith(("import ", "from ")) and not line.startswith("from __future__")}
    assert imports <= set(sys.stdlib_module_names), imports - set(sys.stdlib_module_names)
