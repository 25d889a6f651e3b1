"""Managed networks: the daemon's bridges (lab networks and the management bridge live in the default
project, because LXD keeps only OVN networks in other projects) and the DHCP leases their dnsmasq gave."""

from __future__ import annotations

import contextlib
import os

from pylxd import exceptions as pylxd_exc

from ..errors import LxdkvmError
from .connection import Manager, name_in_url
from .messages import _refused, refusal
from .server import list_networks


class Networks(Manager):
    def all(self) -> list[dict]:
        """Every network as the API describes it (see `server.list_networks`)."""
        return list_networks(self.conn)

    def managed(self) -> dict[str, dict[str, str]]:
        """Managed networks' config; on a cluster, one only defined on some members (pending) is not there yet."""
        with _refused("cannot list networks"):
            return {n["name"]: dict(n.get("config") or {}) for n in self.all()
                    if n.get("managed") and n.get("status", "Created") != "Pending"}

    def ensure(self, name: str, config: dict[str, str], description: str = "") -> bool:
        """Create the bridge unless it exists. Returns True when it was created."""
        with _refused(f"cannot create network {name}"):
            if self.client.networks.exists(name_in_url(name)):
                return False
            self.client.networks.create(name, description=description, type="bridge", config=config)
        return True

    def create(self, name: str, config: dict[str, str], description: str, members: list[str] | None = None) -> None:
        """On a cluster (MEMBERS), the daemon wants the network defined on each member first, then created
        once. A network the daemon does not create is not left defined: a pending one carries no mark of the
        lab, so `down` could not find it."""
        conn = self.conn
        try:
            for member in members or []:
                with _refused(f"cannot define network {name} on member {member}"):
                    try:
                        conn.client.api.networks.post(json={"name": name, "type": "bridge", "config": {}},
                                                      params={"target": member})
                    except pylxd_exc.LXDAPIException as exc:  # a rerun after a failure: defined there is fine
                        if "already" not in refusal("", exc).lxd_message.lower():
                            raise
            conn.call(f"cannot create network {name}", lambda: conn.client.networks.create(
                name, description=description, type="bridge", config=config))
        except LxdkvmError:
            if members:
                with contextlib.suppress(LxdkvmError), _refused(f"cannot delete network {name}"):
                    conn.client.api.networks[name_in_url(name)].delete()
            raise

    def update(self, name: str, config: dict[str, str]) -> None:
        def update() -> None:
            network = self.client.networks.get(name_in_url(name))
            network.config = config
            network.save()
        self.conn.call(f"cannot update network {name}", update)

    def delete(self, name: str) -> None:
        with _refused(f"cannot delete network {name}"):
            if self.client.networks.exists(name_in_url(name)):
                self.client.networks.get(name_in_url(name)).delete()

    def leases(self, bridges: list[str]) -> dict[str, str]:
        """MAC → IPv4 address of the DHCP leases the daemon's dnsmasq gave on BRIDGES, guests' included.

        The API lists only the leases of the daemon's instances' MACs (a guest inside a host is not one),
        so the guests' come from the lease file dnsmasq writes, which only a local daemon has."""
        conn = self.conn
        leases: dict[str, str] = {}
        for bridge in bridges:
            with _refused(f"cannot read the DHCP leases of network {bridge}"):
                found = conn.client.api.networks[name_in_url(bridge)].leases.get().json()["metadata"] or []
            for lease in found:
                if lease.get("hwaddr") and ":" not in lease.get("address", ":"):
                    leases[lease["hwaddr"].lower()] = lease["address"]
            lease_file = os.path.join(conn.daemon.state_dir, "networks", bridge, "dnsmasq.leases")
            try:
                with open(lease_file) as text:  # "EXPIRY MAC ADDRESS HOSTNAME CLIENT-ID"
                    lines = text.read().splitlines()
            except OSError:
                continue
            for fields in (line.split() for line in lines):
                if len(fields) >= 3 and "." in fields[2]:
                    leases.setdefault(fields[1].lower(), fields[2])
        return leases
