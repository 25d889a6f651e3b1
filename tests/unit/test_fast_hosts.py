"""What makes new hosts fast, on plain data: isolated id ranges chosen by lxdkvm, the keys lxdkvm sets
when it makes a host (never a reason to change it), a network created bare, and the readiness stages
read from one exec's output. The kernel probe for idmapped mounts runs for real (root, this kernel)."""

import os

import pytest

from lxdkvm.hosts import readiness
from lxdkvm.lab import apply, plan
from lxdkvm.machine import hostcaps, idmapmount
from lxdkvm.machine.idmapmount import IDMAPPED_ROOT
from tests.unit.test_labs import DEFAULT, desired, observed_from

ROOT_RANGE = [(100000, 10000001)]  # root's /etc/subuid and /etc/subgid as LXD's package writes them
BLOCK = hostcaps.ISOLATED_IDMAP_SIZE


def test_isolated_ranges_follow_lxds_own_choice_and_never_overlap():
    # LXD keeps the first block for the shared map: the first isolated one starts a block later
    assert hostcaps.free_isolated_bases(ROOT_RANGE, ROOT_RANGE, [], 3) == [165536, 231072, 296608]
    taken = [(165536, BLOCK), (296608, BLOCK), (330000, 100000)]  # one map of another size, overlapping
    bases = hostcaps.free_isolated_bases(ROOT_RANGE, ROOT_RANGE, taken, 3)
    assert bases == [231072, 430000, 495536]
    others = lambda base: [*taken, *((b, BLOCK) for b in bases if b != base)]
    assert all(first + size <= base or base + BLOCK <= first for base in bases for first, size in others(base))


def test_isolated_ranges_that_do_not_fit_or_differ_from_lxds_are_not_chosen():
    small = [(100000, 3 * BLOCK)]
    assert hostcaps.free_isolated_bases(small, small, [], 2) == [165536, 231072]
    assert hostcaps.free_isolated_bases(small, small, [], 3) is None
    assert hostcaps.free_isolated_bases(ROOT_RANGE, [(200000, 10000001)], [], 1) is None
    assert hostcaps.free_isolated_bases([], [], [], 1) is None


def test_keys_lxdkvm_set_when_it_made_a_host_are_no_change():
    want = desired()
    have = observed_from(want)
    for info in have.instances.values():
        info["config"].update({"raw.lxc": IDMAPPED_ROOT, "security.idmap.base": "165536"})
    assert plan.make_plan(want, have).empty


def test_other_raw_lxc_on_a_host_is_a_change():
    want = desired()
    have = observed_from(want)
    have.instances["kvm-1"]["config"]["raw.lxc"] = "lxc.mount.auto = sys:rw"
    actions = {(a.verb, a.name): a.reason for a in plan.make_plan(want, have).actions}
    assert actions == {("update", "kvm-1"): "raw.lxc lxc.mount.auto = sys:rw → (unset)"}


def test_hosts_are_made_without_nics_only_when_no_profile_has_one():
    want = desired()
    assert not apply._nics_in_profiles(want)
    with_nic = desired(DEFAULT + """profiles:
  - name: extra
    devices:
      eth9: {type: nic, network: mgmt}
""")
    assert apply._nics_in_profiles(with_nic)


def test_stages_read_from_one_exec():
    mark = readiness.BATCH_MARK
    stdout = (f"{mark} 0 100.0\n\n{mark} 0 100.04\n{{\"v1\": {{}}}}\n--- result.json ---\n{{}}\n\n"
              f"{mark} 0 101.3\nactive\n\n{mark} 3 101.5\n")
    assert readiness.batch_results(stdout) == [(0, "", 0.0), (0, '{"v1": {}}\n--- result.json ---\n{}', 1.3),
                                             (3, "active", 0.2)]
    cut_off = f"{mark} 0 100.0\n\n{mark} 0 100.1\nwaiting for cloud-init"
    assert readiness.batch_results(cut_off) == [(0, "", 0.1)]
    assert readiness.batch_results("") == []


def test_the_kvm_probe_stage_needs_no_file_in_the_host():
    probe = next(s for s in readiness.STAGES if s.name.startswith("kvm probe"))
    assert probe.command[:5] == ["runuser", "-u", readiness.QEMU_USER, "--", "python3"]
    assert probe.command[5] == "-c" and "KVM_EXIT_HLT" in probe.command[6]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: writes a user namespace's id map")
def test_the_idmapped_mount_probe_asks_this_kernel(tmp_path):
    assert idmapmount.probe(str(tmp_path)) == ""  # the root filesystem of this machine can be
    assert "refuses" in idmapmount.probe("/proc")  # procfs cannot be mounted idmapped
    assert "not a directory" in idmapmount.probe(str(tmp_path / "missing"))


def test_doctor_says_how_new_hosts_get_their_ids():
    from lxdkvm import doctor
    from lxdkvm.lxd.server import ServerFacts

    fast = ServerFacts(socket="s", reachable=True, idmapped_roots={"cow": "", "default": ""})
    assert [(c.name, c.status) for c in doctor._root_filesystems(fast)] == [("host root filesystems", "PASS")]
    slow = ServerFacts(socket="s", reachable=True, idmapped_roots={"cow": "LXDKVM_IDMAPPED_ROOTS=off"})
    (check,) = doctor._root_filesystems(slow)
    assert check.status == "WARN" and "chowns" in check.evidence and "LXDKVM_IDMAPPED_ROOTS=off" in check.evidence
    mixed = ServerFacts(socket="s", reachable=True, idmapped_roots={"cow": "", "odd": "the kernel refuses"})
    (check,) = doctor._root_filesystems(mixed)
    assert check.status == "PASS" and "cow" in check.evidence and "odd: the kernel refuses" in check.evidence
