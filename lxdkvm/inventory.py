"""The stable name the Ansible inventory plugin (playbooks/inventory_plugins/lxdkvm.py) imports, so copies
of the plugin in users' own projects keep working; the inventory itself is built in `outputs.inventory`."""

from .outputs.inventory import Inventory, live

__all__ = ["Inventory", "live"]
