"""The hosts' container images, built offline: the Debian base by debootstrap (`base`) and the KVM-host
image baked from it with libvirt and QEMU installed and verified (`bake`). Guest images are `guests/`'."""
