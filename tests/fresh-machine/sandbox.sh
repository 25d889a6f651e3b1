#!/usr/bin/env bash
# A fresh Debian machine, for trying the README's first command where LXD has never been installed.
#
#   sandbox.sh up DIR ROOTFS_TARBALL BRIDGE   unpack a Debian root filesystem (lxdkvm's base image: no
#                                             LXD, no pip, no /etc/subuid) into DIR/root and give it its
#                                             own mount, network and PID namespaces, real root, the host's
#                                             kernel and devices, and a NIC on the LXD bridge BRIDGE
#                                             (DHCP and NAT from there, so apt and PyPI answer)
#   sandbox.sh run DIR COMMAND                run COMMAND (bash -c) as root inside, from /root/lxdkvm
#   sandbox.sh down DIR                       kill everything inside, release its loop devices, delete DIR
#
# The machine's own LXD and its containers are not touched: the sandbox's LXD daemon has its own
# /var/lib/lxd, bridges and firewall in its network namespace, and dies with the PID namespace.
# Why not a nested LXD container? Inside an unprivileged container the sandbox's LXD could neither fit
# the package's subordinate id range (10000001 ids) into the container's map nor, on this kernel's
# cgroup v1 layout, create cgroups for its own containers (cgfsng: "Failed to open 6/cpuacct").
set -euo pipefail

cmd=${1:?usage: sandbox.sh up|run|down DIR ...}
dir=${2:?usage: sandbox.sh up|run|down DIR ...}
root=$dir/root

holder() { cat "$dir/holder.pid"; }

up() {
    local tarball=${1:?rootfs tarball} bridge=${2:?bridge}
    mkdir -p "$root"
    tar -xzf "$tarball" -C "$root" --numeric-owner
    # PID 1 of a new PID namespace (everything inside dies with it) sets up the mounts, then pivots its mount namespace's
    # root to the root filesystem and drops this machine's tree. A chroot would not do: LXD enters
    # mount namespaces with setns(), which lands at the namespace's root — with a chroot, this
    # machine's / — and the sandbox's LXD then opened this machine's LXD database.
    setsid unshare --mount --net --pid --fork --propagation private sh -euc '
        r=$1
        mount --bind "$r" "$r"
        mount -t proc proc "$r/proc"
        mount -t sysfs sysfs "$r/sys"
        mount --rbind /sys/fs/cgroup "$r/sys/fs/cgroup"
        mount --rbind /dev "$r/dev"
        mount -t tmpfs tmpfs "$r/run"
        mount -t tmpfs tmpfs "$r/tmp"
        mkdir -p "$r/.oldroot"
        cd "$r"
        pivot_root . .oldroot
        umount -l /.oldroot
        rmdir /.oldroot
        exec sleep infinity
    ' sh "$root" </dev/null >"$dir/holder.log" 2>&1 &
    local unshare_pid=$! pid=""
    for _ in $(seq 50); do
        pid=$(pgrep -P "$unshare_pid" -x sleep || true)
        [ -n "$pid" ] && break
        sleep 0.1
    done
    [ -n "$pid" ] || { echo "sandbox: the namespace holder did not start: $(cat "$dir/holder.log")" >&2; exit 1; }
    echo "$pid" >"$dir/holder.pid"

    local tag
    tag=$(printf %s "$dir" | sha1sum | cut -c1-8)
    ip link add "lkfm$tag" type veth peer name "lkfc$tag"
    ip link set "lkfc$tag" netns "$pid"
    ip link set "lkfm$tag" master "$bridge" up
    echo "lkfm$tag" >"$dir/veth"

    nsenter -t "$pid" -n sh -euc '
        ip link set lo up
        ip link set "$1" name eth0
        ip link set eth0 up
    ' sh "lkfc$tag"
    # The same trust anchors as this machine (a TLS-inspecting proxy may stand between it and PyPI).
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    fi
    run 'dhclient -1 -4 eth0 && update-ca-certificates >/dev/null && ip -4 -o address show eth0'
}

run() {
    local pid
    pid=$(holder)
    nsenter -t "$pid" -m -n -p -r -w /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        bash -c "mkdir -p /root/lxdkvm && cd /root/lxdkvm && $1"
}

down() {
    local loops=""
    if [ -f "$dir/holder.pid" ]; then
        local pid
        pid=$(holder)
        # Loop devices the sandbox's LXD attached (its btrfs pool) can outlive the namespaces.
        loops=$(run 'losetup --list --noheadings --output NAME,BACK-FILE 2>/dev/null' 2>/dev/null |
            awk '$2 ~ "^/var/lib/lxd/" {print $1}' || true)
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    if [ -f "$dir/veth" ]; then ip link delete "$(cat "$dir/veth")" 2>/dev/null || true; fi
    for loop in $loops; do
        for _ in $(seq 50); do losetup --detach "$loop" 2>/dev/null && break; sleep 0.2; done
    done
    rm -rf --one-file-system "$dir"
}

case $cmd in
    up) up "${@:3}" ;;
    run) run "${3:?command}" ;;
    down) down ;;
    *) echo "sandbox.sh: unknown command $cmd" >&2; exit 2 ;;
esac
