"""lxdkvm on Incus, the second daemon: set up by lxdkvm's own `setup --daemon incus` (installed from
bookworm-backports when absent, started by hand, given a pool and a bridge), then a real two-host lab:
up → status ready → verify → up again (a no-op) → down (nothing left in Incus). Incus is observed through
the `incus` client, independently of lxdkvm's code; LXD, the default daemon, must not notice.

Every other integration test runs against LXD. Nothing here skips: if Incus cannot be installed or
started, the test fails with the reason.
"""

import json
import os
import subprocess
import sys

import pytest

from .test_labs import lxd_snapshot

pytestmark = pytest.mark.integration
INCUS_DIR = "/var/lib/incus"
LAB = """\
# Two KVM hosts on Incus: a NAT network with DHCP and an isolated one with static addresses.
name: itest-incus
networks:
  - name: mgmt
    subnet: 10.236.10.0/24
    mode: nat
  - name: data
    subnet: 10.236.20.0/24
    mode: isolated
defaults:
  limits:
    cpu: 1
    memory: 1GiB
hosts:
  - name: node-[1-2]
    networks:
      - mgmt
      - network: data
        ipv4: 10.236.20.11
"""
PROJECT = "lxdkvm-itest-incus"
BESIDE = """\
# One host on LXD while the Incus lab is up: its id range must be apart from the Incus hosts'.
name: itest-beside
networks:
  - {name: mgmt, subnet: 10.219.10.0/24, mode: nat}
hosts:
  - name: lone
    networks: [mgmt]
"""


def lxdkvm(*args: str, daemon: str | None = "incus", ok: bool = True, timeout: float = 900):
    """`lxdkvm ARGS` in a subprocess, talking to DAEMON (None: whatever lxdkvm picks by itself)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LXDKVM_DAEMON", "LXD_DIR", "INCUS_DIR")}
    if daemon:
        env["LXDKVM_DAEMON"] = daemon
    proc = subprocess.run([sys.executable, "-m", "lxdkvm", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
    print(f"$ LXDKVM_DAEMON={daemon or '(unset)'} lxdkvm {' '.join(args)} → {proc.returncode}\n{proc.stdout}{proc.stderr}",
          flush=True)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def incus(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["incus", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "INCUS_DIR": INCUS_DIR})


def incus_json(*args: str):
    proc = incus(*args, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def incus_query(path: str):
    proc = incus("query", path)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def incus_snapshot() -> dict:
    """Every project, managed network, instance and profile in Incus."""
    return lxd_snapshot(incus_json)


def lxd_projects() -> list[str]:
    proc = subprocess.run(["lxc", "query", "/1.0/projects"], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "LXD_DIR"})
    assert proc.returncode == 0, proc.stderr
    return sorted(p.rsplit("/", 1)[-1] for p in json.loads(proc.stdout))


@pytest.fixture(scope="module")
def incus_ready(lxd):
    """Incus set up by lxdkvm itself (installed when absent). `lxd` first: LXD stays the default daemon."""
    if os.geteuid() != 0:
        pytest.fail("the Incus tests need root: they install, start and drive Incus")
    was_installed = os.path.exists("/usr/libexec/incus/incusd")
    setup = lxdkvm("setup", "--daemon", "incus", daemon=None, ok=False)
    if setup.returncode != 0:
        pytest.fail(f"Incus could not be set up by `lxdkvm setup --daemon incus`:\n{setup.stderr[-3000:]}")
    if not was_installed:
        assert "installing incus-base incus-client" in setup.stderr
    assert setup.stdout.startswith("Incus 6."), setup.stdout
    return setup


def test_setup_gives_incus_a_pool_and_its_own_bridge(incus_ready):
    again = lxdkvm("setup")
    assert not any(word in again.stderr for word in ("installing", "starting", "created")), again.stderr
    profile = incus_query("/1.0/profiles/default")
    eth0 = next(d for d in profile["devices"].values() if d["type"] == "nic")
    bridge = incus_query(f"/1.0/networks/{eth0['network']}")
    lxd_bridge = subprocess.run(["ip", "-4", "-o", "addr", "show", "lxdkvmbr0"], capture_output=True,
                                text=True).stdout
    assert eth0["network"] != "lxdkvmbr0"  # both daemons' bridges are interfaces of this machine
    address = bridge["config"]["ipv4.address"]
    assert bridge["config"]["ipv4.nat"] == "true" and address.split("/")[0] not in lxd_bridge
    assert any(p["driver"] == "btrfs" for p in incus_json("storage", "list"))


def test_doctor_names_the_daemon(incus_ready):
    checks = {c["name"]: c for c in json.loads(lxdkvm("doctor", "--json", ok=False).stdout)["checks"]}
    assert checks["lxd"]["status"] == "PASS"
    assert checks["lxd"]["evidence"].startswith("Incus 6.") and f"{INCUS_DIR}/unix.socket" in checks["lxd"]["evidence"]
    assert "LXDKVM_DAEMON=incus" in checks["lxd"]["evidence"]
    # without a choice, LXD (installed here) stays the daemon lxdkvm talks to
    default = {c["name"]: c for c in json.loads(lxdkvm("doctor", "--json", daemon=None, ok=False).stdout)["checks"]}
    assert default["lxd"]["evidence"].startswith("LXD "), default["lxd"]


def test_lab_on_incus_up_ready_verify_noop_down(incus_ready, tmp_path):
    path = tmp_path / "itest-incus.yaml"
    path.write_text(LAB)
    before = incus_snapshot()
    lxd_before = lxd_projects()
    try:
        first = lxdkvm("up", str(path))
        assert "2 hosts ready" in first.stdout
        for host in ("node-1", "node-2"):
            for stage in ("cloud-init finished", "libvirtd active", "kvm probe as qemu user"):
                assert f"{host}: {stage}: ok" in first.stderr
        listed = {i["name"]: i for i in incus_json("list", "--project", PROJECT)}
        assert sorted(listed) == ["node-1", "node-2"]
        for name, instance in listed.items():
            assert instance["status"] == "Running"
            assert instance["expanded_config"].get("security.privileged", "false") != "true"
            uid_map = incus("exec", "--project", PROJECT, name, "--", "cat", "/proc/self/uid_map").stdout.split()
            assert uid_map[:2] != ["0", "0"] and int(uid_map[1]) > 0, f"{name} is privileged: {uid_map}"
        assert PROJECT not in lxd_projects()  # LXD, the default daemon, got nothing
        # lxdkvm chose the hosts' ranges, and a lab on LXD meanwhile gets ranges apart from them: both
        # daemons take isolated ranges from root's one subordinate range, each blind to the other's
        incus_ranges = []
        for name, instance in listed.items():
            first = int(incus("exec", "--project", PROJECT, name, "--", "cat", "/proc/self/uid_map").stdout.split()[1])
            assert instance["expanded_config"]["security.idmap.base"] == str(first)
            incus_ranges.append(first)
        beside = tmp_path / "itest-beside.yaml"
        beside.write_text(BESIDE)
        try:
            lxdkvm("up", str(beside), daemon=None)  # on LXD
            lxd_first = int(subprocess.run(["lxc", "exec", "--project", "lxdkvm-itest-beside", "lone", "--", "cat",
                                            "/proc/self/uid_map"], capture_output=True, text=True, check=True,
                                           timeout=60).stdout.split()[1])
            assert all(abs(lxd_first - first) >= 65536 for first in incus_ranges), (lxd_first, incus_ranges)
        finally:
            lxdkvm("down", str(beside), daemon=None, ok=False)

        status = json.loads(lxdkvm("status", str(path), "--json").stdout)
        assert all(h["ready"] and h["state"] == "Running" for h in status["hosts"]), status
        assert {h["name"]: h["addresses"]["data"] for h in status["hosts"]} == {
            "node-1": ["10.236.20.11/24"], "node-2": ["10.236.20.12/24"]}

        verify = lxdkvm("verify", str(path), "--json", ok=False)
        report = json.loads(verify.stdout)
        failed = [c for c in report["checks"] if c["result"] == "FAIL"]
        assert verify.returncode == 0 and not failed, failed
        passed = {(c["scope"], c["name"]) for c in report["checks"] if c["result"] == "PASS"}
        for host in ("node-1", "node-2"):
            assert {(f"host {host}", "unprivileged"), (f"host {host}", "libvirtd active")} <= passed
        assert {("network data", "hosts reach each other"), ("network mgmt", "hosts reach each other")} <= passed

        second = lxdkvm("up", str(path))
        assert "nothing to do" in second.stdout
        again = {i["name"]: i["created_at"] for i in incus_json("list", "--project", PROJECT)}
        assert again == {name: i["created_at"] for name, i in listed.items()}
    finally:
        lxdkvm("down", str(path), ok=False)
    assert incus_snapshot() == before
    assert lxd_projects() == lxd_before
