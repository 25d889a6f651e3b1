"""The attack that worked, replayed against the real ansible-playbook (no LXD): a host reports a guest named
`{{ lookup('pipe', 'touch FILE') }}`. The lab's status leaves it out, so no inventory format carries it; and
should such a string reach the writers anyway, YAML and JSON mark it unsafe (Ansible prints it, never
runs it) and INI refuses it. A control run proves the play does template what is not marked."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lxdkvm.clients.ansible import executable
from lxdkvm.errors import LxdkvmError
from lxdkvm.lab.status import LabStatus
from lxdkvm.outputs import inventory

ACCESS = inventory.Access("lab", Path("/state/labs/my-lab/id_ed25519"), Path("/state/labs/my-lab/known_hosts"))
PLAY = """\
- hosts: all
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.debug:
        var: lxdkvm_guests
    - ansible.builtin.debug:
        msg: "{{ item.name }} is {{ item.state }} on {{ lxdkvm_lab }} at {{ lxdkvm_addresses }}"
      loop: "{{ lxdkvm_guests }}"
"""


def payload(marker: Path) -> str:
    return f"{{{{ lookup('pipe', 'touch {marker}') }}}}"


def status(marker: Path) -> LabStatus:
    hostile = payload(marker)
    return LabStatus.from_json({
        "lab": "my-lab", "project": "lxdkvm-my-lab", "exists": True,
        "networks": [{"name": "mgmt", "bridge": "my-lab-mgmt", "subnet": "10.9.1.0/24", "gateway": "10.9.1.1/24"}],
        "hosts": [{"name": "kvm-1", "state": "Running", "ready": True, "addresses": {"mgmt": ["10.9.1.140/24"]},
                   "guests": [{"name": "vm-1", "state": "running", "booted": True,
                               "addresses": {"mgmt": ["10.9.1.7/24"]}},
                              {"name": hostile, "state": "running", "booted": True},
                              {"name": "vm-2", "state": hostile, "booted": True}]}]})


def writer_level(marker: Path) -> inventory.Inventory:
    """An inventory whose variables hold the payload, as if a check had let it through."""
    hostile = payload(marker)
    return inventory.Inventory(
        {"kvm-1": {"lxdkvm_lab": hostile, "lxdkvm_addresses": {"mgmt": hostile},
                   "lxdkvm_guests": [{"name": hostile, "state": hostile, "addresses": {}}]}},
        {"lab_my_lab": ["kvm-1"]})


def source(tmp_path: Path, fmt: str, text: str) -> Path:
    if fmt != "json":
        path = tmp_path / f"inventory.{fmt}"
        path.write_text(text)
        return path
    data = tmp_path / "inventory.json"  # an inventory script that prints it
    data.write_text(text)
    path = tmp_path / "inventory.py"
    path.write_text(f"#!{sys.executable}\nimport sys\n"
                    f"print(open({str(data)!r}).read() if '--list' in sys.argv else '{{}}')\n")
    path.chmod(0o755)
    return path


def playbook(tmp_path: Path, inventory_path: Path, fmt: str) -> subprocess.CompletedProcess:
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    plugin = {"yaml": "yaml", "ini": "ini", "json": "script"}[fmt]
    env = {**os.environ, "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"), "ANSIBLE_INVENTORY_ENABLED": plugin,
           "ANSIBLE_HOME": str(tmp_path / "home"), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "1"}
    return subprocess.run([executable(), "-i", str(inventory_path), str(play)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


@pytest.mark.parametrize("fmt", ["yaml", "ini", "json"])
def test_a_checked_status_carries_no_payload_into_any_format(tmp_path, fmt):
    marker = tmp_path / "pwned"
    built = inventory.build(status(marker), {}, ACCESS)
    assert [g["name"] for g in built.hosts["kvm-1"]["lxdkvm_guests"]] == ["vm-1"]
    assert len(built.warnings) == 2 and all(w.startswith("kvm-1: a guest with ") for w in built.warnings)
    text = inventory.render(built, fmt)
    assert "lookup" not in text
    run = playbook(tmp_path, source(tmp_path, fmt, text), fmt)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "vm-1 is running on my-lab" in run.stdout
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_the_writers_mark_every_string_unsafe_so_ansible_never_templates_it(tmp_path, fmt):
    marker = tmp_path / "pwned"
    run = playbook(tmp_path, source(tmp_path, fmt, inventory.render(writer_level(marker), fmt)), fmt)
    assert run.returncode == 0, run.stdout + run.stderr
    assert not marker.exists(), "Ansible ran the payload"
    assert f"'touch {marker}') }}}} is {{{{ lookup(" in run.stdout  # shown as text


def test_the_ini_writer_refuses_a_value_ansible_would_template(tmp_path):
    with pytest.raises(LxdkvmError, match="variable lxdkvm_lab holds text Ansible would template"):
        inventory.render(writer_level(tmp_path / "pwned"), "ini")
    line_breaker = inventory.Inventory({"kvm-1": {"lxdkvm_lab": "x\nkvm-2 ansible_connection=local"}}, {})
    with pytest.raises(LxdkvmError, match="breaks an INI line"):
        inventory.render(line_breaker, "ini")


def test_control_unmarked_yaml_does_run_the_payload(tmp_path):
    """Without the marks the same play runs the payload: the tests above would see it."""
    marker = tmp_path / "pwned"
    plain = {"all": {"hosts": writer_level(marker).hosts}}
    run = playbook(tmp_path, source(tmp_path, "yaml", yaml.safe_dump(plain)), "yaml")
    assert marker.exists(), run.stdout + run.stderr


def test_the_inventory_plugin_sets_every_value_unsafe(tmp_path):
    """The plugin (playbooks/inventory_plugins) with `lxdkvm.inventory.live` replaced by the writer-level
    inventory: ansible-inventory lists every string as unsafe and says the warnings."""
    marker = tmp_path / "pwned"
    hostile = writer_level(marker)
    hostile.warnings = ["kvm-1: a guest with name '?? lookup' (40 characters) (left out)"]
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(
        "import lxdkvm.inventory as i\nfrom lxdkvm.outputs.inventory import Inventory\n"
        f"i.live = lambda lab: Inventory({hostile.hosts!r}, {hostile.groups!r}, {hostile.warnings!r})\n")
    (tmp_path / "my-lab.lxdkvm.yml").write_text("plugin: lxdkvm\nlab: my-lab\n")
    plugins = Path(__file__).parent.parent.parent / "playbooks" / "inventory_plugins"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "ANSIBLE_INVENTORY_PLUGINS": str(plugins),
           "ANSIBLE_INVENTORY_ENABLED": "lxdkvm", "ANSIBLE_CONFIG": str(tmp_path / "none.cfg"),
           "ANSIBLE_HOME": str(tmp_path / "home"), "ANSIBLE_NOCOLOR": "1"}
    listed = subprocess.run([executable("ansible-inventory"), "-i", str(tmp_path / "my-lab.lxdkvm.yml"), "--list"],
                            capture_output=True, text=True, env=env, timeout=120, check=True)
    hostvars = json.loads(listed.stdout)["_meta"]["hostvars"]["kvm-1"]
    assert hostvars["lxdkvm_guests"][0]["name"] == {"__ansible_unsafe": payload(marker)}
    assert hostvars["lxdkvm_lab"] == {"__ansible_unsafe": payload(marker)}
    assert "a guest with name '?? lookup' (40 characters) (left out)" in listed.stderr
    assert not marker.exists()


def test_a_playbook_file_is_found_from_the_current_directory_not_ansibles(tmp_path, monkeypatch):
    from lxdkvm.clients.ansible import playbook_path, playbooks_dir

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "site.yml").write_text("---\n")
    monkeypatch.chdir(tmp_path)
    # ansible-playbook runs in playbooks/: a relative path must reach it whole
    assert playbook_path("mine/site.yml") == tmp_path / "mine" / "site.yml"
    assert playbook_path("verify.yml") == playbooks_dir() / "verify.yml"
    with pytest.raises(LxdkvmError, match="no playbook nothere.yml"):
        playbook_path("nothere.yml")
