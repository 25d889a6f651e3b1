"""The sandbox cluster's members on this machine: where each one's daemon directory and state live, the
namespace holder (holder.sh: new mount and network namespaces) each daemon runs in, the veth joining it to
the host bridge, and the bridge with its NAT rule."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..errors import LxdkvmError

ROOT = paths.sandbox_root()
BRIDGE = "lxdkvmsb0"
SUBNET = ipaddress.IPv4Network("100.64.40.0/24")  # the members' own network (100.64/10: never a LAN's)
GATEWAY = SUBNET.network_address + 1
POOL = "default"  # a loop-file btrfs pool per member: instances are snapshots of the image
POOL_SIZE = "12GiB"  # sparse
PORT = 8443
IMAGES = ("lxdkvm/base", "lxdkvm/kvm-host")  # copied from the main LXD when it has them
NAT_COMMENT = "lxdkvm-cluster-sandbox"
HOLDER = Path(__file__).with_name("holder.sh")
MAIN_LXD_DIRS = (Path("/var/lib/lxd"), Path("/var/snap/lxd"))

Report = Callable[[str], None]


@dataclass(frozen=True)
class Member:
    index: int

    @property
    def name(self) -> str:
        return f"m{self.index}"

    @property
    def address(self) -> ipaddress.IPv4Address:
        return SUBNET.network_address + 10 + self.index

    @property
    def lxd_dir(self) -> Path:
        return ROOT / self.name

    @property
    def state(self) -> Path:
        """The holder's and the daemon's pids, the daemon's log: beside LXD's directory, not in it."""
        return ROOT / "run" / self.name

    @property
    def veth(self) -> str:
        return f"{BRIDGE}-{self.name}"  # host side; the member's side is renamed eth0

    def env(self) -> dict[str, str]:
        return {**os.environ, "LXD_DIR": str(self.lxd_dir)}


def members(count: int) -> list[Member]:
    return [Member(i) for i in range(1, count + 1)]


def _safe_root() -> None:
    root = ROOT.resolve()
    for main in MAIN_LXD_DIRS:
        if root == main or main in root.parents or root in main.parents:
            raise LxdkvmError(f"the sandbox directory {ROOT} must not be inside or above {main}")


def _run(command: list[str], what: str, env: dict[str, str] | None = None, stdin: str | None = None,
         check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, capture_output=True, text=True, env=env, input=stdin, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise LxdkvmError(f"{what} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc


def _pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _ns(pid: int, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def recorded_count() -> int:
    """How many members the sandbox has on disk (0: none)."""
    return len([p for p in ROOT.glob("m*") if p.is_dir() and p.name[1:].isdigit()]) if ROOT.is_dir() else 0


# ------------------------------------------------------------------------------------ the network
def _nat_rule() -> list[str]:
    """Masquerade what the members send out of the machine, and only that: with br_netfilter, packets
    between members (the tunnels' multicast too) also pass POSTROUTING, and must keep their source."""
    return ["POSTROUTING", "-s", str(SUBNET), "!", "-d", str(SUBNET), "!", "-o", BRIDGE, "-j", "MASQUERADE",
            "-m", "comment", "--comment", NAT_COMMENT]


def _ensure_bridge(say: Report) -> None:
    if not _link_exists(BRIDGE):
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"], f"creating bridge {BRIDGE}")
        _run(["ip", "addr", "add", f"{GATEWAY}/{SUBNET.prefixlen}", "dev", BRIDGE], f"addressing {BRIDGE}")
        say(f"bridge {BRIDGE} ({GATEWAY}/{SUBNET.prefixlen})")
    _run(["ip", "link", "set", BRIDGE, "up"], f"bringing {BRIDGE} up")
    # members reach the outside (for their NAT lab networks) through this machine, like LXD's test suite
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
    rule = _nat_rule()
    if _run(["iptables", "-w", "-t", "nat", "-C", *rule], "", check=False).returncode != 0:
        _run(["iptables", "-w", "-t", "nat", "-A", *rule], "adding the sandbox's NAT rule")


def _remove_bridge() -> None:
    rule = _nat_rule()
    while shutil.which("iptables") and _run(["iptables", "-w", "-t", "nat", "-D", *rule], "",
                                            check=False).returncode == 0:
        pass
    if _link_exists(BRIDGE):
        _run(["ip", "link", "del", BRIDGE], f"deleting bridge {BRIDGE}")


# ------------------------------------------------------------------------------------ holders, daemons
def _ensure_holder(member: Member, say: Report) -> int:
    pid = _pid(member.state / "holder.pid")
    if pid is None:
        member.state.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(["unshare", "-m", "-n", "--propagation", "private", "sh", str(HOLDER)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        line = proc.stdout.readline().strip()
        if line != "ready":
            proc.kill()
            raise LxdkvmError(f"{member.name}: the namespace holder failed: {proc.stderr.read().strip()[-300:]}")
        proc.stdout.close()
        proc.stderr.close()
        pid = proc.pid
        (member.state / "holder.pid").write_text(str(pid))
    if not _link_exists(member.veth):
        _run(["ip", "link", "add", member.veth, "type", "veth", "peer", "name", f"{member.veth}p"],
             f"{member.name}: creating its veth")
        _run(["ip", "link", "set", f"{member.veth}p", "netns", str(pid)], f"{member.name}: moving its veth")
        _run(["ip", "link", "set", member.veth, "master", BRIDGE, "up"], f"{member.name}: plugging its veth")
        script = (f"ip link set dev {member.veth}p name eth0 && ip link set eth0 up && "
                  f"ip addr add {member.address}/{SUBNET.prefixlen} dev eth0 && "
                  f"ip route add default via {GATEWAY}")
        _run(["nsenter", "-n", "-m", "-t", str(pid), "sh", "-c", script], f"{member.name}: addressing eth0")
        say(f"{member.name}: namespace holder {pid}, eth0 {member.address}")
    return pid
