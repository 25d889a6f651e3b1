"""An unprivileged LXD container as a real QEMU/KVM host, checked from inside and from the host."""

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from lxdkvm.errors import LxdkvmError
from lxdkvm.guests import domain
from lxdkvm.guests import initramfs as guest
from lxdkvm.hosts import profile
from lxdkvm.hosts.readiness import probe_command
from lxdkvm.images import base
from lxdkvm.lxd.session import Session
from lxdkvm.machine import hostcaps

from .guest_artifacts import guest_files

pytestmark = pytest.mark.integration


def run(lxd, host, *command, ok=True):
    result = lxd.instances.execute(host["name"], list(command), timeout=300)
    if ok:
        assert result.exit_code == 0, f"{command}: {result.stdout}{result.stderr}"
    return result


def test_container_is_unprivileged_with_root_mapped_to_a_high_host_id(lxd, kvm_host):
    info = lxd.instances.info(kvm_host["name"])
    assert info["expanded_config"].get("security.privileged", "false") == "false"
    assert info["expanded_config"]["security.idmap.isolated"] == "true"
    inside, host_id, count = run(lxd, kvm_host, "cat", "/proc/self/uid_map").stdout.split()
    assert inside == "0" and int(host_id) >= 100000 and int(count) == 65536


def test_kvm_device_is_root_kvm_0660_inside_and_mapped_ids_outside(lxd, kvm_host):
    name, kvm_gid = kvm_host["name"], kvm_host["kvm_gid"]
    owner = run(lxd, kvm_host, "stat", "-c", "%U:%G %a %t:%T", "/dev/kvm").stdout.split()
    assert owner == ["root:kvm", "660", "a:e8"]  # 10:232
    group = run(lxd, kvm_host, "getent", "group", "kvm").stdout.split(":")
    assert int(group[2]) == kvm_gid
    # From the host's side the node LXD made belongs to the container's mapped root and kvm group.
    _, uid_base, _ = run(lxd, kvm_host, "cat", "/proc/self/uid_map").stdout.split()
    _, gid_base, _ = run(lxd, kvm_host, "cat", "/proc/self/gid_map").stdout.split()
    node = Path(f"/var/lib/lxd/devices/{name}/unix.kvm.dev-kvm")
    st = node.stat()
    assert (st.st_uid, st.st_gid) == (int(uid_base), int(gid_base) + kvm_gid)
    assert oct(st.st_mode & 0o777) == "0o660"
    assert os.stat("/dev/kvm").st_uid == 0  # the host's own node is untouched


def test_tun_is_usable_by_everyone(lxd, kvm_host):
    assert run(lxd, kvm_host, "stat", "-c", "%a", "/dev/net/tun").stdout.strip() == "666"


def test_kvm_probe_passes_as_root_and_as_the_qemu_user(lxd, kvm_host):
    as_root = run(lxd, kvm_host, *probe_command("root")).stdout
    assert as_root.startswith("kvm-probe: OK api=12 exits=IO(port=0x10,value=0x42,dir=out),HLT")
    as_qemu = run(lxd, kvm_host, *probe_command("libvirt-qemu", "--json")).stdout
    result = json.loads(as_qemu)
    assert result["ok"] and result["uid"] != 0 and result["exits"][-1] == "HLT"


def test_kvm_probe_fails_with_eacces_outside_the_kvm_group(lxd, kvm_host):
    result = run(lxd, kvm_host, *probe_command("nobody"), ok=False)
    assert result.exit_code == 1
    assert "FAIL at open: EACCES" in result.stdout


def test_cloud_init_done_and_user_data_passes_schema(lxd, kvm_host):
    status = run(lxd, kvm_host, "cloud-init", "status", "--long").stdout
    assert "status: done" in status
    assert "errors: []" in status or "error" not in status.split("detail:")[0].replace("status: done", "")
    schema = run(lxd, kvm_host, "cloud-init", "schema", "--system")
    assert "Valid cloud-config" in schema.stdout + schema.stderr
    # the hostname came from LXD's template, the seed from the profile's cloud-init.user-data key
    assert run(lxd, kvm_host, "hostname").stdout.strip() == kvm_host["name"]
    seed = run(lxd, kvm_host, "cat", "/var/lib/cloud/seed/nocloud-net/user-data").stdout
    assert "libvirt-daemon-system" in seed


def test_libvirtd_is_active_with_the_container_settings(lxd, kvm_host):
    assert run(lxd, kvm_host, "systemctl", "is-active", "libvirtd.service").stdout.strip() == "active"
    conf = run(lxd, kvm_host, "cat", "/etc/libvirt/qemu.conf").stdout
    assert "\nremember_owner = 0\n" in conf and "\nnamespaces = [ ]\n" in conf
    assert "qemu:///system" in run(lxd, kvm_host, "virsh", "-c", "qemu:///system", "uri").stdout


def test_libvirt_boots_a_tcg_guest_whose_serial_console_shows_our_marker(lxd, kvm_host):
    vmlinuz, busybox = guest_files()
    marker = f"lxdkvm-guest-booted-{uuid.uuid4().hex[:8]}"
    name, folder = f"lxdkvm-it-{uuid.uuid4().hex[:6]}", "/var/lib/libvirt/images/lxdkvm-it"
    run(lxd, kvm_host, "mkdir", "-p", folder)
    lxd.instances.push(kvm_host["name"], f"{folder}/vmlinuz", vmlinuz.read_bytes())
    lxd.instances.push(kvm_host["name"], f"{folder}/initrd.gz", guest.busybox_initramfs(busybox.read_bytes(), marker))
    serial = f"/var/log/libvirt/qemu/{name}-serial.log"
    xml = domain.domain_xml(domain.GuestDomain(
        name=name, kernel=f"{folder}/vmlinuz", initrd=f"{folder}/initrd.gz", memory_mib=256, vcpus=1,
        accel="tcg", serial_log=serial))
    assert '<domain type="qemu"' in xml
    lxd.instances.push(kvm_host["name"], f"{folder}/{name}.xml", xml.encode())
    run(lxd, kvm_host, "virsh", "create", f"{folder}/{name}.xml")
    try:
        deadline, seen = time.monotonic() + 180, ""
        while time.monotonic() < deadline and marker not in seen:
            time.sleep(1)
            seen = run(lxd, kvm_host, "cat", serial, ok=False).stdout
        assert marker in seen, f"no marker on the serial console; last lines:\n{seen[-1500:]}"
        assert "Linux version" in seen  # the kernel really booted before init printed the marker
        assert seen.index("Linux version") < seen.index(marker)
    finally:
        run(lxd, kvm_host, "virsh", "destroy", name, ok=False)


def test_second_image_build_is_instant_from_lxd(lxd, base_image):
    again = base.build(Session())
    assert again.action == "up to date" and again.fingerprint == base_image.fingerprint
    props = lxd.images.by_alias(base.DEFAULT_ALIAS)["properties"]
    assert props["os"] == "debian" and props["release"] == "bookworm" and props["build_date"]
    assert props["lxdkvm.key"] == base.Recipe().key()


def test_unreachable_archive_is_a_clear_error_and_imports_nothing(lxd, base_image):
    alias = f"lxdkvm-it/bad-{uuid.uuid4().hex[:6]}"
    recipe = base.Recipe(mirror="http://127.0.0.1:9/debian")
    before = {i.fingerprint for i in lxd.connection().client.images.all()}
    with pytest.raises(LxdkvmError, match="archive is unreachable: http://127.0.0.1:9/debian"):
        base.build(Session(), recipe, alias=alias, force=True)
    assert lxd.images.by_alias(alias) is None
    assert {i.fingerprint for i in lxd.connection().client.images.all()} == before


@pytest.mark.parametrize("cpu", ["intel", "amd"])
def test_committed_profile_pastes_into_lxc_profile_edit(lxd, cpu, unique):
    name = f"lxdkvm-it-paste-{cpu}-{unique}"
    path = Path(__file__).parents[2] / "profiles" / f"kvm-host-{cpu}.yaml"
    subprocess.run(["lxc", "profile", "create", name], check=True, capture_output=True)
    try:
        with open(path) as text:
            proc = subprocess.run(["lxc", "profile", "edit", name], stdin=text, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        shown = profile.load_yaml(subprocess.run(["lxc", "profile", "show", name], check=True,
                                                 capture_output=True, text=True).stdout)
        assert shown["devices"]["kvm"]["mode"] == "0660"
        assert shown["config"]["security.nesting"] == "true"
        assert f"kvm_{'intel' if cpu == 'intel' else 'amd'}" in shown["config"]["linux.kernel_modules"]
    finally:
        subprocess.run(["lxc", "profile", "delete", name], capture_output=True)


def test_doctor_tells_the_truth_about_this_host(lxd):
    proc = subprocess.run(["lxdkvm", "doctor", "--json"], capture_output=True, text=True)
    report = json.loads(proc.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    facts = hostcaps.read_host()
    assert proc.returncode == (0 if report["ok"] else 1)
    assert checks["kvm probe"]["status"] == "PASS" and "HLT" in checks["kvm probe"]["evidence"]
    assert checks["lxd"]["status"] == "PASS"
    for path in ("/dev/net/tun", "/dev/vhost-net", "/dev/vhost-vsock", "/dev/vhost-scsi"):
        assert (checks[path]["status"] == "PASS") == facts.devices[path].exists
    virt = hostcaps.hardware_virt(facts)
    assert checks["cpu"]["status"] == ("PASS" if virt else "WARN")
    for status in hostcaps.all_module_status(facts):
        assert checks[f"module {status.name}"]["evidence"].startswith(status.state)
