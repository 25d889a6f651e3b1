"""Instances of one project: reading, creating (with lxdkvm's id range and idmapped root), starting,
changing, deleting, and running commands and moving files in them over the REST API."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from .. import paths
from ..errors import LxdkvmError
from ..machine.idmapmount import IDMAPPED_ROOT
from ..settings import Settings
from .connection import Connection, Manager, name_in_url
from .messages import _refused

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def creating():
    """LXD 5.0 gives containers created at the same moment the same (or an invalid) isolated id range, so
    creations in which the daemon allocates one are serialised across threads and processes (two labs
    coming up at once) by this file lock."""
    lock = paths.create_lock()
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:  # a new open file per caller: flock excludes threads too
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Instances(Manager):
    def __init__(self, connection: Callable[[], Connection], settings: Settings) -> None:
        super().__init__(connection)
        self.settings = settings

    # ------------------------------------------------------------------ reading
    def exists(self, name: str) -> bool:
        with _refused(f"{name}: cannot read the container"):
            return self.client.instances.exists(name_in_url(name))

    def info(self, name: str) -> dict:
        """Status, config and expanded devices of an instance (plain data)."""
        with _refused(f"{name}: cannot read the container"):
            instance = self.client.instances.get(name_in_url(name))
        return {"name": name, "status": instance.status, "config": dict(instance.config),
                "expanded_config": dict(instance.expanded_config),
                "expanded_devices": dict(instance.expanded_devices), "profiles": list(instance.profiles)}

    def console_log(self, name: str, lines: int = 30) -> str:
        """The last LINES of an instance's console log (what its init printed), or "" when the daemon has none."""
        try:
            text = self.client.api.instances[name_in_url(name)].console.get(is_api=False).text
        except Exception:  # noqa: BLE001 - a log is evidence, never a reason to fail
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def all(self) -> dict[str, dict]:
        """Every instance of the project: status, config, devices, profiles and (on a cluster) member."""
        with _refused(f"cannot list the containers of project {self.conn.project}"):
            response = self.client.api.instances.get(params={"recursion": "1"})
        return {i["name"]: {"status": i["status"], "config": dict(i.get("config") or {}),
                            "devices": dict(i.get("devices") or {}),
                            "profiles": list(i.get("profiles") or []),
                            "location": i.get("location", "") if i.get("location") != "none" else ""}
                for i in response.json()["metadata"]}

    def addresses(self, name: str) -> dict[str, list[str]]:
        """IPv4 addresses (with prefix) of each interface inside a running instance."""
        with _refused(f"{name}: cannot read the container's state"):
            state = self.client.api.instances[name_in_url(name)].state.get().json()["metadata"]
        return {ifname: [f"{a['address']}/{a['netmask']}" for a in iface.get("addresses", [])
                         if a.get("family") == "inet"]
                for ifname, iface in (state.get("network") or {}).items() if ifname != "lo"}

    def links(self, name: str) -> tuple[int, dict[str, str]]:
        """A running instance's init PID on this machine (0 when stopped) and, per interface inside it, the
        name of its veth's machine end (as the daemon reports them: the caller checks their shape)."""
        with _refused(f"{name}: cannot read the container's state"):
            state = self.client.api.instances[name_in_url(name)].state.get().json()["metadata"]
        peers = {ifname: str(iface.get("host_name") or "")
                 for ifname, iface in (state.get("network") or {}).items() if ifname != "lo"}
        pid = state.get("pid")
        return (pid if isinstance(pid, int) and pid > 1 else 0), peers

    # ------------------------------------------------------------------ life cycle
    def create(self, name: str, image_alias: str, profiles: list[str], config: dict[str, str] | None = None,
               devices: dict[str, dict[str, str]] | None = None, target: str = "",
               idmapped_root: bool = False, idmap_base: int | None = None) -> None:
        """Create (not start) an instance, on cluster member TARGET when given; with IDMAPPED_ROOT, its root
        filesystem is to be mounted idmapped (see `start`). A creation in which the daemon may allocate an
        isolated id range is serialised (`creating`): not with IDMAP_BASE (the range the caller chose while
        holding that lock itself) nor for a shared map."""
        config = {**(config or {}), **({"raw.lxc": IDMAPPED_ROOT} if idmapped_root else {}),
                  **({"security.idmap.base": str(idmap_base)} if idmap_base is not None else {})}
        definition = {"name": name, "type": "container", "profiles": profiles, "config": config,
                      "devices": devices or {}, "source": {"type": "image", "alias": image_alias}}
        where = f" on member {target}" if target else ""
        allocates = idmap_base is None and config.get("security.idmap.isolated") != "false"
        with _refused(f"{name}: LXD could not create the container{where}"), \
                creating() if allocates else contextlib.nullcontext():
            self.client.instances.create(definition, wait=True, target=target or None)

    def start(self, name: str) -> None:
        """Start NAME. A host whose root is mounted idmapped and that never started yet first gets its disk's
        id map recorded as the one it runs with, so the daemon does not chown its files (they stay as the
        image has them, and LXC maps them at mount time); at every later start they match already."""
        with _refused(f"{name}: LXD could not start the container"):
            instance = self.client.instances.get(name_in_url(name))
            config = instance.config
            if config.get("raw.lxc") == IDMAPPED_ROOT and config.get("volatile.last_state.idmap", "[]") == "[]":
                self.set_key(name, "volatile.last_state.idmap", config["volatile.idmap.next"])
            instance.start(wait=True)

    def stop(self, name: str, force: bool = False) -> None:
        """Stop NAME: its init shuts it down (up to 60 s), or with FORCE it is killed at once."""
        with _refused(f"{name}: LXD could not stop the container"):
            instance = self.client.instances.get(name_in_url(name))
            if instance.status != "Stopped":
                instance.stop(wait=True, force=True) if force else instance.stop(wait=True, timeout=60)

    def launch(self, name: str, image_alias: str, profiles: list[str], config: dict[str, str] | None = None,
               pool: str | None = None) -> None:
        """Create and start an instance; with POOL, its root disk is there whatever the profiles say. A
        container the daemon cannot start is deleted again: it is of no use, and nothing is left behind."""
        devices = {"root": {"type": "disk", "path": "/", "pool": pool}} if pool else {}
        self.create(name, image_alias, profiles, config, devices)
        try:
            self.start(name)
        except LxdkvmError as exc:
            try:
                self.delete(name)
            except LxdkvmError as cleanup:
                raise LxdkvmError(f"{exc}\n  and the container could not be deleted: {cleanup}") from None
            raise

    def delete(self, name: str) -> bool:
        with _refused(f"{name}: cannot delete the container"):
            if not self.client.instances.exists(name_in_url(name)):
                return False
            instance = self.client.instances.get(name_in_url(name))
            if instance.status != "Stopped":
                instance.stop(force=True, wait=True)
            instance.delete(wait=True)
        return True

    # ------------------------------------------------------------------ snapshots
    # plain REST calls: pylxd's Snapshot model warns about fields it does not know and names snapshots
    # with the `?project=` query in them
    def snapshot(self, name: str, snapshot: str) -> None:
        """A copy-on-write snapshot of NAME's filesystem and config (not its running state: CRIU is not
        there for unprivileged containers), taken as it runs."""
        what = f"{name}: LXD could not snapshot the container"
        with _refused(what):
            response = self.client.api.instances[name_in_url(name)].snapshots.post(
                json={"name": snapshot, "stateful": False})
        self.conn.finish(what, response)

    def snapshots(self, name: str) -> list[str]:
        with _refused(f"{name}: cannot list the container's snapshots"):
            response = self.client.api.instances[name_in_url(name)].snapshots.get(params={"recursion": "1"})
        return [s["name"] for s in response.json()["metadata"]]

    def restore(self, name: str, snapshot: str) -> None:
        """NAME as it was at SNAPSHOT (a running instance is stopped, restored and started again by LXD)."""
        what = f"{name}: LXD could not restore snapshot {snapshot}"
        with _refused(what):
            response = self.client.api.instances[name_in_url(name)].put(json={"restore": snapshot})
        self.conn.finish(what, response)

    def delete_snapshot(self, name: str, snapshot: str) -> bool:
        if snapshot not in self.snapshots(name):
            return False
        what = f"{name}: cannot delete snapshot {snapshot}"
        with _refused(what):
            response = self.client.api.instances[name_in_url(name)].snapshots[name_in_url(snapshot)].delete()
        self.conn.finish(what, response)
        return True

    # ------------------------------------------------------------------ changes
    def set_key(self, name: str, key: str, value: str) -> None:
        what = f"{name}: cannot set {key}"
        with _refused(what):
            response = self.client.api.instances[name_in_url(name)].patch(json={"config": {key: value}})
        if response.json().get("type") == "async":
            self.conn.finish(what, response)

    def update(self, name: str, config: dict[str, str], devices: dict[str, dict[str, str]],
               profiles: list[str]) -> None:
        """Apply config, devices and profiles to a (running) instance, keeping the daemon's own keys."""
        def update() -> None:
            instance = self.client.instances.get(name_in_url(name))
            # the daemon's own keys, and lxdkvm's from the host's creation: its id range and how its disk
            # is mounted stay for the host's life (changing either needs a new host: plan recreates it)
            kept = {k: v for k, v in instance.config.items() if k.startswith(("volatile.", "image."))
                    or (k, v) == ("raw.lxc", IDMAPPED_ROOT) or (k == "security.idmap.base" and k not in config)}
            instance.config = {**kept, **config}
            instance.devices = devices
            instance.profiles = profiles
            instance.save(wait=True)
        self.conn.call(f"{name}: LXD refused the change", update)

    def set_devices(self, name: str, devices: dict[str, dict[str, str]]) -> None:
        """Give a (stopped) instance exactly DEVICES as its own, keeping its config and profiles."""
        def update() -> None:
            instance = self.client.instances.get(name_in_url(name))
            instance.devices = devices
            instance.save(wait=True)
        self.conn.call(f"{name}: LXD refused its network devices", update)

    def put_template(self, name: str, template: str, content: bytes) -> None:
        """Replace one of an instance's image templates (published with it)."""
        with _refused(f"{name}: cannot replace template {template}"):
            self.client.api.instances[name_in_url(name)].metadata.templates.post(
                params={"path": template}, data=content, headers={"Content-Type": "application/octet-stream"})

    # ------------------------------------------------------------------ inside
    def execute(self, name: str, command: list[str], *, env: dict[str, str] | None = None,
                timeout: float | None = None) -> ExecResult:
        """Run a command and collect its output through the daemon's recorded-output exec: plain REST calls,
        no websockets, so it is safe from several threads."""
        env = {"PATH": PATH, **(env or {})}
        if timeout:
            command = ["timeout", "--kill-after=5", str(int(timeout)), *command]
        body = {"command": command, "environment": env, "interactive": False,
                "wait-for-websocket": False, "record-output": True}
        conn = self.conn
        api = conn.client.api.instances[name_in_url(name)]
        what = f"{name}: exec {command[0]} failed"
        with _refused(what):
            metadata = conn.finish(what, api.exec.post(json=body))
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
            self.client.instances.get(name_in_url(name)).files.put(path, data, mode=mode, uid=0, gid=0)

    def pull(self, name: str, path: str) -> bytes:
        with _refused(f"{name}: cannot read {path}"):
            return self.client.instances.get(name_in_url(name)).files.get(path)
