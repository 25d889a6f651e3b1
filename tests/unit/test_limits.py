"""The kernel limits lab hosts share (lxdkvm/machine/limits.py) and what doctor says of them: a 30-host
lab on Debian's default of 128 inotify instances is a FAIL naming the fix; `ensure` raises what is low,
now and at boot, keeps what is higher, and says so when the machine does not let it."""

from __future__ import annotations

from pathlib import Path

from lxdkvm import doctor
from lxdkvm.machine import limits

DEBIAN = {"fs.inotify.max_user_instances": 128, "fs.inotify.max_user_watches": 192530,
          "net.ipv4.neigh.default.gc_thresh3": 1024, "net.ipv6.neigh.default.gc_thresh3": 1024,
          "kernel.pid_max": 32768}


def proc_sys(tmp_path: Path, values: dict[str, int]) -> str:
    for key, value in values.items():
        path = limits.path_of(key, str(tmp_path / "sys"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{value}\n")
    return str(tmp_path / "sys")


def test_a_30_host_lab_on_debians_inotify_default_fails_with_its_fix():
    found = {c.name: c for c in doctor.limit_checks(DEBIAN, 30, "big")}
    instances = found["fs.inotify.max_user_instances"]
    assert instances.status == doctor.FAIL
    assert instances.evidence.startswith("128: room for about 6 lab hosts, lab big (30 hosts) needs 512")
    assert "lxdkvm setup" in instances.fix and "sysctl -w fs.inotify.max_user_instances=1048576" in instances.fix
    assert found["fs.inotify.max_user_watches"].status == doctor.PASS
    assert {c.status for c in doctor.limit_checks(DEBIAN, 2, "small")} == {doctor.PASS}


def test_without_a_lab_a_limit_below_what_the_machines_memory_holds_is_a_warning():
    hosts = limits.capacity_by_memory(24 * 2**30)  # 24 GiB
    assert hosts == 192
    found = {c.name: c.status for c in doctor.limit_checks(DEBIAN, hosts)}
    assert found["fs.inotify.max_user_instances"] == doctor.WARN and doctor.FAIL not in found.values()
    raised = {limit.key: limit.setting for limit in limits.LIMITS}
    assert {c.status for c in doctor.limit_checks(raised, hosts)} == {doctor.PASS}


def test_ensure_raises_what_is_low_now_and_at_boot_and_keeps_what_is_higher(tmp_path):
    root = proc_sys(tmp_path, {**DEBIAN, "kernel.pid_max": 9_000_000})
    conf, said = tmp_path / "etc" / "60-lxdkvm.conf", []
    raised = limits.ensure(said.append, root=root, conf=str(conf))
    assert "fs.inotify.max_user_instances" in raised and "kernel.pid_max" not in raised
    assert limits.read(root)["fs.inotify.max_user_instances"] == 1048576
    assert limits.read(root)["kernel.pid_max"] == 9_000_000  # never lowered
    text = conf.read_text()
    assert text.startswith("# Written by lxdkvm") and "LXD's production setup" in text
    assert "fs.inotify.max_user_instances = 1048576\n" in text and "kernel.pid_max = 9000000\n" in text
    assert any("raised fs.inotify.max_user_instances from 128 to 1048576" in m for m in said)
    written = conf.stat().st_mtime_ns
    assert limits.ensure(said.append, root=root, conf=str(conf)) == []  # a second run changes nothing
    assert conf.stat().st_mtime_ns == written


def test_a_kernel_without_a_setting_is_left_out(tmp_path):
    root = proc_sys(tmp_path, {k: v for k, v in DEBIAN.items() if "ipv6" not in k})
    assert limits.read(root)["net.ipv6.neigh.default.gc_thresh3"] is None
    limits.ensure(root=root, conf=str(tmp_path / "c.conf"))
    assert "ipv6" not in (tmp_path / "c.conf").read_text()
    assert "net.ipv6.neigh.default.gc_thresh3" not in {c.name for c in doctor.limit_checks(limits.read(root), 5)}


def test_a_machine_that_does_not_let_it_is_told_not_stopped(tmp_path):
    root = proc_sys(tmp_path, DEBIAN)
    # a sysctl that even root may not write (mode 0444), standing in for a read-only /proc/sys
    path = limits.path_of("fs.inotify.max_user_instances", root)
    path.unlink()
    path.symlink_to("/proc/sys/kernel/ngroups_max")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    said: list[str] = []
    raised = limits.ensure(said.append, root=root, conf=str(blocker / "60-lxdkvm.conf"))
    assert "fs.inotify.max_user_instances" not in raised and "fs.inotify.max_user_watches" in raised
    assert any(m.startswith(f"warning: cannot write {blocker}/60-lxdkvm.conf") for m in said)
    assert any(m.startswith("warning: cannot raise fs.inotify.max_user_instances from 65536 (Permission denied)")
               for m in said), said
