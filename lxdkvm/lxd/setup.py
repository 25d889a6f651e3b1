"""Make this machine's LXD (or Incus) usable: install the packages, start the daemon, give it a pool and
a bridge.

Which daemon is the session's (`daemon.selected`); Incus's installation and start are in incussetup. Every
step first checks whether it is needed, so running it again changes nothing.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from ..errors import LxdkvmError
from ..machine import hostcaps, limits, programs, storage
from . import daemon as daemon_mod
from . import incussetup

BRIDGE = "lxdkvmbr0"
# Incus's management bridge: its own name (both daemons' bridges are interfaces of this machine) and a
# subnet searched from 10.88.0.0/24 on, so it does not take LXD's (lxdkvmbr0 is usually 10.87.0.1/24).
BRIDGES = {"lxd": (BRIDGE, 87), "incus": ("lxdkvmibr0", 88)}
POOL = "default"
LOG = Path("/var/log/lxd/lxd.log")

Report = Callable[[str], None]


def _run(command: list[str], what: str) -> None:
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise LxdkvmError(f"{what} failed ({' '.join(command[:3])}...): {' | '.join(tail)}")


def lxd_installed(kind: str) -> bool:
    """Whether the daemon of KIND ("lxd" or "incus") is installed: what LXD's package sets up (root's
    subordinate ids, the daemon) exists; for Incus, its daemon."""
    if kind == "incus":
        return incussetup.installed()
    return daemon_mod.lxd_present()


def install_packages(session, report: Report) -> None:
    """The programs lxdkvm runs (programs.TOOLS) and LXD's, from Debian 12 in one apt run, when missing;
    for Incus, the tools first, then Incus (incussetup); then the clients of docs/tools.md (programs.CLIENTS)."""
    kind = session.daemon.kind
    if kind == "incus":
        programs.ensure(programs.TOOLS, "the tools lxdkvm needs", report)
        incussetup.install(report)
    else:
        programs.ensure({**programs.DAEMONS["lxd"], **programs.TOOLS}, "LXD and the tools lxdkvm needs", report)
    programs.ensure(programs.CLIENTS, "the clients docs/tools.md uses", report, recommends=False)


def start_daemon(session, report: Report) -> None:
    if session.daemon.kind == "incus":
        incussetup.start(session, report)
        session.wait_until_answers()
        return
    if session.answers():
        return
    if Path("/run/systemd/system").is_dir():
        report("starting LXD (systemctl start lxd)")
        _run(["systemctl", "start", "lxd.socket", "lxd.service"], "starting LXD")
    else:
        # No systemd as PID 1 (containers, sandboxes): run the daemon detached, as its unit would.
        report(f"starting LXD daemon (no systemd; log in {LOG})")
        LOG.parent.mkdir(parents=True, exist_ok=True)
        with open(os.devnull, "rb") as devnull, open(LOG, "ab") as log:
            subprocess.Popen(["lxd", "--group", "root", "--logfile", str(LOG)], stdin=devnull,
                             stdout=log, stderr=log, start_new_session=True, close_fds=True)
    _run(["lxd", "waitready", "--timeout", "60"], "waiting for LXD")
    session.wait_until_answers()


def free_subnet(taken: list[ipaddress.IPv4Network], start: int = 87) -> ipaddress.IPv4Network:
    """The first 10.N.0.0/24 (N from `start`) that overlaps none of `taken`."""
    for n in [*range(start, 255), *range(1, start)]:
        candidate = ipaddress.IPv4Network(f"10.{n}.0.0/24")
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise LxdkvmError("no free 10.N.0.0/24 subnet for the management bridge: every one overlaps a route of "
                      "this machine (`ip route`)")


def initialise(session, report: Report) -> dict[str, str]:
    """A storage pool, a NAT bridge with an explicit subnet, and a default profile that uses them."""
    facts = session.server.facts()
    profile_devices = session.profiles.devices("default")
    root = next((d for d in profile_devices.values() if d.get("type") == "disk" and d.get("path") == "/"), None)
    nic = next((d for d in profile_devices.values() if d.get("type") == "nic"), None)
    pool = root["pool"] if root else POOL
    if not root and session.pools.ensure(pool, "dir"):
        report(f"created storage pool {pool} (dir)")
    bridge, start = BRIDGES[session.daemon.kind]
    network = (nic or {}).get("network") or (nic or {}).get("parent") or bridge
    if not nic and not any(n["name"] == network for n in facts.networks):
        # `lxd init --auto` cannot pick a subnet on some machines: choose one that overlaps nothing: no
        # route, no address of any interface (the other daemon's bridge keeps its address, but not its
        # route, while that daemon is stopped) and no network of this daemon.
        taken = [net for net, _dev in [*hostcaps.routes(), *hostcaps.interface_subnets()]] + [
            ipaddress.IPv4Network(n["ipv4"], strict=False) for n in facts.networks if n["ipv4"] and "/" in n["ipv4"]]
        subnet = free_subnet(taken, start)
        address = f"{subnet.network_address + 1}/{subnet.prefixlen}"
        session.networks.ensure(network, {"ipv4.address": address, "ipv4.nat": "true",
                                          "ipv6.address": "none"}, description="lxdkvm management bridge")
        report(f"created bridge {network} ({address}, NAT)")
    added = session.profiles.ensure_default_devices(pool, network)
    if added:
        report(f"default profile: added {', '.join(added)}")
    hosts_pool = ensure_hosts_pool(session, report)
    return {"pool": pool, "network": network, "hosts_pool": hosts_pool.name}


def ensure_hosts_pool(session, report: Report = lambda _msg: None) -> storage.PoolChoice:
    """The pool KVM hosts go on (see storage.choose_pool), created when it does not exist yet."""
    choice = storage.choose_pool(session.server.facts().pools, storage.btrfs_support())
    if choice.create and session.server.clustered():  # a cluster's pool is made on every member: not lxdkvm's job
        raise LxdkvmError("the LXD cluster has no storage pool for the hosts: create one on every member "
                          "(docs/cluster.md), or name one with `storage:` in the lab file")
    if choice.create and session.pools.ensure(choice.name, choice.driver, dict(choice.config)):
        report(f"created storage pool {choice.name} ({choice.driver}): {choice.reason}")
    if not choice.cow:
        report(f"warning: {choice.reason}")
    return choice


def ensure_lxd(session, report: Report = lambda _msg: None) -> None:
    """Install, start and initialise the session's daemon (LXD, or Incus) as needed, with the machine's
    kernel limits raised for as many hosts as it can hold (`machine.limits`)."""
    install_packages(session, report)
    limits.ensure(report)
    start_daemon(session, report)
    if not session.server.clustered():  # a cluster is set up by whoever runs it (docs/cluster.md)
        initialise(session, report)
