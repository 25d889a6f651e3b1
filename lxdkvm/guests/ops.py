"""What a person does to a running guest: find it, and run a command in it through its agent socket (moving
it to another host is `migration`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import LxdkvmError
from . import agent, domain, runtime

if TYPE_CHECKING:
    from ..lxd.instances import Instances


@dataclass(frozen=True)
class Located:
    name: str
    host: str
    spec: dict  # lxdkvm's metadata in the domain


def locate(client: Instances, hosts: list[str], lab: str, name: str,
           warn: runtime.Warn = lambda _m: None) -> Located:
    """The host whose libvirt has lab LAB's guest NAME (what a host reports that is not valid is left out,
    and WARN told)."""
    for host in hosts:
        found = runtime.observe(client, host, warn).get(name)
        if found and found["spec"] and found["spec"].get("lab") == lab:
            return Located(name, host, found["spec"])
    raise LxdkvmError(f"lab {lab} has no guest {name} in a running host (`lxdkvm status {lab}` lists them)")


def guest_exec(client: Instances, where: Located, command: list[str], timeout: float = 60) -> tuple[str, str, int]:
    """(stdout, stderr, exit code) of COMMAND run in the guest through its agent socket."""
    socket = domain.paths(where.name).agent_socket
    result = client.execute(where.host, ["python3", agent.AGENT_PATH, "exec", socket, "--timeout",
                                         str(int(timeout)), "--", *command], timeout=timeout + 30)
    return result.stdout, result.stderr, result.exit_code
