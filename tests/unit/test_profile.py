"""The rendered profile: golden files, what `lxc profile edit` accepts, and the committed profiles."""

import os
from pathlib import Path

import pytest
import yaml

from lxdkvm.errors import LxdkvmError
from lxdkvm.hosts import profile
from lxdkvm.templating import data_dir

from ..conftest import HOSTS, load_host

GOLDEN = Path(__file__).parent.parent / "golden"
UPDATE = os.environ.get("LXDKVM_UPDATE_GOLDEN") == "1"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs; LXDKVM_UPDATE_GOLDEN=1 pytest rewrites it"


@pytest.mark.parametrize("host", HOSTS)
def test_for_host_profile_matches_golden(host):
    _golden(f"for-host-{host}.yaml", profile.render(profile.for_host(load_host(host), kvm_gid=103)))


def test_committed_profiles_match_the_templates():
    for name, text in profile.committed_profiles().items():
        committed = data_dir("profiles") / name
        assert committed.read_text() == text, f"profiles/{name} drifted: run `invoke render-profiles`"


def test_pvm_sandbox_lists_only_what_lxd_can_find():
    spec = profile.for_host(load_host("pvm-sandbox"))
    assert spec.modules == ["kvm", "kvm_pvm", "bridge"]
    assert [d.path for d in spec.devices] == ["/dev/kvm", "/dev/net/tun"]


def test_portable_intel_profile_has_every_module_and_device():
    body = profile.parse(profile.render(profile.portable("intel")))
    assert body["config"]["linux.kernel_modules"].split(",") == [
        "kvm", "kvm_intel", "vhost", "vhost_net", "vhost_vsock", "vhost_scsi", "tun", "tap"]
    devices = body["devices"]
    assert sorted(devices) == ["kvm", "tun", "vhost-net", "vhost-scsi", "vhost-vsock"]
    assert "required" not in devices["kvm"]
    assert all(devices[d]["required"] == "false" for d in devices if d != "kvm")
    assert devices["kvm"]["mode"] == "0660" and devices["tun"]["mode"] == "0666"
    assert all(d["type"] == "unix-char" for d in devices.values())


@pytest.mark.parametrize("host", HOSTS)
def test_rendered_yaml_is_what_lxc_profile_edit_accepts(host):
    text = profile.render(profile.for_host(load_host(host), kvm_gid=994))
    body = profile.parse(text)  # strings only, no duplicate keys, no root disk, not privileged
    config = body["config"]
    assert config["security.nesting"] == "true"
    assert config["security.privileged"] == "false"
    assert config["security.idmap.isolated"] == "true"
    assert body["devices"]["kvm"]["gid"] == "994"
    assert not any(d.get("path") == "/" for d in body["devices"].values())
    # the raw text quotes every mode and boolean, so YAML 1.1 readers cannot turn them into numbers
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("mode:", "required:", "security.", "uid:", "gid:")):
            assert stripped.split(":", 1)[1].strip().startswith('"'), line


def test_user_data_installs_and_configures_libvirt():
    body = profile.parse(profile.render(profile.portable("amd")))
    text = body["config"]["cloud-init.user-data"]
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    assert {"libvirt-daemon-system", "libvirt-clients", "qemu-system-x86", "qemu-utils"} <= set(data["packages"])
    qemu_conf = data["write_files"][0]
    assert qemu_conf["path"] == "/etc/libvirt/qemu.conf" and qemu_conf["defer"] and qemu_conf["append"]
    assert "remember_owner = 0" in qemu_conf["content"] and "namespaces = [ ]" in qemu_conf["content"]
    assert ["systemctl", "restart", "libvirtd.service"] in data["runcmd"]
    regroup = data["bootcmd"][0][2]
    assert "/dev/kvm /dev/vhost-net /dev/vhost-vsock /dev/vhost-scsi" in regroup
    assert "/dev/net/tun" not in regroup
    assert data["runcmd"][0] == data["bootcmd"][0]


def test_legacy_keys_and_shared_idmap():
    body = profile.parse(profile.render(profile.portable("intel", idmap="shared", cloud_init_keys="legacy")))
    assert "user.user-data" in body["config"] and "cloud-init.user-data" not in body["config"]
    assert body["config"]["security.idmap.isolated"] == "false"


@pytest.mark.parametrize("kwargs, message", [
    ({"idmap": "private"}, "--idmap must be one of"),
    ({"cloud_init_keys": "new"}, "--cloud-init-keys must be"),
])
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(LxdkvmError, match=message):
        profile.portable("intel", **kwargs)
    with pytest.raises(LxdkvmError, match="--cpu must be"):
        profile.portable("arm")


@pytest.mark.parametrize("text, message", [
    ("config:\n  a: \"1\"\n  a: \"2\"\n", "<profile>:3: .*duplicate key 'a'"),
    ("config:\n  security.nesting: true\n", "config.security.nesting must be a quoted string"),
    ("devices:\n  kvm:\n    type: unix-char\n    mode: 0660\n", "devices.kvm.mode must be a quoted string"),
    ("devices:\n  root:\n    type: disk\n    path: /\n    pool: default\n", "must not add a root disk"),
    ("config:\n  security.privileged: \"true\"\n", "stay unprivileged"),
    ("config: {}\nprofiles: []\n", "unknown profile keys: profiles"),
    ("- a\n", "a profile is a mapping"),
])
def test_parse_rejects_what_lxd_would_reject_or_we_forbid(text, message):
    with pytest.raises(LxdkvmError, match=message):
        profile.parse(text)
