#!/bin/sh
# The namespace holder of one sandbox member: a new mount and network namespace (made by `unshare -m -n`,
# whose mounts are private) with its own /sys, /proc and securityfs, as LXD's own test suite makes them
# (canonical/lxd test/includes/clustering.sh). The member's LXD runs in it by `nsenter -n -m -t <pid>`.
# It prints "ready" once the mounts are made, then sleeps until `lxdkvm cluster sandbox down` kills it.
set -e
mount --move /sys /mnt
umount -l /proc
mount -t sysfs sysfs /sys
mount --move /mnt/fs/cgroup /sys/fs/cgroup
mount -t proc proc /proc
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null || true
umount -l /mnt
# The main LXD's mounts (storage pools, shmounts) were copied into this namespace: drop the copies, so this
# member never holds the main daemon's filesystems busy. Private propagation: the main LXD keeps its own.
for target in $(awk '$5 ~ "^/var/lib/lxd(/|$)" {print $5}' /proc/self/mountinfo | sort -r); do
    umount -l "$target" 2>/dev/null || true
done
ip link set dev lo up
echo ready
exec sleep infinity </dev/null >/dev/null 2>&1
