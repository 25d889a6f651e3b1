"""lxdkvm's guest agent, run inside a lab host: wait for a guest's boot marker, run commands in a guest.

Standard library only and self-contained: lxdkvm pushes this one file into a host (`push_agent`) and
runs it there with Debian's python3::

    python3 guest-agent.py wait-boot SERIAL_LOG [--after-bytes N] [--timeout S] [--text TEXT]
    python3 guest-agent.py exec SOCKET [--timeout S] -- CMD...

`wait-boot` prints the first boot marker line after byte N of the guest's serial log as JSON
({"name", "boot_id", "addrs": {"eth0": "10.0.0.5/24"}, "offset"}: offset is where the marker line
ends, the N to give for the next boot) and exits 0; on timeout it exits 1 with the log's last lines.
With --text (a guest from an imported image, which prints no marker) it waits for that text instead,
anywhere after byte N (a prompt such as "login: " ends no line), and prints {"text", "offset"}.

`exec` talks to the tiny guest's command server on its second serial port, which QEMU offers as a unix
socket (libvirt/tiny-agentd.sh): it sends ``RUN <id> <base64 command>`` and reads ``OUT <id> <base64
output>`` and ``END <id> <exit code>``, ignoring any other line. It prints the output and exits with the
command's code; 124 when the time runs out, 125 when the guest cannot be reached or stops answering.
QEMU serves one connection at a time, so clients on a host take turns through a lock file beside the
socket and retry briefly while QEMU refuses.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import errno
import fcntl
import json
import os
import re
import shlex
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..lxd.instances import Instances

AGENT_PATH = "/usr/local/lib/lxdkvm/guest-agent.py"
MARKER_RE = re.compile(r"LXDKVM-GUEST-BOOTED name=(\S*) boot_id=(\S+) addrs=(\S*)")
TIMED_OUT, UNREACHABLE = 124, 125
CONNECT_RETRY = 5.0  # seconds a refused or missing socket is retried


def push_agent(client: Instances, host: str) -> None:
    """Put this file into HOST at AGENT_PATH."""
    client.execute(host, ["mkdir", "-p", str(Path(AGENT_PATH).parent)])
    client.push(host, AGENT_PATH, Path(__file__).read_bytes(), mode="0755")


# ---- wait-boot --------------------------------------------------------------------------------------

def parse_marker(line: str) -> dict[str, object] | None:
    found = MARKER_RE.search(line)
    if not found:
        return None
    name, boot_id, addrs = found.groups()
    pairs = (item.partition("=") for item in addrs.split(",") if item)
    return {"name": name, "boot_id": boot_id, "addrs": {iface: addr for iface, _, addr in pairs}}


def find_marker(data: bytes, start: int) -> dict[str, object] | None:
    """The first complete marker line in DATA (a log read from byte START on), with its end offset."""
    at = 0
    while (end := data.find(b"\n", at)) >= 0:
        marker = parse_marker(data[at:end].decode(errors="replace"))
        if marker:
            return {**marker, "offset": start + end + 1}
        at = end + 1
    return None


def find_text(data: bytes, start: int, text: str) -> dict[str, object] | None:
    at = data.find(text.encode())
    return {"text": text, "offset": start + at + len(text.encode())} if at >= 0 else None


def wait_boot(log: str, after: int, timeout: float, poll: float = 0.2,
              text: str | None = None) -> dict[str, object] | None:
    deadline = time.monotonic() + timeout
    scanned = after  # complete lines before this offset hold no marker (nor the text)
    while True:
        try:
            with open(log, "rb") as f:
                if os.fstat(f.fileno()).st_size < after:  # truncated or replaced: a new log
                    scanned = after = 0
                f.seek(scanned)
                data = f.read()
        except FileNotFoundError:
            data = b""
        marker = find_text(data, scanned, text) if text else find_marker(data, scanned)
        if marker:
            return marker
        scanned += data.rfind(b"\n") + 1
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll)


def _tail(log: str, lines: int = 20) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 8192))
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return f"({log}: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:])


# ---- exec -------------------------------------------------------------------------------------------

class Unreachable(Exception):
    pass


def connect(path: str, deadline: float) -> socket.socket:
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError as exc:
            sock.close()
            retry = exc.errno in (errno.ECONNREFUSED, errno.EAGAIN, errno.ENOENT)
            if not retry or time.monotonic() >= deadline:
                if exc.errno == errno.ENOENT:
                    raise Unreachable(f"no agent socket {path}: is the guest running?") from exc
                raise Unreachable(f"cannot connect to {path}: {exc.strerror}") from exc
            time.sleep(0.1)


def request(command: str, request_id: str) -> bytes:
    return f"RUN {request_id} {base64.b64encode(command.encode()).decode()}\n".encode()


def read_reply(sock: socket.socket, request_id: str, deadline: float) -> tuple[bytes, int]:
    """(output, exit code) of REQUEST_ID from the guest's lines; other lines (echo, noise) are skipped."""
    buffer, output = b"", b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(65536)  # raises TimeoutError when the time is up
        if not chunk:
            raise Unreachable("the guest closed the connection before answering (did it power off?)")
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            words = raw.strip(b"\r").decode(errors="replace").split(" ")
            if len(words) >= 2 and words[1] == request_id:
                if words[0] == "OUT" and len(words) == 3:
                    try:
                        output += base64.b64decode(words[2], validate=True)
                    except binascii.Error:
                        output += b"(lxdkvm agent: the guest sent output that is not base64)\n"
                elif words[0] == "END" and len(words) == 3 and words[2].lstrip("-").isdigit():
                    return output, int(words[2])


def run_command(path: str, command: str, timeout: float) -> tuple[bytes, int]:
    """Run COMMAND (a shell line) in the guest behind the socket PATH. Raises TimeoutError, Unreachable."""
    deadline = time.monotonic() + timeout
    with open(f"{path}.lock", "a") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError from None
                time.sleep(0.05)
        sock = connect(path, min(deadline, time.monotonic() + CONNECT_RETRY))
        with sock:
            request_id = uuid.uuid4().hex[:12]
            sock.sendall(request(command, request_id))
            return read_reply(sock, request_id, deadline)


# ---- command line -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="guest-agent.py", description="lxdkvm's in-host guest agent")
    sub = parser.add_subparsers(dest="action", required=True)
    boot = sub.add_parser("wait-boot", help="wait for a guest's boot marker in its serial log")
    boot.add_argument("serial_log")
    boot.add_argument("--after-bytes", type=int, default=0)
    boot.add_argument("--timeout", type=float, default=120.0)
    boot.add_argument("--text", help="wait for this text instead of lxdkvm's boot marker")
    run = sub.add_parser("exec", help="run a command in a guest through its agent socket")
    run.add_argument("socket")
    run.add_argument("--timeout", type=float, default=60.0)
    argv = sys.argv[1:] if argv is None else argv
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)

    if args.action == "wait-boot":
        marker = wait_boot(args.serial_log, args.after_bytes, args.timeout, text=args.text)
        if marker is None:
            what = f"text {args.text!r}" if args.text else "boot marker"
            print(f"no {what} in {args.serial_log} after byte {args.after_bytes} within "
                  f"{args.timeout:g}s; its last lines:\n{_tail(args.serial_log)}", file=sys.stderr)
            return 1
        print(json.dumps(marker))
        return 0

    if not command:
        parser.error("exec needs a command after --")
    line = command[0] if len(command) == 1 else shlex.join(command)
    try:
        output, code = run_command(args.socket, line, args.timeout)
    except TimeoutError:
        print(f"guest-agent: no answer from {args.socket} within {args.timeout:g}s", file=sys.stderr)
        return TIMED_OUT
    except Unreachable as exc:
        print(f"guest-agent: {exc}", file=sys.stderr)
        return UNREACHABLE
    sys.stdout.buffer.write(output)
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
