"""Profiles of one project: listing, creating or replacing, deleting, and the default profile's root disk
and NIC (what `lxd init` gives it)."""

from __future__ import annotations

from .connection import Manager, name_in_url
from .messages import _refused


class Profiles(Manager):
    def all(self) -> dict[str, dict]:
        with _refused(f"cannot list the profiles of project {self.conn.project}"):
            return {p.name: {"description": p.description or "", "config": dict(p.config or {}),
                             "devices": dict(p.devices or {})} for p in self.client.profiles.all()}

    def devices(self, name: str) -> dict[str, dict]:
        with _refused(f"cannot read profile {name}"):
            return dict(self.client.profiles.get(name_in_url(name)).devices or {})

    def apply(self, name: str, body: dict) -> str:
        """Create or replace profile NAME with BODY (description, config, devices)."""
        with _refused(f"LXD refused profile {name}"):
            if self.client.profiles.exists(name_in_url(name)):
                profile = self.client.profiles.get(name_in_url(name))
                profile.description = body.get("description", "")
                profile.config = body.get("config", {})
                profile.devices = body.get("devices", {})
                profile.save(wait=True)
                return "updated"
            self.client.profiles.create(name, config=body.get("config", {}), devices=body.get("devices", {}),
                                        description=body.get("description", ""))
            return "created"

    def delete(self, name: str) -> bool:
        with _refused(f"cannot delete profile {name}"):
            if not self.client.profiles.exists(name_in_url(name)):
                return False
            self.client.profiles.get(name_in_url(name)).delete()
        return True

    def ensure_default_devices(self, pool: str, network: str) -> list[str]:
        """Give the default profile a root disk and a NIC if it has none (what `lxd init` does)."""
        with _refused("cannot give the default profile a root disk and a NIC"):
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
