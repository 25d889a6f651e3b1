"""Molecule against a real lab (examples/molecule): `molecule test` with the default (delegated) driver, whose
create and destroy playbooks run `lxdkvm up` and `lxdkvm down`, converges the libvirt_net role in the lab's
KVM host (a libvirt network and a tiny guest that gets a lease on it), finds the second run changes nothing,
verifies, and leaves no lab behind; and a host key other than the one lxdkvm pinned is refused, although
Molecule's own ansible.cfg would have let it through.

Molecule runs as a subprocess in examples/molecule with this Python environment's programs first on PATH;
the lab's state, Molecule's ephemeral directory and ssh's control sockets are temporary directories."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .test_labs import lxc_json

pytestmark = pytest.mark.integration
REPO = Path(__file__).parent.parent.parent
EXAMPLE = REPO / "examples" / "molecule"
LAB, PROJECT, HOST = "mol-molecule", "lxdkvm-mol-molecule", "kvm-1"
BIN = Path(sys.executable).parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
STEP = re.compile(r"\[\S+ (?:➜|>) (\w+)\] Executed: (\w+)")  # Molecule's log: one line per action it ran
TIMINGS: dict[str, float] = {}


def run(command: list[str], env: dict[str, str], timeout: float = 900, what: str = "") -> subprocess.CompletedProcess:
    start = time.monotonic()
    proc = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout, cwd=EXAMPLE,
                          env=env)
    took = round(time.monotonic() - start, 1)
    if what:
        TIMINGS[what] = took
    proc.stdout = ANSI.sub("", proc.stdout + proc.stderr)
    print(f"$ {' '.join(command)} → {proc.returncode} in {took}s\n{proc.stdout}", flush=True)
    return proc


def molecule(env: dict[str, str], action: str, what: str = "") -> subprocess.CompletedProcess:
    return run([str(BIN / "molecule"), action], env, what=what or f"molecule {action}")


def projects() -> list[str]:
    return [p["name"] for p in lxc_json("project", "list")]


def steps(output: str) -> list[tuple[str, str]]:
    """(action, outcome) of each action Molecule ran, in order: ("create", "Successful"), ..."""
    return STEP.findall(output)


@pytest.fixture(scope="module")
def env(lxd, baked_image, tmp_path_factory):
    """Molecule's environment; afterwards the lab is down (also when Molecule stopped half-way), ssh's
    control masters are closed and LXD has no project of the lab."""
    state = tmp_path_factory.mktemp("state")
    sockets = tmp_path_factory.mktemp("cp")
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                   "LXDKVM_STATE_DIR": str(state), "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path_factory.mktemp("molecule")),
                   "ANSIBLE_SSH_CONTROL_PATH_DIR": str(sockets), "NO_COLOR": "1", "ANSIBLE_NOCOLOR": "1"}
    try:
        yield {"env": environment, "known_hosts": state / "labs" / LAB / "known_hosts"}
    finally:
        run([str(BIN / "lxdkvm"), "down", LAB], environment, timeout=600)
        for socket in sockets.iterdir():
            subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={socket}", "lab"], check=False,
                           capture_output=True, timeout=30)
        print(f"molecule timings: {TIMINGS}", flush=True)
    assert PROJECT not in projects()


def _forged(known_hosts: str, tmp_path: Path) -> str:
    """KNOWN_HOSTS with every host's key replaced by a new one (what a man in the middle would show)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    return "".join(f"{line.split()[0]} {other}\n" for line in known_hosts.splitlines() if line.strip())


def test_a_host_key_other_than_the_pinned_one_is_refused(env, tmp_path):
    created = molecule(env["env"], "create")
    assert created.returncode == 0 and ("create", "Successful") in steps(created.stdout), created.stdout[-3000:]
    known_hosts = env["known_hosts"]
    pinned = known_hosts.read_text()
    assert pinned.startswith(f"{HOST},10.237.10.")
    known_hosts.write_text(_forged(pinned, tmp_path))
    try:
        refused = molecule(env["env"], "converge", what="molecule converge (forged host key)")
        assert refused.returncode != 0
        assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in refused.stdout
        assert "Host key verification failed" in refused.stdout
        assert ("converge", "Failed") in steps(refused.stdout)
        # Why molecule.yml sets host_key_checking: with Molecule's default (False) Ansible puts
        # `-o StrictHostKeyChecking=no` before the scenario's options, and the forged key gets through.
        ephemeral = Path(env["env"]["MOLECULE_EPHEMERAL_DIRECTORY"])
        lax = run([str(BIN / "ansible"), "-i", str(ephemeral / "inventory"), HOST, "-m", "ansible.builtin.ping"],
                  {**env["env"], "ANSIBLE_CONFIG": str(ephemeral / "ansible.cfg"), "ANSIBLE_HOST_KEY_CHECKING": "False"})
        assert lax.returncode == 0 and '"ping": "pong"' in lax.stdout
    finally:
        known_hosts.write_text(pinned)
    destroyed = molecule(env["env"], "destroy")
    assert destroyed.returncode == 0 and ("destroy", "Successful") in steps(destroyed.stdout)
    assert PROJECT not in projects()
    assert not known_hosts.parent.exists()  # `lxdkvm down` removed the lab's keys and known_hosts


def test_molecule_test_creates_converges_verifies_and_destroys_the_lab(env):
    done = molecule(env["env"], "test")
    assert done.returncode == 0, done.stdout[-5000:]
    ran = [action for action, outcome in steps(done.stdout) if outcome == "Successful"]
    remaining = iter(ran)
    assert all(action in remaining for action in ["create", "converge", "idempotence", "verify", "destroy"]), ran
    assert not [step for step in steps(done.stdout) if step[1] == "Failed"]
    # converge booted the guest and waited for its lease; verify (which passed) checked it from both sides
    assert "Wait for the guest's DHCP lease from the network" in done.stdout
    assert "Ping the guest from the host, across the network's bridge" in done.stdout
    assert PROJECT not in projects()
    assert not env["known_hosts"].parent.exists()


def test_the_example_passes_ansible_lint_production_profile():
    proc = run([str(BIN / "ansible-lint"), "--nocolor", "--profile", "production"], dict(os.environ), timeout=300,
               what="ansible-lint")
    assert proc.returncode == 0, proc.stdout
    assert "Passed: 0 failure(s), 0 warning(s)" in proc.stdout
