"""A lab host, the unprivileged container that runs libvirt and QEMU: its LXD profile (`profile`: devices,
cloud-init) and how it is known to be ready (`readiness`: named stages, checked over LXD exec)."""
