"""The stable name the Ansible inventory plugin (playbooks/inventory_plugins/lxdkvm.py) imports, so copies
of the plugin in users' own projects keep working: `live(lab)` with the daemon the environment selects
(settings.Settings.from_env). The inventory itself is built in `outputs.inventory`."""

from __future__ import annotations

from pathlib import Path

from .outputs.inventory import Inventory


def live(lab: str | Path | None) -> Inventory:
    from .lxd.session import Session
    from .outputs import inventory

    return inventory.live(Session(), lab)


__all__ = ["Inventory", "live"]
