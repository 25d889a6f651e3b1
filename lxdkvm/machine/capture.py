"""Run a capture on this machine (`lab.capture` plans its argv): compile the filter first, then tcpdump,
its pcap stream turned into pcapng as it comes (`outputs.pcapng`) and written to a file or stdout.

The capture ends when tcpdump does: after --count packets, or when `stop` is called (the command's
Ctrl-C, SIGTERM or SIGHUP handler calls it), which asks tcpdump to finish (SIGTERM: it writes what it
holds and exits); a reader that goes away (`| head`, Wireshark closed) ends it too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import LxdkvmError
from ..outputs import pcapng


def compiles(argv_for: Callable[[str], list[str]], empty_pcap: bytes) -> None:
    """Whether the filter compiles: ARGV_FOR(an empty capture file's path) is tcpdump -d; its error
    (tcpdump's own words about the filter) otherwise."""
    with tempfile.NamedTemporaryFile(prefix="lxdkvm-bpf-", suffix=".pcap") as empty:
        empty.write(empty_pcap)
        empty.flush()
        try:
            done = subprocess.run(argv_for(empty.name), capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LxdkvmError(f"cannot check the filter with tcpdump: {exc} (apt-get install tcpdump)") from None
    if done.returncode != 0:
        why = next((line for line in done.stderr.splitlines() if "syntax" in line or "error" in line.lower()),
                   done.stderr.strip()[-200:])
        raise LxdkvmError(f"the capture filter does not compile: {why.removeprefix('tcpdump: ')}")


@dataclass
class Capture:
    """A running tcpdump and what it wrote so far."""
    process: subprocess.Popen
    packets: int = 0
    stopped: bool = False

    def stop(self) -> None:
        """Ask tcpdump to finish (safe from a signal handler, and more than once)."""
        self.stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)


def start(argv: list[str]) -> Capture:
    """Start ARGV (tcpdump writing pcap to stdout) in its own process group: a Ctrl-C meant for the
    terminal reaches lxdkvm, which stops it in order."""
    try:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    except OSError as exc:
        raise LxdkvmError(f"cannot start {argv[0]}: {exc} (apt-get install tcpdump util-linux)") from None
    return Capture(process)


def stream(capture: Capture, write: Callable[[bytes], object], if_name: str, comment: str) -> str:
    """Copy the capture to WRITE as pcapng until tcpdump ends; tcpdump's last words (its packet counts, or
    its error)."""
    source = capture.process.stdout
    try:
        capture.packets = pcapng.convert(lambda n: os.read(source.fileno(), n), write, if_name, comment)
    except BrokenPipeError:  # the reader went away: that ends the capture
        capture.stop()
    except pcapng.NotPcap as exc:
        capture.stop()
        raise LxdkvmError(f"tcpdump wrote something unexpected: {exc}") from None
    finally:
        capture.process.wait(timeout=30)
    said = capture.process.stderr.read().decode(errors="replace").strip()
    if capture.process.returncode not in (0, -signal.SIGTERM) and not capture.stopped:
        raise LxdkvmError(f"tcpdump failed ({capture.process.returncode}): {said[-400:]}")
    return said
