"""Packet capture on a lab link, planned: where to listen and the exact argv of the capture. Pure but for
`target`, which reads the lab's links (`lab.links`).

- without a host: on this machine's bridge of the lab network (traffic between hosts, and to the machine);
- with a host: on the host's in-lab bridge (`br-<network>`), inside the host's network namespace, entered
  from the machine (`nsenter --net=/proc/PID/ns/net`, PID the container's init as LXD reports it): the
  machine's own tcpdump runs there, never a program of the host, which is untrusted.

tcpdump writes pcap to a pipe, packet by packet (-U), and drops root for the user `tcpdump` once it has
opened the interface (-Z); `outputs.pcapng` turns the stream into pcapng. The filter is user input: it
passes an allow-list of characters, is compiled once (`tcpdump -d` against an empty capture file, so no
interface is opened for it), and reaches tcpdump as one argument after `--`, never through a shell.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from ..errors import LxdkvmError
from ..labfile import topology as t

# BPF's words, numbers, addresses, operators and brackets: no quotes, no $, no ; (nothing a shell or
# tcpdump's option parser reads), and not starting with "-".
FILTER = re.compile(r"^[A-Za-z0-9_ .:/()!<>=&|\[\]*+%^\\][A-Za-z0-9_ .:/()!<>=&|\[\]*+%^\\-]{0,499}$")
MAX_COUNT = 10_000_000
SNAPLEN = 262144
EMPTY_ETHERNET_PCAP = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, 1)  # LINKTYPE_ETHERNET


@dataclass(frozen=True)
class Target:
    lab: str
    network: str
    interface: str  # the bridge listened on
    host: str = ""  # "": this machine's bridge; else the host in whose network namespace
    pid: int = 0  # the host's init (its network namespace: /proc/PID/ns/net)

    @property
    def name(self) -> str:
        """What the pcapng file calls the interface: lab/network, or lab/host/network."""
        return "/".join(p for p in (self.lab, self.host, self.network) if p)


def checked_filter(text: str | None) -> str | None:
    """TEXT when it may be a capture filter (its compilation is `machine.capture.compiles`)."""
    if text is None:
        return None
    if not FILTER.match(text):
        raise LxdkvmError(f"{t.printable(text, 80)!r} is not a capture filter lxdkvm passes on: use BPF's words, "
                          "numbers, addresses and operators (letters, digits, space and . : / ( ) ! < > = & | "
                          "[ ] * + % ^ \\ -), at most 500 characters, not starting with -; e.g. 'icmp and host "
                          "10.0.0.5'")
    return text


def checked_count(count: int | None) -> int | None:
    if count is not None and not 1 <= count <= MAX_COUNT:
        raise LxdkvmError(f"--count {count} is not between 1 and {MAX_COUNT}")
    return count


def argv(target: Target, bpf: str | None, count: int | None) -> list[str]:
    """The capture's argv: tcpdump on TARGET's interface (in its host's network namespace), pcap to stdout."""
    command = ["tcpdump", "-i", target.interface, "-w", "-", "-U", "-n", "-s", str(SNAPLEN), "-Z", "tcpdump",
               "--immediate-mode"]
    command += ["-c", str(count)] if count else []
    command += ["--", bpf] if bpf else []
    if target.pid:
        return ["nsenter", f"--net=/proc/{target.pid}/ns/net", "--", *command]
    return command


def compile_argv(bpf: str, empty_file: str) -> list[str]:
    """`tcpdump -d` of BPF against EMPTY_FILE (an empty Ethernet capture, `EMPTY_ETHERNET_PCAP`)."""
    return ["tcpdump", "-d", "-r", empty_file, "--", bpf]


def target(lxd, lab: str, network: str, host: str | None) -> Target:
    """Where to capture NETWORK of LAB (on HOST's in-lab bridge when HOST is given), as the daemon and this
    machine have it now."""
    from . import links

    links.named(network, host)
    found = links.read(lxd, lab)
    bridge = found.network(network)
    if host is None:
        return Target(lab, network, bridge)
    found.hosts(network, host)
    pid = found.pids.get(host)
    if not pid:
        raise LxdkvmError(f"host {host} of lab {lab} is not running: nothing to capture inside it")
    return Target(lab, network, t.in_host_bridge(network), host, pid)
