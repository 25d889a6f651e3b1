"""Lab-file values are data: the allow-list of instance config keys (`labfile.keys`), the control-character
pass (`labfile.controls`), value syntaxes and sizes (`labfile.values`, `labfile.sizes`), user-data through
the bounded reader (`labfile.userdata`). The hostile corpus (test_hostile_labs.py) shows each attack
refused; these show the rules themselves, and that what the docs promise is what the code does. No LXD."""

import dataclasses
import time
from pathlib import Path

import pytest

from lxdkvm.labfile import checks, controls, guestchecks, keys, read, sizes, values
from lxdkvm.labfile import topology as t
from lxdkvm.labfile.userdata import user_data_problem

from .test_labs import MACHINE

REPO = Path(__file__).parent.parent.parent
NONE, UNCONFINED = checks.Allowances(), checks.Allowances(unconfined=True)

# A value each key of the allow-list takes (a prefix with a name after it).
GOOD = {
    "boot.autostart": "true", "boot.autostart.delay": "5", "boot.autostart.priority": "1",
    "boot.host_shutdown_timeout": "30", "boot.stop.priority": "2", "environment.HTTP_PROXY": "http://p:3128",
    "limits.cpu.allowance": "25ms/100ms", "limits.cpu.priority": "5", "limits.disk.priority": "10",
    "limits.memory.enforce": "soft", "limits.memory.swap": "false", "limits.memory.swap.priority": "0",
    "limits.network.priority": "3", "limits.processes": "2000", "limits.hugepages.64KB": "1MiB",
    "limits.hugepages.1MB": "64MiB", "limits.hugepages.2MB": "1GiB", "limits.hugepages.1GB": "2GiB",
    "limits.kernel.nofile": "1024:4096", "linux.sysctl.net.ipv4.ip_forward": "1",
    "migration.incremental.memory": "true", "migration.incremental.memory.goal": "70",
    "migration.incremental.memory.iterations": "10", "migration.stateful": "false", "security.nesting": "true",
    "security.protection.delete": "false", "security.protection.shift": "true", "security.devlxd": "false",
    "security.syscalls.deny": "kexec_load\nopen_by_handle_at\n", "security.syscalls.deny_compat": "true",
    "security.syscalls.deny_default": "true", "snapshots.schedule": "0 6 * * *",
    "snapshots.schedule.stopped": "false", "snapshots.pattern": "snap-%d", "snapshots.expiry": "2w 3d",
    "user.role": "compute", "cloud-init.vendor-data": "#cloud-config\ntimezone: Etc/UTC\n",
    "user.vendor-data": "#!/bin/sh\ntrue\n",
    # need --allow-unconfined
    "security.privileged": "true", "raw.apparmor": "mount,", "raw.idmap": "both 1000 1000",
    "raw.lxc": "lxc.apparmor.profile = unconfined\n", "raw.qemu": "-S", "raw.qemu.conf": "[x]\n",
    "raw.seccomp": "2\nallowlist\n", "security.idmap.base": "100000", "security.idmap.size": "65536",
    "linux.kernel_modules": "dccp,sctp", "linux.kernel_modules.load": "ondemand",
    **{f"security.syscalls.intercept.{name}": "true" for name in keys.INTERCEPTED},
    "security.syscalls.intercept.mount.allowed": "ext4,btrfs", "security.syscalls.intercept.mount.fuse": "ext4=fuse2fs",
    "security.syscalls.allow": "kexec_load", "security.devlxd.images": "true", "nvidia.runtime": "true",
    "nvidia.driver.capabilities": "compute,utility", "nvidia.require.cuda": "cuda>=11", "nvidia.require.driver": ">=450",
}


def test_every_key_of_the_allow_list_has_a_good_value_here():
    covered = {keys.lookup(key).name for key in GOOD}
    assert covered == {k.name for k in keys.KEYS}


@pytest.mark.parametrize("key", GOOD)
def test_a_good_value_passes_and_only_unconfined_keys_need_the_flag(key):
    entry = keys.lookup(key)
    assert keys.config_problem(key, GOOD[key], UNCONFINED) is None
    refused = keys.config_problem(key, GOOD[key], NONE)
    assert (refused is not None) == (entry.unconfined is not None and entry.unconfined(GOOD[key]))


@pytest.mark.parametrize(("key", "value"), [
    ("boot.autostart", "maybe"), ("boot.autostart.delay", "-1"), ("limits.cpu.priority", "11"),
    ("limits.processes", "\u0662\u0660\u0660\u0660"), ("limits.memory.enforce", "hardest"),
    ("limits.hugepages.2MB", "0B"), ("limits.kernel.nofile", "lots"), ("limits.kernel.nofiles", "1"),
    ("linux.sysctl.kernel.panic", "1"), ("linux.sysctl.vm.overcommit_memory", "1"),
    ("linux.sysctl.net.ipv4.ip_forward", "1;reboot"), ("environment.1X", "y"), ("environment.A B", "y"),
    ("security.syscalls.deny", "mount\n\nlxc.hook.pre-start = x"), ("security.syscalls.deny_default", "maybe"),
    ("snapshots.pattern", "{{ creation_date }}"), ("snapshots.expiry", "forever"),
    ("snapshots.schedule", "@hourly; reboot"), ("user.Upper", "x"), ("user.x", "a" * 5000),
    ("cloud-init.vendor-data", "runcmd: []"), ("cloud-init.vendor-data", "#cloud-config\n" + "[" * 5000),
    ("security.privileged", "yes please"), ("raw.lxc.hook", "x"), ("security.idmap.size", "4294967296"),
])
def test_a_bad_value_or_name_is_refused_even_unconfined(key, value):
    assert keys.config_problem(key, value, UNCONFINED) is not None


@pytest.mark.parametrize("key", [*keys.LEGACY, "volatile.idmap.next", "volatile.eth0.hwaddr", "image.os",
                                 "security.delegate_bpf", "security.devlxd.management.volumes",
                                 "cloud-init.ssh-keys.me", "linux.sysctl.", "user.", "limits.cpu.nodes",
                                 "agent.nic_config", "default?project=x", "user.a/b"])
def test_legacy_aliases_lxd_own_and_unknown_keys_are_refused_with_every_flag(key):
    assert keys.config_problem(key, "true", UNCONFINED) is not None


@pytest.mark.parametrize("key", ["limits.cpu", "limits.memory", "security.idmap.isolated",
                                 "cloud-init.network-config", "user.network-config", "user.lxdkvm.lab"])
def test_what_lxdkvm_sets_itself_is_refused_with_every_flag(key):
    assert keys.config_problem(key, "1", UNCONFINED) is not None


def test_a_close_typo_gets_a_did_you_mean():
    assert keys.config_problem("security.nestin", "true", NONE)[1] == "did you mean 'security.nesting'?"


def test_the_docs_show_the_allow_list_as_the_code_has_it():
    text = (REPO / "docs" / "labs.md").read_text()
    assert keys.table(unconfined=False) in text
    assert keys.table(unconfined=True) in text


# ---------------------------------------------------------------------------------------- controls
REFUSED = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, 0x061C, 0x200E, 0x200F,
           *range(0x202A, 0x202F), *range(0x2066, 0x206A)]


@pytest.mark.parametrize("code", REFUSED, ids=lambda c: f"U+{c:04X}")
def test_every_control_character_is_refused_in_a_name_at_its_line(code):
    text = f'name: lab\nhosts:\n  - name: "kvm\\U{code:08x}1"\n'
    lab, problems, _ = read.parse(text, "x.yaml")
    assert lab is None and [(p.path, p.line) for p in problems] == [("hosts[0].name", 3)]
    assert f"U+{code:04X}" in problems[0].message
    assert all(line.isprintable() for line in problems[0].render("x.yaml").splitlines())


MULTI_LINE = {  # where multi-line text is, and the data with its text plus EXTRA
    "guests[0].user_data": lambda extra: {"guests": [{"user_data": "#cloud-config\n\truncmd: []\n" + extra}]},
    "profiles[0].config.raw.lxc": lambda extra: {"profiles": [{"config": {"raw.lxc": "a\nb\t" + extra}}]},
    "defaults.config.security.syscalls.deny":
        lambda extra: {"defaults": {"config": {"security.syscalls.deny": "mount\numount\n" + extra}}},
    "hosts[0].config.user.vendor-data":
        lambda extra: {"hosts": [{"config": {"user.vendor-data": "#!/bin/sh\n\ttrue\n" + extra}}]},
}


@pytest.mark.parametrize("where", MULTI_LINE)
def test_line_breaks_and_tabs_only_in_multi_line_text(where):
    assert controls.problems(MULTI_LINE[where](""), read.Positions()) == []
    assert [p.path for p in controls.problems(MULTI_LINE[where]("\x1b"), read.Positions())] == [where]


def test_one_line_values_may_not_hold_a_line_break_but_keys_never():
    data = {"hosts": [{"config": {"user.note": "a\nb", "user.a\tb": "x"}}]}
    assert [p.message for p in controls.problems(data, read.Positions())] == [
        "'a\nb' holds a line break (U+000A)", "the key holds a tab (U+0009)"]


def test_a_file_full_of_control_characters_says_so_a_bounded_number_of_times():
    text = "name: lab\nhosts:\n" + "".join(f'  - name: "h\\e{i}"\n' for i in range(500))
    _, problems, _ = read.parse(text, "x.yaml")
    assert len(problems) == controls.MAX_REPORTED + 1


# ---------------------------------------------------------------------------------------- values and sizes
@pytest.mark.parametrize(("text", "size"), [("2GiB", 2**31), ("1.5MiB", 3 * 2**19), ("512MB", 512 * 10**6),
                                            ("0B", 0), ("\u0661\u0662\u0668MiB", None), ("２GiB", None),
                                            ("2 GiB", None), ("2GiB\n", None), ("-1MiB", None), ("1e3MiB", None)])
def test_sizes_are_ascii_digits_and_a_unit(text, size):
    assert values.size_bytes(text) == size


@pytest.mark.parametrize(("memory", "refused"), [("256MiB", False), ("255MiB", True), ("0B", True),
                                                 ("0%", True), ("1%", True), ("2%", False), ("100%", False),
                                                 ("101%", True), ("24GiB", False), ("25GiB", True)])
def test_a_hosts_memory_is_between_the_floor_and_the_machine(memory, refused):
    host = t.Host("kvm-1", memory=memory, path="hosts[0]", line=3)
    assert (sizes.memory_problem(host, 24 * 2**30) is not None) == refused


def test_the_guest_memory_floor_is_what_the_domain_xml_requires():
    from lxdkvm.errors import LxdkvmError
    from lxdkvm.guests import domain

    floor = guestchecks.GUEST_MIN_MEMORY_MIB
    base = domain.GuestDomain(name="vm-1", kernel="/k", initrd="/i", memory_mib=floor, vcpus=1, accel="tcg")
    domain.domain_xml(base)
    with pytest.raises(LxdkvmError, match="at least"):
        domain.domain_xml(dataclasses.replace(base, memory_mib=floor - 1))


def test_the_host_memory_floor_fits_one_default_guest():
    assert sizes.HOST_MIN_MEMORY_MIB >= 128 + guestchecks.QEMU_OVERHEAD_MIB


def test_a_guest_disk_is_checked_against_the_pools_free_space_only_when_known():
    lab, problems, _ = read.parse("name: d\nhosts: [{name: a, limits: {memory: 1GiB}}]\n"
                                  "guests: [{name: g, host: a, disk: {size: 2GiB}}]\n", "x.yaml")
    assert problems == []
    assert checks.check(lab, dataclasses.replace(MACHINE, pool_free_mib=None)) == []
    assert checks.check(lab, dataclasses.replace(MACHINE, pool_free_mib=4096)) == []
    [problem] = checks.check(lab, dataclasses.replace(MACHINE, pool_free_mib=1024))
    assert problem.path == "guests[0].disk.size" and "storage pool" in problem.message


# ---------------------------------------------------------------------------------------- user-data
@pytest.mark.parametrize("text", ["#cloud-config\nruncmd: " + "[" * 100_000,
                                  "#cloud-config\na: &a [x, x, x, x, x, x, x, x, x, x]\n" +
                                  "".join(f"b{i}: &b{i} [{', '.join([f'*b{i - 1}' if i else '*a'] * 10)}]\n"
                                          for i in range(9)),
                                  "#cloud-config\nx: !!python/object/apply:os.system [id]\n"])
def test_hostile_user_data_is_one_problem_quickly(text):
    start = time.perf_counter()
    problem = user_data_problem(text)
    assert problem and problem.startswith("user-data line ") and "\n" not in problem
    assert time.perf_counter() - start < 1.0
