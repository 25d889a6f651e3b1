"""Module and device decisions from facts recorded on three kinds of host."""

import gzip

import pytest

from lxdkvm.machine import hostcaps

from ..conftest import load_host


def status(facts, name):
    return hostcaps.module_status(facts, name)


def test_pvm_sandbox_builtin_modules_without_sysfs_are_not_listable():
    facts = load_host("pvm-sandbox")
    kvm, tun, br_nf = status(facts, "kvm"), status(facts, "tun"), status(facts, "br_netfilter")
    assert (kvm.state, kvm.lxd_ok) == ("builtin", True)
    # tun is compiled in and registered in /proc/misc, but has no /sys/module entry and modprobe
    # cannot run: LXD would refuse to start a container that lists it.
    assert (tun.state, tun.lxd_ok) == ("builtin", False)
    assert any("misc device 'tun'" in e for e in tun.evidence)
    assert (br_nf.state, br_nf.lxd_ok) == ("builtin", False)
    assert status(facts, "vhost_net").state == "absent"
    assert "CONFIG_VHOST_NET is not set" in status(facts, "vhost_net").evidence
    assert hostcaps.vendor_modules(facts) == ["kvm_intel", "kvm_pvm"]
    assert status(facts, "kvm_intel").state == "absent"
    assert hostcaps.hardware_virt(facts) is None


def test_intel_workstation_loaded_and_loadable():
    facts = load_host("intel-workstation")
    assert status(facts, "kvm_intel").state == "loaded"
    assert status(facts, "vhost_vsock").state == "loadable"
    assert status(facts, "vhost_vsock").lxd_ok
    assert status(facts, "br_netfilter").lxd_ok
    assert hostcaps.vendor_modules(facts) == ["kvm_intel"]
    assert hostcaps.hardware_virt(facts) == "vmx"
    assert all(s.lxd_ok for s in hostcaps.all_module_status(facts))


def test_amd_server_vendor_module_and_small_subid_range():
    facts = load_host("amd-server")
    assert hostcaps.wanted_modules(facts)[:2] == ["kvm", "kvm_amd"]
    assert status(facts, "kvm_amd").state == "loaded"
    assert hostcaps.isolated_capacity(facts.subuid) == 0


@pytest.mark.parametrize("ranges, expected", [
    ([(100000, 10000001)], 151),
    ([(1000000, 1000000000)], 15257),
    ([(100000, 65536)], 0),
    ([], 0),
])
def test_isolated_capacity(ranges, expected):
    assert hostcaps.isolated_capacity(ranges) == expected


def test_facts_round_trip_through_json(recorded_host):
    _, facts = recorded_host
    assert hostcaps.HostFacts.from_dict(facts.to_dict()) == facts


def _fake_root(tmp_path, *, cmdline="quiet", config="CONFIG_MODULES=y\nCONFIG_KVM=m\nCONFIG_TUN=y\n"):
    (tmp_path / "proc/sys/kernel").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/osrelease").write_text("6.1.0-test\n")
    (tmp_path / "proc/cmdline").write_text(cmdline + "\n")
    (tmp_path / "proc/cpuinfo").write_text(
        "vendor_id\t: AuthenticAMD\nmodel name\t: Test CPU\nflags\t\t: fpu svm lm\n\n"
        "vendor_id\t: AuthenticAMD\nflags\t\t: fpu svm lm\n")
    (tmp_path / "proc/modules").write_text("kvm_amd 200704 0 - Live 0x0\nkvm 1400832 1 kvm_amd, Live 0x0\n")
    (tmp_path / "proc/misc").write_text(" 232 kvm\n 200 tun\n")
    (tmp_path / "proc/config.gz").write_bytes(gzip.compress(config.encode()))
    for module in ("kvm", "kvm_amd"):
        (tmp_path / "sys/module" / module / "parameters").mkdir(parents=True)
    (tmp_path / "sys/module/kvm_amd/parameters/nested").write_text("1\n")
    moddir = tmp_path / "lib/modules/6.1.0-test"
    moddir.mkdir(parents=True)
    (moddir / "modules.dep").write_text(
        "kernel/drivers/vhost/vhost_net.ko.xz: kernel/drivers/vhost/vhost.ko.xz\n"
        "kernel/drivers/vhost/vhost.ko.xz:\nkernel/arch/x86/kvm/kvm-amd.ko.zst: kernel/arch/x86/kvm/kvm.ko\n")
    (moddir / "modules.builtin").write_text("kernel/drivers/net/tun.ko\n")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/subuid").write_text("root:1000000:1000000000\nalice:100000:65536\n")
    return tmp_path


def test_read_host_from_a_filesystem_root(tmp_path):
    facts = hostcaps.read_host(_fake_root(tmp_path))
    assert facts.kernel == "6.1.0-test"
    assert facts.cpu_vendor == "AuthenticAMD" and facts.cpu_flags == ["svm"]
    assert facts.nested == {"kvm_amd": "1"}
    assert facts.loaded_modules == ["kvm", "kvm_amd"]
    assert facts.module_files == ["kvm_amd", "vhost", "vhost_net"]
    assert facts.builtin_modules == ["tun"]
    assert facts.modules_supported
    assert facts.kernel_config["CONFIG_KVM"] == "m" and facts.kernel_config["CONFIG_VHOST_NET"] == "n"
    assert facts.subuid == [(1000000, 1000000000)] and facts.subgid == []
    assert not facts.devices["/dev/kvm"].exists
    # tun: built in, listed in modules.builtin, modprobe works -> LXD accepts it without sysfs
    tun = hostcaps.module_status(facts, "tun")
    assert (tun.state, tun.lxd_ok) == ("builtin", True)
    assert hostcaps.module_status(facts, "vhost_net").state == "loadable"


def test_nomodule_kernel_cannot_load(tmp_path):
    facts = hostcaps.read_host(_fake_root(tmp_path, cmdline="quiet nomodule"))
    assert not facts.modules_supported
    assert hostcaps.module_status(facts, "vhost_net").state == "absent"
    assert not hostcaps.module_status(facts, "tun").lxd_ok
