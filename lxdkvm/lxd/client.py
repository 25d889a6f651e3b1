"""A connection to the local LXD or Incus daemon (pylxd), returning lxdkvm's plain values and raising its
errors. Which daemon: see daemon.py."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pylxd
from pylxd import exceptions as pylxd_exc

from ..errors import LxdkvmError, LxdRefused, LxdUnavailable
from . import daemon as daemon_mod
from .messages import IMAGE_EXISTS, _refused, explain, lxd_message, refusal

SOCKETS = daemon_mod.LXD_SOCKETS
# API extensions lxdkvm relies on (LXD 5.0 has them all).
REQUIRED_EXTENSIONS = ("instances", "projects", "projects_networks", "network", "storage",
                       "cloud_init", "id_map_base")


# LXD 5.0 gives containers created at the same moment the same (or an invalid) isolated id range, so
# creation is serialised across threads and processes (two labs coming up at once) by this file lock.
CREATE_LOCK = Path(os.environ.get("LXDKVM_RUN_DIR", "/run/lxdkvm")) / "create.lock"

# A host whose root filesystem is mounted idmapped (docs/container-cost.md): LXC mounts the rootfs with
# the container's id map instead of LXD chowning every file of it at first start. The line LXD itself
# gives LXC when its own probe says the kernel can; lxdkvm's own keys in LXD, never a lab file's.
IDMAPPED_ROOT = "lxc.rootfs.options = idmap=container"
IDMAPPED_ROOTS_ENV = "LXDKVM_IDMAPPED_ROOTS"  # "off": let LXD chown new hosts' files (docs/security.md)


@contextlib.contextmanager
def creating():
    CREATE_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(CREATE_LOCK, "a") as handle:  # a new open file per caller: flock excludes threads too
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def socket_path() -> str:
    """The socket of the daemon lxdkvm talks to (daemon.selected)."""
    return daemon_mod.selected().socket


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
    cluster: object = None  # cluster.placement.Cluster when this LXD is a cluster member
    idmapped_roots: dict[str, str] = field(default_factory=dict)  # for `doctor`: pool → "" (lxdkvm
    # mounts new hosts' root idmapped there) or why not (`Lxd.idmapped_roots`)


@dataclass
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str


def split_image_fingerprint(metadata: Path, rootfs: Path) -> str:
    """The fingerprint LXD gives a split image: SHA-256 of the metadata tarball, then the rootfs."""
    digest = hashlib.sha256()
    for path in (metadata, rootfs):
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


class Lxd:
    """A connection to the local LXD (or Incus) daemon, within one project."""

    def __init__(self, project: str = "default") -> None:
        self.daemon = daemon_mod.selected()
        path, name = self.daemon.socket, self.daemon.name
        if not os.path.exists(path):
            setup = "lxdkvm setup --daemon incus" if self.daemon.kind == "incus" else "lxdkvm setup"
            raise LxdUnavailable(f"{name} is not running: no socket at {path} ({self.daemon.reason}; "
                                 f"run `{setup}`)")
        try:
            self.client = pylxd.Client(endpoint=path, project=None if project == "default" else project)
            self.client.host_info  # noqa: B018 - forces the first request
        except (pylxd_exc.ClientConnectionFailed, OSError) as exc:
            raise LxdUnavailable(f"{name} does not answer on {path}: {exc}") from None
        except pylxd_exc.LXDAPIException as exc:
            raise refusal(f"{name} refused a connection to project {project}", exc) from None
        self.project = project

    def _call(self, what: str, action: Callable[[], object]) -> object:
        """Run an API call; LXD's refusal becomes an LxdRefused that starts with WHAT."""
        with _refused(what):
            return action()

    def _finish(self, what: str, response) -> dict:
        """Wait for the background operation a request started and return its metadata. A failed
        operation raises LxdRefused with the operation's own error (pylxd's fallback read of the
        operation returns a failed one without raising)."""
        with _refused(what):
            operation = self.client.operations.wait_for_operation(response.json()["operation"])
        if getattr(operation, "status", "") == "Failure" or getattr(operation, "err", ""):
            message = lxd_message({"err": getattr(operation, "err", "")}, getattr(operation, "status_code", None))
            raise LxdRefused(explain(what, message), message)
        return getattr(operation, "metadata", None) or {}

    # ------------------------------------------------------------------ server
    def project_names(self) -> list[str]:
        return self._call("cannot list LXD projects", lambda: [p.name for p in self.client.projects.all()])

    def server_facts(self) -> ServerFacts:
        with _refused("reading the server's facts"):
            info = self.client.host_info
            pools = [{"name": p["name"], "driver": p.get("driver", ""),
                      "source": (p.get("config") or {}).get("source", "")} for p in self.list_storage_pools()]
            networks = [{"name": n["name"], "type": n.get("type", ""), "managed": n.get("managed", False),
                         "ipv4": (n.get("config") or {}).get("ipv4.address", "")} for n in self.list_networks()]
        env = info.get("environment", {})
        extensions = set(info.get("api_extensions", []))
        cluster = self.cluster() if "clustering" in extensions else None
        return ServerFacts(
            cluster=cluster,
            socket=self.daemon.socket, reachable=True, reason=self.daemon.reason,
            daemon=daemon_mod.NAMES.get(env.get("server", ""), env.get("server", "") or self.daemon.name),
            version=env.get("server_version", ""),
            driver=env.get("driver", ""), firewall=env.get("firewall", ""),
            missing_extensions=[e for e in REQUIRED_EXTENSIONS if e not in extensions],
            pools=pools, networks=networks,
        )

    def cluster(self, exclude_lab: str | None = None):
        """The cluster this LXD belongs to (cluster.placement.Cluster), or None for a single daemon. Tunnel ids
        taken: those of managed networks, except EXCLUDE_LAB's."""
        from ..cluster.placement import Cluster, Member
        from ..cluster.stretch import KEYS, VXLAN_OVERHEAD

        with _refused("cannot read the LXD cluster"):
            if not self.clustered():
                return None
            response = self.client.api.cluster.members.get(params={"recursion": "1"})
            members = tuple(Member(m["server_name"], m.get("status", ""), tuple(m.get("groups") or ()),
                                   m.get("url", "").removeprefix("https://").rsplit(":", 1)[0], m.get("message", ""))
                            for m in response.json()["metadata"])
            mtus = [mtu for m in members if m.status == "Online" and (mtu := self._uplink_mtu(m.name, m.address))]
            taken = frozenset(int(c[KEYS[1]]) for n in self.list_networks() if (c := n.get("config") or {}).get(KEYS[1], "").isdigit()
                              and c.get("user.lxdkvm.lab") != exclude_lab)
        return Cluster(members, min(mtus) - VXLAN_OVERHEAD if mtus else None, taken)

    def _uplink_mtu(self, member: str, address: str) -> int | None:
        """The MTU of the member's interface that holds its cluster address (the tunnel's underlay)."""
        listing = self.client.api.networks.get(params={"recursion": "1", "target": member}).json()["metadata"]
        for network in listing:
            if network.get("managed") or network.get("type") == "loopback":
                continue
            state = self.client.api.networks[network["name"]].state.get(params={"target": member}).json()["metadata"]
            if any(a.get("address") == address for a in state.get("addresses") or []):
                return int(state.get("mtu") or 0) or None
        return None

    def clustered(self) -> bool:
        with _refused("cannot read the LXD cluster"):
            return bool((self.client.api.cluster.get().json()["metadata"] or {}).get("enabled"))

    def idmapped_roots(self, pool: str) -> str:
        """"" when lxdkvm mounts new hosts' root filesystems on POOL idmapped itself, else why not. Only
        LXD on one machine: Incus does it by itself, and a cluster member's kernel is not this one's."""
        from ..machine import idmapmount

        if self.daemon.kind != "lxd":
            return f"{self.daemon.name} mounts root filesystems idmapped by itself where it can"
        if os.environ.get(IDMAPPED_ROOTS_ENV, "") == "off":
            return f"{IDMAPPED_ROOTS_ENV}=off"
        env = self.client.host_info.get("environment", {})
        if (env.get("kernel_features") or {}).get("idmapped_mounts") != "true":
            return "LXD says the kernel has no idmapped mounts"
        if (env.get("lxc_features") or {}).get("idmapped_mounts_v2") != "true":
            return "LXD's liblxc cannot mount a root filesystem idmapped"
        if self.clustered():
            return "on a cluster each member's LXD decides"
        return idmapmount.probe(os.path.join(self.daemon.state_dir, "storage-pools", pool))

    # ------------------------------------------------------------------ storage and networks
    def list_networks(self) -> list[dict]:
        """Every network as the API describes it (name, type, managed, config), in one request with
        recursion, not one per interface: Incus cannot describe some unmanaged interfaces one by one (an
        Open vSwitch check fails where OVS is not running)."""
        return self.client.api.networks.get(params={"recursion": "1"}).json()["metadata"] or []

    def list_storage_pools(self) -> list[dict]:
        """Every storage pool as the API describes it, in one request. Incus answers `null`, not `[]`,
        when it has none (pylxd's `storage_pools.all()` fails on that)."""
        return self.client.api.storage_pools.get(params={"recursion": "1"}).json()["metadata"] or []

    def ensure_storage_pool(self, name: str, driver: str, config: dict[str, str] | None = None) -> bool:
        """Create the pool unless it exists. Returns True when it was created."""
        with _refused(f"cannot create storage pool {name} ({driver})"):
            if self.client.storage_pools.exists(name):
                return False
            self.client.storage_pools.create({"name": name, "driver": driver, "config": config or {}})
        return True

    def ensure_network(self, name: str, config: dict[str, str], description: str = "") -> bool:
        with _refused(f"cannot create network {name}"):
            if self.client.networks.exists(name):
                return False
            self.client.networks.create(name, description=description, type="bridge", config=config)
        return True

    def ensure_default_devices(self, pool: str, network: str) -> list[str]:
        """Give the default profile a root disk and a NIC if it has none (what `lxd init` does)."""
        with _refused("cannot give the default profile a root disk and a NIC"):
            profile = self.client.profiles.get("default")
            devices = dict(profile.devices or {})
            added = []
            if not any(d.get("type") == "disk" and d.get("path") == "/" for d in devices.values()):
                devices["root"] = {"type": "disk", "path": "/", "pool": pool}
                added.append("root")
            if not any(d.get("type") == "nic" for d in devices.values()):
                devices["eth0"] = {"type": "nic", "name": "eth0", "network": network}
                added.append("eth0")
            if added:
                profile.devices = devices
                profile.save(wait=True)
        return added

    # ------------------------------------------------------------------ profiles
    def apply_profile(self, name: str, body: dict) -> str:
        """Create or replace profile NAME with body (description, config, devices)."""
        with _refused(f"LXD refused profile {name}"):
            if self.client.profiles.exists(name):
                profile = self.client.profiles.get(name)
                profile.description = body.get("description", "")
                profile.config = body.get("config", {})
                profile.devices = body.get("devices", {})
                profile.save(wait=True)
                return "updated"
            self.client.profiles.create(name, config=body.get("config", {}),
                                        devices=body.get("devices", {}),
                                        description=body.get("description", ""))
            return "created"

    def delete_profile(self, name: str) -> bool:
        with _refused(f"cannot delete profile {name}"):
            if not self.client.profiles.exists(name):
                return False
            self.client.profiles.get(name).delete()
        return True

    # ------------------------------------------------------------------ images
    @staticmethod
    def _image(image) -> dict:
        return {"fingerprint": image.fingerprint, "properties": dict(image.properties or {}),
                "size": image.size, "aliases": [a["name"] for a in image.aliases or []]}

    def image_by_alias(self, alias: str) -> dict | None:
        with _refused(f"cannot read image {alias}"):
            try:
                return self._image(self.client.images.get_by_alias(alias))
            except pylxd_exc.NotFound:
                return None

    def image_with_property(self, key: str, value: str) -> dict | None:
        """An image whose property KEY is VALUE (whatever its aliases), or None."""
        with _refused("cannot list images"):
            images = self.client.images.all()
        return next((self._image(i) for i in images if (i.properties or {}).get(key) == value), None)

    def import_image(self, metadata: Path, rootfs: Path, alias: str, description: str = "") -> tuple[str, bool]:
        """Import a split image and point ALIAS at it (see _replace_alias). When LXD already has the
        very same image (under another alias) only the alias is set. Returns (fingerprint, imported)."""
        imported = True

        def upload() -> str:
            nonlocal imported
            try:
                with open(metadata, "rb") as meta, open(rootfs, "rb") as root:
                    return self.client.images.create(root, metadata=meta).fingerprint
            except pylxd_exc.LXDAPIException as exc:
                if not re.search(IMAGE_EXISTS, refusal("", exc).lxd_message):
                    raise
                imported = False
                return split_image_fingerprint(metadata, rootfs)

        return self._replace_alias(alias, description, upload, f"importing image {alias}"), imported

    def point_alias(self, alias: str, fingerprint: str, description: str = "") -> str:
        """Point ALIAS at an image LXD already has (see _replace_alias)."""
        return self._replace_alias(alias, description, lambda: fingerprint, f"pointing {alias} at {fingerprint[:12]}")

    def publish(self, name: str, alias: str, properties: dict[str, str], description: str = "") -> str:
        """Publish a stopped instance as an image and point ALIAS at it (see _replace_alias)."""
        what = f"publishing {name} as {alias}"

        def publish_instance() -> str:
            response = self.client.api.images.post(json={
                "source": {"type": "instance", "name": name}, "properties": properties, "public": False})
            return self._finish(what, response)["fingerprint"]

        return self._replace_alias(alias, description, publish_instance, what)

    def _replace_alias(self, alias: str, description: str, create: Callable[[], str], what: str) -> str:
        """Create (or find) an image, point ALIAS at it and delete the alias's previous image when no
        other alias names it. The alias moves in one request, so it never points nowhere; on any
        failure an image this call created is deleted again, so nothing half-made remains."""
        old = self.image_by_alias(alias)
        with _refused(f"{what} failed"):
            had = {i.fingerprint for i in self.client.images.all()}
        fingerprint = None
        try:
            with _refused(f"{what} failed"):
                fingerprint = create()
                if old and old["fingerprint"] == fingerprint:
                    return fingerprint
                if old:
                    self.client.api.images.aliases[alias].put(
                        json={"target": fingerprint, "description": description})
                else:
                    self.client.images.get(fingerprint).add_alias(alias, description)
        except (LxdkvmError, OSError) as exc:
            if fingerprint and fingerprint not in had:
                self.delete_image(fingerprint)
            if isinstance(exc, OSError):
                raise LxdkvmError(f"{what} failed: {exc}") from None
            raise
        if old:
            self._delete_if_unaliased(old["fingerprint"])
        return fingerprint

    def _delete_if_unaliased(self, fingerprint: str) -> None:
        with _refused(f"cannot delete image {fingerprint[:12]}"):
            try:
                image = self.client.images.get(fingerprint)
            except pylxd_exc.NotFound:
                return
            if not image.aliases:
                image.delete(wait=True)

    def delete_image(self, fingerprint: str) -> None:
        with _refused(f"cannot delete image {fingerprint[:12]}"):
            try:
                self.client.images.get(fingerprint).delete(wait=True)
            except pylxd_exc.NotFound:
                pass

    def put_template(self, name: str, template: str, content: bytes) -> None:
        """Replace one of an instance's image templates (published with it)."""
        with _refused(f"{name}: cannot replace template {template}"):
            self.client.api.instances[name].metadata.templates.post(
                params={"path": template}, data=content, headers={"Content-Type": "application/octet-stream"})

    # ------------------------------------------------------------------ instances
    def instance_exists(self, name: str) -> bool:
        with _refused(f"{name}: cannot read the container"):
            return self.client.instances.exists(name)

    def instance_info(self, name: str) -> dict:
        """Status, config and expanded devices of an instance (plain data)."""
        with _refused(f"{name}: cannot read the container"):
            instance = self.client.instances.get(name)
        return {"name": name, "status": instance.status, "config": dict(instance.config),
                "expanded_config": dict(instance.expanded_config),
                "expanded_devices": dict(instance.expanded_devices),
                "profiles": list(instance.profiles)}

    def create_instance(self, name: str, image_alias: str, profiles: list[str],
                        config: dict[str, str] | None = None,
                        devices: dict[str, dict[str, str]] | None = None, target: str = "",
                        idmapped_root: bool = False, idmap_base: int | None = None) -> None:
        """Create (not start) an instance, on cluster member TARGET when given; with IDMAPPED_ROOT, its
        root filesystem is to be mounted idmapped (see `start_instance`). A creation in which LXD may
        allocate an isolated id range is serialised across threads and processes (LXD 5.0 allocates the
        same or an invalid range to containers created at the same moment): not with IDMAP_BASE (the
        range the caller chose while holding that lock itself, `creating`) nor for a shared map."""
        config = {**(config or {}), **({"raw.lxc": IDMAPPED_ROOT} if idmapped_root else {}),
                  **({"security.idmap.base": str(idmap_base)} if idmap_base is not None else {})}
        definition = {"name": name, "type": "container", "profiles": profiles, "config": config,
                      "devices": devices or {}, "source": {"type": "image", "alias": image_alias}}
        where = f" on member {target}" if target else ""
        allocates = idmap_base is None and config.get("security.idmap.isolated") != "false"
        with _refused(f"{name}: LXD could not create the container{where}"), \
                creating() if allocates else contextlib.nullcontext():
            self.client.instances.create(definition, wait=True, target=target or None)

    def start_instance(self, name: str) -> None:
        """Start NAME. A host whose root is mounted idmapped and that never started yet first gets its
        disk's id map recorded as the one it runs with, so LXD does not chown its files (they stay as
        the image has them, and LXC maps them at mount time); at every later start they match already."""
        with _refused(f"{name}: LXD could not start the container"):
            instance = self.client.instances.get(name)
            config = instance.config
            if config.get("raw.lxc") == IDMAPPED_ROOT and config.get("volatile.last_state.idmap", "[]") == "[]":
                self.set_instance_key(name, "volatile.last_state.idmap", config["volatile.idmap.next"])
            instance.start(wait=True)

    def set_instance_key(self, name: str, key: str, value: str) -> None:
        what = f"{name}: cannot set {key}"
        with _refused(what):
            response = self.client.api.instances[name].patch(json={"config": {key: value}})
        if response.json().get("type") == "async":
            self._finish(what, response)

    def stop(self, name: str) -> None:
        with _refused(f"{name}: LXD could not stop the container"):
            instance = self.client.instances.get(name)
            if instance.status != "Stopped":
                instance.stop(wait=True, timeout=60)

    def launch(self, name: str, image_alias: str, profiles: list[str],
               config: dict[str, str] | None = None, pool: str | None = None) -> None:
        """Create and start an instance; with POOL, its root disk is there whatever the profiles say.
        A container LXD cannot start is deleted again: it is of no use, and nothing is left behind."""
        devices = {"root": {"type": "disk", "path": "/", "pool": pool}} if pool else {}
        self.create_instance(name, image_alias, profiles, config, devices)
        try:
            self.start_instance(name)
        except LxdkvmError as exc:
            try:
                self.delete_instance(name)
            except LxdkvmError as cleanup:
                raise LxdkvmError(f"{exc}\n  and the container could not be deleted: {cleanup}") from None
            raise

    def delete_instance(self, name: str) -> bool:
        with _refused(f"{name}: cannot delete the container"):
            if not self.client.instances.exists(name):
                return False
            instance = self.client.instances.get(name)
            if instance.status != "Stopped":
                instance.stop(force=True, wait=True)
            instance.delete(wait=True)
        return True

    def execute(self, name: str, command: list[str], *, env: dict[str, str] | None = None,
                timeout: float | None = None) -> ExecResult:
        """Run a command and collect its output through LXD's recorded-output exec: plain REST calls,
        no websockets, so it is safe from several threads."""
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **(env or {})}
        if timeout:
            command = ["timeout", "--kill-after=5", str(int(timeout)), *command]
        body = {"command": command, "environment": env, "interactive": False,
                "wait-for-websocket": False, "record-output": True}
        api = self.client.api.instances[name]
        what = f"{name}: exec {command[0]} failed"
        with _refused(what):
            metadata = self._finish(what, api.exec.post(json=body))
            streams = []
            for fd in ("1", "2"):
                # LXD: …/logs/exec_ID.stdout; Incus: …/logs/exec-output/exec_ID.stdout
                path = metadata.get("output", {}).get(fd, "")
                log = path.split("/logs/", 1)[1] if "/logs/" in path else path.rsplit("/", 1)[-1]
                # is_api=False: the output is raw text, which may happen to parse as JSON
                streams.append(api.logs[log].get(is_api=False).text if log else "")
                if log:
                    api.logs[log].delete()
        return ExecResult(int(metadata.get("return", -1)), streams[0], streams[1])

    def push(self, name: str, path: str, data: bytes | BinaryIO, mode: str = "0644") -> None:
        with _refused(f"{name}: cannot write {path}"):
            self.client.instances.get(name).files.put(path, data, mode=mode, uid=0, gid=0)

    def pull(self, name: str, path: str) -> bytes:
        with _refused(f"{name}: cannot read {path}"):
            return self.client.instances.get(name).files.get(path)


def probe_server() -> ServerFacts:
    """Server facts for `doctor`, with how new hosts get their ids on each pool; never raises: an
    unreachable daemon is a fact too."""
    try:
        lxd = Lxd()
        facts = lxd.server_facts()
        facts.idmapped_roots = {p["name"]: lxd.idmapped_roots(p["name"]) for p in facts.pools}
        return facts
    except LxdkvmError as exc:
        try:
            chosen = daemon_mod.selected()
        except LxdkvmError:  # a bad LXDKVM_DAEMON: the error says so
            return ServerFacts(socket="", reachable=False, error=str(exc))
        return ServerFacts(socket=chosen.socket, reachable=False, error=str(exc), daemon=chosen.name,
                           reason=chosen.reason)


def wait_for_socket(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            Lxd()
            return
        except LxdUnavailable:
            time.sleep(0.5)
    chosen = daemon_mod.selected()
    raise LxdUnavailable(f"{chosen.name} did not answer on {chosen.socket} within {timeout:.0f}s")
