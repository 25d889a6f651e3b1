"""What a person does to a running guest: find it, run a command in it, and move it to another host.

Live migration is plain libvirt between two lab hosts over an isolated lab network (the only kind a host's
libvirt TCP listener binds to, see `hostprep.migration_addresses`): pre-copy (post-copy needs
userfaultfd, which a user namespace does not get), memory and device state by QEMU's migration stream,
disks (when the guest has one) by QEMU's own NBD server with `--copy-storage-all` into an image made
beforehand on the destination; a Debian guest's overlay with `--copy-storage-inc` onto the same base,
which every host of the lab has (as does a guest from an imported image). No kernel nbd, no shared storage, no new device in the hosts.

What hosts and guests answer is untrusted (`readback`): addresses must parse as IPv4 before they reach
a shell line or the result, boot ids must be UUIDs, and libvirt's job statistics keep only keys of the
shape libvirt prints.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import readback
from ..errors import LxdkvmError
from . import agent, debian, domain, hostprep, runtime, tiny

if TYPE_CHECKING:
    from ..lxd.instances import Instances

PING_INTERVAL = 0.2  # 5 pings a second while a guest moves


@dataclass(frozen=True)
class Located:
    name: str
    host: str
    spec: dict  # lxdkvm's metadata in the domain


def locate(client: Instances, hosts: list[str], lab: str, name: str,
           warn: runtime.Warn = lambda _m: None) -> Located:
    """The host whose libvirt has lab LAB's guest NAME (what a host reports that is not valid is left out,
    and WARN told)."""
    for host in hosts:
        found = runtime.observe(client, host, warn).get(name)
        if found and found["spec"] and found["spec"].get("lab") == lab:
            return Located(name, host, found["spec"])
    raise LxdkvmError(f"lab {lab} has no guest {name} in a running host (`lxdkvm status {lab}` lists them)")


def guest_exec(client: Instances, where: Located, command: list[str], timeout: float = 60) -> tuple[str, str, int]:
    """(stdout, stderr, exit code) of COMMAND run in the guest through its agent socket."""
    socket = domain.paths(where.name).agent_socket
    result = client.execute(where.host, ["python3", agent.AGENT_PATH, "exec", socket, "--timeout",
                                         str(int(timeout)), "--", *command], timeout=timeout + 30)
    return result.stdout, result.stderr, result.exit_code


def _run(client: Instances, host: str, script: str, timeout: float = 300) -> str:
    result = client.execute(host, ["sh", "-c", script], timeout=timeout)
    if result.exit_code != 0:
        raise LxdkvmError(f"{host}: {(result.stderr or result.stdout).strip()[-1500:]}")
    return result.stdout


def _host_addresses(client: Instances, host: str) -> list[ipaddress.IPv4Interface]:
    out = _run(client, host, "ip -4 -o addr show")
    found = (readback.interface(f.split()[3]) for f in out.splitlines() if len(f.split()) > 3)
    return [ipaddress.IPv4Interface(a) for a in found if a]


def _listen_addresses(client: Instances, host: str) -> list[ipaddress.IPv4Address]:
    text = client.execute(host, ["cat", hostprep.LISTENER_DROPIN]).stdout
    found = (readback.address(a) for a in re.findall(r"^ListenStream=([\d.]+):\d+$", text, re.M))
    return [ipaddress.IPv4Address(a) for a in found if a]


def migration_address(client: Instances, source: str, target: str) -> ipaddress.IPv4Address:
    """Where SOURCE reaches TARGET's libvirt: a listener address of TARGET in a subnet SOURCE is on."""
    mine = _host_addresses(client, source)
    for address in _listen_addresses(client, target):
        if any(address in own.network for own in mine):
            return address
    raise LxdkvmError(f"{source} and {target} share no isolated lab network with static addresses, so "
                      f"{target}'s libvirt listens nowhere {source} can reach; put both on an isolated "
                      "network with `ipv4:` addresses (libvirt's TCP listener is never on a NAT network)")


def _check_target(client: Instances, where: Located, target: str) -> None:
    bridges = sorted({nic[0] for nic in where.spec.get("nics", [])})
    have = _run(client, target, "ls /sys/class/net").split()
    missing = [b for b in bridges if b not in have]
    if missing:
        raise LxdkvmError(f"{target} is not on the network(s) of guest {where.name} (no {', '.join(missing)} "
                          f"in {target}); migrate it to a host on the same lab networks")
    need = int(where.spec.get("memory_mib", 0))
    free = int(_run(client, target, "awk '/^MemAvailable:/ {print int($2/1024)}' /proc/meminfo").strip() or 0)
    limit = _run(client, target, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || "
                                 "cat /sys/fs/cgroup/memory.max 2>/dev/null || echo max").strip()
    used = _run(client, target, "cat /sys/fs/cgroup/memory/memory.usage_in_bytes 2>/dev/null || "
                                "cat /sys/fs/cgroup/memory.current 2>/dev/null || echo 0").strip()
    room = free
    if limit.isdigit() and int(limit) < 2**60:
        room = min(room, (int(limit) - int(used or 0)) // 2**20)
    if need > room:
        raise LxdkvmError(f"{target} has {room} MiB of memory left, guest {where.name} needs {need} MiB; "
                          f"give {target} more memory (`limits: {{memory: ...}}`) or move a guest off it")


def _static_address(where: Located) -> str | None:
    found = (readback.interface(nic[2]) for nic in where.spec.get("nics", []) if nic[2] != "dhcp")
    return next((a.split("/")[0] for a in found if a), None)


def _guest_address(client: Instances, where: Located) -> str | None:
    """The guest's first address: a static one from its spec, else what the guest has (a DHCP lease), when
    it is one (the guest's answer reaches a shell line in its host)."""
    static = _static_address(where)
    if static:
        return static
    output, _err, _code = guest_exec(client, where, ["ip", "-4", "-o", "addr", "show"])
    found = [readback.interface(f.split()[3]) for f in output.splitlines()
             if len(f.split()) > 3 and " lo " not in f]
    return next((a.split("/")[0] for a in found if a), None)


def _boot_id(output: str) -> str:
    """The boot id a guest printed, or "" when it is not one."""
    return readback.boot_id(output.strip()) or ""


def jobinfo(text: str) -> dict[str, float]:
    """`virsh domjobinfo`'s fields as numbers (sizes in MiB, times in ms)."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        number = re.match(r"\s*([\d.]+)\s*(\w+)?", value)
        if number:
            amount, unit = float(number.group(1)), (number.group(2) or "")
            factor = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}.get(unit, 1)
            out[key.strip()] = amount * factor
    return out


def migrate_command(guest: str, address: str, live: bool = True, copy_storage: str | None = None) -> str:
    """The `virsh migrate` that moves GUEST to the host at ADDRESS (COPY_STORAGE: "all", "inc" or None).
    --tls: libvirt's connection (qemu+tls), QEMU's migration stream and its disk copy (NBD) all use TLS
    with the lab CA's certificates, both ends checked (docs/security.md)."""
    flags = ("--live " if live else "") + (f"--copy-storage-{copy_storage} " if copy_storage else "")
    return (f"virsh migrate {flags}--tls --persistent --undefinesource --verbose {guest} "
            f"qemu+tls://{address}/system --migrateuri tcp://{address} --listen-address {address}")


def migrate(client: Instances, where: Located, target: str, live: bool = True,
            say=lambda _m: None) -> dict:
    """Move guest WHERE to host TARGET with libvirt; return what was measured and checked."""
    if target == where.host:
        raise LxdkvmError(f"guest {where.name} already runs on {target}")
    _check_target(client, where, target)
    address = migration_address(client, where.host, target)
    imported = where.spec.get("image") == "file"
    before, _err, code = guest_exec(client, where, ["cat", "/proc/sys/kernel/random/boot_id"],
                                    timeout=10 if imported else 60)
    before = _boot_id(before) if code == 0 else ""
    if not before and not imported:
        raise LxdkvmError(f"guest {where.name} does not answer its boot id on its agent socket: "
                          f"{_err.strip()[-600:]}")
    if not before:  # an imported image need not run lxdkvm's agent: kept running is libvirt's word and ping's
        say(f"{where.name}: no lxdkvm agent answers in image {where.spec.get('file')}: its boot id is not compared")
    guest_ip = _guest_address(client, where) if before or not imported else _static_address(where)
    say(f"preparing {target} (tiny guest files, agent, disk image)")
    _prepare_target(client, where, target)

    pinger = f"/tmp/lxdkvm-migrate-{where.name}.ping"
    if guest_ip:  # from the source host, which stays on the lab network the whole time
        _run(client, where.host, f"ping -n -i {PING_INTERVAL} {guest_ip} > {pinger} 2>&1 & echo $! > {pinger}.pid")
    # a Debian guest's disk is an overlay on a base every host has: only the overlay moves
    disk = "inc" if where.spec.get("image") in ("debian", "file") else "all" if where.spec.get("disk_mib") else None
    command = migrate_command(where.name, address, live, disk)
    say(f"{where.host} → {target} over {address}: {command}")
    start = time.monotonic()
    try:
        _run(client, where.host, command, timeout=600)
    finally:
        seconds = round(time.monotonic() - start, 2)
        sent, lost = _pings_counted(client, where.host, pinger) if guest_ip else (0, 0)
    job = readback.job_info(jobinfo(_run(client, target, f"virsh domjobinfo {where.name} --completed")))
    moved = Located(where.name, target, {**where.spec, "host": target})
    _run(client, target, f"virsh -q metadata {where.name} {domain.METADATA_NS} --key lxdkvm --live --config "
                         f"--set {shlex.quote(_metadata_xml(moved.spec))}")
    after, _err, code = guest_exec(client, moved, ["cat", "/proc/sys/kernel/random/boot_id"]) if before else \
        ("", "", 0)
    after = _boot_id(after)
    if after and after == _boot_id(before):
        _carry_marker(client, where, target)
    answers = bool(guest_ip) and client.execute(target, ["ping", "-c", "1", "-W", "2", guest_ip]).exit_code == 0
    return {
        "guest": where.name, "from": where.host, "to": target, "over": str(address), "live": live,
        "disk_copied": bool(disk), "seconds": seconds,
        "libvirt_ms": job.get("Time elapsed"), "downtime_ms": job.get("Total downtime"),
        "memory_mib": job.get("Memory processed"),
        "disk_mib": _allocated_mib(client, target, domain.paths(where.name).disk) if disk else 0.0, "job": job,
        "boot_id_before": before, "boot_id_after": after,
        "same_boot": (before == after and code == 0) if before else None,
        "running": _run(client, target, f"virsh -q domstate {where.name}").strip() == "running",
        "address": guest_ip, "address_answers": answers, "pings_sent": sent, "pings_lost": lost,
    }


def _carry_marker(client: Instances, where: Located, target: str) -> None:
    """The guest's boot marker, from its console log on the source host to the one on TARGET, so the status
    there sees the boot it still runs (the same boot id, checked by the caller); the marker is checked
    like any string a host hands back before it is written."""
    log = domain.paths(where.name).serial_log
    found = client.execute(where.host, ["sh", "-c", f"grep -a -o '{tiny.MARKER} .*' {shlex.quote(log)} | tail -n1"])
    line = found.stdout.strip()
    if line and agent.parse_marker(line) is not None:
        client.execute(target, ["python3", "-c", "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')",
                                log, line])


def _pings_counted(client: Instances, host: str, pinger: str) -> tuple[int, int]:
    """(sent, lost) of the pings HOST sent while the guest moved; the ping is stopped and its files removed."""
    time.sleep(0.4)  # a ping in flight at the end gets its chance (two intervals; a reply takes a millisecond)
    # SIGINT makes ping print its summary and exit: wait for that (at most 2 s), not a fixed time
    summary = _run(client, host, f"p=$(cat {pinger}.pid); kill -INT $p; for i in $(seq 40); do "
                                 f"kill -0 $p 2>/dev/null || break; sleep 0.05; done; cat {pinger}; "
                                 f"rm -f {pinger} {pinger}.pid")
    found = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", summary)
    if not found:
        return 0, 0
    sent, received = int(found.group(1)), int(found.group(2))
    return sent, sent - received


def _allocated_mib(client: Instances, host: str, image: str) -> float:
    """What the disk copy wrote: the destination image's allocated size (libvirt's migration job counts
    memory only; the disk goes through a separate NBD mirror)."""
    info = client.execute(host, ["qemu-img", "info", "-U", "--output=json", image])
    try:
        return round(json.loads(info.stdout)["actual-size"] / 2**20, 1)
    except (ValueError, KeyError):
        return 0.0


def _metadata_xml(spec: dict) -> str:
    from xml.sax.saxutils import escape

    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return f"<spec>{escape(text)}</spec>"  # libvirt puts it in the namespace, with --key as its prefix


def _prepare_target(client: Instances, where: Located, target: str) -> None:
    """The destination needs the guest's kernel and initrd at the same paths, and (for a disk copy) an
    image of the same size where the source has it."""
    paths, q = domain.paths(where.name), shlex.quote
    if where.spec.get("image") == "file":  # the same imported base (every host of the lab has it) and size
        base = domain.file_image_path(where.spec["file_key"])
        if client.execute(target, ["test", "-s", base]).exit_code != 0:
            raise LxdkvmError(f"{target} has no copy of image {where.spec.get('file')}: run `lxdkvm up` first")
        agent.push_agent(client, target)
        _run(client, target, f"mkdir -p {q(paths.directory)} && rm -f {q(paths.disk)} && qemu-img create -q "
                             f"-f qcow2 -F qcow2 -b {q(base)} {q(paths.disk)} {int(where.spec['disk_mib'])}M")
        client.push(target, paths.seed, client.pull(where.host, paths.seed))
        return
    artifacts = tiny.build()
    if artifacts.key != where.spec.get("tiny"):
        raise LxdkvmError(f"guest {where.name} runs tiny guest build {where.spec.get('tiny')}, this machine now "
                          f"builds {artifacts.key}: recreate the guest (`lxdkvm up`) before moving it")
    hostprep.push_tiny(client, target, artifacts)
    agent.push_agent(client, target)
    script = f"mkdir -p {q(paths.directory)}"
    if where.spec.get("image") == "debian":  # the same base and size; the seed (read-only) is copied
        base = domain.debian_paths(where.spec["debian"])
        if client.execute(target, ["test", "-s", base.disk]).exit_code != 0:
            raise LxdkvmError(f"{target} has no Debian guest disk {where.spec['debian']}: run `lxdkvm up` first")
        size = max(int(where.spec.get("disk_mib") or 0), debian.SIZE_MIB)
        script += (f" && rm -f {q(paths.disk)} && qemu-img create -q -f qcow2 -F qcow2 -b {q(base.disk)} "
                   f"{q(paths.disk)} {size}M")
        _run(client, target, script)
        client.push(target, paths.seed, client.pull(where.host, paths.seed))
        return
    if where.spec.get("disk_mib"):
        script += (f" && rm -f {q(paths.disk)} && qemu-img create -q -f qcow2 "
                   f"{q(paths.disk)} {int(where.spec['disk_mib'])}M")
    _run(client, target, script)
