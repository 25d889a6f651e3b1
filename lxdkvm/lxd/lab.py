"""The LXD operations of a lab, and handing a terminal to `lxc exec`."""

from __future__ import annotations

import contextlib
import os

import pylxd
from pylxd import exceptions as pylxd_exc

from ..errors import LxdkvmError
from .client import IDMAPPED_ROOT, Lxd
from .daemon import others, selected
from .messages import _refused, refusal


class LabLxd(Lxd):
    """The LXD operations of a lab: its project, its networks (in the default project, because LXD only
    keeps OVN networks in other projects), its profiles and its instances. Plain data in and out."""

    def __init__(self, project: str) -> None:
        super().__init__("default")
        self.project = project
        self._scoped: Lxd | None = None

    @property
    def scoped(self) -> Lxd:
        """A connection inside the lab's project (which must exist)."""
        if self._scoped is None:
            self._scoped = Lxd(self.project)
        return self._scoped

    # ------------------------------------------------------------------ reading
    def project_config(self) -> dict[str, str] | None:
        with _refused(f"cannot read LXD project {self.project}"):
            if not self.client.projects.exists(self.project):
                return None
            return dict(self.client.projects.get(self.project).config or {})

    def networks(self) -> dict[str, dict[str, str]]:
        """Managed networks; on a cluster, one only defined on some members (pending) is not there yet."""
        with _refused("cannot list networks"):
            return {n["name"]: dict(n.get("config") or {}) for n in self.list_networks()
                    if n.get("managed") and n.get("status", "Created") != "Pending"}

    def dhcp_leases(self, bridges: list[str]) -> dict[str, str]:
        """MAC → IPv4 address of the DHCP leases LXD's dnsmasq gave on BRIDGES, guests' included.

        LXD's API lists only the leases of its instances' MACs (a guest inside a host is not one), so
        the guests' come from the lease file LXD's dnsmasq writes, which only a local daemon has."""
        leases: dict[str, str] = {}
        for bridge in bridges:
            with _refused(f"cannot read the DHCP leases of network {bridge}"):
                found = self.client.api.networks[bridge].leases.get().json()["metadata"] or []
            for lease in found:
                if lease.get("hwaddr") and ":" not in lease.get("address", ":"):
                    leases[lease["hwaddr"].lower()] = lease["address"]
            lease_file = os.path.join(self.daemon.state_dir, "networks", bridge, "dnsmasq.leases")
            try:
                with open(lease_file) as text:  # "EXPIRY MAC ADDRESS HOSTNAME CLIENT-ID"
                    lines = text.read().splitlines()
            except OSError:
                continue
            for fields in (line.split() for line in lines):
                if len(fields) >= 3 and "." in fields[2]:
                    leases.setdefault(fields[1].lower(), fields[2])
        return leases

    def cluster(self):
        """The cluster this LXD belongs to (cluster.placement.Cluster), or None for a single daemon; the
        tunnel ids taken are those of networks that are not this lab's."""
        return super().cluster(exclude_lab=self.project.removeprefix("lxdkvm-"))

    def profiles(self) -> dict[str, dict]:
        with _refused(f"cannot list the profiles of project {self.project}"):
            return {p.name: {"description": p.description or "", "config": dict(p.config or {}),
                             "devices": dict(p.devices or {})} for p in self.scoped.client.profiles.all()}

    def instances(self) -> dict[str, dict]:
        with _refused(f"cannot list the containers of project {self.project}"):
            response = self.scoped.client.api.instances.get(params={"recursion": "1"})
        return {i["name"]: {"status": i["status"], "config": dict(i.get("config") or {}),
                            "devices": dict(i.get("devices") or {}),
                            "profiles": list(i.get("profiles") or []),
                            "location": i.get("location", "") if i.get("location") != "none" else ""}
                for i in response.json()["metadata"]}

    def isolated_elsewhere(self) -> int:
        """Containers of other projects that hold an isolated id map."""
        with _refused("cannot list containers"):
            listed = _every_instance(self.client)
        return sum(1 for i in listed if i.get("project") != self.project
                   and (i.get("expanded_config") or {}).get("security.idmap.isolated") == "true")

    def image_aliases(self) -> set[str]:
        with _refused("cannot list image aliases"):
            response = self.client.api.images.aliases.get(params={"recursion": "1"})
        return {alias["name"] for alias in response.json()["metadata"]}

    def pool_names(self) -> set[str]:
        with _refused("cannot list storage pools"):
            return {p["name"] for p in self.list_storage_pools()}

    def addresses(self, name: str) -> dict[str, list[str]]:
        """IPv4 addresses (with prefix) of each interface inside a running instance."""
        with _refused(f"{name}: cannot read the container's state"):
            state = self.scoped.client.api.instances[name].state.get().json()["metadata"]
        return {ifname: [f"{a['address']}/{a['netmask']}" for a in iface.get("addresses", [])
                         if a.get("family") == "inet"]
                for ifname, iface in (state.get("network") or {}).items() if ifname != "lo"}

    # ------------------------------------------------------------------ writing
    def create_project(self, config: dict[str, str], description: str) -> None:
        self._call(f"cannot create LXD project {self.project}", lambda: self.client.projects.create(
            self.project, config=config, description=description))

    def delete_project(self) -> None:
        with _refused(f"cannot delete LXD project {self.project}"):
            if self.client.projects.exists(self.project):
                self.client.projects.get(self.project).delete()

    def create_network(self, name: str, config: dict[str, str], description: str,
                       members: list[str] | None = None) -> None:
        """On a cluster (MEMBERS), LXD wants the network defined on each member first, then created once. A
        network LXD does not create is not left defined: a pending one carries no mark of the lab, so `down`
        could not find it."""
        try:
            for member in members or []:
                with _refused(f"cannot define network {name} on member {member}"):
                    try:
                        self.client.api.networks.post(json={"name": name, "type": "bridge", "config": {}},
                                                      params={"target": member})
                    except pylxd_exc.LXDAPIException as exc:  # a rerun after a failure: defined there is fine
                        if "already" not in refusal("", exc).lxd_message.lower():
                            raise
            self._call(f"cannot create network {name}", lambda: self.client.networks.create(
                name, description=description, type="bridge", config=config))
        except LxdkvmError:
            if members:
                with contextlib.suppress(LxdkvmError), _refused(f"cannot delete network {name}"):
                    self.client.api.networks[name].delete()
            raise

    def update_network(self, name: str, config: dict[str, str]) -> None:
        def update() -> None:
            network = self.client.networks.get(name)
            network.config = config
            network.save()
        self._call(f"cannot update network {name}", update)

    def delete_network(self, name: str) -> None:
        with _refused(f"cannot delete network {name}"):
            if self.client.networks.exists(name):
                self.client.networks.get(name).delete()

    def apply_lab_profile(self, name: str, body: dict) -> str:
        return self.scoped.apply_profile(name, body)

    def delete_lab_profile(self, name: str) -> bool:
        return self.scoped.delete_profile(name)

    def create_instance(self, name: str, image_alias: str, profiles: list[str],
                        config: dict[str, str] | None = None,
                        devices: dict[str, dict[str, str]] | None = None, target: str = "",
                        idmapped_root: bool = False, idmap_base: int | None = None) -> None:
        self.scoped.create_instance(name, image_alias, profiles, config, devices, target, idmapped_root, idmap_base)

    def isolated_maps(self) -> list[tuple[int, int]]:
        """(first host id, size) of every container's isolated id map on this daemon, in any project, and
        on the machine's other daemon when it answers (LXD and Incus share root's subordinate range)."""
        with _refused("cannot list containers"):
            listed = _every_instance(self.client)
        for other in others(self.daemon):
            try:
                listed = [*listed, *_every_instance(pylxd.Client(endpoint=other.socket))]
            except (pylxd_exc.ClientConnectionFailed, pylxd_exc.LXDAPIException, OSError):
                continue  # not running: it holds no running container (its stopped ones: see security.md)
        taken = []
        for instance in listed:
            config = instance.get("expanded_config") or {}
            if config.get("security.idmap.isolated") != "true" or config.get("security.privileged") == "true":
                continue
            base = config.get("volatile.idmap.base") or config.get("security.idmap.base") or "0"
            size = config.get("security.idmap.size", "")
            taken.append((int(base), int(size) if size.isdigit() else 65536))
        return taken

    def start_instance(self, name: str) -> None:
        self.scoped.start_instance(name)

    def update_instance(self, name: str, config: dict[str, str], devices: dict[str, dict[str, str]],
                        profiles: list[str]) -> None:
        """Apply config, devices and profiles to a (running) instance, keeping LXD's own keys."""
        def update() -> None:
            instance = self.scoped.client.instances.get(name)
            # LXD's own keys, and lxdkvm's from the host's creation: its id range and how its disk is
            # mounted stay for the host's life (changing either needs a new host: plan recreates it)
            kept = {k: v for k, v in instance.config.items() if k.startswith(("volatile.", "image."))
                    or (k, v) == ("raw.lxc", IDMAPPED_ROOT) or (k == "security.idmap.base" and k not in config)}
            instance.config = {**kept, **config}
            instance.devices = devices
            instance.profiles = profiles
            instance.save(wait=True)
        self._call(f"{name}: LXD refused the change", update)

    def set_instance_devices(self, name: str, devices: dict[str, dict[str, str]]) -> None:
        """Give a (stopped) instance exactly DEVICES as its own, keeping its config and profiles."""
        def update() -> None:
            instance = self.scoped.client.instances.get(name)
            instance.devices = devices
            instance.save(wait=True)
        self._call(f"{name}: LXD refused its network devices", update)

    def set_instance_key(self, name: str, key: str, value: str) -> None:
        self.scoped.set_instance_key(name, key, value)

    def delete_lab_instance(self, name: str) -> bool:
        return self.scoped.delete_instance(name)


def _every_instance(client: pylxd.Client) -> list[dict]:
    """Every instance of the daemon CLIENT talks to, in every project, with its expanded config."""
    return client.api.instances.get(params={"recursion": "1", "all-projects": "true"}).json()["metadata"] or []


def exec_interactive(project: str, name: str, command: list[str]) -> None:
    """Replace this process with `lxc exec` (`incus exec` on Incus): a terminal, signals and exit status
    come for free."""
    with _refused(f"cannot read LXD project {project}"):
        exists = Lxd().client.projects.exists(project)
    if not exists:
        raise LxdkvmError(f"no lab project {project}: is the lab up? (`lxdkvm status`)")
    if not Lxd(project).instance_exists(name):
        raise LxdkvmError(f"lab project {project} has no host {name} (`lxdkvm status` lists them)")
    client = selected().client
    os.execvp(client, [client, "exec", "--project", project, name, "--", *command])
