"""Guests inside lab hosts, through LXD exec: what runs where, preparing a host for guests, bringing a
guest up stage by stage (defined → started → boot marker → addresses), and removing one.

Every step is safe to repeat: a guest that is half made is found by `observe` and completed or remade.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shlex
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from ..errors import LxdkvmError
from ..labfile import topology as t
from ..lxd import LabLxd, Lxd
from ..templating import data_dir, render_template
from . import agent, debian, domain, seed, store, tiny
from .spec import GuestSpec

Report = Callable[[str, str], None]
BOOT_TIMEOUT = 180.0
DEBIAN_BOOT_TIMEOUT = 600.0  # systemd and cloud-init under TCG: ~21 s alone, much more several at once
LISTENER_DROPIN = "/etc/systemd/system/libvirtd-tcp.socket.d/lxdkvm.conf"
MIGRATION_PORT = 16509

class GuestFailed(LxdkvmError):
    def __init__(self, guest: str, stage: str, detail: str) -> None:
        super().__init__(f"guest {guest}: stage '{stage}' failed: {detail}")
        self.guest, self.stage = guest, stage


def _run(client: Lxd, host: str, script: str, timeout: float = 120) -> str:
    result = client.execute(host, ["sh", "-c", script], timeout=timeout)
    if result.exit_code != 0:
        raise LxdkvmError(f"{host}: `{script[:80]}` failed ({result.exit_code}): "
                          f"{(result.stderr or result.stdout).strip()[-600:]}")
    return result.stdout


def _spec_of(metadata_xml: str) -> dict | None:
    if not metadata_xml.strip():
        return None
    try:
        return json.loads(ET.fromstring(metadata_xml).text or "")
    except (ET.ParseError, ValueError):
        return None


def _domains(client: Lxd, host: str) -> list[tuple[str, str, dict | None, str]]:
    """(name, state, lxdkvm's spec or None, last boot marker line) of every libvirt domain in HOST."""
    script = render_template("libvirt", "list-guests.sh.j2", metadata_ns=domain.METADATA_NS,
                             marker=tiny.MARKER, serial_log_dir=domain.SERIAL_LOG_DIR)
    rows = []
    for line in _run(client, host, script, timeout=60).splitlines():
        name, state, metadata, marker = (line.split("\t") + ["", "", "", ""])[:4]
        if name:
            rows.append((name, state.strip(), _spec_of(metadata), marker))
    return rows


def observe(client: Lxd, host: str) -> dict[str, dict]:
    """The libvirt domains of HOST: name → {state, spec (None: not lxdkvm's)}."""
    return {name: {"state": state, "spec": spec} for name, state, spec, _marker in _domains(client, host)}


def guest_status(client: Lxd, host: str, lab: str) -> list[dict]:
    """The lab's guests in HOST as status rows: name, state, booted (a boot marker in its serial log
    while it runs), boot id and addresses from that marker."""
    rows = []
    for name, state, spec, marker_line in _domains(client, host):
        if not spec or spec.get("lab") != lab:
            continue
        if spec.get("image") == "file":  # no marker: running is booted; addresses are the static ones and
            rows.append({"name": name, "host": host, "state": state, "booted": state == "running",  # leases
                         "boot_id": "", "addresses": {f"nic{i}": nic[2] for i, nic in enumerate(spec["nics"])
                                                      if nic[2] != "dhcp"},
                         "dhcp_macs": {f"nic{i}": nic[1] for i, nic in enumerate(spec["nics"]) if nic[2] == "dhcp"},
                         "image": spec.get("file", "")})
            continue
        marker = agent.parse_marker(marker_line) if state == "running" else None
        rows.append({"name": name, "host": host, "state": state, "booted": marker is not None,
                     "boot_id": (marker or {}).get("boot_id", ""), "addresses": (marker or {}).get("addrs", {})})
    return rows


# ------------------------------------------------------------------------------------ the host
def _push_missing(client: Lxd, host: str, files: list[tuple[Path, str]]) -> None:
    """Each (local file, path in HOST), streamed, unless HOST has them all already (non-empty). A file
    arrives under a temporary name and is renamed, so a push cut short is never taken for a whole one."""
    test = " -a ".join(f"-s {shlex.quote(target)}" for _source, target in files)
    if client.execute(host, ["sh", "-c", f"test {test}"]).exit_code == 0:
        return
    folders = sorted({target.rsplit("/", 1)[0] for _source, target in files})
    _run(client, host, "mkdir -p " + " ".join(shlex.quote(f) for f in folders))
    for source, target in files:
        with open(source, "rb") as data:
            client.push(host, target + ".part", data)
        _run(client, host, f"mv {shlex.quote(target + '.part')} {shlex.quote(target)}")


def push_tiny(client: Lxd, host: str, artifacts: tiny.TinyArtifacts) -> None:
    where = domain.tiny_paths(artifacts.key)
    _push_missing(client, host, [(artifacts.kernel, where.kernel), (artifacts.initrd, where.initrd)])


def migration_addresses(lab: t.Lab, host: t.Host) -> list[str]:
    """Where a host's libvirt listens for migrations: its static addresses on isolated lab networks only.
    A NAT network is routed to this machine and to other labs' NAT networks; an isolated one reaches
    nothing but the lab's own hosts, so an unauthenticated libvirt there stays inside the lab."""
    return [str(a.ipv4) for a in host.attachments
            if a.ipv4 is not None and lab.network(a.network).mode == "isolated"]


FIREWALL_SCRIPT = "/usr/local/lib/lxdkvm/migration-firewall.sh"
FIREWALL_UNIT = "/etc/systemd/system/lxdkvm-migration-firewall.service"


def listener_files(lab: t.Lab, host: t.Host) -> dict[str, str]:
    """The files that make HOST's libvirt listen for migrations: a drop-in binding libvirtd-tcp.socket to
    the host's isolated addresses only, and a firewall letting only the lab's hosts (not its guests, which
    share the bridge) reach it. Empty when the host has no static isolated address."""
    addresses = migration_addresses(lab, host)
    if not addresses:
        return {}
    allowed = sorted({a for other in lab.hosts for a in migration_addresses(lab, other)})
    dropin = "[Socket]\nListenStream=\n" + "".join(f"ListenStream={a}:{MIGRATION_PORT}\n" for a in addresses) \
        + "FreeBind=yes\n"
    return {LISTENER_DROPIN: dropin,
            FIREWALL_SCRIPT: render_template("libvirt", "migration-firewall.sh.j2", allowed=allowed,
                                             port=MIGRATION_PORT),
            FIREWALL_UNIT: (data_dir("libvirt") / "lxdkvm-migration-firewall.service").read_text()}


def prepared(client: Lxd, lab: t.Lab, host: t.Host) -> bool:
    """Whether HOST has lxdkvm's agent and, where it has isolated addresses, its migration listener with
    exactly these files, running. One exec: a lab with guests asks this of every host at every `up`."""
    files = listener_files(lab, host)
    script = f"test -e {agent.AGENT_PATH}"
    if files:
        script += " && systemctl is-active -q libvirtd-tcp.socket && sha256sum " + \
            " ".join(shlex.quote(path) for path in sorted(files))
    result = client.execute(host.name, ["sh", "-c", script])
    if result.exit_code != 0:
        return False
    have = {path: digest for digest, path in (line.split(maxsplit=1) for line in result.stdout.splitlines())}
    return all(have.get(path) == hashlib.sha256(content.encode()).hexdigest() for path, content in files.items())


def _listener(client: Lxd, lab: t.Lab, host: t.Host) -> None:
    files = listener_files(lab, host)
    if not files or prepared(client, lab, host):
        return
    for path, content in files.items():
        _run(client, host.name, f"mkdir -p {shlex.quote(path.rsplit('/', 1)[0])}")
        client.push(host.name, path, content.encode())
    # Debian's libvirtd takes its sockets from systemd when it starts: restart it after the new one
    # (running guests keep running; QEMU does not depend on libvirtd staying up).
    _run(client, host.name, "systemctl daemon-reload && systemctl enable lxdkvm-migration-firewall.service && "
                            "systemctl restart lxdkvm-migration-firewall.service && "
                            "systemctl stop libvirtd.service && systemctl enable --now libvirtd-tcp.socket && "
                            "systemctl restart libvirtd-tcp.socket && systemctl start libvirtd.service")


def push_debian(client: Lxd, host: str, disk: debian.DebianDisk) -> None:
    """The Debian guest disk (the base of each Debian guest's overlay), its kernel and initramfs: once per
    host and build, streamed from files (the disk is ~140 MiB)."""
    where = domain.debian_paths(disk.key)
    _push_missing(client, host, [(disk.path, where.disk), (disk.kernel, where.kernel), (disk.initrd, where.initrd)])


def push_file(client: Lxd, host: str, image: store.StoredImage) -> None:
    """An imported guest image (the base of its guests' overlays), once per host and content."""
    _push_missing(client, host, [(store.path(image.name), domain.file_image_path(image.key))])


def prepare_host(client: Lxd, lab: t.Lab, host: t.Host, artifacts: tiny.TinyArtifacts | None,
                 debian_disk: debian.DebianDisk | None = None, files: tuple[store.StoredImage, ...] = ()) -> None:
    """What a host needs before its guests: the tiny guest's files (and the Debian disk and imported
    images the lab's guests boot: any host may receive one by migration), lxdkvm's agent, the migration
    listener."""
    if artifacts is not None:
        push_tiny(client, host.name, artifacts)
    if debian_disk is not None:
        push_debian(client, host.name, debian_disk)
    for image in files:
        push_file(client, host.name, image)
    agent.push_agent(client, host.name)
    _listener(client, lab, host)


# ------------------------------------------------------------------------------------ one guest
def remove(client: Lxd, host: str, name: str) -> None:
    paths = domain.paths(name)
    _run(client, host, f"virsh -q destroy {name} >/dev/null 2>&1; virsh -q undefine {name} >/dev/null 2>&1; "
                       f"rm -rf {shlex.quote(paths.directory)} {shlex.quote(paths.agent_socket)}; true")


# libvirt 9.0 in an unprivileged container sometimes loses a race creating its cgroup v1 cpuset for a
# domain when domains start at the same moment (or just after the last one stopped); a retry succeeds.
CPUSET_RACE = "Failed to create v1 controller cpuset"


def _start(client: Lxd, host: str, name: str, attempts: int = 6) -> None:
    for attempt in range(attempts):
        result = client.execute(host, ["virsh", "-q", "start", name])
        if result.exit_code == 0:
            return
        if CPUSET_RACE not in result.stderr or attempt == attempts - 1:
            raise LxdkvmError(f"{host}: virsh start {name}: {result.stderr.strip()[-600:]}")
        time.sleep(0.3 * (attempt + 1))


def _check_addresses(lab: t.Lab, spec: GuestSpec, marker: dict) -> str:
    have = [ipaddress.IPv4Interface(a) for a in (marker.get("addrs") or {}).values()]
    missing = []
    for network, address in spec.expect:
        subnet = lab.network(network).subnet
        if address is not None and ipaddress.IPv4Interface(address) not in have:
            missing.append(f"no {address} on {network}")
        elif address is None and not any(a.ip in subnet for a in have):
            missing.append(f"no DHCP lease in {subnet} on {network}")
    return "; ".join(missing)


def bring_up(client: Lxd, lab: t.Lab, spec: GuestSpec, verbs: set[str], report: Report,
             host: str | None = None) -> dict[str, object]:
    """Define (when new or changed), start and wait for SPEC's guest, on HOST (default: the lab file's;
    a guest `migrate` moved is started where it is); returns its boot marker and timings."""
    name, host, paths = spec.name, host or spec.host, spec.paths
    took: dict[str, float] = {}

    def stage(what: str, action: Callable[[], object]) -> object:
        report(name, f"… {what}")
        start = time.monotonic()
        try:
            result = action()
        except LxdkvmError as exc:
            raise GuestFailed(name, what, str(exc)) from None
        took[what] = round(time.monotonic() - start, 1)
        report(name, f"{what}: ok ({took[what]}s)")
        return result

    if "recreate" in verbs:
        report(name, "removing the old domain")
        remove(client, host, name)

    def define() -> None:
        disk, q = "", shlex.quote
        if spec.base_disk:  # a Debian guest or an imported image: its own copy-on-write disk on the shared
            size = spec.disk_mib if spec.spec.get("image") == "file" else max(spec.disk_mib, debian.SIZE_MIB)  # base
            disk = (f"[ -e {q(paths.disk)} ] || qemu-img create -q -f qcow2 -F qcow2 -b {q(spec.base_disk)} "
                    f"{q(paths.disk)} {size}M && ")
        elif spec.disk_mib:
            disk = f"[ -e {q(paths.disk)} ] || qemu-img create -q -f qcow2 {q(paths.disk)} {spec.disk_mib}M && "
        _run(client, host, f"mkdir -p {q(paths.directory)} && {disk}true")
        if spec.base_disk:
            client.push(host, paths.seed, seed.seed_iso(spec.name, spec.spec, spec.domain.nics, spec.user_data))
        client.push(host, paths.xml, domain.domain_xml(spec.domain).encode())
        _run(client, host, f"virsh -q define {shlex.quote(paths.xml)} >/dev/null")

    if verbs & {"create", "recreate"}:
        stage("defined", define)
    offset = int(_run(client, host, f"stat -c %s {shlex.quote(paths.serial_log)} 2>/dev/null || echo 0").strip()
                 or 0)
    running = client.execute(host, ["virsh", "-q", "domstate", name]).stdout.strip() == "running"
    if not running:
        stage("started", lambda: _start(client, host, name))
        after = offset
    else:  # already running (an earlier run stopped after starting it): its last boot marker counts
        last = _run(client, host, f"grep -a -b -o '{tiny.MARKER}' {shlex.quote(paths.serial_log)} 2>/dev/null"
                                  " | tail -n1 | cut -d: -f1").strip()
        after = int(last) if last.isdigit() else 0

    def marker() -> dict:
        limit = DEBIAN_BOOT_TIMEOUT if spec.base_disk else BOOT_TIMEOUT
        command = ["python3", agent.AGENT_PATH, "wait-boot", paths.serial_log, "--after-bytes", str(after),
                   "--timeout", str(int(limit))]
        result = client.execute(host, command, timeout=limit + 30)
        if result.exit_code != 0:
            raise LxdkvmError(result.stderr.strip()[-1500:] or f"no boot marker within {limit:.0f}s")
        return json.loads(result.stdout)

    if not spec.marker:
        return _file_guest_ready(client, lab, spec, host, after, stage, report, took)
    found = stage("boot marker", marker)

    def addresses() -> None:
        problem = _check_addresses(lab, spec, found)
        if problem:
            raise LxdkvmError(f"{problem} (the guest reported {found.get('addrs')})")

    stage("addresses", addresses)
    report(name, "ready")
    return {"marker": found, "took": took}


def _file_guest_ready(client: Lxd, lab: t.Lab, spec: GuestSpec, host: str, after: int, stage, report: Report,
                      took: dict[str, float]) -> dict[str, object]:
    """A guest from an imported image prints no boot marker: booted is the lab file's console text (or,
    without one, QEMU still running a moment after the start); its addresses are proven by ping from its
    host: the static ones, and the DHCP leases LXD's dnsmasq gave its MACs."""
    limit = spec.boot_timeout or BOOT_TIMEOUT
    deadline = time.monotonic() + limit

    def console() -> dict:
        command = ["python3", agent.AGENT_PATH, "wait-boot", spec.paths.serial_log, "--after-bytes", str(after),
                   "--timeout", str(int(limit)), "--text", spec.ready_text or ""]
        result = client.execute(host, command, timeout=limit + 30)
        if result.exit_code != 0:
            raise LxdkvmError(result.stderr.strip()[-1500:] or f"no {spec.ready_text!r} within {limit:.0f}s")
        return json.loads(result.stdout)

    def running() -> dict:
        time.sleep(2.0)  # a disk that does not boot makes QEMU stop (or the guest power off) quickly
        state = client.execute(host, ["virsh", "-q", "domstate", spec.name]).stdout.strip()
        if state != "running":
            raise LxdkvmError(f"the domain is {state or 'gone'}; its console: `lxdkvm console {lab.name} "
                              f"{spec.name}` (log {spec.paths.serial_log})")
        return {}

    found = stage("console text", console) if spec.ready_text else stage("running", running)

    def addresses() -> dict[str, str]:
        wanted = {}
        for (network, address), nic in zip(spec.expect, spec.domain.nics, strict=True):
            wanted[network] = (address.split("/")[0] if address else None, nic.mac)
        found_at: dict[str, str] = {}
        while True:
            leases = LabLxd(lab.project).dhcp_leases([lab.bridge(n) for n, (a, _m) in wanted.items() if a is None]) \
                if any(a is None for a, _m in wanted.values()) else {}
            for network, (address, mac) in wanted.items():
                candidate = address or leases.get(mac)
                if network not in found_at and candidate and client.execute(
                        host, ["ping", "-c", "1", "-W", "1", candidate]).exit_code == 0:
                    found_at[network] = candidate
            if len(found_at) == len(wanted):
                return found_at
            if time.monotonic() >= deadline:
                missing = [f"{n}: {a or 'a DHCP lease for ' + m} does not answer ping from {host}"
                           for n, (a, m) in wanted.items() if n not in found_at]
                raise LxdkvmError("; ".join(missing) + f" within {limit:.0f}s")
            time.sleep(1.0)

    found_addresses = stage("addresses", addresses)
    report(spec.name, "ready")
    return {"marker": {**found, "name": spec.name, "boot_id": "", "addrs": found_addresses}, "took": took}
