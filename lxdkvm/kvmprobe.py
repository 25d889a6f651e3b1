"""Is KVM really usable here?  Run a tiny guest through the KVM API and check its exits.

Standard library only and self-contained: lxdkvm pushes this one file into a container and runs it
there with ``python3 kvmprobe.py`` as any user.

The guest is one page of memory holding three real-mode instructions::

    mov al, 0x42 ; out 0x10, al ; hlt

A working KVM reports KVM_EXIT_IO (port 0x10, value 0x42) and then KVM_EXIT_HLT.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import mmap
import os
import struct
import sys
from dataclasses import asdict, dataclass, field

DEVICE = "/dev/kvm"
PORT = 0x10
VALUE = 0x42
GUEST_CODE = bytes([0xB0, VALUE, 0xE6, PORT, 0xF4])  # mov al,VALUE; out PORT,al; hlt
GUEST_ADDR = 0x1000
PAGE = 0x1000


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (0xAE << 8) | nr


_IO, _IOW, _IOR = 0, 1, 2
KVM_GET_API_VERSION = _ioc(_IO, 0x00, 0)
KVM_CREATE_VM = _ioc(_IO, 0x01, 0)
KVM_GET_VCPU_MMAP_SIZE = _ioc(_IO, 0x04, 0)
KVM_CREATE_VCPU = _ioc(_IO, 0x41, 0)
KVM_SET_USER_MEMORY_REGION = _ioc(_IOW, 0x46, 32)
KVM_RUN = _ioc(_IO, 0x80, 0)
KVM_GET_REGS = _ioc(_IOR, 0x81, 144)
KVM_SET_REGS = _ioc(_IOW, 0x82, 144)
KVM_GET_SREGS = _ioc(_IOR, 0x83, 312)
KVM_SET_SREGS = _ioc(_IOW, 0x84, 312)

KVM_EXIT_IO = 2
KVM_EXIT_HLT = 5
EXIT_NAMES = {0: "UNKNOWN", 1: "EXCEPTION", 2: "IO", 3: "HYPERCALL", 4: "DEBUG", 5: "HLT",
              6: "MMIO", 8: "SHUTDOWN", 9: "FAIL_ENTRY", 17: "INTERNAL_ERROR"}

# What an errno means at each step, for a person reading one line of output.
ERRNO_HINTS = {
    errno.ENOENT: "no /dev/kvm: the kvm module is not loaded on the host, or the device is not "
                  "passed into this container",
    errno.EACCES: "permission denied: this user is not in the group that owns /dev/kvm "
                  "(or the mode forbids it)",
    errno.EPERM: "operation not permitted: a cgroup device rule, seccomp or an LSM denies KVM",
    errno.ENXIO: "no such device: /dev/kvm exists but no KVM backend is behind it",
    errno.ENODEV: "no such device: /dev/kvm exists but no KVM backend is behind it",
    errno.EINVAL: "invalid argument: this KVM rejects the request (unsupported machine type?)",
    errno.ENOMEM: "out of memory while creating the VM",
    errno.EBUSY: "device busy: another hypervisor holds the virtualization extensions",
    errno.EEXIST: "already exists",
}

# struct kvm_sregs starts with 8 struct kvm_segment of 24 bytes: cs is the first.
_SEGMENT = struct.Struct("=QIHBBBBBBBBBx")  # base, limit, selector, type, present, dpl, db, s, l, g, avl, unusable


@dataclass
class ProbeResult:
    ok: bool
    step: str
    device: str = DEVICE
    api_version: int | None = None
    exits: list[str] = field(default_factory=list)
    errno: int | None = None
    error: str | None = None
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    groups: list[int] = field(default_factory=os.getgroups)

    def line(self) -> str:
        who = f"uid={self.uid} gid={self.gid}"
        if self.ok:
            return (f"kvm-probe: OK api={self.api_version} exits={','.join(self.exits)} "
                    f"device={self.device} {who}")
        name = errno.errorcode.get(self.errno, "") if self.errno else ""
        return f"kvm-probe: FAIL at {self.step}: {name} {self.error} {who}".replace("  ", " ")


class _Failed(Exception):
    def __init__(self, step: str, err: int | None, message: str) -> None:
        super().__init__(message)
        self.step, self.errno, self.message = step, err, message


def _ioctl(step: str, fd: int, request: int, arg: int | bytearray = 0) -> int:
    try:
        if isinstance(arg, bytearray):
            return fcntl.ioctl(fd, request, arg, True)
        return fcntl.ioctl(fd, request, arg)
    except OSError as exc:
        hint = ERRNO_HINTS.get(exc.errno, os.strerror(exc.errno or 0))
        raise _Failed(step, exc.errno, hint) from None


def _describe_exit(run: mmap.mmap) -> tuple[int, str]:
    reason = struct.unpack_from("=I", run, 8)[0]
    name = EXIT_NAMES.get(reason, str(reason))
    if reason == KVM_EXIT_IO:
        direction, size, port, count, data_offset = struct.unpack_from("=BBHIQ", run, 32)
        value = run[data_offset]
        return reason, f"IO(port={port:#x},value={value:#x},dir={'out' if direction else 'in'})"
    return reason, name


def _real_mode_at_guest_code(vcpu: int) -> None:
    """The vCPU in real mode (code segment base 0, selector 0), its instruction pointer at GUEST_CODE."""
    sregs = bytearray(312)
    _ioctl("KVM_GET_SREGS", vcpu, KVM_GET_SREGS, sregs)
    cs = list(_SEGMENT.unpack_from(sregs, 0))
    cs[0], cs[2] = 0, 0
    _SEGMENT.pack_into(sregs, 0, *cs)
    _ioctl("KVM_SET_SREGS", vcpu, KVM_SET_SREGS, sregs)
    regs = bytearray(144)
    struct.pack_into("=Q", regs, 16 * 8, GUEST_ADDR)  # rip
    struct.pack_into("=Q", regs, 17 * 8, 0x2)  # rflags: bit 1 is always set
    _ioctl("KVM_SET_REGS", vcpu, KVM_SET_REGS, regs)


def probe(device: str = DEVICE) -> ProbeResult:
    """Create a VM with one vCPU, run GUEST_CODE and check the exits. Never raises."""
    result = ProbeResult(ok=False, step="open", device=device)
    fds: list[int] = []
    maps: list[mmap.mmap] = []
    try:
        try:
            kvm = os.open(device, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise _Failed("open", exc.errno, ERRNO_HINTS.get(exc.errno, exc.strerror)) from None
        fds.append(kvm)
        result.api_version = _ioctl("KVM_GET_API_VERSION", kvm, KVM_GET_API_VERSION)
        if result.api_version != 12:
            raise _Failed("KVM_GET_API_VERSION", None, f"unexpected API version {result.api_version}")
        vm = _ioctl("KVM_CREATE_VM", kvm, KVM_CREATE_VM, 0)
        fds.append(vm)

        memory = mmap.mmap(-1, PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                           prot=mmap.PROT_READ | mmap.PROT_WRITE)
        maps.append(memory)
        memory[: len(GUEST_CODE)] = GUEST_CODE
        address = ctypes.addressof(ctypes.c_char.from_buffer(memory))
        region = bytearray(struct.pack("=IIQQQ", 0, 0, GUEST_ADDR, PAGE, address))
        _ioctl("KVM_SET_USER_MEMORY_REGION", vm, KVM_SET_USER_MEMORY_REGION, region)

        vcpu = _ioctl("KVM_CREATE_VCPU", vm, KVM_CREATE_VCPU, 0)
        fds.append(vcpu)
        run_size = _ioctl("KVM_GET_VCPU_MMAP_SIZE", kvm, KVM_GET_VCPU_MMAP_SIZE)
        run = mmap.mmap(vcpu, run_size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        maps.append(run)

        _real_mode_at_guest_code(vcpu)

        expected = [KVM_EXIT_IO, KVM_EXIT_HLT]
        for want in expected:
            result.step = "KVM_RUN"
            _ioctl("KVM_RUN", vcpu, KVM_RUN, 0)
            reason, text = _describe_exit(run)
            result.exits.append(text)
            if reason != want:
                raise _Failed("KVM_RUN", None, f"expected exit {EXIT_NAMES[want]}, got {text}")
            if reason == KVM_EXIT_IO and text != f"IO(port={PORT:#x},value={VALUE:#x},dir=out)":
                raise _Failed("KVM_RUN", None, f"guest wrote the wrong thing: {text}")
        result.ok, result.step = True, "done"
    except _Failed as failure:
        result.step, result.errno, result.error = failure.step, failure.errno, failure.message
    finally:
        for m in maps:
            m.close()
        for fd in reversed(fds):
            os.close(fd)
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    device = next((a.split("=", 1)[1] for a in args if a.startswith("--device=")), DEVICE)
    result = probe(device)
    print(json.dumps(asdict(result)) if "--json" in args else result.line())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
