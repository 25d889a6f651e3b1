"""The README's first command on a machine where LXD has never been installed.

A sandbox (tests/fresh-machine/sandbox.sh) is a fresh Debian root filesystem — lxdkvm's base image: no
LXD, no pip, no subordinate ids for root — with its own mount, network and PID namespaces, real root,
this machine's kernel and devices, and a NIC on this machine's LXD bridge (so apt and PyPI answer).
The base image's tarballs are handed in from this machine's cache, so no second debootstrap is needed;
everything else (python3-venv, pip packages, LXD, its initialisation, the bake, the lab) happens inside,
exactly as on a newcomer's machine. This machine's LXD must not notice: its state is compared.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lxdkvm.images import base

from .test_labs import lxd_snapshot

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SANDBOX = REPO / "tests" / "fresh-machine" / "sandbox.sh"


def readme_first_command() -> str:
    """The first command of the README's "Two commands" block, without its comment."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Two commands", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return block.splitlines()[0].split("#", 1)[0].strip()


def sandbox(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", str(SANDBOX), *args], capture_output=True, text=True, timeout=timeout)
    return proc


def inside(where: Path, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return sandbox("run", str(where), command, timeout=timeout)


def management_bridge() -> str:
    profile = json.loads(subprocess.run(["lxc", "query", "/1.0/profiles/default"], check=True,
                                        capture_output=True, text=True).stdout)
    eth0 = next(d for d in profile["devices"].values() if d["type"] == "nic")
    return eth0.get("network") or eth0["parent"]


def tracked_files() -> bytes:
    """The repository as a newcomer's clone has it: tracked files, with their content in this tree."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    return subprocess.run(["tar", "--null", "-T", "-", "-cf", "-"], cwd=REPO, input=names, check=True,
                          capture_output=True).stdout


@pytest.fixture
def fresh(lxd, base_image, tmp_path_factory):
    where = tmp_path_factory.mktemp("fresh-machine")
    cached = base.cache_root() / "images" / base_image.key
    assert (cached / "complete").exists(), "the base image's tarballs are not cached"
    up = sandbox("up", str(where), str(cached / "rootfs.tar.gz"), management_bridge(), timeout=300)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        root = where / "root"
        (root / "root" / "lxdkvm").mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-xf", "-", "-C", str(root / "root" / "lxdkvm")], input=tracked_files(),
                       check=True)
        handed = root / "root" / ".cache" / "lxdkvm" / "images" / base_image.key
        shutil.copytree(cached, handed)
        yield where
    finally:
        down = sandbox("down", str(where))
        assert down.returncode == 0, down.stdout + down.stderr


def test_readme_first_command_on_a_machine_without_lxd(lxd, fresh):
    command = readme_first_command()
    assert "invoke lab-up" in command, command
    before = lxd_snapshot()

    # Fresh, as a newcomer's machine is: no LXD, no pip for the system's python3, no ids for root.
    probe = inside(fresh, "command -v lxd lxc; python3 -m pip --version; grep -c '^root:' /etc/subuid")
    assert "/lxd" not in probe.stdout and "No module named pip" in probe.stderr, probe.stdout + probe.stderr
    assert probe.stdout.strip().splitlines()[-1] == "0", probe.stdout

    run = inside(fresh, command, timeout=1500)
    print(run.stdout[-6000:], run.stderr[-3000:], sep="\n", flush=True)
    assert run.returncode == 0, run.stderr[-3000:]
    output = run.stdout + run.stderr
    assert "installing lxd" in output  # LXD really was installed by the command
    # the handed-in tarballs were imported, not built again
    assert "importing into LXD as lxdkvm/base" in output and "debootstrap bookworm" not in output
    assert re.search(r"lab default is up: 2 hosts ready", output), output[-3000:]

    # What the command left inside is a working lab, seen by the sandbox's own LXD.
    status = inside(fresh, ". .venv/bin/activate && lxdkvm status default --json")
    assert status.returncode == 0, status.stderr
    hosts = {h["name"]: h for h in json.loads(status.stdout)["hosts"]}
    assert sorted(hosts) == ["kvm-1", "kvm-2"]
    assert all(h["state"] == "Running" and h["ready"] for h in hosts.values()), hosts
    assert hosts["kvm-1"]["addresses"]["data"] == ["10.200.20.11/24"]
    assert hosts["kvm-2"]["addresses"]["data"] == ["10.200.20.12/24"]
    ids = inside(fresh, "grep '^root:' /etc/subuid")
    assert ids.returncode == 0 and ids.stdout.strip(), "LXD's package gave root no subordinate ids"
    uid_map = inside(fresh, "lxc exec --project lxdkvm-default kvm-1 -- cat /proc/self/uid_map")
    inner, outer, _count = uid_map.stdout.split()[:3]
    assert inner == "0" and outer != "0", "the lab host is privileged: " + uid_map.stdout

    down = inside(fresh, ". .venv/bin/activate && lxdkvm down default", timeout=300)
    assert down.returncode == 0, down.stderr
    left = inside(fresh, "lxc list --all-projects --format csv -c n; lxc project list --format csv")
    assert left.returncode == 0 and "kvm-" not in left.stdout and "lxdkvm-default" not in left.stdout, left.stdout

    # This machine's LXD saw none of it.
    assert lxd_snapshot() == before
