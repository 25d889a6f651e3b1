"""The daemon as a whole: what it is and can do (`ServerFacts`), its projects' names, whether it is a
cluster and of which members, and whether lxdkvm mounts new hosts' root filesystems idmapped on a pool."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import LxdkvmError
from ..machine import idmapmount
from ..settings import IDMAPPED_ROOTS_ENV, Settings
from . import daemon as daemon_mod
from .connection import Connection, Manager
from .messages import _refused

# API extensions lxdkvm relies on (LXD 5.0 has them all).
REQUIRED_EXTENSIONS = ("instances", "projects", "projects_networks", "network", "storage",
                       "cloud_init", "id_map_base")


@dataclass
class ServerFacts:
    socket: str
    reachable: bool
    error: str = ""
    daemon: str = "LXD"  # "LXD" or "Incus": what the server says it is (or would be, when unreachable)
    reason: str = ""  # why lxdkvm talks to this daemon (daemon.Daemon.reason)
    version: str = ""
    driver: str = ""
    firewall: str = ""
    missing_extensions: list[str] = field(default_factory=list)
    pools: list[dict] = field(default_factory=list)  # name, driver, source
    networks: list[dict] = field(default_factory=list)  # name, type, managed, ipv4
    cluster: object = None  # cluster.placement.Cluster when this daemon is a cluster member
    idmapped_roots: dict[str, str] = field(default_factory=dict)  # for `doctor`: pool → "" (lxdkvm
    # mounts new hosts' root idmapped there) or why not (`Server.idmapped_roots`)


def list_networks(conn: Connection) -> list[dict]:
    """Every network as the API describes it (name, type, managed, config), in one request with
    recursion, not one per interface: Incus cannot describe some unmanaged interfaces one by one (an
    Open vSwitch check fails where OVS is not running)."""
    return conn.client.api.networks.get(params={"recursion": "1"}).json()["metadata"] or []


def list_storage_pools(conn: Connection) -> list[dict]:
    """Every storage pool as the API describes it, in one request. Incus answers `null`, not `[]`,
    when it has none (pylxd's `storage_pools.all()` fails on that)."""
    return conn.client.api.storage_pools.get(params={"recursion": "1"}).json()["metadata"] or []


class Server(Manager):
    def __init__(self, connection: Callable[[], Connection], settings: Settings) -> None:
        super().__init__(connection)
        self.settings = settings

    def project_names(self) -> list[str]:
        return self.conn.call("cannot list LXD projects", lambda: [p.name for p in self.client.projects.all()])

    def facts(self) -> ServerFacts:
        conn = self.conn
        with _refused("reading the server's facts"):
            info = conn.client.host_info
            pools = [{"name": p["name"], "driver": p.get("driver", ""),
                      "source": (p.get("config") or {}).get("source", "")} for p in list_storage_pools(conn)]
            networks = [{"name": n["name"], "type": n.get("type", ""), "managed": n.get("managed", False),
                         "ipv4": (n.get("config") or {}).get("ipv4.address", "")} for n in list_networks(conn)]
        env = info.get("environment", {})
        extensions = set(info.get("api_extensions", []))
        cluster = self.cluster() if "clustering" in extensions else None
        return ServerFacts(
            cluster=cluster,
            socket=conn.daemon.socket, reachable=True, reason=conn.daemon.reason,
            daemon=daemon_mod.NAMES.get(env.get("server", ""), env.get("server", "") or conn.daemon.name),
            version=env.get("server_version", ""),
            driver=env.get("driver", ""), firewall=env.get("firewall", ""),
            missing_extensions=[e for e in REQUIRED_EXTENSIONS if e not in extensions],
            pools=pools, networks=networks,
        )

    def clustered(self) -> bool:
        with _refused("cannot read the LXD cluster"):
            return bool((self.client.api.cluster.get().json()["metadata"] or {}).get("enabled"))

    def cluster(self, exclude_lab: str | None = None):
        """The cluster this daemon belongs to (cluster.placement.Cluster), or None for a single daemon. Tunnel
        ids taken: those of managed networks, except EXCLUDE_LAB's."""
        from ..cluster.placement import Cluster, Member
        from ..cluster.stretch import KEYS, VXLAN_OVERHEAD

        conn = self.conn
        with _refused("cannot read the LXD cluster"):
            if not self.clustered():
                return None
            response = conn.client.api.cluster.members.get(params={"recursion": "1"})
            members = tuple(Member(m["server_name"], m.get("status", ""), tuple(m.get("groups") or ()),
                                   m.get("url", "").removeprefix("https://").rsplit(":", 1)[0], m.get("message", ""))
                            for m in response.json()["metadata"])
            mtus = [mtu for m in members if m.status == "Online" and (mtu := self._uplink_mtu(m.name, m.address))]
            taken = frozenset(int(c[KEYS[1]]) for n in list_networks(conn)
                              if (c := n.get("config") or {}).get(KEYS[1], "").isdigit()
                              and c.get("user.lxdkvm.lab") != exclude_lab)
        return Cluster(members, min(mtus) - VXLAN_OVERHEAD if mtus else None, taken)

    def _uplink_mtu(self, member: str, address: str) -> int | None:
        """The MTU of the member's interface that holds its cluster address (the tunnel's underlay)."""
        api = self.client.api
        listing = api.networks.get(params={"recursion": "1", "target": member}).json()["metadata"]
        for network in listing:
            if network.get("managed") or network.get("type") == "loopback":
                continue
            state = api.networks[network["name"]].state.get(params={"target": member}).json()["metadata"]
            if any(a.get("address") == address for a in state.get("addresses") or []):
                return int(state.get("mtu") or 0) or None
        return None

    def idmapped_roots(self, pool: str) -> str:
        """"" when lxdkvm mounts new hosts' root filesystems on POOL idmapped itself, else why not. Only
        LXD on one machine: Incus does it by itself, and a cluster member's kernel is not this one's."""
        conn = self.conn
        if conn.daemon.kind != "lxd":
            return f"{conn.daemon.name} mounts root filesystems idmapped by itself where it can"
        if not self.settings.idmapped_roots:
            return f"{IDMAPPED_ROOTS_ENV}=off"
        env = conn.client.host_info.get("environment", {})
        if (env.get("kernel_features") or {}).get("idmapped_mounts") != "true":
            return "LXD says the kernel has no idmapped mounts"
        if (env.get("lxc_features") or {}).get("idmapped_mounts_v2") != "true":
            return "LXD's liblxc cannot mount a root filesystem idmapped"
        if self.clustered():
            return "on a cluster each member's LXD decides"
        return idmapmount.probe(os.path.join(conn.daemon.state_dir, "storage-pools", pool))

    def probe(self) -> ServerFacts:
        """Facts for `doctor`, with how new hosts get their ids on each pool; never raises: an unreachable
        daemon is a fact too."""
        try:
            facts = self.facts()
            facts.idmapped_roots = {p["name"]: self.idmapped_roots(p["name"]) for p in facts.pools}
            return facts
        except LxdkvmError as exc:
            try:
                chosen = daemon_mod.selected(self.settings)
            except LxdkvmError:  # a bad daemon setting: the error says so
                return ServerFacts(socket="", reachable=False, error=str(exc))
            return ServerFacts(socket=chosen.socket, reachable=False, error=str(exc), daemon=chosen.name,
                               reason=chosen.reason)
