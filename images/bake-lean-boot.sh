#!/bin/sh
# Run inside the KVM-host container by `lxdkvm image bake`, before bake-clean.sh: make every boot of a
# lab host cheap. On a 2-core machine ten hosts boot at once, so each CPU-second per boot counts
# (benchmarks/ready_hosts.py, benchmarks/lab_up.py measure it).
set -eu

# cloud-init in one process per boot instead of four. The image's meta-data template says
# `dsmode: local` (bake replaces cloud-init-meta.tpl), so the local stage reads the NoCloud seed, applies
# the network config and runs the init modules; the final stage runs everything else. The network and
# config stages would only import cloud-init again to do nothing, so their units are masked; the final
# stage runs in the local stage's process (cloud-init-boot.py, which bake installs as
# /usr/local/sbin/lxdkvm-cloud-init-boot): it reports the unit ready after the local stage, waits for
# what cloud-final.service waited for, then runs the final modules. cloud-final.service is masked.
cat > /etc/cloud/cloud.cfg.d/90-lxdkvm-lab-host.cfg <<'CFG'
# lxdkvm lab host (baked image): see images/bake-lean-boot.sh in lxdkvm
datasource_list: [NoCloud]
# an ed25519 host key only: RSA-3072 generation costs ~0.6 s of CPU per host
ssh_genkeytypes: [ed25519]
cloud_init_modules: [bootcmd, write-files, set_hostname, update_hostname, update_etc_hosts, ca-certs,
                     users-groups, ssh]
cloud_config_modules: []
cloud_final_modules: [set-passwords, apt-configure, package-update-upgrade-install, timezone, runcmd,
                      write-files-deferred, scripts-vendor, scripts-per-once, scripts-per-boot,
                      scripts-per-instance, scripts-user, ssh-authkey-fingerprints, final-message]
CFG

mkdir -p /etc/systemd/system/cloud-init-local.service.d
cat > /etc/systemd/system/cloud-init-local.service.d/lxdkvm-one-process.conf <<'UNIT'
# lxdkvm lab host (baked image): local and final stage in one process, see images/bake-lean-boot.sh
[Service]
Type=notify
NotifyAccess=main
ExecStart=
ExecStart=/usr/local/sbin/lxdkvm-cloud-init-boot
UNIT

# Units a lab host does not need: cloud-init's now-empty stages, periodic maintenance of a disposable
# container, and probes of things a container cannot use (binfmt, pstore, module loading, hotplug).
# libvirt-guests too: at shutdown it asks every guest to power off and waits up to minutes for guests
# that ignore ACPI (the tiny guest does), so a host with guests took > 2 min to restart; lxdkvm starts a
# lab's guests itself (`up` after a host restart), and QEMU stops with the container.
for unit in cloud-init.service cloud-config.service cloud-final.service cloud-init-hotplugd.socket \
            apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
            e2scrub_reap.service fstrim.timer systemd-pstore.service systemd-binfmt.service \
            modprobe@.service ifupdown-pre.service libvirt-guests.service; do
  ln -sf /dev/null "/etc/systemd/system/$unit"
done

# ifupdown's bridge hook (bridge-utils) waits for a new bridge's ports to reach the forwarding state,
# polling every 0.1 s after a first 0.1 s: ≥ 0.2 s per bridge even with forward delay 0, and a lab
# host's network (each NIC on its own in-host bridge) holds libvirtd and cloud-init's final stage back
# meanwhile. Without STP a port forwards as soon as it is added, so there is nothing to wait for: the
# hook's defaults file (it sources /etc/default/bridge-utils) sets no wait unless the interface's
# stanza turns STP on or sets bridge_maxwait itself.
cat >> /etc/default/bridge-utils <<'DEFAULTS'

# lxdkvm lab host (baked image): see images/bake-lean-boot.sh in lxdkvm
case "${IF_BRIDGE_STP:-off}" in
  on|yes|1) ;;
  *) IF_BRIDGE_MAXWAIT="${IF_BRIDGE_MAXWAIT:-0}" ;;
esac
DEFAULTS
