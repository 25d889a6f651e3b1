"""The Ansible inventory on plain data: groups, host vars, the three formats Ansible reads back the same;
the lab's SSH key pair and known_hosts; `groups:` in lab files; the lab user in the profile's user-data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lxdkvm.errors import LxdkvmError
from lxdkvm.hosts import profile as profile_mod
from lxdkvm.lab import sshkeys
from lxdkvm.lab.status import LabStatus
from lxdkvm.labfile import checks, read
from lxdkvm.machine import hostcaps
from lxdkvm.outputs import inventory

ACCESS = inventory.Access("lab", Path("/state/labs/my-lab/id_ed25519"), Path("/state/labs/my-lab/known_hosts"))
STATUS = {  # as `lxdkvm status --json` prints it
    "lab": "my-lab", "project": "lxdkvm-my-lab", "exists": True,
    "networks": [{"name": "data", "bridge": "my-lab-data", "subnet": "10.9.2.0/24", "gateway": "none"},
                 {"name": "mgmt", "bridge": "my-lab-mgmt", "subnet": "10.9.1.0/24", "gateway": "10.9.1.1/24"},
                 {"name": "back-end", "bridge": "my-lab-back-end", "subnet": "10.9.3.0/24", "gateway": "none"}],
    "hosts": [
        {"name": "compute-1", "state": "Running", "ready": True,
         "addresses": {"data": ["10.9.2.11/24"], "mgmt": ["10.9.1.140/24"]}},
        {"name": "compute-2", "state": "Running", "ready": True,
         "addresses": {"data": ["10.9.2.12/24"], "mgmt": ["10.9.1.141/24"]}},
        {"name": "store", "state": "Running", "ready": True, "addresses": {"back-end": ["10.9.3.5/24"]}},
    ],
}
GROUPS = {"compute-1": ["compute", "kvm"], "compute-2": ["compute", "kvm"]}


def built() -> inventory.Inventory:
    return inventory.build(LabStatus.from_json(STATUS), GROUPS, ACCESS)


def plain(value):
    """Inventory JSON without Ansible's unsafe marks (every string variable has one)."""
    if isinstance(value, dict):
        return value["__ansible_unsafe"] if set(value) == {"__ansible_unsafe"} else \
            {k: plain(v) for k, v in value.items()}
    return [plain(v) for v in value] if isinstance(value, list) else value


class AnsibleYaml(yaml.SafeLoader):
    """YAML with Ansible's `!unsafe`, read as {"__ansible_unsafe": ...} (what ansible-inventory prints)."""


AnsibleYaml.add_constructor("!unsafe", lambda loader, node: {"__ansible_unsafe": loader.construct_scalar(node)})


def test_groups_per_lab_network_range_and_lab_file():
    assert built().groups == {
        "compute": ["compute-1", "compute-2"], "kvm": ["compute-1", "compute-2"],
        "lab_my_lab": ["compute-1", "compute-2", "store"],
        "net_back_end": ["store"], "net_data": ["compute-1", "compute-2"], "net_mgmt": ["compute-1", "compute-2"],
    }


def test_host_vars_reach_the_management_address_with_host_keys_checked():
    hostvars = built().hosts["compute-1"]
    assert hostvars == {
        "ansible_host": "10.9.1.140",  # on the first NAT network, not the isolated one listed first
        "ansible_user": "lab",
        "ansible_ssh_private_key_file": "/state/labs/my-lab/id_ed25519",
        "ansible_ssh_common_args": "-o UserKnownHostsFile=/state/labs/my-lab/known_hosts "
                                   "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
        "ansible_python_interpreter": "/usr/bin/python3",
        "lxdkvm_lab": "my-lab", "lxdkvm_project": "lxdkvm-my-lab",
        "lxdkvm_addresses": {"data": "10.9.2.11", "mgmt": "10.9.1.140"},
        "lxdkvm_guests": [],
        "lxdkvm_libvirt_domain_type": "qemu",
    }


def test_a_host_on_no_nat_network_has_no_ansible_host():
    assert "ansible_host" not in built().hosts["store"]
    assert LabStatus.from_json(STATUS).hosts[2].management_address({"mgmt"}) is None


def test_guests_fill_the_hook():
    guests = {"compute-1": [{"name": "vm-1", "xml": "<domain/>"}]}
    inv = inventory.build(LabStatus.from_json(STATUS), GROUPS, ACCESS, guests)
    assert inv.hosts["compute-1"]["lxdkvm_guests"] == guests["compute-1"]
    assert inv.hosts["compute-2"]["lxdkvm_guests"] == []


def test_the_libvirt_domain_type_is_kvm_only_where_a_guest_kernel_boots_under_kvm():
    from lxdkvm.guests import accel

    assert accel.domain_type(accel.Verdict(accel.BOOTS)) == "kvm"
    for kvm in (accel.NO_HARDWARE, accel.HANGS, accel.UNKNOWN):  # unknown: no probe yet, TCG is safe
        assert accel.domain_type(accel.Verdict(kvm)) == "qemu"
    inv = inventory.build(LabStatus.from_json(STATUS), GROUPS, ACCESS, domain_type="kvm")
    assert {hostvars["lxdkvm_libvirt_domain_type"] for hostvars in inv.hosts.values()} == {"kvm"}


def test_json_is_what_ansible_inventory_list_prints():
    out = json.loads(inventory.render(built(), "json"))
    assert out["_meta"]["hostvars"]["store"]["lxdkvm_addresses"] == {"back-end": {"__ansible_unsafe": "10.9.3.5"}}
    assert plain(out["_meta"]["hostvars"]) == built().hosts
    assert out["net_mgmt"] == {"hosts": ["compute-1", "compute-2"]}
    assert set(out["all"]["children"]) == {"ungrouped", *built().groups}
    with pytest.raises(LxdkvmError, match="--format"):
        inventory.render(built(), "toml")


@pytest.mark.parametrize("fmt", ["yaml", "ini"])
def test_yaml_and_ini_read_back_in_ansible_as_the_json(tmp_path, fmt):
    path = tmp_path / f"lab.{fmt}"
    path.write_text(inventory.render(built(), fmt))
    ansible_inventory = Path(sys.executable).parent / "ansible-inventory"
    proc = subprocess.run([str(ansible_inventory), "-i", str(path), "--list"], capture_output=True, text=True,
                          check=True, env={**os.environ, "ANSIBLE_INVENTORY_ENABLED": fmt})
    parsed = json.loads(proc.stdout)
    expected = json.loads(inventory.render(built(), "json"))
    if fmt == "yaml":  # every string is !unsafe: Ansible reads it back as untrusted, as from the JSON
        assert parsed["_meta"]["hostvars"] == expected["_meta"]["hostvars"]
    assert plain(parsed["_meta"]["hostvars"]) == plain(expected["_meta"]["hostvars"])
    for group, hosts in built().groups.items():
        assert sorted(parsed[group]["hosts"]) == hosts


def test_the_yaml_keeps_variables_once_under_all_hosts():
    data = yaml.load(inventory.render(built(), "yaml"), Loader=AnsibleYaml)
    assert set(data["all"]["hosts"]) == {"compute-1", "compute-2", "store"}
    assert data["all"]["children"]["compute"] == {"hosts": {"compute-1": None, "compute-2": None}}


# ---------------------------------------------------------------------------------------- keys
@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("LXDKVM_STATE_DIR", str(tmp_path))
    return tmp_path / "labs"


def test_a_labs_key_pair_is_private_and_made_once(state):
    public = sshkeys.ensure_keypair("my-lab")
    assert public.startswith("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5") and public.endswith(" lxdkvm-lab-my-lab")
    assert sshkeys.ensure_keypair("my-lab") == public
    assert (state / "my-lab").stat().st_mode & 0o777 == 0o700
    assert sshkeys.private_key_path("my-lab").stat().st_mode & 0o777 == 0o600
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(sshkeys.private_key_path("my-lab"))],
                             capture_output=True, text=True, check=True).stdout.split()[:2]
    assert " ".join(derived) == public.rsplit(" ", 1)[0]
    assert sshkeys.public_key("other-lab") == ""


def test_known_hosts_come_from_the_hosts_keys_with_name_and_address(state):
    key = sshkeys.ensure_keypair("host-keys").rsplit(" ", 1)[0]  # any valid ed25519 public key will do
    path = sshkeys.refresh_known_hosts("my-lab", {"kvm-1": ["10.9.1.140"], "kvm-2": []},
                                       lambda host: f"{key} root@{host}\n")
    assert path.read_text() == f"kvm-1,10.9.1.140 {key}\nkvm-2 {key}\n"
    with pytest.raises(LxdkvmError, match="kvm-1: cannot read its SSH host key"):
        sshkeys.refresh_known_hosts("my-lab", {"kvm-1": []}, lambda host: "ssh-rsa AAAAB3Nza root@x")
    assert path.read_text() == f"kvm-1,10.9.1.140 {key}\nkvm-2 {key}\n"  # unchanged by a failed refresh


@pytest.mark.parametrize("text", ["", "ssh-ed25519", "ssh-ed25519 not*base64", "ssh-ed25519 AAAAB3NzaC1yc2E=",
                                  "kvm-1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA=="])
def test_anything_but_an_ed25519_public_key_is_refused(text):
    with pytest.raises(LxdkvmError):
        sshkeys.parse_host_key(text)


def test_down_removes_the_state_directory(state):
    from lxdkvm.lab import state as labstate

    sshkeys.ensure_keypair("my-lab")
    assert labstate.remove("my-lab") and not (state / "my-lab").exists()
    assert not labstate.remove("my-lab")
    with pytest.raises(LxdkvmError):
        labstate.path("../etc")


# ---------------------------------------------------------------------------------------- lab files
LAB = """\
name: grouped
networks:
  - name: mgmt
    subnet: 10.9.1.0/24
defaults:
  groups: [kvm]
hosts:
  - name: compute-[1-2]
    networks: [mgmt]
    groups: [nova]
  - name: db-01
    networks: [mgmt]
"""


def parse(text: str):
    lab, problems, _ = read.parse(text, "lab.yaml")
    assert problems == []
    return lab


def test_hosts_get_their_ranges_group_then_defaults_then_their_own():
    lab = parse(LAB)
    assert {h.name: h.groups for h in lab.hosts} == {"compute-1": ("compute", "kvm", "nova"),
                                                     "compute-2": ("compute", "kvm", "nova"), "db-01": ("kvm",)}
    assert checks.check(lab) == []
    assert read.range_group("rack-[01-10]-node") == ["rack_node"]
    assert read.range_group("[1-3]") == [] and read.range_group("kvm") == []


def test_bad_group_names_are_problems_with_their_line():
    lab = parse(LAB.replace("groups: [nova]", "groups: [Nova, net_x, all, db-01, nova]"))
    problems = [p.render("lab.yaml") for p in checks.check(lab)]
    assert problems == [
        ("lab.yaml:10: hosts[0].groups: 'Nova' is not a valid group name\n"
        "    hint: use up to 63 lower-case letters, digits and underscores, not starting with a digit"),
        ("lab.yaml:10: hosts[0].groups: group 'net_x' is the inventory's own\n"
        "    hint: lab_<lab> and net_<network> are made for you; choose another name"),
        ("lab.yaml:10: hosts[0].groups: group 'all' is the inventory's own\n"
        "    hint: lab_<lab> and net_<network> are made for you; choose another name"),
        ("lab.yaml:10: hosts[0].groups: 'db-01' is not a valid group name\n"
        "    hint: use up to 63 lower-case letters, digits and underscores, not starting with a digit"),
    ]
    clash = parse(LAB.replace("db-01", "compute"))
    assert [p.message for p in checks.check(clash)] == ["group 'compute' is also the name of a host"]


def test_groups_go_on_the_instance_for_the_live_inventory():
    from lxdkvm.lab import objects

    lab = parse(LAB)
    spec = objects.instance(lab, lab.hosts[0])
    assert spec.config[objects.GROUPS] == "compute,kvm,nova"


# ---------------------------------------------------------------------------------------- profile
def test_the_lab_user_and_key_are_in_the_user_data_only_with_a_key():
    spec = profile_mod.for_host(hostcaps.HostFacts.from_dict(json.loads(
        (Path(__file__).parent.parent / "fixtures" / "hosts" / "pvm-sandbox.json").read_text())))
    assert "users:" not in profile_mod.user_data(spec)  # the committed and portable profiles have none
    spec.ssh_user, spec.ssh_key = "lab", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA lxdkvm-lab-x"
    data = yaml.safe_load(profile_mod.user_data(spec))
    assert data["users"] == ["default", {
        "name": "lab", "gecos": "lxdkvm lab access", "shell": "/bin/bash", "lock_passwd": True,
        "groups": ["libvirt"],  # libvirt without root: virsh over ssh, virt-manager (docs/tools.md)
        "sudo": "ALL=(ALL) NOPASSWD:ALL", "ssh_authorized_keys": [spec.ssh_key]}]
