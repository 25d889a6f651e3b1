"""Can this kernel mount a directory idmapped (for a host's root filesystem)? A real attempt, not a guess.

LXD 5.0.2 asks the same question before a container's first start, and when the answer is yes it mounts
the root filesystem idmapped instead of chowning every file of it to the container's ids. Its probe
hands the kernel a user namespace with no id mapping written, which current kernels refuse (EINVAL), so
on them it always chowns: ~0.5 CPU-s of the daemon per new host (docs/container-cost.md). LXD 5.0.5
and Incus write a mapping first. This probe does what they do: a child in a new user namespace with a
one-id mapping, then open_tree(OPEN_TREE_CLONE) of PATH and mount_setattr(MOUNT_ATTR_IDMAP) on the
detached copy. Nothing is attached anywhere; the copy is gone when its descriptor closes.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform

# A host whose root filesystem is mounted idmapped (docs/container-cost.md): LXC mounts the rootfs with
# the container's id map instead of LXD chowning every file of it at first start. The line LXD itself
# gives LXC when its own probe says the kernel can; lxdkvm's own key in LXD, never a lab file's.
IDMAPPED_ROOT = "lxc.rootfs.options = idmap=container"

# x86_64 and aarch64 share these numbers (the "new" syscall table, Linux 5.2 and 5.12)
SYS_OPEN_TREE, SYS_MOUNT_SETATTR = 428, 442
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, AT_EMPTY_PATH = 1, 0o2000000, 0x1000
AT_RECURSIVE, MOUNT_ATTR_IDMAP, CLONE_NEWUSER = 0x8000, 0x00100000, 0x10000000


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _userns_fd(libc: ctypes.CDLL) -> int:
    """A descriptor of a new user namespace that maps one id (root of the namespace → 0)."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: enter a new user namespace, tell the parent, wait to be released
        try:
            os.close(ready_r)
            os.close(done_w)
            code = 0 if libc.unshare(CLONE_NEWUSER) == 0 else 1
            os.write(ready_w, bytes([code]))
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"\0":
            raise OSError(errno.EPERM, "cannot create a user namespace")
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as mapping:
                mapping.write("0 0 1\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)  # releases the child
        os.waitpid(pid, 0)


def probe(path: str) -> str:
    """"" when PATH (a directory on the filesystem that would hold a host's root) can be mounted
    idmapped here, else why not."""
    if platform.machine() not in ("x86_64", "aarch64"):
        return f"not probed on {platform.machine()}"
    if not os.path.isdir(path):
        return f"{path} is not a directory"
    libc = _libc()
    try:
        userns = _userns_fd(libc)
    except OSError as exc:
        return f"no user namespace for the probe: {exc.strerror or exc}"
    tree = -1
    try:
        tree = libc.syscall(SYS_OPEN_TREE, -errno.EBADF, path.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)
        if tree < 0:
            return f"open_tree({path}): {os.strerror(ctypes.get_errno())}"
        attr = MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns)
        if libc.syscall(SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr)) < 0:
            return f"the kernel refuses an idmapped mount of {path}: {os.strerror(ctypes.get_errno())}"
        return ""
    finally:
        if tree >= 0:
            os.close(tree)
        os.close(userns)
