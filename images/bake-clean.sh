#!/bin/sh
# Run inside a configured KVM host container by `lxdkvm image bake`, just before it is stopped and
# published: forget this instance's identity and drop caches, so every host launched from the image
# gets its own machine-id, ssh host keys and cloud-init run.
set -eu
cloud-init clean --logs --seed            # cloud-init runs again (LXD's templates write a new seed)
rm -f /etc/ssh/ssh_host_*                 # cloud-init generates new host keys
: > /etc/machine-id                       # systemd generates a new machine-id at boot
rm -f /var/lib/dbus/machine-id
apt-get clean
rm -rf /var/lib/apt/lists/*
rm -rf /var/log/journal/*
find /var/log -type f -exec truncate -s 0 {} +
rm -f /var/lib/libvirt/dnsmasq/*.leases /var/lib/libvirt/dnsmasq/*.status
rm -rf /usr/local/lib/lxdkvm /tmp/* /var/tmp/*
