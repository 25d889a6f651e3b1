"""One pylxd client of the daemon, within one project: the only place lxdkvm makes one (`connect`, which
`session.Session` calls once per project), and the two ways a request fails (`call`, `finish`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import pylxd
from pylxd import exceptions as pylxd_exc

from ..errors import LxdkvmError, LxdRefused, LxdUnavailable
from .daemon import Daemon
from .messages import _refused, explain, lxd_message, refusal


def name_in_url(name: str) -> str:
    """NAME as one path segment of a request: a name with URL syntax (`default?project=x`, `../`) is sent
    as that literal name, which the daemon refuses, never as a query or another path."""
    return quote(name, safe="")


@dataclass
class Connection:
    daemon: Daemon
    project: str
    client: pylxd.Client

    def call(self, what: str, action: Callable[[], object]) -> object:
        """Run an API call; the daemon's refusal becomes an LxdRefused that starts with WHAT."""
        with _refused(what):
            return action()

    def finish(self, what: str, response) -> dict:
        """Wait for the background operation a request started and return its metadata. A failed
        operation raises LxdRefused with the operation's own error (pylxd's fallback read of the
        operation returns a failed one without raising)."""
        with _refused(what):
            operation = self.client.operations.wait_for_operation(response.json()["operation"])
        if getattr(operation, "status", "") == "Failure" or getattr(operation, "err", ""):
            message = lxd_message({"err": getattr(operation, "err", "")}, getattr(operation, "status_code", None))
            raise LxdRefused(explain(what, message), message)
        return getattr(operation, "metadata", None) or {}


def connect(daemon: Daemon, project: str = "default") -> Connection:
    """A client of DAEMON in PROJECT, checked with one request. Raises LxdUnavailable or LxdRefused."""
    path, name = daemon.socket, daemon.name
    if not os.path.exists(path):
        setup = "lxdkvm setup --daemon incus" if daemon.kind == "incus" else "lxdkvm setup"
        raise LxdUnavailable(f"{name} is not running: no socket at {path} ({daemon.reason}; run `{setup}`)")
    try:
        client = pylxd.Client(endpoint=path, project=None if project == "default" else project)
        client.host_info  # noqa: B018 - forces the first request
    except (pylxd_exc.ClientConnectionFailed, OSError) as exc:
        raise LxdUnavailable(f"{name} does not answer on {path}: {exc}") from None
    except pylxd_exc.LXDAPIException as exc:
        raise refusal(f"{name} refused a connection to project {project}", exc) from None
    return Connection(daemon, project, client)


def other_daemon_instances(daemon: Daemon) -> list[dict] | None:
    """Every instance of another daemon of this machine (LXD and Incus share root's subordinate ids), or
    None when it does not answer. Its own short-lived connection: the other daemon is not the session's."""
    try:
        return every_instance(connect(daemon))
    except (LxdkvmError, pylxd_exc.LXDAPIException, OSError):
        return None


def every_instance(conn: Connection) -> list[dict]:
    """Every instance of CONN's daemon, in every project, with its expanded config (one request)."""
    return conn.client.api.instances.get(params={"recursion": "1", "all-projects": "true"}).json()["metadata"] or []


class Manager:
    """One kind of the daemon's resources, over a connection opened when first needed."""

    def __init__(self, connection: Callable[[], Connection]) -> None:
        self._connection = connection

    @property
    def conn(self) -> Connection:
        return self._connection()

    @property
    def client(self) -> pylxd.Client:
        return self._connection().client
