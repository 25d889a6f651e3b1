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

    def free_mib(self, name: str) -> int | None:
        """Free space of pool NAME in MiB, as the daemon reports it (None when it does not say)."""
        with _refused(f"cannot read storage pool {name}"):
            space = self.client.api.storage_pools[name_in_url(name)].resources.get().json()["metadata"].get("space") or {}
        total, used = space.get("total"), space.get("used")
        return (int(total) - int(used)) // 2**20 if isinstance(total, int) and isinstance(used, int) else None
