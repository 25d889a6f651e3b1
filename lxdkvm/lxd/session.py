"""One command's access to the daemon: which daemon (from its `Settings`), and its connections, opened at
first use and then kept — one per project — so a command makes one client of the daemon, not one per call.

The managers are pylxd's resources as lxdkvm uses them, each over the right connection:
`server`, `networks`, `pools`, `images`, `projects`, `profiles` and `instances` in the default project
(lab networks live there), and `lab(project)` for a lab's own project (its instances and profiles).
Every manager returns lxdkvm's plain values and raises lxdkvm's errors.
"""

from __future__ import annotations

import threading
import time
from functools import cached_property

from ..errors import LxdUnavailable
from ..labfile.topology import PROJECT_PREFIX
from ..settings import Settings
from . import daemon as daemon_mod
from .connection import Connection, connect
from .images import Images
from .instances import Instances
from .networks import Networks
from .pools import StoragePools
from .profiles import Profiles
from .projects import Projects
from .server import Server


class LabScope:
    """A lab's view of the daemon: its project's instances and profiles, and the daemon-wide managers its
    networks, images and pools are in. Composition: two managers of the same name are never two things."""

    def __init__(self, session: Session, project: str) -> None:
        self.session, self.project = session, project

    @cached_property
    def instances(self) -> Instances:
        return Instances(lambda: self.session.connection(self.project), self.session.settings)

    @cached_property
    def profiles(self) -> Profiles:
        return Profiles(lambda: self.session.connection(self.project))

    @property
    def networks(self):
        return self.session.networks

    def config(self) -> dict[str, str] | None:
        """The lab project's config, or None when it does not exist."""
        return self.session.projects.config(self.project)

    def cluster(self):
        """The cluster (cluster.placement.Cluster) or None; tunnel ids taken: other labs' networks'."""
        return self.session.server.cluster(exclude_lab=self.project.removeprefix(PROJECT_PREFIX))


class Session:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else Settings.from_env()
        self.daemon = daemon_mod.selected(self.settings)
        self._connections: dict[str, Connection] = {}
        self._lock = threading.Lock()

    def connection(self, project: str = "default") -> Connection:
        """The connection in PROJECT, opened on first use (from any thread: once)."""
        with self._lock:
            if project not in self._connections:
                self._connections[project] = connect(self.daemon, project)
            return self._connections[project]

    def answers(self) -> bool:
        try:
            self.connection()
            return True
        except LxdUnavailable:
            return False

    def wait_until_answers(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.answers():
            if time.monotonic() > deadline:
                raise LxdUnavailable(f"{self.daemon.name} did not answer on {self.daemon.socket} within "
                                     f"{timeout:.0f}s")
            time.sleep(0.5)

    def _default(self) -> Connection:
        return self.connection()

    # The daemon-wide managers, each over the default project's connection, made at first use.
    server = cached_property(lambda self: Server(self._default, self.settings))
    networks = cached_property(lambda self: Networks(self._default))
    pools = cached_property(lambda self: StoragePools(self._default))
    images = cached_property(lambda self: Images(self._default))
    projects = cached_property(lambda self: Projects(self._default))
    profiles = cached_property(lambda self: Profiles(self._default))
    instances = cached_property(lambda self: Instances(self._default, self.settings))

    def lab(self, project: str) -> LabScope:
        return LabScope(self, project)
