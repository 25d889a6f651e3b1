"""Ansible inventory plugin: the hosts of an lxdkvm lab that is up, read live from LXD.

It only calls `lxdkvm.inventory.live`, the function behind `lxdkvm inventory`, so both list the same
hosts, groups and vars. Ansible must run from the Python environment where lxdkvm is installed.

Every value comes from a lab's hosts, which are untrusted: lxdkvm checks them, and each variable is set
wrapped as unsafe (never templated), as ansible-core 2.19 also takes a plugin's values to be. Values
lxdkvm left out are said as warnings.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: lxdkvm
short_description: Hosts of an lxdkvm lab that is up
description:
  - Lists the hosts of an lxdkvm lab (LXD containers that are QEMU/KVM hosts) with groups per lab
    (C(lab_<lab>)), per network (C(net_<network>)), per range of hosts and per C(groups:) of the lab file,
    and the variables to reach each one over SSH with host keys checked against the lab's known_hosts.
  - Uses the lxdkvm Python package; run Ansible from the environment where lxdkvm is installed.
  - The source file's name must end in C(.lxdkvm.yml) or C(.lxdkvm.yaml).
options:
  plugin:
    description: Marks the file as this plugin's source.
    required: true
    choices: ["lxdkvm"]
  lab:
    description: The lab's name, or its lab file (a relative path is relative to the source file).
    type: str
    default: default
"""

EXAMPLES = r"""
# playbooks/inventory/default.lxdkvm.yml
plugin: lxdkvm
lab: default
"""

from pathlib import Path

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin
from ansible.utils.unsafe_proxy import wrap_var


class InventoryModule(BaseInventoryPlugin):
    NAME = "lxdkvm"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith((".lxdkvm.yml", ".lxdkvm.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        try:
            from lxdkvm.errors import LxdkvmError
            from lxdkvm.inventory import live
        except ImportError as exc:
            raise AnsibleParserError(f"the lxdkvm inventory plugin needs the lxdkvm package ({exc}); run "
                                     "Ansible from the environment where lxdkvm is installed") from exc
        lab = self.get_option("lab")
        beside = Path(path).parent / lab
        if lab.endswith((".yaml", ".yml")) and beside.is_file():
            lab = str(beside)
        try:
            data = live(lab)
        except LxdkvmError as exc:
            raise AnsibleParserError(f"lxdkvm lab {lab}: {exc}") from exc
        for warning in data.warnings:
            self.display.warning(f"lxdkvm lab {lab}: {warning}")
        for host, hostvars in data.hosts.items():
            self.inventory.add_host(host)
            for key, value in hostvars.items():
                self.inventory.set_variable(host, key, wrap_var(value))
        for group, hosts in data.groups.items():
            self.inventory.add_group(group)
            for host in hosts:
                self.inventory.add_host(host, group=group)
