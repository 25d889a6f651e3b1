"""lxdkvm: multi-host QEMU/KVM labs in unprivileged LXD containers."""

__version__ = "0.1.0"
