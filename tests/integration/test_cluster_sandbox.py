"""`lxdkvm cluster sandbox`: a 3-member LXD cluster of extra daemons on this machine forms, survives its
daemons being stopped (the same cluster comes back), and `down` leaves no trace: no daemon or holder, no
directory, veth, bridge, loop device, mount or NAT rule. Observed with `lxc`, `ip`, /proc."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lxdkvm.cluster import members, sandbox

pytestmark = pytest.mark.integration


def lxdkvm(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "lxdkvm", *args], capture_output=True, text=True, timeout=600, check=False)
    print(f"$ lxdkvm {' '.join(args)} → {proc.returncode}\n{proc.stdout}{proc.stderr}", flush=True)
    assert proc.returncode == 0, proc.stderr
    return proc


def members_seen(member: str) -> dict[str, str]:
    """name → status, as a member's own `lxc cluster list` says."""
    proc = subprocess.run(["lxc", "cluster", "list", "--format", "json"], capture_output=True, text=True,
                          env={**os.environ, "LXD_DIR": str(members.ROOT / member)}, check=True)
    return {m["server_name"]: m["status"] for m in json.loads(proc.stdout)}


def traces() -> list[str]:
    """Whatever of the sandbox is left on this machine."""
    left = []
    if members.ROOT.exists():
        left.append(f"directory {members.ROOT}")
    left += [f"link {n}" for n in os.listdir("/sys/class/net") if n.startswith(members.BRIDGE)]
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.split()[4].startswith(str(members.ROOT)):
            left.append(f"mount {line.split()[4]}")
    loops = subprocess.run(["losetup", "--list", "--noheadings", "-O", "BACK-FILE"], capture_output=True, text=True, check=False)
    left += [f"loop {f}" for f in loops.stdout.split() if f.startswith(str(members.ROOT))]
    nat = subprocess.run(["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True, check=False).stdout
    left += [f"rule {r}" for r in nat.splitlines() if members.NAT_COMMENT in r]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if str(members.ROOT) in cmdline or str(members.ROOT).encode() in environ or str(members.HOLDER) in cmdline:
            left.append(f"process {pid}: {cmdline[:80]}")
    return left


PROBE = "sandbox-probe"


def probe_processes() -> list[int]:
    """Processes of the probe container (its cgroup says so), wherever their namespaces are."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if f"lxc.payload.{PROBE}" in Path(f"/proc/{pid}/cgroup").read_text():
                found.append(int(pid))
        except OSError:
            continue
    return found


def eventually(check, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_sandbox_forms_restarts_and_leaves_no_trace(base_image):  # copied into the cluster, for a container
    if os.geteuid() != 0:
        pytest.fail("the sandbox needs root")
    sandbox.down()  # an earlier run's leftovers (the lock is ours)
    assert traces() == [] and probe_processes() == []
    try:
        lifecycle()
    finally:
        sandbox.down()
    assert traces() == [] and probe_processes() == []


def lifecycle():
    start = time.monotonic()
    lxdkvm("cluster", "sandbox", "up", "--members", "3")
    formed = time.monotonic() - start
    # a running container on m2, so stop and down must deal with one
    subprocess.run(["lxc", "launch", "lxdkvm/base", PROBE, "--target", "m2", "-c", "boot.host_shutdown_timeout=5"], check=True, capture_output=True,
                   env={**os.environ, "LXD_DIR": str(members.ROOT / "m1")})
    assert eventually(lambda: probe_processes() != [])
    assert members_seen("m2") == {"m1": "Online", "m2": "Online", "m3": "Online"}
    certificate = (members.ROOT / "m1" / "cluster.crt").read_text()
    holders = [int((members.ROOT / "run" / m / "holder.pid").read_text()) for m in ("m1", "m2", "m3")]
    # each member's daemon runs in its own network namespace, none in the machine's
    assert len({os.readlink(f"/proc/{p}/ns/net") for p in holders} | {os.readlink("/proc/self/ns/net")}) == 4

    lxdkvm("cluster", "sandbox", "stop")  # what a reboot does to the members: daemons and namespaces gone
    assert not any(members._alive(p) for p in holders)
    assert eventually(lambda: probe_processes() == [])  # the container stopped with its daemon
    assert not any(n.startswith(f"{members.BRIDGE}-") for n in os.listdir("/sys/class/net"))
    start = time.monotonic()
    lxdkvm("cluster", "sandbox", "up", "--no-images")
    status = json.loads(lxdkvm("cluster", "sandbox", "status", "--json").stdout)
    restarted = time.monotonic() - start
    assert [m["state"] for m in status["members"]] == ["ONLINE"] * 3
    # each member's view of the others follows the heartbeats (LXD's default: every 10 s), so m3 may
    # still hold m1 for offline a moment after m1 says all are online
    assert eventually(lambda: members_seen("m3") == {"m1": "Online", "m2": "Online", "m3": "Online"}, 30)
    assert (members.ROOT / "m1" / "cluster.crt").read_text() == certificate  # the same cluster, not a new one
    probe = subprocess.run(["lxc", "list", PROBE, "--format", "json"], capture_output=True, text=True, check=True,
                           env={**os.environ, "LXD_DIR": str(members.ROOT / "m3")})
    assert [(i["name"], i["location"]) for i in json.loads(probe.stdout)] == [(PROBE, "m2")]  # kept
    if not probe_processes():  # LXD starts what was running when it stopped; else start it
        subprocess.run(["lxc", "start", PROBE], capture_output=True, check=True,
                       env={**os.environ, "LXD_DIR": str(members.ROOT / "m1")})
    assert eventually(lambda: probe_processes() != [])  # running again, for `down` to remove

    start = time.monotonic()
    lxdkvm("cluster", "sandbox", "down")
    print(f"formed in {formed:.1f}s, started again in {restarted:.1f}s, removed in {time.monotonic() - start:.1f}s")
    assert traces() == [] and probe_processes() == []
