"""The one module that talks to LXD (through pylxd).

It hands back lxdkvm's own plain values and raises lxdkvm's own errors, so nothing else in the
package imports pylxd or knows its exception types.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pylxd
from pylxd import exceptions as pylxd_exc

from .errors import LxdkvmError, LxdUnavailable

SOCKETS = ("/var/snap/lxd/common/lxd/unix.socket", "/var/lib/lxd/unix.socket")
# API extensions lxdkvm relies on (LXD 5.0 has them all).
REQUIRED_EXTENSIONS = ("instances", "projects", "projects_networks", "network", "storage",
                       "cloud_init", "id_map_base")


# LXD 5.0 gives containers created at the same moment the same (or an invalid) isolated id range, so
# creation is serialised across threads and processes (two labs coming up at once) by this file lock.
CREATE_LOCK = Path(os.environ.get("LXDKVM_RUN_DIR", "/run/lxdkvm")) / "create.lock"


@contextlib.contextmanager
def _creating():
    CREATE_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(CREATE_LOCK, "a") as handle:  # a new open file per caller: flock excludes threads too
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def socket_path() -> str:
    if os.environ.get("LXD_DIR"):
        return os.path.join(os.environ["LXD_DIR"], "unix.socket")
    return next((p for p in SOCKETS if os.path.exists(p)), SOCKETS[-1])


@dataclass
class ServerFacts:
    socket: str
    reachable: bool
    error: str = ""
    version: str = ""
    driver: str = ""
    firewall: str = ""
    missing_extensions: list[str] = field(default_factory=list)
    pools: list[dict] = field(default_factory=list)  # name, driver, source
    networks: list[dict] = field(default_factory=list)  # name, type, managed, ipv4


@dataclass
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str


def _api_error(exc: pylxd_exc.LXDAPIException) -> str:
    """LXD's own error text (pylxd's str() of some errors is not even a string)."""
    response = getattr(exc, "response", None)
    try:
        message = response.json().get("error")
    except Exception:  # noqa: BLE001 - not JSON, or no response at all
        message = None
    if message:
        return message
    status = getattr(response, "status_code", None)
    return f"HTTP {status}" if status else type(exc).__name__


class Lxd:
    """A connection to the local LXD daemon, within one project."""

    def __init__(self, project: str = "default") -> None:
        path = socket_path()
        if not os.path.exists(path):
            raise LxdUnavailable(f"LXD is not running: no socket at {path} (run `lxdkvm setup`)")
        try:
            self.client = pylxd.Client(project=None if project == "default" else project)
            self.client.host_info  # noqa: B018 - forces the first request
        except (pylxd_exc.ClientConnectionFailed, OSError) as exc:
            raise LxdUnavailable(f"LXD does not answer on {path}: {exc}") from None
        self.project = project

    # ------------------------------------------------------------------ server
    def server_facts(self) -> ServerFacts:
        info = self.client.host_info
        env = info.get("environment", {})
        extensions = set(info.get("api_extensions", []))
        pools = [{"name": p.name, "driver": p.driver, "source": p.config.get("source", "")}
                 for p in self.client.storage_pools.all()]
        networks = [{"name": n.name, "type": n.type, "managed": n.managed,
                     "ipv4": (n.config or {}).get("ipv4.address", "")}
                    for n in self.client.networks.all()]
        return ServerFacts(
            socket=socket_path(), reachable=True, version=env.get("server_version", ""),
            driver=env.get("driver", ""), firewall=env.get("firewall", ""),
            missing_extensions=[e for e in REQUIRED_EXTENSIONS if e not in extensions],
            pools=pools, networks=networks,
        )

    # ------------------------------------------------------------------ storage and networks
    def ensure_storage_pool(self, name: str, driver: str, config: dict[str, str] | None = None) -> bool:
        """Create the pool unless it exists. Returns True when it was created."""
        if self.client.storage_pools.exists(name):
            return False
        try:
            self.client.storage_pools.create({"name": name, "driver": driver, "config": config or {}})
        except pylxd_exc.LXDAPIException as exc:
            raise LxdkvmError(f"cannot create storage pool {name} ({driver}): {_api_error(exc)}") from None
        return True

    def ensure_network(self, name: str, config: dict[str, str], description: str = "") -> bool:
        if self.client.networks.exists(name):
            return False
        try:
            self.client.networks.create(name, description=description, type="bridge", config=config)
        except pylxd_exc.LXDAPIException as exc:
            raise LxdkvmError(f"cannot create network {name}: {_api_error(exc)}") from None
        return True

    def ensure_default_devices(self, pool: str, network: str) -> list[str]:
        """Give the default profile a root disk and a NIC if it has none (what `lxd init` does)."""
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
        try:
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
        except pylxd_exc.LXDAPIException as exc:
            raise LxdkvmError(f"LXD refused profile {name}: {_api_error(exc)}") from None

    def delete_profile(self, name: str) -> bool:
        if not self.client.profiles.exists(name):
            return False
        try:
            self.client.profiles.get(name).delete()
        except pylxd_exc.LXDAPIException as exc:
            raise LxdkvmError(f"cannot delete profile {name}: {_api_error(exc)}") from None
        return True

    # ------------------------------------------------------------------ images
    def image_by_alias(self, alias: str) -> dict | None:
        try:
            image = self.client.images.get_by_alias(alias)
        except pylxd_exc.NotFound:
            return None
        return {"fingerprint": image.fingerprint, "properties": dict(image.properties or {}),
                "size": image.size}

    def import_image(self, metadata: Path, rootfs: Path, alias: str, description: str = "") -> str:
        """Import a split image and point ALIAS at it (see _replace_alias)."""
        def upload() -> str:
            with open(metadata, "rb") as meta, open(rootfs, "rb") as root:
                return self.client.images.create(root, metadata=meta).fingerprint

        return self._replace_alias(alias, description, upload, f"importing image {alias}")

    def publish(self, name: str, alias: str, properties: dict[str, str], description: str = "") -> str:
        """Publish a stopped instance as an image and point ALIAS at it (see _replace_alias)."""
        def publish_instance() -> str:
            response = self.client.api.images.post(json={
                "source": {"type": "instance", "name": name}, "properties": properties, "public": False})
            return self.client.operations.wait_for_operation(response.json()["operation"]).metadata["fingerprint"]

        return self._replace_alias(alias, description, publish_instance, f"publishing {name} as {alias}")

    def _replace_alias(self, alias: str, description: str, create: Callable[[], str], what: str) -> str:
        """Create an image, move ALIAS to it and delete the alias's previous image. On any failure
        the new image is deleted again, so nothing half-made remains and the old alias still works."""
        old = self.image_by_alias(alias)
        fingerprint = None
        try:
            fingerprint = create()
            if old and old["fingerprint"] == fingerprint:
                return fingerprint
            if old:
                self.client.api.images.aliases[alias].delete()
            self.client.images.get(fingerprint).add_alias(alias, description)
        except (pylxd_exc.LXDAPIException, OSError) as exc:
            if fingerprint and not (old and old["fingerprint"] == fingerprint):
                self.delete_image(fingerprint)
            message = _api_error(exc) if isinstance(exc, pylxd_exc.LXDAPIException) else str(exc)
            raise LxdkvmError(f"{what} failed: {message}") from None
        if old:
            self.delete_image(old["fingerprint"])
        return fingerprint

    def put_template(self, name: str, template: str, content: bytes) -> None:
        """Replace one of an instance's image templates (published with it)."""
        try:
            self.client.api.instances[name].metadata.templates.post(
                params={"path": template}, data=content, headers={"Content-Type": "application/octet-stream"})
        except pylxd_exc.LXDAPIException as exc:
            raise LxdkvmError(f"{name}: cannot replace template {template}: {_api_error(exc)}") from None

    def stop(self, name: str) -> None:
        instance = self.client.instances.get(name)
        if instance.status != "Stopped":
            instance.stop(wait=True, timeout=60)

    def delete_image(self, fingerprint: str) -> None:
        try:
            self.client.images.get(fingerprint).delete(wait=True)
        except pylxd_exc.NotFound:
            pass

    # ------------------------------------------------------------------ instances
    def instance_exists(self, name: str) -> bool:
        return self.client.instances.exists(name)

    def instance_info(self, name: str) -> dict:
        """Status, config and expanded devices of an instance (plain data)."""
        instance = self.client.instances.get(name)
        return {"name": name, "status": instance.status, "config": dict(instance.config),
                "expanded_config": dict(instance.expanded_config),
                "expanded_devices": dict(instance.expanded_devices),
                "profiles": list(instance.profiles)}

    def _call(self, what: str, action: Callable[[], object]) -> object:
        """Run an API call; LXD's refusal becomes an LxdkvmError that starts with WHAT."""
        try:
            return action()
        except pylxd_exc.LXDAPIException as exc:
            raise LxdkvmError(f"{what}: {_api_error(exc)}") from None

    def create_instance(self, name: str, image_alias: str, profiles: list[str],
                        config: dict[str, str] | None = None,
                        devices: dict[str, dict[str, str]] | None = None) -> None:
        """Create (not start) an instance. Creation is serialised across threads and processes: LXD 5.0
        allocates the same or an invalid isolated id range to containers created at the same moment."""
        definition = {"name": name, "type": "container", "profiles": profiles, "config": config or {},
                      "devices": devices or {}, "source": {"type": "image", "alias": image_alias}}

        def create() -> None:
            with _creating():
                self.client.instances.create(definition, wait=True)
        self._call(f"{name}: LXD could not create the container", create)

    def start_instance(self, name: str) -> None:
        self._call(f"{name}: LXD could not start the container",
                   lambda: self.client.instances.get(name).start(wait=True))

    def launch(self, name: str, image_alias: str, profiles: list[str],
               config: dict[str, str] | None = None, pool: str | None = None) -> None:
        """Create and start an instance; with POOL, its root disk is there whatever the profiles say."""
        devices = {"root": {"type": "disk", "path": "/", "pool": pool}} if pool else {}
        self.create_instance(name, image_alias, profiles, config, devices)
        self.start_instance(name)

    def delete_instance(self, name: str) -> bool:
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
        try:
            response = api.exec.post(json=body)
            operation = self.client.operations.wait_for_operation(response.json()["operation"])
            metadata = operation.metadata or {}
            streams = []
            for fd in ("1", "2"):
                log = metadata.get("output", {}).get(fd, "").rsplit("/", 1)[-1]
                # is_api=False: the output is raw text, which may happen to parse as JSON
                streams.append(api.logs[log].get(is_api=False).text if log else "")
                if log:
                    api.logs[log].delete()
        except pylxd_exc.LXDAPIException as exc:
            raise LxdkvmError(f"{name}: exec {command[0]} failed: {_api_error(exc)}") from None
        return ExecResult(int(metadata.get("return", -1)), streams[0], streams[1])

    def push(self, name: str, path: str, data: bytes | BinaryIO, mode: str = "0644") -> None:
        self.client.instances.get(name).files.put(path, data, mode=mode, uid=0, gid=0)

    def pull(self, name: str, path: str) -> bytes:
        return self.client.instances.get(name).files.get(path)


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
        if not self.client.projects.exists(self.project):
            return None
        return dict(self.client.projects.get(self.project).config or {})

    def networks(self) -> dict[str, dict[str, str]]:
        return {n.name: dict(n.config or {}) for n in self.client.networks.all() if n.managed}

    def profiles(self) -> dict[str, dict]:
        return {p.name: {"description": p.description or "", "config": dict(p.config or {}),
                         "devices": dict(p.devices or {})} for p in self.scoped.client.profiles.all()}

    def instances(self) -> dict[str, dict]:
        response = self.scoped.client.api.instances.get(params={"recursion": "1"})
        return {i["name"]: {"status": i["status"], "config": dict(i.get("config") or {}),
                            "devices": dict(i.get("devices") or {}), "profiles": list(i.get("profiles") or [])}
                for i in response.json()["metadata"]}

    def isolated_elsewhere(self) -> int:
        """Containers of other projects that hold an isolated id map."""
        response = self.client.api.instances.get(params={"recursion": "1", "all-projects": "true"})
        return sum(1 for i in response.json()["metadata"] if i.get("project") != self.project
                   and (i.get("expanded_config") or {}).get("security.idmap.isolated") == "true")

    def image_aliases(self) -> set[str]:
        response = self.client.api.images.aliases.get(params={"recursion": "1"})
        return {alias["name"] for alias in response.json()["metadata"]}

    def pool_names(self) -> set[str]:
        return {p.name for p in self.client.storage_pools.all()}

    def addresses(self, name: str) -> dict[str, list[str]]:
        """IPv4 addresses (with prefix) of each interface inside a running instance."""
        state = self.scoped.client.api.instances[name].state.get().json()["metadata"]
        return {ifname: [f"{a['address']}/{a['netmask']}" for a in iface.get("addresses", [])
                         if a.get("family") == "inet"]
                for ifname, iface in (state.get("network") or {}).items() if ifname != "lo"}

    # ------------------------------------------------------------------ writing
    def create_project(self, config: dict[str, str], description: str) -> None:
        self._call(f"cannot create LXD project {self.project}", lambda: self.client.projects.create(
            self.project, config=config, description=description))

    def delete_project(self) -> None:
        if self.client.projects.exists(self.project):
            self._call(f"cannot delete LXD project {self.project}",
                       lambda: self.client.projects.get(self.project).delete())

    def create_network(self, name: str, config: dict[str, str], description: str) -> None:
        self._call(f"cannot create network {name}", lambda: self.client.networks.create(
            name, description=description, type="bridge", config=config))

    def update_network(self, name: str, config: dict[str, str]) -> None:
        def update() -> None:
            network = self.client.networks.get(name)
            network.config = config
            network.save()
        self._call(f"cannot update network {name}", update)

    def delete_network(self, name: str) -> None:
        if self.client.networks.exists(name):
            self._call(f"cannot delete network {name}", lambda: self.client.networks.get(name).delete())

    def apply_lab_profile(self, name: str, body: dict) -> str:
        return self.scoped.apply_profile(name, body)

    def delete_lab_profile(self, name: str) -> bool:
        return self.scoped.delete_profile(name)

    def create_instance(self, name: str, image_alias: str, profiles: list[str],
                        config: dict[str, str] | None = None,
                        devices: dict[str, dict[str, str]] | None = None) -> None:
        self.scoped.create_instance(name, image_alias, profiles, config, devices)

    def start_instance(self, name: str) -> None:
        self.scoped.start_instance(name)

    def update_instance(self, name: str, config: dict[str, str], devices: dict[str, dict[str, str]],
                        profiles: list[str]) -> None:
        """Apply config, devices and profiles to a (running) instance, keeping LXD's own keys."""
        def update() -> None:
            instance = self.scoped.client.instances.get(name)
            kept = {k: v for k, v in instance.config.items() if k.startswith(("volatile.", "image."))}
            instance.config = {**kept, **config}
            instance.devices = devices
            instance.profiles = profiles
            instance.save(wait=True)
        self._call(f"{name}: LXD refused the change", update)

    def set_instance_key(self, name: str, key: str, value: str) -> None:
        def patch() -> None:
            response = self.scoped.client.api.instances[name].patch(json={"config": {key: value}})
            if response.json().get("type") == "async":
                self.client.operations.wait_for_operation(response.json()["operation"])
        self._call(f"{name}: cannot set {key}", patch)

    def delete_lab_instance(self, name: str) -> bool:
        return self._call(f"{name}: cannot delete the container", lambda: self.scoped.delete_instance(name))


def exec_interactive(project: str, name: str, command: list[str]) -> None:
    """Replace this process with `lxc exec` (a terminal, signals and exit status come for free)."""
    client = Lxd()
    if not client.client.projects.exists(project):
        raise LxdkvmError(f"no lab project {project}: is the lab up? (`lxdkvm status`)")
    if not Lxd(project).instance_exists(name):
        raise LxdkvmError(f"lab project {project} has no host {name} (`lxdkvm status` lists them)")
    os.execvp("lxc", ["lxc", "exec", "--project", project, name, "--", *command])


def probe_server() -> ServerFacts:
    """Server facts for `doctor`; never raises: an unreachable daemon is a fact too."""
    try:
        return Lxd().server_facts()
    except LxdkvmError as exc:
        return ServerFacts(socket=socket_path(), reachable=False, error=str(exc))


def wait_for_socket(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            Lxd()
            return
        except LxdUnavailable:
            time.sleep(0.5)
    raise LxdUnavailable(f"LXD did not answer on {socket_path()} within {timeout:.0f}s")
