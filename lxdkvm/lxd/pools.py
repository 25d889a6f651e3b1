"""Storage pools: which the daemon has, and making one."""

from __future__ import annotations

from .connection import Manager, name_in_url
from .messages import _refused
from .server import list_storage_pools


class StoragePools(Manager):
    def all(self) -> list[dict]:
        return list_storage_pools(self.conn)

    def names(self) -> set[str]:
        with _refused("cannot list storage pools"):
            return {p["name"] for p in self.all()}

    def ensure(self, name: str, driver: str, config: dict[str, str] | None = None) -> bool:
        """Create the pool unless it exists. Returns True when it was created."""
        with _refused(f"cannot create storage pool {name} ({driver})"):
            if self.client.storage_pools.exists(name_in_url(name)):
                return False
            self.client.storage_pools.create({"name": name, "driver": driver, "config": config or {}})
        return True
