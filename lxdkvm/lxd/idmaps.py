"""Which of root's subordinate ids containers hold: how many isolated maps other projects use, and the
ranges every isolated container holds on this daemon and on the machine's other one (LXD and Incus take
them from root's one range without knowing of each other)."""

from __future__ import annotations

from ..settings import Settings
from .connection import Connection, every_instance, other_daemon_instances
from .daemon import others
from .messages import _refused


def isolated_elsewhere(conn: Connection, project: str) -> int:
    """Containers of other projects than PROJECT that hold an isolated id map."""
    with _refused("cannot list containers"):
        listed = every_instance(conn)
    return sum(1 for i in listed if i.get("project") != project
               and (i.get("expanded_config") or {}).get("security.idmap.isolated") == "true")


def isolated_maps(conn: Connection, settings: Settings) -> list[tuple[int, int]]:
    """(first host id, size) of every container's isolated id map on this daemon, in any project, and on
    the machine's other daemon when it answers."""
    with _refused("cannot list containers"):
        listed = every_instance(conn)
    for other in others(conn.daemon, settings):
        found = other_daemon_instances(other)  # None: not running, so it holds no running container
        listed = [*listed, *(found or [])]
    taken = []
    for instance in listed:
        config = instance.get("expanded_config") or {}
        if config.get("security.idmap.isolated") != "true" or config.get("security.privileged") == "true":
            continue
        base = config.get("volatile.idmap.base") or config.get("security.idmap.base") or "0"
        size = config.get("security.idmap.size", "")
        taken.append((int(base), int(size) if size.isdigit() else 65536))
    return taken
