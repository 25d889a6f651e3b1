"""The lab's known_hosts, from each running host's own key read over the daemon's exec (an authenticated
channel: never trust on first use); again at every `up`, since a recreated host has a new key."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from . import sshkeys
from . import status as status_mod

SEPARATOR = "--- authorized_keys ---"


def trust(lxd, name: str, say: Callable[[str], None]) -> dict[str, list[str]]:
    """Write lab NAME's known_hosts (LXD: its `LabScope`); warn about hosts without the lab's key. Returns
    the running hosts and their management address (none, or one)."""
    lab_status = status_mod.read(lxd, name, guests=False)
    nat = lab_status.nat_networks
    running = {h.name: [a for a in [h.management_address(nat)] if a] for h in lab_status.hosts if h.running}

    def read(host: str) -> tuple[str, str]:
        """(its host key, the lab user's authorized_keys): one exec per host, hosts side by side."""
        script = f"cat {sshkeys.HOST_KEY}; echo '{SEPARATOR}'; cat /home/{sshkeys.LAB_USER}/.ssh/authorized_keys"
        out = lxd.instances.execute(host, ["sh", "-c", script]).stdout
        host_key, _, authorized = out.partition(SEPARATOR)
        return host_key, authorized

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(running)))) as executor:
        files = dict(zip(running, executor.map(read, running), strict=True))
    sshkeys.refresh_known_hosts(name, running, lambda host: files[host][0])
    key = sshkeys.public_key(name).rsplit(" ", 1)[0]
    without = [host for host in running if key not in files[host][1]]
    if without:
        say(f"{', '.join(without)}: made before the lab had its SSH key, so Ansible cannot log in; "
            "recreate them (`lxdkvm down`, then `up`) to use the lab from Ansible")
    return running
