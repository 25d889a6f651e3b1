"""Live migration of a lab guest between two lab hosts: plain libvirt over an isolated lab network (the only
kind a host's libvirt TLS listener binds to, see `hostprep.migration_addresses`).

Pre-copy (post-copy needs userfaultfd, which a user namespace does not get) within a downtime budget: QEMU
switches over once what is left to send fits in the budget (`virsh migrate-setmaxdowntime`), and when the
guest dirties memory faster than the link drains it, auto-converge throttles the guest's vCPUs until it
does; the result says what QEMU measured, whether the budget held and how hard the guest was throttled.
Disks (when the guest has one) go by QEMU's own NBD server with `--copy-storage-all` into an image made
beforehand on the destination; a Debian guest's overlay with `--copy-storage-inc` onto the same base, which
every host of the lab has (as does a guest from an imported image). No kernel nbd, no shared storage, no
new device in the hosts.

A move costs two batches of work around `virsh migrate`, each one exec per host, the two hosts at once:
before, what the destination has (networks, memory, listener, files) and what the source sees (its
addresses, the guest's boot id and boot marker); after, libvirt's job statistics, the guest's new metadata,
its state and address on the destination, while the source stops its pings.

What hosts and guests answer is untrusted (`readback`): addresses must parse as IPv4 before they reach a
shell line or the result, boot ids must be UUIDs, the marker must be one lxdkvm's guest writes, and libvirt's
job statistics keep only keys of the shape libvirt prints.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from .. import readback
from ..errors import LxdkvmError
from ..lxd.batch import run_batch as _batch
from . import agent, debian, domain, hostprep, tiny
from .ops import Located, guest_exec
from .runtime import run

if TYPE_CHECKING:
    from ..lxd.instances import Instances

PING_INTERVAL = 0.2  # 5 pings a second while a guest moves
MAX_DOWNTIME_MS = 50  # the default downtime budget of a move (QEMU's own default is 300 ms)
BOOT_ID = ["cat", "/proc/sys/kernel/random/boot_id"]


# ---- before: what both ends have ----------------------------------------------------------------------

def _target_facts(client: Instances, where: Located, target: str) -> dict[str, tuple[int, str]]:
    commands = {
        "net": "ls /sys/class/net",
        "available": "awk '/^MemAvailable:/ {print int($2/1024)}' /proc/meminfo",
        "limit": "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
        "used": "cat /sys/fs/cgroup/memory/memory.usage_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.current",
        "listen": f"cat {hostprep.LISTENER_DROPIN}",
        "agent": f"sha256sum {agent.AGENT_PATH}",
    }
    if where.spec.get("image") not in ("debian", "file"):  # a tiny guest: its kernel and initramfs
        paths = domain.tiny_paths(where.spec["tiny"])
        commands["tiny"] = f"test -s {shlex.quote(paths.kernel)} -a -s {shlex.quote(paths.initrd)}"
    return _batch(client, target, commands)


def room_mib(facts: dict[str, tuple[int, str]]) -> int:
    """The memory a host has left for a guest: what its kernel says is available, within its own limit."""
    free = facts["available"][1].strip()
    room = int(free) if free.isdigit() else 0
    limit, used = facts["limit"][1].strip(), facts["used"][1].strip()
    if limit.isdigit() and int(limit) < 2**60 and used.isdigit():
        room = min(room, (int(limit) - int(used)) // 2**20)
    return room


def target_problem(where: Located, target: str, facts: dict[str, tuple[int, str]]) -> str:
    """Why TARGET cannot take guest WHERE (from FACTS, `_target_facts`), or ""."""
    bridges = sorted({nic[0] for nic in where.spec.get("nics", [])})
    missing = [b for b in bridges if b not in facts["net"][1].split()]
    if missing:
        return (f"{target} is not on the network(s) of guest {where.name} (no {', '.join(missing)} in {target}); "
                "migrate it to a host on the same lab networks")
    need, room = int(where.spec.get("memory_mib", 0)), room_mib(facts)
    if need > room:
        return (f"{target} has {room} MiB of memory left, guest {where.name} needs {need} MiB; give {target} "
                "more memory (`limits: {memory: ...}`) or move a guest off it")
    return ""


def listen_addresses(dropin: str) -> list[ipaddress.IPv4Address]:
    """The addresses a host's libvirt TLS listener binds to, from its drop-in."""
    found = (readback.address(a) for a in re.findall(r"^ListenStream=([\d.]+):\d+$", dropin, re.MULTILINE))
    return [ipaddress.IPv4Address(a) for a in found if a]


def pick_address(source: str, target: str, source_addresses: list[ipaddress.IPv4Interface],
                 listening: list[ipaddress.IPv4Address]) -> ipaddress.IPv4Address:
    """Where SOURCE reaches TARGET's libvirt: a listener address of TARGET in a subnet SOURCE is on."""
    for address in listening:
        if any(address in own.network for own in source_addresses):
            return address
    raise LxdkvmError(f"{source} and {target} share no isolated lab network with static addresses, so "
                      f"{target}'s libvirt listens nowhere {source} can reach; put both on an isolated "
                      "network with `ipv4:` addresses (libvirt's TCP listener is never on a NAT network)")


def _agent_exec(where: Located, command: list[str], timeout: int) -> str:
    """The shell line that runs COMMAND in guest WHERE through its agent socket (as `ops.guest_exec`)."""
    socket = domain.paths(where.name).agent_socket
    return shlex.join(["python3", agent.AGENT_PATH, "exec", socket, "--timeout", str(timeout), "--", *command])


def interfaces(text: str) -> list[ipaddress.IPv4Interface]:
    """The IPv4 interfaces in `ip -4 -o addr show`'s output (loopback included), each checked."""
    found = (readback.interface(f.split()[3]) for f in text.splitlines() if len(f.split()) > 3)
    return [ipaddress.IPv4Interface(a) for a in found if a]


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
    """The boot id a guest printed (a line of OUTPUT, which a batch merges with what went to stderr), or ""
    when no line is one."""
    return next((found for line in output.splitlines() if (found := readback.boot_id(line.strip()))), "")


def _source_side(client: Instances, where: Located) -> dict:
    """What the source knows of the guest before it moves: its addresses, boot id, address, boot marker."""
    imported = where.spec.get("image") == "file"
    log = shlex.quote(domain.paths(where.name).serial_log)
    facts = _batch(client, where.host, {"addresses": "ip -4 -o addr show",
                                        "marker": f"grep -a -o '{tiny.MARKER} .*' {log} | tail -n1",
                                        "boot": _agent_exec(where, BOOT_ID, 10 if imported else 60)})
    code, output = facts["boot"]
    before = _boot_id(output) if code == 0 else ""
    if not before and not imported:
        raise LxdkvmError(f"guest {where.name} does not answer its boot id on its agent socket: "
                          f"{output.strip()[-600:]}")
    marker = agent.MARKER_RE.search(facts["marker"][1])
    return {"addresses": interfaces(facts["addresses"][1]), "boot_id": before,
            "address": _guest_address(client, where) if before or not imported else _static_address(where),
            "marker": marker.group(0) if marker and before and marker.group(2) == before else ""}


def _target_side(client: Instances, where: Located, target: str) -> list[ipaddress.IPv4Address]:
    """Check TARGET can take the guest, prepare it, and return where its libvirt listens."""
    facts = _target_facts(client, where, target)
    problem = target_problem(where, target, facts)
    if problem:
        raise LxdkvmError(problem)
    agent_sum = facts["agent"][1].split()[:1]
    _prepare_target(client, where, target,
                    agent_current=agent_sum == [hashlib.sha256(Path(agent.__file__).read_bytes()).hexdigest()],
                    tiny_present=facts.get("tiny", (1, ""))[0] == 0)
    return listen_addresses(facts["listen"][1])


def _prepare_target(client: Instances, where: Located, target: str, agent_current: bool,
                    tiny_present: bool) -> None:
    """The destination needs the guest's kernel and initrd at the same paths, and (for a disk copy) an
    image of the same size where the source has it."""
    paths, q = domain.paths(where.name), shlex.quote
    if not agent_current:
        agent.push_agent(client, target)
    if where.spec.get("image") == "file":  # the same imported base (every host of the lab has it) and size
        base = domain.file_image_path(where.spec["file_key"])
        if client.execute(target, ["test", "-s", base]).exit_code != 0:
            raise LxdkvmError(f"{target} has no copy of image {where.spec.get('file')}: run `lxdkvm up` first")
        run(client, target, f"mkdir -p {q(paths.directory)} && rm -f {q(paths.disk)} && qemu-img create -q "
                             f"-f qcow2 -F qcow2 -b {q(base)} {q(paths.disk)} {int(where.spec['disk_mib'])}M")
        client.push(target, paths.seed, client.pull(where.host, paths.seed))
        return
    artifacts = tiny.build()
    if artifacts.key != where.spec.get("tiny"):
        raise LxdkvmError(f"guest {where.name} runs tiny guest build {where.spec.get('tiny')}, this machine now "
                          f"builds {artifacts.key}: recreate the guest (`lxdkvm up`) before moving it")
    if not tiny_present:
        hostprep.push_tiny(client, target, artifacts)
    script = f"mkdir -p {q(paths.directory)}"
    if where.spec.get("image") == "debian":  # the same base and size; the seed (read-only) is copied
        base = domain.debian_paths(where.spec["debian"])
        if client.execute(target, ["test", "-s", base.disk]).exit_code != 0:
            raise LxdkvmError(f"{target} has no Debian guest disk {where.spec['debian']}: run `lxdkvm up` first")
        size = max(int(where.spec.get("disk_mib") or 0), debian.SIZE_MIB)
        script += (f" && rm -f {q(paths.disk)} && qemu-img create -q -f qcow2 -F qcow2 -b {q(base.disk)} "
                   f"{q(paths.disk)} {size}M")
        run(client, target, script)
        client.push(target, paths.seed, client.pull(where.host, paths.seed))
        return
    if where.spec.get("disk_mib"):
        script += (f" && rm -f {q(paths.disk)} && qemu-img create -q -f qcow2 "
                   f"{q(paths.disk)} {int(where.spec['disk_mib'])}M")
    run(client, target, script)


# ---- the move -----------------------------------------------------------------------------------------

def jobinfo(text: str) -> dict[str, float]:
    """`virsh domjobinfo`'s fields as numbers (sizes in MiB, times in ms)."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        number = re.match(r"\s*([\d.]+)\s*(\w+)?", value)
        if number:
            amount, unit = float(number.group(1)), (number.group(2) or "")
            factor = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}.get(unit, 1)
            out[key.strip()] = amount * factor
    return out


def budget_command(guest: str, max_downtime_ms: int = MAX_DOWNTIME_MS) -> str:
    """The `virsh` line that sets the downtime QEMU may take when GUEST next moves (1 to 60000 ms)."""
    if not 1 <= int(max_downtime_ms) <= 60000:
        raise LxdkvmError(f"a downtime budget is 1 to 60000 ms, not {max_downtime_ms}")
    return f"virsh migrate-setmaxdowntime {guest} {int(max_downtime_ms)}"


def migrate_command(guest: str, address: str, live: bool = True, copy_storage: str | None = None,
                    max_downtime_ms: int = MAX_DOWNTIME_MS) -> str:
    """The `virsh migrate` that moves GUEST to the host at ADDRESS (COPY_STORAGE: "all", "inc" or None),
    after setting the downtime QEMU may take (MAX_DOWNTIME_MS) on the guest's QEMU.
    --tls: libvirt's connection (qemu+tls), QEMU's migration stream and its disk copy (NBD) all use TLS
    with the lab CA's certificates, both ends checked (docs/security.md). --auto-converge: a guest that
    dirties memory faster than the link drains it is slowed down until the move converges."""
    flags = ("--live --auto-converge " if live else "") + (f"--copy-storage-{copy_storage} " if copy_storage else "")
    budget = budget_command(guest, max_downtime_ms)  # checked also for a move that does not use it
    budget = f"{budget} && " if live else ""
    return (f"{budget}virsh migrate {flags}--tls --persistent --undefinesource --verbose {guest} "
            f"qemu+tls://{address}/system --migrateuri tcp://{address} --listen-address {address}")


def migrate(client: Instances, where: Located, target: str, live: bool = True,
            say=lambda _m: None, max_downtime_ms: int = MAX_DOWNTIME_MS) -> dict:
    """Move guest WHERE to host TARGET with libvirt; return what was measured and checked."""
    if target == where.host:
        raise LxdkvmError(f"guest {where.name} already runs on {target}")
    say(f"checking {where.host} and {target}, preparing {target}")
    with ThreadPoolExecutor(max_workers=2) as pool:
        source_job = pool.submit(_source_side, client, where)
        target_job = pool.submit(_target_side, client, where, target)
        listening, source = target_job.result(), source_job.result()
    address = pick_address(where.host, target, source["addresses"], listening)
    if not source["boot_id"]:  # an imported image need not run lxdkvm's agent: kept running is libvirt's word and ping's
        say(f"{where.name}: no lxdkvm agent answers in image {where.spec.get('file')}: its boot id is not compared")
    guest_ip = source["address"]
    pinger = f"/tmp/lxdkvm-migrate-{where.name}.ping"
    if guest_ip:  # from the source host, which stays on the lab network the whole time
        run(client, where.host, f"ping -n -i {PING_INTERVAL} {guest_ip} > {pinger} 2>&1 & echo $! > {pinger}.pid")
    # a Debian guest's disk is an overlay on a base every host has: only the overlay moves
    disk = "inc" if where.spec.get("image") in ("debian", "file") else "all" if where.spec.get("disk_mib") else None
    command = migrate_command(where.name, str(address), live, disk, max_downtime_ms)
    say(f"{where.host} → {target} over {address}: {command}")
    moved = Located(where.name, target, {**where.spec, "host": target})
    with ThreadPoolExecutor(max_workers=2) as pool:
        start = time.monotonic()
        try:
            run(client, where.host, command, timeout=600)
        finally:  # the source's pings stop also when the move failed
            seconds = round(time.monotonic() - start, 2)
            pings = pool.submit(_pings_counted, client, where.host, pinger) if guest_ip else None
        checked = pool.submit(_target_after, client, moved, guest_ip, disk, source).result()
        sent, lost = pings.result() if pings else (0, 0)
    job = checked["job"]
    downtime = job.get("Total downtime")
    return {
        "guest": where.name, "from": where.host, "to": target, "over": str(address), "live": live,
        "disk_copied": bool(disk), "seconds": seconds,
        "libvirt_ms": job.get("Time elapsed"), "downtime_ms": downtime,
        "downtime_budget_ms": int(max_downtime_ms) if live else None,
        "within_budget": (downtime is not None and downtime <= max_downtime_ms) if live else None,
        "throttle_percent": job.get("Auto converge throttle", 0.0), "iterations": job.get("Iteration"),
        "memory_mib": job.get("Memory processed"), "disk_mib": checked["disk_mib"], "job": job,
        "boot_id_before": source["boot_id"], "boot_id_after": checked["boot_id"],
        "same_boot": checked["same_boot"], "running": checked["running"],
        "address": guest_ip, "address_answers": checked["answers"], "pings_sent": sent, "pings_lost": lost,
    }


def kept_running(result: dict) -> bool:
    """Whether the guest of a move's RESULT (`migrate`) kept running: the same boot id, or, for an imported
    image without lxdkvm's agent, libvirt's word that it runs."""
    return bool(result["same_boot"] if result["same_boot"] is not None else result["running"])


def succeeded(result: dict) -> bool:
    """What `lxdkvm migrate` exits 0 for: the guest kept running and its address (if it has one) answers."""
    return kept_running(result) and bool(result["address_answers"] or not result["address"])


# ---- after: what the destination has ------------------------------------------------------------------

def _target_after(client: Instances, moved: Located, guest_ip: str | None, disk: str | None, source: dict) -> dict:
    """On the destination: libvirt's statistics of the move, the guest's metadata naming its new host, its
    state, its address answering, the disk written; then its boot id, and its boot marker carried over."""
    q, name = shlex.quote, moved.name
    commands = {"job": f"virsh domjobinfo {q(name)} --completed",
                "metadata": f"virsh -q metadata {q(name)} {domain.METADATA_NS} --key lxdkvm --live --config "
                            f"--set {q(_metadata_xml(moved.spec))}",
                "state": f"virsh -q domstate {q(name)}"}
    if guest_ip:
        commands["ping"] = f"ping -c 1 -W 2 {q(guest_ip)}"
    if disk:
        commands["disk"] = f"qemu-img info -U --output=json {q(domain.paths(name).disk)}"
    if source["boot_id"]:  # its boot id; when it is the one it had, its boot marker follows it
        log = domain.paths(name).serial_log
        carry = f"printf '%s\\n' {q(source['marker'])} >> {q(log)}" if source["marker"] else "true"
        commands["boot"] = (f"b=$({_agent_exec(moved, BOOT_ID, 60)}) && printf '%s\\n' \"$b\" && "
                            f"if [ \"$b\" = {q(source['boot_id'])} ]; then {carry}; fi")
    found = _batch(client, moved.host, commands)
    if found["metadata"][0] != 0:
        raise LxdkvmError(f"{moved.host}: guest {name} moved, but its lxdkvm metadata could not be updated: "
                          f"{found['metadata'][1].strip()[-600:]}")
    code, after = found.get("boot", (0, ""))
    after = _boot_id(after) if code == 0 else ""
    return {"job": readback.job_info(jobinfo(found["job"][1])), "boot_id": after,
            "same_boot": (after == source["boot_id"] and code == 0) if source["boot_id"] else None,
            "running": found["state"][1].strip() == "running",
            "answers": bool(guest_ip) and found["ping"][0] == 0,
            "disk_mib": allocated_mib(found["disk"][1]) if disk else 0.0}


def _pings_counted(client: Instances, host: str, pinger: str) -> tuple[int, int]:
    """(sent, lost) of the pings HOST sent while the guest moved; the ping is stopped and its files removed."""
    time.sleep(0.4)  # a ping in flight at the end gets its chance (two intervals; a reply takes a millisecond)
    # SIGINT makes ping print its summary and exit: wait for that (at most 2 s), not a fixed time
    summary = run(client, host, f"p=$(cat {pinger}.pid); kill -INT $p; for i in $(seq 40); do "
                                 f"kill -0 $p 2>/dev/null || break; sleep 0.05; done; cat {pinger}; "
                                 f"rm -f {pinger} {pinger}.pid")
    found = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", summary)
    if not found:
        return 0, 0
    sent, received = int(found.group(1)), int(found.group(2))
    return sent, sent - received


def allocated_mib(qemu_img_info: str) -> float:
    """What the disk copy wrote: the destination image's allocated size from `qemu-img info --output=json`
    (libvirt's migration job counts memory only; the disk goes through a separate NBD mirror)."""
    try:
        size = json.loads(qemu_img_info)["actual-size"]
    except (ValueError, KeyError, TypeError):
        return 0.0
    return round(size / 2**20, 1) if type(size) is int and size >= 0 else 0.0


def _metadata_xml(spec: dict) -> str:
    from xml.sax.saxutils import escape

    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return f"<spec>{escape(text)}</spec>"  # libvirt puts it in the namespace, with --key as its prefix
