"""The lab pipeline, in one screen: load → check → prepare → plan → apply (hosts ready) → status.

`lxdkvm up|plan|down|status` and the `invoke lab-*` tasks call these functions and nothing else.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import LxdkvmError
from ..guests import store
from ..hosts import profile as profile_mod
from ..images import bake, base
from ..labfile import checks
from ..labfile import topology as t
from ..lxd import LabLxd, setup
from ..machine import hostcaps, storage
from . import apply, objects, sshkeys, state
from .lock import LabLock
from .plan import Observed, Plan, make_plan, teardown_plan

Report = Callable[[str, str], None]  # (host or "lab", message)
Allowances = checks.Allowances  # risks the user accepted on the command line (`--allow-*`)
NO_ALLOWANCES = Allowances()


def machine_facts(lab_name: str, connect: bool = True,
                  allow: Allowances = NO_ALLOWANCES) -> checks.Machine:
    """What the checks need to know about this machine (and what the user allowed on the command line);
    LXD facts only when LXD answers."""
    host = hostcaps.read_host()
    facts = {"routes": tuple(hostcaps.routes()), "cpus": os.cpu_count(), "memory": hostcaps.mem_total(),
             "hardware_virt": hostcaps.hardware_virt(host) is not None, "allow": allow,
             "guest_images": {i.name: i.virtual_mib for i in store.listing()}}
    if setup.lxd_installed():  # LXD's package creates root's subordinate ids: unknown before it
        facts["isolated_capacity"] = min(hostcaps.isolated_capacity(host.subuid),
                                         hostcaps.isolated_capacity(host.subgid))
    if connect:
        try:
            lxd = LabLxd(t.project_name(lab_name))
            facts.update({"isolated_elsewhere": lxd.isolated_elsewhere(),
                          "images": frozenset(lxd.image_aliases()), "pools": frozenset(lxd.pool_names()),
                          "cluster": lxd.cluster()})
        except LxdkvmError:
            pass  # not installed or not running yet: `up` prepares it, then checks again
    return checks.Machine(**facts)


def load(path: str | Path | None, connect: bool = True, allow: Allowances = NO_ALLOWANCES) -> t.Lab:
    """The lab from PATH (None: the embedded default lab), checked. Raises LabInvalid with every problem."""
    from ..labfile import read as labfile  # pydantic: only the commands that read a lab file pay for it

    text, source = labfile.read(path)
    lab, problems, _ = labfile.parse(text, source)
    cluster = None
    if lab is not None:
        connect = connect and bool(checks.LAB_NAME.match(lab.name))  # never ask LXD about a bad name
        facts = machine_facts(lab.name, connect, allow)
        problems += checks.check(lab, facts)
        cluster = facts.cluster
    if problems:
        raise t.LabInvalid(source, problems)
    return on_cluster(lab, cluster)


def on_cluster(lab: t.Lab, cluster) -> t.Lab:
    """The lab as LXD runs it: on a cluster, its networks stretched over the members (cluster.stretch)."""
    if cluster is None:
        return lab
    from ..cluster import stretch

    return stretch.for_cluster(lab, cluster)


def _cluster_of(project: str):
    try:
        return LabLxd(project).cluster()
    except LxdkvmError:
        return None


def lab_name(lab: str | Path | None) -> str:
    """A lab's name from its file, or LAB itself when it is not a file (a lab that is up)."""
    if lab is None or Path(lab).is_file():
        from ..labfile import read as labfile

        text, source = labfile.read(lab)  # bounded like `load`: the file is untrusted
        name, line = labfile.name_of(text, source)
        if not checks.LAB_NAME.match(name):  # it becomes a project and a lock file's name
            raise t.LabInvalid(source, [t.Problem("name", f"'{name}' is not a valid lab name",
                                                  checks.LAB_NAME_RULE, line)])
        return name
    name = str(lab)
    if name.endswith((".yaml", ".yml")) or "/" in name:
        raise LxdkvmError(f"no lab file {name}")
    if not checks.LAB_NAME.match(name):
        raise LxdkvmError(f"{name!r} is neither a lab file nor a lab name")
    return name


# ------------------------------------------------------------------------------------ prepare
@dataclass
class Prepared:
    pool: str
    kvm_profile: dict


def _kvm_profile(image_properties: dict[str, str], ssh_key: str = "") -> dict:
    """The kvm-host profile for hosts of this image: baked images need no package installs. SSH_KEY: the
    lab's public key, for its SSH user (see sshkeys)."""
    gid = image_properties.get("lxdkvm.kvm_gid", "0")
    spec = profile_mod.for_host(hostcaps.read_host(), kvm_gid=int(gid) if gid.isdigit() else 0,
                                install_packages="lxdkvm.contains" not in image_properties)
    spec.ssh_user, spec.ssh_key = sshkeys.LAB_USER, ssh_key
    return profile_mod.parse(profile_mod.render(spec))


def prepare(lab: t.Lab, say: Callable[[str], None]) -> Prepared:
    """Make what the lab stands on exist: the storage pool and the image (built and baked on demand).
    Shared by every lab; never deleted by `down`."""
    client = LabLxd(lab.project)
    if lab.storage == "auto":
        pool = setup.ensure_hosts_pool(client, say).name
    else:
        pool = lab.storage
    found = client.image_by_alias(lab.image)
    if lab.image == t.DEFAULT_IMAGE and client.clustered():  # baking needs this machine's LXD (docs/cluster.md)
        if found is None:
            raise LxdkvmError(f"the LXD cluster has no image {lab.image}: bake it on this machine's LXD "
                              "(`lxdkvm image bake`) and copy it (`lxc image export` then `lxc image import`; "
                              "`lxdkvm cluster sandbox up` does it for the sandbox)")
    elif lab.image == t.DEFAULT_IMAGE:  # lxdkvm's own image: (re)built and (re)baked when its inputs change
        if found is None:
            say(f"image {lab.image} is missing: building the base image and baking it (a few minutes, once)")
        base.build(report=say)
        baked = bake.bake(report=say)
        if baked.action != "up to date":
            say(f"image {lab.image}: {baked.action} ({baked.fingerprint[:12]})")
        found = client.image_by_alias(baked.alias)
    if found is None:
        raise LxdkvmError(f"LXD has no image {lab.image}")
    return Prepared(pool, _kvm_profile(found["properties"], sshkeys.public_key(lab.name)))


def _planned_prepared(lab: t.Lab, lxd: LabLxd) -> Prepared:
    """What `prepare` would decide, without creating anything (for `plan`)."""
    if lab.storage == "auto":
        pool = storage.choose_pool(lxd.server_facts().pools, storage.btrfs_support()).name
    else:
        pool = lab.storage
    found = lxd.image_by_alias(lab.image)
    return Prepared(pool, _kvm_profile(found["properties"] if found else {"lxdkvm.contains": "(to be baked)"},
                                       sshkeys.public_key(lab.name)))


# ------------------------------------------------------------------------------------ plan, up, down
def observe(lxd: LabLxd, guests: bool = False) -> Observed:
    """What LXD has for the lab; with GUESTS, also the libvirt domains inside its running hosts."""
    project = lxd.project_config()
    if project is None:
        return Observed(None, lxd.networks(), {}, {})
    have = Observed(project, lxd.networks(), lxd.profiles(), lxd.instances())
    if guests:
        from ..guests import runtime

        have.guests = {host: runtime.observe(lxd.scoped, host)
                       for host, info in have.instances.items() if info["status"] == "Running"}
    return have


def _guest_images(lab: t.Lab, say: Callable[[str], None]):
    """What the lab's guests are made from (built once, cached), or None for a lab without guests."""
    if not lab.guests:
        return None
    from ..guests import provision as guest_provision

    return guest_provision.images(lab, say)


def _with_guests(lab: t.Lab, want: objects.Desired, built) -> objects.Desired:
    """The lab's guests as libvirt domains, from BUILT (`_guest_images`)."""
    if built is None:
        return want
    from ..guests import provision as guest_provision

    return dataclasses.replace(want, guests=guest_provision.desired(lab, built))


def plan(path: str | Path | None, allow: Allowances = NO_ALLOWANCES) -> tuple[t.Lab, Plan]:
    lab = load(path, allow=allow)
    lxd = LabLxd(lab.project)
    built = _guest_images(lab, lambda _m: None)
    have = observe(lxd, guests=True)
    want = _with_guests(lab, _desired(lab, lxd, _planned_prepared(lab, lxd), have), built)
    return lab, make_plan(want, have)


def _desired(lab: t.Lab, lxd: LabLxd, prepared: Prepared, have: Observed) -> objects.Desired:
    """What the lab needs; on a cluster, with each host on a member (existing hosts stay where they are)."""
    located = {name: info.get("location", "") for name, info in have.instances.items()}
    return objects.desired(lab, prepared.pool, prepared.kvm_profile, lxd.cluster(), located)


@dataclass
class UpResult:
    lab: t.Lab
    plan: Plan
    applied: apply.Applied
    recovered: str  # a stale lock that was taken over, if any
    guests: object = None  # guests.provision.GuestsApplied


def up(path: str | Path | None, report: Report, workers: int = apply.DEFAULT_WORKERS,
       allow: Allowances = NO_ALLOWANCES) -> UpResult:
    say = lambda message: report("lab", message)
    lab = load(path, allow=allow)  # nothing is touched before the file is known to be right
    with LabLock(lab.name, "up") as lock:
        if lock.recovered:
            say(lock.recovered)
        setup.ensure_lxd(say)  # installs, starts and initialises LXD on a fresh machine
        lab = load(path, allow=allow)  # again, now that LXD surely answers (images, pools, other labs' ids)
        sshkeys.ensure_keypair(lab.name)  # before the profile: its user-data carries the public key
        prepared = prepare(lab, say)
        lxd = LabLxd(lab.project)
        built = _guest_images(lab, say)
        have = observe(lxd, guests=True)
        want = _with_guests(lab, _desired(lab, lxd, prepared, have), built)
        the_plan = make_plan(want, have)
        applied = apply.Applied() if the_plan.empty else apply.apply(lab, want, the_plan, report, workers)
        trust_host_keys(lab.name, say)
        from ..guests import provision as guest_provision  # after the hosts: guests live inside them

        guests = guest_provision.apply(lab, want, the_plan, have, built, report)
        _remember(lab, path)
        return UpResult(lab, the_plan, applied, lock.recovered, guests)


LAB_COPY = "lab.yaml"  # in the lab's state directory: the file the last successful `up` used


def _remember(lab: t.Lab, path: str | Path | None) -> None:
    from ..labfile import read as labfile

    copy = state.state_dir(lab.name) / LAB_COPY
    copy.write_text(labfile.read(path)[0])


def remembered(lab: str | Path | None) -> t.Lab:
    """The lab from its file, or, for the name of a lab that is up, from the file its last `up` used."""
    if lab is None or Path(lab).is_file():
        the_lab = load(lab, connect=False)
    else:
        name = lab_name(lab)
        copy = state.path(name) / LAB_COPY
        if not copy.is_file():
            raise LxdkvmError(f"no lab file remembered for lab {name}: give the lab file instead of its name")
        the_lab = load(copy, connect=False)
    return on_cluster(the_lab, _cluster_of(the_lab.project))


# ------------------------------------------------------------------------------------ guests
def verify(lab: str | Path | None, say: Callable[[str], None] = lambda _m: None) -> tuple[t.Lab, list]:
    from . import verify as verify_mod

    the_lab = remembered(lab)
    the_status = status(the_lab.name)
    if not the_status["exists"]:
        raise LxdkvmError(f"lab {the_lab.name} is not up (`lxdkvm up` first)")
    return the_lab, verify_mod.verify(the_lab, the_status, say)


def _guest(lab: str | Path | None, guest: str):
    """(lab name, a connection in its project, its running hosts, where GUEST runs)."""
    from ..guests import ops

    name = lab_name(lab)
    client = LabLxd(t.project_name(name)).scoped
    instances = LabLxd(t.project_name(name)).instances()
    hosts = sorted(h for h, info in instances.items() if info["status"] == "Running")
    return name, client, hosts, ops.locate(client, hosts, name, guest)


def guest_exec(lab: str | Path | None, guest: str, command: list[str], timeout: float = 60) -> tuple[str, str, int]:
    """(stdout, stderr, exit code) of COMMAND run in GUEST (through lxdkvm's agent in it)."""
    from ..guests import ops

    _name, client, _hosts, where = _guest(lab, guest)
    return ops.guest_exec(client, where, command, timeout)


def console_host(lab: str | Path | None, guest: str) -> tuple[str, str]:
    """(project, host) where GUEST's console is (`virsh console GUEST` there)."""
    name, _client, _hosts, where = _guest(lab, guest)
    return t.project_name(name), where.host


def migrate(lab: str | Path | None, guest: str, to: str, live: bool = True,
            say: Callable[[str], None] = lambda _m: None) -> dict:
    from ..guests import ops

    name, client, hosts, where = _guest(lab, guest)
    if to not in hosts:
        raise LxdkvmError(f"lab {name} has no running host {to} (running: {', '.join(hosts) or 'none'})")
    with LabLock(name, "migrate"):
        return ops.migrate(client, where, to, live, say)


def trust_host_keys(name: str, say: Callable[[str], None]) -> None:
    """Write the lab's known_hosts from each running host's key, read over LXD exec (never trusted on first
    use); again at every `up`, since a recreated host has a new key. Warn about hosts without the lab's key."""
    from concurrent.futures import ThreadPoolExecutor

    from ..outputs.inventory import management_address

    project, lab_status = t.project_name(name), status(name, guests=False)
    nat = {n["name"] for n in lab_status["networks"] if n["gateway"] != "none"}
    running = {h["name"]: [a for a in [management_address(h, nat)] if a]
               for h in lab_status["hosts"] if h["state"] == "Running"}
    separator = "--- authorized_keys ---"

    def read(host: str) -> tuple[str, str]:
        """(its host key, the lab user's authorized_keys): one exec per host, hosts side by side."""
        script = f"cat {sshkeys.HOST_KEY}; echo '{separator}'; cat /home/{sshkeys.LAB_USER}/.ssh/authorized_keys"
        out = LabLxd(project).scoped.execute(host, ["sh", "-c", script]).stdout
        host_key, _, authorized = out.partition(separator)
        return host_key, authorized

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(running)))) as executor:
        files = dict(zip(running, executor.map(read, running), strict=True))
    sshkeys.refresh_known_hosts(name, running, lambda host: files[host][0])
    key = sshkeys.public_key(name).rsplit(" ", 1)[0]
    without = [host for host in running if key not in files[host][1]]
    if without:
        say(f"{', '.join(without)}: made before the lab had its SSH key, so Ansible cannot log in; "
            "recreate them (`lxdkvm down`, then `up`) to use the lab from Ansible")


def down(lab: str | Path | None, report: Report) -> tuple[Plan, float]:
    name = lab_name(lab)
    with LabLock(name, "down") as lock:
        if lock.recovered:
            report("lab", lock.recovered)
        lxd = LabLxd(t.project_name(name))
        the_plan = teardown_plan(name, lxd.project, observe(lxd))
        seconds = apply.teardown(the_plan, report)
        state.remove(name)  # its SSH keys and known_hosts (and anything else kept for it)
        return the_plan, seconds


# ------------------------------------------------------------------------------------ status
def _in(address: str, subnet: str) -> bool:
    try:
        return ipaddress.IPv4Interface(address).ip in ipaddress.IPv4Network(subnet)
    except ValueError:
        return False


def status(lab: str | Path | None, guests: bool = True) -> dict:
    """The lab as LXD has it: hosts, state, addresses per network, readiness, and (with GUESTS, an exec
    in each running host) their guests (JSON-ready)."""
    name = lab_name(lab)
    lxd = LabLxd(t.project_name(name))
    have = observe(lxd)
    networks = {bridge: config for bridge, config in have.networks.items()
                if config.get(objects.MARK) == name}
    hosts = []
    leases: dict[str, str] | None = None
    for host, info in sorted(have.instances.items()):
        addresses = lxd.addresses(host) if info["status"] == "Running" else {}
        per_network = {}
        for device, nic in sorted(info["devices"].items()):
            if nic.get("type") == "nic":
                network = networks.get(nic.get("network", ""), {}).get(objects.NETWORK, nic.get("network", ""))
                # the address is on the in-host bridge that carries the NIC (on the NIC for older hosts)
                per_network[network] = (addresses.get(t.in_host_bridge(network))
                                        or addresses.get(nic.get("name", device), []))
        found: list[dict] = []
        if info["status"] == "Running" and guests:
            from ..guests import runtime

            found = runtime.guest_status(lxd.scoped, host, name)
            subnets = {c.get(objects.NETWORK, b): c.get("user.lxdkvm.subnet", "") for b, c in networks.items()}
            if any(g.get("dhcp_macs") for g in found):  # imported images report nothing: LXD's leases
                leases = leases if leases is not None else lxd.dhcp_leases(sorted(networks))
                for guest in found:
                    guest["addresses"].update({nic: leases[mac] for nic, mac in guest.pop("dhcp_macs", {}).items()
                                               if mac in leases})
            for guest in found:  # per network, like hosts: the network whose subnet holds the address
                guest.pop("dhcp_macs", None)
                guest["addresses"] = {net: [a for a in guest["addresses"].values() if _in(a, subnet)]
                                      for net, subnet in subnets.items()}
                guest["addresses"] = {net: got for net, got in guest["addresses"].items() if got}
        where = {"member": info["location"]} if info.get("location") else {}  # on a cluster only
        hosts.append({"name": host, "state": info["status"], **where,
                      "ready": info["status"] == "Running" and info["config"].get(objects.READY) == "true",
                      "addresses": per_network, "guests": found})
    return {
        "lab": name, "project": lxd.project, "exists": have.project is not None,
        "networks": [{"name": c.get(objects.NETWORK, b), "bridge": b, "subnet": c.get("user.lxdkvm.subnet", ""),
                      "gateway": c.get("ipv4.address", "none")} for b, c in sorted(networks.items())],
        "hosts": hosts,
    }
