"""examples/molecule as plain data: Molecule is told to check host keys against the known_hosts of the lab the
scenario's lab file makes, its platforms are that lab's hosts, and create/destroy name that lab. The real run
is tests/integration/test_molecule.py."""

from pathlib import Path

import yaml

from lxdkvm.labfile import read

SCENARIO = Path(__file__).resolve().parents[2] / "examples" / "molecule" / "molecule" / "default"


def load(name: str):
    return yaml.safe_load((SCENARIO / name).read_text())


def lab():
    parsed, problems, _ = read.parse((SCENARIO / "lab.yaml").read_text(), "lab.yaml")
    assert not problems
    return parsed


def test_host_keys_are_checked_against_the_labs_known_hosts():
    molecule = load("molecule.yml")
    options = molecule["driver"]["ssh_connection_options"]
    known_hosts = f"${{LXDKVM_STATE_DIR:-/var/lib/lxdkvm}}/labs/{lab().name}/known_hosts"
    assert f"-o UserKnownHostsFile={known_hosts}" in options
    assert "-o StrictHostKeyChecking=yes" in options
    assert not [o for o in options if "/dev/null" in o or "StrictHostKeyChecking=no" in o]
    # Molecule's own ansible.cfg says False, which would put StrictHostKeyChecking=no first on ssh's line
    assert molecule["ansible"]["cfg"]["defaults"]["host_key_checking"] is True


def test_platforms_are_hosts_of_the_lab_on_a_nat_network():
    parsed = lab()
    nat = {n.name for n in parsed.networks if n.mode == "nat"}
    hosts = {h.name: h for h in parsed.hosts}
    platforms = [p["name"] for p in load("molecule.yml")["platforms"]]
    assert platforms and set(platforms) <= set(hosts)
    assert all(nat & {a.network for a in hosts[p].attachments} for p in platforms)  # where Ansible reaches it


def test_create_and_destroy_bring_up_and_take_down_that_lab():
    name = lab().name
    assert name.startswith("mol-")
    create = [t for t in load("create.yml")[0]["tasks"] if "ansible.builtin.command" in t]
    destroy = [t for t in load("destroy.yml")[0]["tasks"] if "ansible.builtin.command" in t]
    assert create[0]["ansible.builtin.command"]["argv"][:2] == ["lxdkvm", "up"]
    assert load("create.yml")[0]["vars"]["lab"] == name
    assert destroy[0]["ansible.builtin.command"]["argv"] == ["lxdkvm", "down", name]
