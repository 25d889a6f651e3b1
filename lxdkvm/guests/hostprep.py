"""A lab host made ready for guests: the guest images' files (copied once per host and build), lxdkvm's
agent, and libvirt's migration listener with its firewall. Every host of a lab with guests gets it: any of
them may receive a guest by `lxdkvm migrate`."""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from ..labfile import topology as t
from ..templating import data_dir, render_template
from . import agent, debian, domain, store, tiny
from .runtime import run

if TYPE_CHECKING:
    from ..lxd.instances import Instances

LISTENER_DROPIN = "/etc/systemd/system/libvirtd-tls.socket.d/lxdkvm.conf"
MIGRATION_PORT = 16514  # libvirt over TLS: the only libvirt a host offers another
QEMU_PORTS = "49152:49215"  # QEMU's own migration and disk (NBD) streams: qemu.conf's migration_port_min/max
FILTER_FILE = "/usr/local/lib/lxdkvm/lxdkvm-guest-filter.xml"
# Where libvirt and QEMU look for their TLS credentials (libvirt's defaults): the lab CA's certificate,
# the host's certificate (server and client) and its key.
PKI = {"ca": ("/etc/pki/CA/cacert.pem", "/etc/pki/qemu/ca-cert.pem"),
       "cert": ("/etc/pki/libvirt/servercert.pem", "/etc/pki/libvirt/clientcert.pem", "/etc/pki/qemu/server-cert.pem",
                "/etc/pki/qemu/client-cert.pem"),
       "key": ("/etc/pki/libvirt/private/serverkey.pem", "/etc/pki/libvirt/private/clientkey.pem",
               "/etc/pki/qemu/server-key.pem", "/etc/pki/qemu/client-key.pem")}


def _push_missing(client: Instances, host: str, files: list[tuple[Path, str]]) -> None:
    """Each (local file, path in HOST), streamed, unless HOST has them all already (non-empty). A file
    arrives under a temporary name and is renamed, so a push cut short is never taken for a whole one."""
    test = " -a ".join(f"-s {shlex.quote(target)}" for _source, target in files)
    if client.execute(host, ["sh", "-c", f"test {test}"]).exit_code == 0:
        return
    folders = sorted({target.rsplit("/", 1)[0] for _source, target in files})
    run(client, host, "mkdir -p " + " ".join(shlex.quote(f) for f in folders))
    for source, target in files:
        with open(source, "rb") as data:
            client.push(host, target + ".part", data)
        run(client, host, f"mv {shlex.quote(target + '.part')} {shlex.quote(target)}")


def push_tiny(client: Instances, host: str, artifacts: tiny.TinyArtifacts) -> None:
    where = domain.tiny_paths(artifacts.key)
    _push_missing(client, host, [(artifacts.kernel, where.kernel), (artifacts.initrd, where.initrd)])


def migration_addresses(lab: t.Lab, host: t.Host) -> list[str]:
    """Where a host's libvirt listens for migrations: its static addresses on isolated lab networks only.
    A NAT network is routed to this machine and to other labs' NAT networks; an isolated one reaches
    nothing but the lab's own hosts and guests."""
    return [str(a.ipv4) for a in host.attachments
            if a.ipv4 is not None and lab.network(a.network).mode == "isolated"]


FIREWALL_SCRIPT = "/usr/local/lib/lxdkvm/migration-firewall.sh"
FIREWALL_UNIT = "/etc/systemd/system/lxdkvm-migration-firewall.service"


def listener_files(lab: t.Lab, host: t.Host, credentials=None) -> dict[str, str]:
    """The files that make HOST take migrations from the lab's other hosts, and only from them: the lab
    CA's certificate and the host's own certificate and key (CREDENTIALS, `lab.pki.HostCredentials`), a
    drop-in binding libvirtd-tls.socket to the host's isolated addresses only and making it require the
    firewall, and the firewall (only the lab's hosts reach libvirt and QEMU's migration ports), and the
    guest filter every guest NIC names. Empty when the host has no static isolated address (then it
    takes no migrations) or no credentials were given."""
    addresses = migration_addresses(lab, host)
    files = {FILTER_FILE: (data_dir("libvirt") / "lxdkvm-guest-filter.xml").read_text()}
    if not addresses or credentials is None:
        return files
    allowed = sorted({a for other in lab.hosts for a in migration_addresses(lab, other)})
    dropin = ("[Unit]\n# no socket without its firewall: if the firewall fails, libvirt listens nowhere\n"
              "Requires=lxdkvm-migration-firewall.service\nAfter=lxdkvm-migration-firewall.service\n\n"
              "[Socket]\nListenStream=\n" + "".join(f"ListenStream={a}:{MIGRATION_PORT}\n" for a in addresses)
              + "FreeBind=yes\n")
    files |= {LISTENER_DROPIN: dropin,
              FIREWALL_SCRIPT: render_template("libvirt", "migration-firewall.sh.j2", allowed=allowed,
                                               ports=f"{MIGRATION_PORT},{QEMU_PORTS}"),
              FIREWALL_UNIT: (data_dir("libvirt") / "lxdkvm-migration-firewall.service").read_text()}
    for kind, content in (("ca", credentials.ca), ("cert", credentials.cert), ("key", credentials.key)):
        files |= dict.fromkeys(PKI[kind], content.decode())
    return files


def _digests(files: dict[str, str]) -> dict[str, str]:
    return {path: hashlib.sha256(content.encode()).hexdigest() for path, content in files.items()}


def prepared(client: Instances, lab: t.Lab, host: t.Host, credentials=None) -> bool:
    """Whether HOST has lxdkvm's agent, the guest filter and, where it has isolated addresses, its TLS
    migration listener with exactly these files, running. One exec: a lab with guests asks this of every
    host at every `up`."""
    files = listener_files(lab, host, credentials)
    script = f"test -e {agent.AGENT_PATH} && virsh -q nwfilter-dumpxml {domain.GUEST_FILTER} >/dev/null"
    if LISTENER_DROPIN in files:
        script += " && systemctl is-active -q libvirtd-tls.socket && ! systemctl is-active -q libvirtd-tcp.socket"
    script += " && sha256sum " + " ".join(shlex.quote(path) for path in sorted(files))
    result = client.execute(host.name, ["sh", "-c", script])
    if result.exit_code != 0:
        return False
    have = {path: digest for digest, path in (line.split(maxsplit=1) for line in result.stdout.splitlines())}
    return all(have.get(path) == digest for path, digest in _digests(files).items())


# Define the guest filter, or redefine it in place: libvirt refuses a filter of the same name under a new
# UUID, so the one the host has is kept (a redefined filter is applied again to the NICs that name it).
_DEFINE_FILTER = (
    f"u=$(virsh -q nwfilter-dumpxml {domain.GUEST_FILTER} 2>/dev/null | sed -n 's:.*<uuid>\\(.*\\)</uuid>.*:\\1:p'); "
    f"sed \"s:<filter name=.{domain.GUEST_FILTER}. chain=.root.>:&${{u:+<uuid>$u</uuid>}}:\" {FILTER_FILE} "
    f"> {FILTER_FILE}.define && virsh -q nwfilter-define {FILTER_FILE}.define >/dev/null && rm -f {FILTER_FILE}.define")


def define_filter(client: Instances, host: str) -> None:
    """Define the guest filter every guest NIC names (libvirt refuses to start a guest whose filter is
    missing): what `_listener` does first, for a host that is not one of a lab's."""
    run(client, host, f"mkdir -p {shlex.quote(FILTER_FILE.rsplit('/', 1)[0])}")
    client.push(host, FILTER_FILE, (data_dir("libvirt") / "lxdkvm-guest-filter.xml").read_bytes(), mode="0644")
    run(client, host, _DEFINE_FILTER)


def _listener(client: Instances, lab: t.Lab, host: t.Host, credentials=None) -> None:
    files = listener_files(lab, host, credentials)
    if prepared(client, lab, host, credentials):
        return
    for path, content in files.items():
        private = path in PKI["key"]
        run(client, host.name, f"mkdir -p {shlex.quote(path.rsplit('/', 1)[0])}")
        client.push(host.name, path, content.encode(), mode="0600" if private else "0644")
    keys = " ".join(shlex.quote(k) for k in PKI["key"] if k.startswith("/etc/pki/qemu/") and k in files)
    steps = [_DEFINE_FILTER]
    if LISTENER_DROPIN in files:
        # QEMU runs as libvirt-qemu and reads its key itself. Debian's libvirtd takes its sockets from
        # systemd when it starts: restart it after the new one (running guests keep running). Its other
        # sockets stop with it: a client meanwhile would start it again through them, and systemd refuses
        # to start a socket whose service runs ("Job failed", seen once in a suite run).
        sockets = "libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket"
        steps += [f"chgrp libvirt-qemu {keys} && chmod 0640 {keys}",
                  "systemctl daemon-reload", "systemctl enable lxdkvm-migration-firewall.service",
                  "systemctl restart lxdkvm-migration-firewall.service", f"systemctl stop {sockets} libvirtd.service",
                  "systemctl disable --now libvirtd-tcp.socket", "systemctl enable libvirtd-tls.socket",
                  "systemctl restart libvirtd-tls.socket", f"systemctl start {sockets} libvirtd.service"]
    run(client, host.name, " && ".join(steps))


def push_debian(client: Instances, host: str, disk: debian.DebianDisk) -> None:
    """The Debian guest disk (the base of each Debian guest's overlay), its kernel and initramfs: once per
    host and build, streamed from files (the disk is ~140 MiB)."""
    where = domain.debian_paths(disk.key)
    _push_missing(client, host, [(disk.path, where.disk), (disk.kernel, where.kernel), (disk.initrd, where.initrd)])


def push_file(client: Instances, host: str, image: store.StoredImage) -> None:
    """An imported guest image (the base of its guests' overlays), once per host and content."""
    _push_missing(client, host, [(store.path(image.name), domain.file_image_path(image.key))])


def prepare_host(client: Instances, lab: t.Lab, host: t.Host, artifacts: tiny.TinyArtifacts | None,
                 debian_disk: debian.DebianDisk | None = None, files: tuple[store.StoredImage, ...] = (),
                 credentials=None) -> None:
    """What a host needs before its guests: the tiny guest's files (and the Debian disk and imported
    images the lab's guests boot: any host may receive one by migration), lxdkvm's agent, the guest
    filter and the TLS migration listener (CREDENTIALS: the host's, `lab.pki`)."""
    if artifacts is not None:
        push_tiny(client, host.name, artifacts)
    if debian_disk is not None:
        push_debian(client, host.name, debian_disk)
    for image in files:
        push_file(client, host.name, image)
    agent.push_agent(client, host.name)
    _listener(client, lab, host, credentials)


# ------------------------------------------------------------------------------------ one guest
