"""`verify`'s verdicts on what a host answered (lab/verify.py `host_verdicts`): read in one exec, judged as
plain data, and a host that answers nothing, or lies in its own way, fails rather than passes."""

from __future__ import annotations

from lxdkvm.lab.verify import FAIL, PASS, WARN, host_verdicts

VALIDATE = (  # what Debian 12's virt-host-validate prints in a lab host here
    "  QEMU: Checking for hardware virtualization                                 : FAIL (Only emulated CPUs are available, performance will be significantly limited)\n"
    "  QEMU: Checking if device /dev/kvm exists                                   : PASS\n"
    "  QEMU: Checking for cgroup 'cpu' controller support                         : WARN (Enable 'cpu' in kernel Kconfig file or mount/enable cgroup controller in your system)\n"
)
GOOD = {"uid_map": (0, "0 1000000 65536"), "kvm": (0, "root:kvm 660"), "probe": (0, "KVM_RUN ok"),
        "refused": (1, "open /dev/kvm: EACCES"), "libvirtd": (0, "active\nRunning hypervisor: QEMU 7.2.0"),
        "validate": (1, VALIDATE)}


def verdicts(**answers) -> dict[str, tuple[str, str]]:
    return {c.name: (c.result, c.evidence) for c in host_verdicts("kvm-1", {**GOOD, **answers})}


def test_a_sound_host_passes_with_its_evidence():
    found = verdicts()
    assert found["unprivileged"] == (PASS, "uid_map: 0 1000000 65536")
    assert found["/dev/kvm root:kvm 0660"][0] == PASS and found["KVM probe as libvirt-qemu"][0] == PASS
    assert found["KVM refused for nobody"] == (PASS, "open /dev/kvm: EACCES")
    assert found["libvirtd active"] == (PASS, "active Running hypervisor: QEMU 7.2.0")
    # no hardware virtualization is this machine kind's normal case: a warning with its reason
    why = "1 PASS, 1 WARN, 1 FAIL; FAIL: for hardware virtualization (guests use TCG)"
    assert found["virt-host-validate qemu"] == (WARN, why)


def test_a_host_that_answers_nothing_fails_every_check():
    nothing = {name: (-1, "") for name in GOOD}
    assert {c.result for c in host_verdicts("kvm-1", nothing)} == {FAIL}


def test_root_mapped_to_root_the_kvm_device_open_to_all_or_a_probe_not_refused_fail():
    assert verdicts(uid_map=(0, "0 0 4294967295"))["unprivileged"][0] == FAIL
    assert verdicts(kvm=(0, "root:root 666"))["/dev/kvm root:kvm 0660"][0] == FAIL
    assert verdicts(refused=(0, "KVM_RUN ok"))["KVM refused for nobody"][0] == FAIL
    assert verdicts(refused=(1, "no such user"))["KVM refused for nobody"][0] == FAIL  # refused for another reason
    other = "  QEMU: Checking if device /dev/kvm exists                                   : FAIL (missing)\n"
    assert verdicts(validate=(1, other))["virt-host-validate qemu"][0] == FAIL
