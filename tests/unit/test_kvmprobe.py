"""The probe's failure paths, which need no KVM (the real probe runs in the integration tests)."""

import errno
import subprocess
import sys

from lxdkvm import kvmprobe


def test_missing_device_is_enoent_with_meaning(tmp_path):
    result = kvmprobe.probe(str(tmp_path / "kvm"))
    assert not result.ok and result.step == "open" and result.errno == errno.ENOENT
    assert "ENOENT" in result.line() and "not passed into this container" in result.line()


def test_a_device_that_is_not_kvm_fails_at_the_first_ioctl():
    result = kvmprobe.probe("/dev/null")
    assert not result.ok
    assert result.step == "KVM_GET_API_VERSION" and result.errno == errno.ENOTTY


def test_standalone_script_exit_codes(tmp_path):
    proc = subprocess.run([sys.executable, kvmprobe.__file__, f"--device={tmp_path}/none", "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and '"ok": false' in proc.stdout


def test_ioctl_numbers_match_the_kernel_headers():
    # values from <linux/kvm.h> on x86_64
    assert kvmprobe.KVM_GET_API_VERSION == 0xAE00
    assert kvmprobe.KVM_CREATE_VCPU == 0xAE41
    assert kvmprobe.KVM_SET_USER_MEMORY_REGION == 0x4020AE46
    assert kvmprobe.KVM_RUN == 0xAE80
    assert kvmprobe.KVM_GET_SREGS == 0x8138AE83
    assert kvmprobe.KVM_SET_REGS == 0x4090AE82
