"""Projects: a lab's own project (its instances and profiles) is made and removed with the lab."""

from __future__ import annotations

from .connection import Manager, name_in_url
from .messages import _refused


class Projects(Manager):
    def names(self) -> list[str]:
        return self.conn.call("cannot list LXD projects", lambda: [p.name for p in self.client.projects.all()])

    def exists(self, name: str) -> bool:
        with _refused(f"cannot read LXD project {name}"):
            return self.client.projects.exists(name_in_url(name))

    def config(self, name: str) -> dict[str, str] | None:
        """Project NAME's config, or None when there is no such project."""
        with _refused(f"cannot read LXD project {name}"):
            if not self.client.projects.exists(name_in_url(name)):
                return None
            return dict(self.client.projects.get(name_in_url(name)).config or {})

    def create(self, name: str, config: dict[str, str], description: str) -> None:
        self.conn.call(f"cannot create LXD project {name}", lambda: self.client.projects.create(
            name, config=config, description=description))

    def delete(self, name: str) -> None:
        with _refused(f"cannot delete LXD project {name}"):
            if self.client.projects.exists(name_in_url(name)):
                self.client.projects.get(name_in_url(name)).delete()
