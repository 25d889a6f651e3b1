"""Guest domains as plain data: XML, kernel command line, MACs, names, paths."""

import dataclasses
import xml.etree.ElementTree as ET

import pytest

from lxdkvm.errors import LxdkvmError
from lxdkvm.guests import domain as gd

NS = {"lxdkvm": gd.METADATA_NS}


BASE = gd.GuestDomain(
    name="web-1", kernel="/var/lib/lxdkvm/tiny/abcdef12/vmlinuz", initrd="/var/lib/lxdkvm/tiny/abcdef12/initrd.gz",
    memory_mib=128, vcpus=1, accel="tcg",
    nics=(gd.GuestNic("br-data", "52:54:00:12:34:56", "10.0.0.5/24", "10.0.0.1"),
          gd.GuestNic("br-mgmt", "52:54:00:ab:cd:ef", None)),
    disk="/var/lib/lxdkvm/guests/web-1/disk.qcow2", serial_log="/var/log/libvirt/qemu/web-1-serial.log",
    agent_socket="/var/lib/libvirt/qemu/lxdkvm-web-1.agent", metadata='{"image": "tiny"}')


def make(**changes) -> gd.GuestDomain:
    return dataclasses.replace(BASE, **changes)


def test_xml_is_well_formed_and_has_every_device():
    root = ET.fromstring(gd.domain_xml(make()))
    assert root.tag == "domain" and root.get("type") == "qemu"
    assert root.findtext("name") == "web-1"
    assert root.find("memory").text == "128" and root.find("memory").get("unit") == "MiB"
    assert root.findtext("os/kernel").endswith("/vmlinuz") and root.findtext("os/initrd").endswith("initrd.gz")
    assert root.findtext("os/cmdline") == gd.kernel_cmdline(make())
    assert root.findtext("on_poweroff") == "destroy" and root.findtext("on_crash") == "destroy"
    nics = root.findall("devices/interface")
    assert [n.get("type") for n in nics] == ["bridge", "bridge"]
    assert [n.find("source").get("bridge") for n in nics] == ["br-data", "br-mgmt"]
    assert [n.find("mac").get("address") for n in nics] == ["52:54:00:12:34:56", "52:54:00:ab:cd:ef"]
    assert all(n.find("model").get("type") == "virtio" for n in nics)
    assert root.find("devices/interface[@type='direct']") is None  # never macvtap
    disk = root.find("devices/disk")
    assert disk.find("driver").get("type") == "qcow2" and disk.find("target").get("bus") == "virtio"
    assert disk.find("source").get("file") == "/var/lib/lxdkvm/guests/web-1/disk.qcow2"
    serials = root.findall("devices/serial")
    assert [s.get("type") for s in serials] == ["pty", "unix"]
    assert serials[0].find("log").get("file") == "/var/log/libvirt/qemu/web-1-serial.log"
    assert serials[0].find("log").get("append") == "on"
    assert serials[1].find("source").attrib == {"mode": "bind",
                                                "path": "/var/lib/libvirt/qemu/lxdkvm-web-1.agent"}
    assert [s.find("target").get("port") for s in serials] == ["0", "1"]
    console = root.find("devices/console")
    assert console.get("type") == "pty" and console.find("target").attrib == {"type": "serial", "port": "0"}
    assert root.find("devices/graphics") is None
    assert root.find("devices/memballoon").get("model") == "none"
    assert root.find("metadata/lxdkvm:spec", NS).text == '{"image": "tiny"}'


def test_kvm_accel_and_optional_parts():
    root = ET.fromstring(gd.domain_xml(make(accel="kvm", nics=(), disk=None, metadata="", agent_socket="")))
    assert root.get("type") == "kvm"
    assert root.find("devices/disk") is None and root.find("devices/interface") is None
    assert root.find("metadata") is None and len(root.findall("devices/serial")) == 1
    with pytest.raises(LxdkvmError, match="accel must be tcg or kvm"):
        gd.domain_xml(make(accel="hvf"))


def test_metadata_and_values_are_escaped():
    hostile = '</lxdkvm:spec></metadata><devices><hostdev/></devices> & "q" \'a\' <x>'
    root = ET.fromstring(gd.domain_xml(make(metadata=hostile)))
    assert root.find("metadata/lxdkvm:spec", NS).text == hostile
    assert root.find(".//hostdev") is None
    odd_path = '/var/lib/a&b/"disk".qcow2'
    assert ET.fromstring(gd.domain_xml(make(disk=odd_path))).find("devices/disk/source").get("file") == odd_path


def test_cmdline_carries_name_and_networks_and_round_trips():
    line = gd.kernel_cmdline(make())
    assert line.startswith("console=ttyS0") and "panic=-1" in line.split()
    assert "lxdkvm.name=web-1" in line.split()
    assert "lxdkvm.net=52:54:00:12:34:56,10.0.0.5/24,10.0.0.1;52:54:00:ab:cd:ef,dhcp" in line.split()
    name, nets = gd.parse_cmdline(line)
    assert name == "web-1"
    assert nets == (("52:54:00:12:34:56", "10.0.0.5/24", "10.0.0.1"), ("52:54:00:ab:cd:ef", None, None))
    no_gw = make(nics=(gd.GuestNic("br0", "52:54:00:00:00:01", "192.168.1.9/16"),))
    assert gd.parse_cmdline(gd.kernel_cmdline(no_gw)) == ("web-1", (("52:54:00:00:00:01", "192.168.1.9/16", None),))
    assert "lxdkvm.net" not in gd.kernel_cmdline(make(nics=()))


@pytest.mark.parametrize("nic, problem", [
    (gd.GuestNic("br0", "52:54:00:00:00:0G", None), "invalid guest MAC"),
    (gd.GuestNic("br0", "53:54:00:00:00:01", None), "unicast"),
    (gd.GuestNic("br0", "52:54:00:00:00:01", "10.0.0.5"), "ADDRESS/PREFIX"),
    (gd.GuestNic("br0", "52:54:00:00:00:01", "10.0.0.5/24;x"), "ADDRESS/PREFIX"),
    (gd.GuestNic("br0", "52:54:00:00:00:01", "10.0.0.5/24", "10.0.0.1 init=/bin/sh"), "gateway"),
    (gd.GuestNic("br 0", "52:54:00:00:00:01", None), "bridge"),
])
def test_bad_nics_never_reach_the_command_line(nic, problem):
    with pytest.raises(LxdkvmError, match=problem):
        gd.kernel_cmdline(make(nics=(nic,)))


def test_macs_are_deterministic_unicast_and_distinct():
    mac = gd.mac_for("lab", "web-1", 0)
    assert mac == gd.mac_for("lab", "web-1", 0)
    assert gd.MAC_RE.fullmatch(mac) and mac.startswith("52:54:00:")
    assert int(mac.split(":")[0], 16) & 1 == 0  # unicast
    assert int(mac.split(":")[0], 16) & 2 == 2  # locally administered
    macs = {gd.mac_for(lab, g, i) for lab in ("a", "b") for g in ("x", "y", "z") for i in range(4)}
    assert len(macs) == 24


@pytest.mark.parametrize("name", ["a", "web-1", "A" + "b" * 62, "x-y-z"])
def test_valid_names(name):
    assert gd.check_name(name) == name
    assert gd.paths(name).directory == f"/var/lib/lxdkvm/guests/{name}"


@pytest.mark.parametrize("name", ["", "1web", "-a", "a_b", "a.b", "a b", "A" + "b" * 63, "a/b", "../x",
                                  "a\n", "é"])
def test_invalid_names_are_refused_everywhere(name):
    with pytest.raises(LxdkvmError, match="invalid guest name"):
        gd.check_name(name)
    with pytest.raises(LxdkvmError):
        gd.paths(name)
    with pytest.raises(LxdkvmError):
        gd.domain_xml(make(name=name))


def test_paths_inside_a_host():
    p = gd.paths("web-1")
    assert p.directory == "/var/lib/lxdkvm/guests/web-1"
    assert (p.kernel, p.initrd) == (f"{p.directory}/vmlinuz", f"{p.directory}/initrd.gz")
    assert p.disk == f"{p.directory}/disk.qcow2" and p.xml == f"{p.directory}/domain.xml"
    assert p.serial_log == "/var/log/libvirt/qemu/web-1-serial.log"
    assert p.agent_socket == "/var/lib/libvirt/qemu/lxdkvm-web-1.agent"
    shared = gd.paths("web-1", tiny_key="0123456789abcdef")
    assert shared.kernel == "/var/lib/lxdkvm/tiny/0123456789abcdef/vmlinuz"
    assert shared.initrd == gd.tiny_paths("0123456789abcdef").initrd
    with pytest.raises(LxdkvmError, match="tiny guest key"):
        gd.tiny_paths("../etc")
