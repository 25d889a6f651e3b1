"""The Debian guest disk's pure pieces: the NoCloud seed (files and ISO), the domain's root= and seed
disk, the rendered /init and boot marker, and the rootfs customisation (on a fake rootfs)."""

import io
import subprocess

import pycdlib
import pytest
import yaml

from lxdkvm.errors import LxdkvmError
from lxdkvm.guests import agent, debian, seed
from lxdkvm.guests import domain as gd
from lxdkvm.templating import render_template

STATIC = gd.GuestNic("br-a", "52:54:00:aa:bb:01", "10.1.0.5/24", "10.1.0.1")
DHCP = gd.GuestNic("br-b", "52:54:00:aa:bb:02", None)


def test_meta_data_names_the_instance_by_guest_and_spec():
    meta = yaml.safe_load(seed.meta_data("deb-1", {"v": 1}))
    assert meta["local-hostname"] == "deb-1"
    assert meta["instance-id"].startswith("deb-1-") and len(meta["instance-id"]) == len("deb-1-") + 12
    assert seed.instance_id("deb-1", {"v": 1}) == meta["instance-id"]
    assert seed.instance_id("deb-1", {"v": 2}) != meta["instance-id"]


def test_network_config_matches_each_nic_by_mac():
    config = yaml.safe_load(seed.network_config((STATIC, DHCP)))
    assert config == {"version": 2, "ethernets": {
        "eth0": {"match": {"macaddress": STATIC.mac}, "set-name": "eth0", "dhcp4": False,
                 "addresses": ["10.1.0.5/24"], "gateway4": "10.1.0.1"},
        "eth1": {"match": {"macaddress": DHCP.mac}, "set-name": "eth1", "dhcp4": True}}}
    assert yaml.safe_load(seed.network_config(())) == {"version": 2, "ethernets": {}}
    with pytest.raises(LxdkvmError, match="invalid guest MAC"):
        seed.network_config((gd.GuestNic("br-a", "01:00:00:00:00:01", None),))


def test_user_data_is_checked_and_defaults_to_an_empty_cloud_config():
    assert seed.check_user_data(None) == seed.DEFAULT_USER_DATA
    assert seed.check_user_data("#cloud-config\nruncmd: [[true]]") == "#cloud-config\nruncmd: [[true]]\n"
    assert seed.check_user_data("#!/bin/sh\necho hi\n").startswith("#!")
    with pytest.raises(LxdkvmError, match="must be a mapping"):
        seed.check_user_data("#cloud-config\n- a list\n")
    with pytest.raises(LxdkvmError, match="not valid YAML"):
        seed.check_user_data("#cloud-config\nkey: [unclosed\n")
    with pytest.raises(LxdkvmError, match="must start with"):
        seed.check_user_data("runcmd: []\n")


def test_the_seed_is_an_iso_labelled_cidata_with_long_names():
    data = seed.seed_iso("deb-1", {"v": 1}, (STATIC,), "#cloud-config\nruncmd: [[touch, /x]]\n")
    assert len(data) % 2048 == 0
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "cidata"
        found = {}
        for name in ("meta-data", "network-config", "user-data"):
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            found[name] = out.getvalue().decode()
            joliet = io.BytesIO()
            iso.get_file_from_iso_fp(joliet, joliet_path=f"/{name}")
            assert joliet.getvalue() == out.getvalue()
    finally:
        iso.close()
    assert found == seed.files("deb-1", {"v": 1}, (STATIC,), "#cloud-config\nruncmd: [[touch, /x]]\n")


def base_domain(**changes):
    values = {"name": "deb-1", "kernel": "/k", "initrd": "/i", "memory_mib": 512, "vcpus": 2, "accel": "tcg",
              "nics": (STATIC,), "disk": "/g/disk.qcow2"}
    return gd.GuestDomain(**{**values, **changes})


def test_root_and_seed_are_optional_additions_to_the_domain():
    plain = gd.domain_xml(base_domain())
    assert "root=" not in plain and "vdb" not in plain
    xml = gd.domain_xml(base_domain(root="/dev/vda", seed="/g/seed.iso"))
    assert gd.kernel_cmdline(base_domain(root="/dev/vda")).endswith(" root=/dev/vda ro")
    assert gd.parse_cmdline(gd.kernel_cmdline(base_domain(root="/dev/vda")))[0] == "deb-1"
    seed_disk = xml[xml.index("/g/seed.iso") - 120:xml.index("</disk>", xml.index("/g/seed.iso"))]
    assert 'type="raw"' in seed_disk and 'dev="vdb" bus="virtio"' in seed_disk and "<readonly/>" in seed_disk
    with pytest.raises(LxdkvmError, match="invalid root device"):
        gd.kernel_cmdline(base_domain(root="/dev/vda rw init=/bin/sh"))


def test_debian_paths_and_the_seed_path():
    where = gd.debian_paths("0123456789abcdef")
    assert where.disk == "/var/lib/lxdkvm/debian/0123456789abcdef/disk.qcow2"
    assert (where.kernel, where.initrd) == (f"{where.directory}/vmlinuz", f"{where.directory}/initrd.gz")
    assert gd.paths("deb-1").seed == "/var/lib/lxdkvm/guests/deb-1/seed.iso"
    with pytest.raises(LxdkvmError, match="invalid Debian guest disk key"):
        gd.debian_paths("../x")


def test_init_loads_the_modules_mounts_root_and_switches(tmp_path):
    init = render_template("libvirt", "debian-init.sh.j2", modules=["virtio_blk", "isofs"], build_version="1/k")
    assert "for module in virtio_blk isofs; do" in init
    assert init.rstrip().endswith("exec switch_root /newroot /sbin/init")
    script = tmp_path / "init"
    script.write_text(init)
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True, check=False).returncode == 0


def test_the_marker_script_prints_a_line_the_agent_parses(tmp_path):
    script = render_template("libvirt", "debian-marker.sh.j2", marker="LXDKVM-GUEST-BOOTED")
    assert subprocess.run(["sh", "-n", "-c", script], capture_output=True, check=False).returncode == 0
    line = script.split("printf '\\n", 1)[1].split("\\n'", 1)[0]
    filled = line.replace("%s", "deb-1", 1).replace("%s", "0" * 8 + "-0000-0000-0000-" + "0" * 12, 1)
    assert agent.parse_marker(filled.replace("%s", "eth0=10.1.0.5/24", 1)) == {
        "name": "deb-1", "boot_id": "00000000-0000-0000-0000-000000000000", "addrs": {"eth0": "10.1.0.5/24"}}


def test_customise_makes_a_container_rootfs_a_vm_disk(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("secret")
    (root / "etc/machine-id").write_text("abc\n")
    (root / "var/lib/cloud/instance").mkdir(parents=True)
    debian.customise(root)
    assert (root / "etc/fstab").read_text().splitlines()[-1].split()[:3] == ["/dev/vda", "/", "ext4"]
    assert (root / "etc/machine-id").read_text() == ""
    assert not list((root / "etc/ssh").glob("ssh_host_*")) and not (root / "var/lib/cloud").exists()
    assert yaml.safe_load((root / "etc/cloud/cloud.cfg.d/90_lxdkvm.cfg").read_text())["datasource_list"] == \
        ["NoCloud"]
    units = root / "etc/systemd/system"
    assert str((units / "getty.target.wants/serial-getty@ttyS0.service").readlink()).endswith(
        "serial-getty@.service")
    assert (units / "cloud-init.target.wants" / debian.MARKER_UNIT).is_symlink()
    assert "After=cloud-final.service" in (units / debian.MARKER_UNIT).read_text()
    assert (units / "multi-user.target.wants" / debian.AGENT_UNIT).is_symlink()
    assert (root / "usr/local/sbin/lxdkvm-boot-marker").stat().st_mode & 0o111


def test_the_key_depends_on_the_base_image_the_kernel_and_the_templates():
    key = debian.build_key("a" * 16, "b" * 16)
    assert len(key) == 16 and key == debian.build_key("a" * 16, "b" * 16)
    assert key != debian.build_key("c" * 16, "b" * 16) and key != debian.build_key("a" * 16, "c" * 16)
