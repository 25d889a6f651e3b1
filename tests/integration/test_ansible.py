"""Ansible against a real lab (tests/labs/valid/ansible-two.yaml: 2 hosts, a NAT and an isolated network):
ping with host keys checked, a host whose key changed is refused, site.yml converges and a second run
changes nothing, verify.yml passes, the plugin and the static inventory agree, ansible-lint is clean,
and `down` removes the lab's keys and known_hosts.

Ansible runs as subprocesses from this Python environment, with playbooks/ansible.cfg; the lab's state
directory is a temporary one (LXDKVM_STATE_DIR)."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .test_labs import lxc_json, lxd_snapshot, on

pytestmark = pytest.mark.integration
REPO = Path(__file__).parent.parent.parent
LAB_FILE = REPO / "tests" / "labs" / "valid" / "ansible-two.yaml"
LAB, PROJECT, HOSTS = "itest-ansible", "lxdkvm-itest-ansible", ["ans-1", "ans-2"]
PLAYBOOKS = REPO / "playbooks"
BIN = Path(sys.executable).parent
TIMINGS: dict[str, float] = {}


def run(*command: str, ok: bool = True, timeout: float = 600, what: str = "",
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    start = time.monotonic()
    env = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **(env or {})}
    proc = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout, cwd=PLAYBOOKS,
                          env=env)
    took = round(time.monotonic() - start, 1)
    if what:
        TIMINGS[what] = took
    print(f"$ {' '.join(command)} → {proc.returncode} in {took}s\n{proc.stdout}{proc.stderr}", flush=True)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def lxdkvm(*args: str, ok: bool = True, what: str = "") -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "lxdkvm", *args, ok=ok, what=what)


def recap(output: str) -> dict[str, dict[str, int]]:
    found = re.findall(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output,
                       re.MULTILINE)
    return {h: {"ok": int(o), "changed": int(c), "unreachable": int(u), "failed": int(f)} for h, o, c, u, f in found}


def plain(value):
    """ansible-inventory's JSON without its marks: a plugin's strings are `{"__ansible_unsafe": ...}` (never
    templated), which is what a plugin's data should be."""
    if isinstance(value, dict):
        return value["__ansible_unsafe"] if set(value) == {"__ansible_unsafe"} else \
            {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


@pytest.fixture(scope="module")
def lab(lxd, baked_image, tmp_path_factory):
    """The lab, up, with its state in a temporary directory; down (and LXD as before) afterwards."""
    state = tmp_path_factory.mktemp("state")
    saved = os.environ.get("LXDKVM_STATE_DIR")
    os.environ["LXDKVM_STATE_DIR"] = str(state)
    before = lxd_snapshot()
    try:
        lxdkvm("up", str(LAB_FILE), what="lxdkvm up (2 hosts)")
        inventory = tmp_path_factory.mktemp("inventory")
        static = inventory / "static.yml"
        static.write_text(lxdkvm("inventory", LAB).stdout)
        source = inventory / f"{LAB}.lxdkvm.yml"
        source.write_text(f"plugin: lxdkvm\nlab: {LAB}\n")
        yield {"state": state / "labs" / LAB, "static": static, "source": source}
    finally:
        lxdkvm("down", LAB, ok=False)
        assert not (state / "labs" / LAB).exists()
        if saved is None:
            os.environ.pop("LXDKVM_STATE_DIR", None)
        else:
            os.environ["LXDKVM_STATE_DIR"] = saved
        print(f"ansible timings: {json.dumps(TIMINGS)}", flush=True)
    assert lxd_snapshot() == before


def test_the_lab_has_its_own_key_pair_and_known_hosts_read_over_lxd(lab):
    state = lab["state"]
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "id_ed25519").stat().st_mode & 0o777 == 0o600
    known = (state / "known_hosts").read_text().splitlines()
    addresses = {h["name"]: h["addresses"]["mgmt"][0].split("/")[0]
                 for h in json.loads(lxdkvm("status", LAB, "--json").stdout)["hosts"]}
    for host in HOSTS:
        key = " ".join(on(PROJECT, host, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2])
        assert f"{host},{addresses[host]} {key}" in known  # the host's name and its management address
    public = (state / "id_ed25519.pub").read_text().split()[1]
    assert public in on(PROJECT, "ans-1", "cat", "/home/lab/.ssh/authorized_keys").stdout
    assert on(PROJECT, "ans-1", "sudo", "-l", "-U", "lab").stdout.count("NOPASSWD: ALL") == 1


def test_ansible_pings_every_host_with_host_keys_checked(lab):
    proc = run(str(BIN / "ansible"), "-i", str(lab["static"]), "all", "-m", "ansible.builtin.ping",
               what="ansible all -m ping")
    assert proc.stdout.count("ping: pong") == 2
    assert "Permanently added" not in proc.stdout + proc.stderr  # nothing was trusted on first use


def test_the_plugin_and_the_static_inventories_list_the_same(lab):
    plugin = plain(json.loads(run(str(BIN / "ansible-inventory"), "-i", str(lab["source"]), "--list",
                                  what="ansible-inventory (plugin)").stdout))
    marked = json.loads(lxdkvm("inventory", LAB, "--format", "json").stdout)  # every string variable unsafe
    static_json = plain(marked)
    assert sorted(plugin["_meta"]["hostvars"]) == HOSTS
    assert plugin["_meta"]["hostvars"] == static_json["_meta"]["hostvars"]
    groups = {g for g in plugin if g not in ("_meta", "all")}
    assert groups == {g for g in static_json if g not in ("_meta", "all")}
    assert {"lab_itest_ansible", "net_mgmt", "net_data", "ans", "compute", "kvm_hosts"} <= groups
    for group in groups - {"ungrouped"}:
        assert sorted(plugin[group]["hosts"]) == sorted(static_json[group]["hosts"]), group
    hostvars = plugin["_meta"]["hostvars"]["ans-1"]
    assert hostvars["ansible_user"] == "lab"
    assert hostvars["lxdkvm_addresses"]["data"] == "10.211.20.11"
    assert hostvars["ansible_host"] == hostvars["lxdkvm_addresses"]["mgmt"]
    assert hostvars["lxdkvm_guests"] == []
    assert "StrictHostKeyChecking=yes" in hostvars["ansible_ssh_common_args"]
    # the YAML and INI files `lxdkvm inventory` writes read back the same in Ansible
    for fmt in ("yaml", "ini"):
        path = lab["static"].with_suffix(f".{fmt}")
        path.write_text(lxdkvm("inventory", LAB, "--format", fmt).stdout)
        parsed = json.loads(run(str(BIN / "ansible-inventory"), "-i", str(path), "--list").stdout)
        assert plain(parsed["_meta"]["hostvars"]) == static_json["_meta"]["hostvars"], fmt
        if fmt == "yaml":  # !unsafe: Ansible reads every string back as untrusted, as from the JSON
            assert parsed["_meta"]["hostvars"] == marked["_meta"]["hostvars"]


def test_site_converges_and_a_second_run_changes_nothing(lab):
    first = lxdkvm("provision", LAB, "--playbook", "site.yml", what="site.yml (first run, lxdkvm provision)")
    assert set(recap(first.stdout)) == set(HOSTS)
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap(first.stdout).values())
    second = run(str(BIN / "ansible-playbook"), "-i", str(lab["source"]), "site.yml",
                 what="site.yml (second run, plugin inventory)")
    assert recap(second.stdout) and all(r["changed"] == 0 for r in recap(second.stdout).values()), second.stdout
    # a fresh lab is already what the playbooks make: the first run changed nothing either
    assert all(r["changed"] == 0 for r in recap(first.stdout).values()), first.stdout


def test_verify_passes(lab):
    proc = run(str(BIN / "ansible-playbook"), "-i", str(lab["static"]), "verify.yml", what="verify.yml")
    assert "ans-1 on data" in proc.stdout and "ans-2 on mgmt" in proc.stdout
    assert all(r["failed"] == 0 and r["changed"] == 0 for r in recap(proc.stdout).values())


def test_guests_is_a_no_op_without_guests(lab):
    proc = run(str(BIN / "ansible-playbook"), "-i", str(lab["static"]), "guests.yml", what="guests.yml")
    assert all(r["changed"] == 0 for r in recap(proc.stdout).values())
    assert on(PROJECT, "ans-1", "test", "-e", "/var/lib/lxdkvm/guests").returncode != 0  # nothing was made


def test_a_host_whose_key_changed_behind_lxdkvms_back_is_refused_until_up_reads_it(lab, tmp_path):
    regenerate = ("rm -f /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub && "
                  "ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && systemctl restart ssh")
    assert on(PROJECT, "ans-2", "sh", "-c", regenerate).returncode == 0
    # new SSH connections: a ControlPersist master from an earlier test would skip the key exchange
    fresh = {"ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp_path / "cp")}
    refused = run(str(BIN / "ansible"), "-i", str(lab["static"]), "all", "-m", "ansible.builtin.ping", ok=False,
                  env=fresh)
    assert refused.returncode != 0
    out = refused.stdout + refused.stderr
    assert "ans-2 | UNREACHABLE" in out and "Host key verification failed" in out
    assert "ans-1 | SUCCESS" in out
    # `up` reads each host's key again over LXD exec; --provision then runs site.yml
    again = lxdkvm("up", str(LAB_FILE), "--provision", what="lxdkvm up --provision (nothing to do + site.yml)")
    assert "site.yml: 2 hosts, 0 changes" in again.stdout
    run(str(BIN / "ansible"), "-i", str(lab["static"]), "all", "-m", "ansible.builtin.ping", env=fresh)


def test_down_removes_the_labs_keys_and_known_hosts(lab):
    assert (lab["state"] / "id_ed25519").exists()
    lxdkvm("down", LAB, what="lxdkvm down")
    assert not lab["state"].exists()
    assert PROJECT not in [p["name"] for p in lxc_json("project", "list")]


def test_ansible_lint_production_profile_is_clean():
    proc = run(str(BIN / "ansible-lint"), "--nocolor", "--profile", "production", ok=False, what="ansible-lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Passed: 0 failure(s), 0 warning(s)" in proc.stdout + proc.stderr
