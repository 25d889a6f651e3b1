"""A lab on a real 3-member LXD cluster (the sandbox): hosts on every member, `verify` (the reachability
matrix and isolation between hosts on different members, guests across members), a second `up` that does
nothing, a guest migrated live across members keeping its boot and address, a member's daemon killed during
`up` then a rerun that converges, and `down` leaving nothing on any member. Then the same lab file, unchanged,
on the machine's single LXD. LXD is observed through `lxc` and `ip`, not lxdkvm's own code."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lxdkvm.cluster import members, sandbox

pytestmark = pytest.mark.integration
LAB = Path(__file__).parent.parent / "labs" / "valid" / "cluster.yaml"
PROJECT = "lxdkvm-itcl"
MEMBERS = ("m1", "m2", "m3")


def env(member: str = "m1") -> dict[str, str]:
    return {**os.environ, "LXD_DIR": str(members.ROOT / member)}


def lxdkvm(*args: str, ok: bool = True, member: str | None = "m1", timeout: float = 900) -> subprocess.CompletedProcess:
    environment = env(member) if member else {k: v for k, v in os.environ.items() if k != "LXD_DIR"}
    proc = subprocess.run([sys.executable, "-m", "lxdkvm", *args], capture_output=True, text=True,
                          timeout=timeout, env=environment, check=False)
    print(f"$ lxdkvm {' '.join(args)} → {proc.returncode}\n{proc.stdout}{proc.stderr[-3000:]}", flush=True)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def lxc_json(*args: str, member: str = "m1"):
    return json.loads(subprocess.run(["lxc", *args, "--format", "json"], check=True, capture_output=True,
                                     text=True, env=env(member)).stdout)


def locations() -> dict[str, str]:
    return {i["name"]: i["location"] for i in lxc_json("list", "--project", PROJECT)}


def lab_links(member: str) -> list[str]:
    """Network devices of the lab (its bridges and their tunnels) inside a member's network namespace."""
    holder = (members.ROOT / "run" / member / "holder.pid").read_text().strip()
    links = subprocess.run(["nsenter", "-n", "-t", holder, "ip", "-br", "link"], capture_output=True, text=True,
                           check=True).stdout
    return [line.split()[0] for line in links.splitlines() if line.startswith("itcl-")]


def outbound_sources() -> dict[str, str]:
    """host → the source address its TCP connection to this machine (the sandbox bridge) arrives from."""
    import socket

    server = socket.socket()
    server.bind((str(members.GATEWAY), 0))
    server.listen(8)
    server.settimeout(10)
    port, seen = server.getsockname()[1], {}
    try:
        for host in ("node-1", "node-2", "node-3"):
            subprocess.Popen(["lxc", "exec", "--project", PROJECT, host, "--", "bash", "-c",
                              f"echo {host} > /dev/tcp/{members.GATEWAY}/{port}"], env=env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            conn, (peer, _port) = server.accept()
            with conn:
                seen[conn.recv(64).decode().strip()] = peer
    finally:
        server.close()
    return seen


def gateway_rtts() -> dict[str, str]:
    out = {}
    for host in ("node-1", "node-2", "node-3"):
        proc = subprocess.run(["lxc", "exec", "--project", PROJECT, host, "--", "ping", "-c5", "-i0.2", "-q",
                               "10.241.10.1"], env=env(), capture_output=True, text=True, check=False)
        out[host] = proc.stdout.strip().splitlines()[-1].split("=")[-1].strip() if proc.returncode == 0 else "FAILED"
    return out


def timed(label: str, took: dict, *args: str, **kwargs) -> subprocess.CompletedProcess:
    start = time.monotonic()
    proc = lxdkvm(*args, **kwargs)
    took[label] = round(time.monotonic() - start, 1)
    return proc


@pytest.fixture(scope="module")
def cluster(lxd, baked_image):  # the machine's LXD has the baked image: the sandbox copies it
    if os.geteuid() != 0:
        pytest.fail("the sandbox cluster needs root")
    sandbox.down()
    sandbox.up(3, lambda m: print(f"[sandbox] {m}", flush=True))
    yield
    subprocess.run([sys.executable, "-m", "lxdkvm", "down", "itcl"], env=env(), capture_output=True, timeout=300, check=False)
    sandbox.down()


def test_a_lab_across_three_members(cluster):
    took: dict[str, float] = {}
    try:
        timed("up", took, "up", str(LAB))
        assert locations() == {"node-1": "m1", "node-2": "m2", "node-3": "m3"}
        status = json.loads(lxdkvm("status", "itcl", "--json").stdout)
        assert {h["name"]: (h["member"], h["ready"]) for h in status["hosts"]} == \
            {"node-1": ("m1", True), "node-2": ("m2", True), "node-3": ("m3", True)}
        # every lab network is on every member, stretched by its own tunnel
        for member in MEMBERS:
            assert sorted(lab_links(member)) == ["itcl-back", "itcl-back-lk", "itcl-data", "itcl-data-lk",
                                                 "itcl-mgmt", "itcl-mgmt-lk"]
        ids = {n["name"]: n["config"].get("tunnel.lk.id") for n in lxc_json("network", "list")
               if n["name"].startswith("itcl-") and n["managed"]}
        assert len(set(ids.values())) == 3 and None not in ids.values()

        checks = json.loads(timed("verify", took, "verify", "itcl", "--json").stdout)
        failed = [c for c in checks["checks"] if c["result"] == "FAIL"]
        assert failed == [] and checks["summary"]["PASS"] > 0
        names = {(c["scope"], c["name"]) for c in checks["checks"]}
        assert ("network data", "hosts reach each other") in names  # node-1 (m1) ↔ node-2 (m2) ↔ node-3 (m3)
        assert ("network back", "isolated from hosts not on it") in names  # node-2 does not reach back
        assert any(s == "guest vm-a" and c.startswith("reaches vm-b") for s, c in names)  # m1 guest ↔ m2 guest
        # outbound through each member's own NAT (the anycast gateway): a connection from node-N to this
        # machine arrives from member mN's address, so it never crossed the tunnel to another member
        assert outbound_sources() == {"node-1": "100.64.40.11", "node-2": "100.64.40.12", "node-3": "100.64.40.13"}
        print(f"gateway round trip (ms) per host: {gateway_rtts()}")

        again = timed("up again", took, "up", str(LAB))
        assert "nothing to do" in again.stdout
        plan = lxdkvm("plan", str(LAB))
        assert "create" not in plan.stdout and "recreate" not in plan.stdout and "delete" not in plan.stdout

        moved = json.loads(timed("migrate", took, "migrate", "itcl", "vm-a", "--to", "node-3", "--json").stdout)
        assert moved["from"] == "node-1" and moved["to"] == "node-3"  # m1 → m3
        assert moved["same_boot"] and moved["boot_id_before"] == moved["boot_id_after"]
        assert moved["address"] == "10.241.20.51" and moved["address_answers"]
        print(f"migrated across members: {moved['seconds']}s, downtime {moved['downtime_ms']} ms, "
              f"{moved['pings_lost']}/{moved['pings_sent']} pings lost")
    finally:
        print(f"timings: {took}")


def test_a_member_killed_during_up_then_a_rerun_converges(cluster):
    lxdkvm("down", "itcl")
    proc = subprocess.Popen([sys.executable, "-m", "lxdkvm", "up", str(LAB)], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:  # m3 has made node-3 and is asked to start it: kill m3's daemon now
        seen.append(line)
        if "node-3: starting" in line:
            os.kill(int((members.ROOT / "run" / "m3" / "lxd.pid").read_text()), signal.SIGKILL)
            break
    assert any("node-3: starting" in line for line in seen), "".join(seen)
    try:
        rest, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    output = "".join(seen) + rest
    print(output[-3000:])
    assert proc.returncode != 0  # m3's host cannot come up without its daemon: `up` says so, and what to do
    assert "node-3" in output and "a member of the LXD cluster does not answer" in output
    sandbox.up(3)  # the member comes back (its daemon restarted on the same directory)
    lxdkvm("up", str(LAB))
    assert locations() == {"node-1": "m1", "node-2": "m2", "node-3": "m3"}
    status = json.loads(lxdkvm("status", "itcl", "--json").stdout)
    assert all(h["ready"] and h["state"] == "Running" for h in status["hosts"])
    plan = lxdkvm("plan", str(LAB))
    assert "create" not in plan.stdout and "recreate" not in plan.stdout


def test_down_leaves_nothing_on_any_member(cluster):
    lxdkvm("down", "itcl")
    for member in MEMBERS:
        assert [p["name"] for p in lxc_json("project", "list", member=member)] == ["default"]
        assert not [n for n in lxc_json("network", "list", member=member) if n["name"].startswith("itcl")]
        assert lxc_json("list", "--all-projects", member=member) == []
        assert lab_links(member) == []


def test_the_same_lab_file_on_a_single_daemon(lxd, cluster):
    try:
        lxdkvm("up", str(LAB), member=None)
        status = json.loads(lxdkvm("status", "itcl", "--json", member=None).stdout)
        assert all(h["ready"] for h in status["hosts"]) and not any("member" in h for h in status["hosts"])
        networks = {n["name"]: n["config"] for n in json.loads(subprocess.run(
            ["lxc", "network", "list", "--format", "json"], capture_output=True, text=True, check=True,
            env={k: v for k, v in os.environ.items() if k != "LXD_DIR"}).stdout) if n["name"].startswith("itcl-")}
        assert networks and not any(k.startswith("tunnel.") for c in networks.values() for k in c)
        assert networks["itcl-mgmt"]["ipv4.dhcp"] == "true"  # DHCP as always on one daemon
    finally:
        lxdkvm("down", "itcl", member=None)
