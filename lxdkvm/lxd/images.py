"""Images and their aliases: finding, importing a split image, publishing an instance, and moving an alias
to a new image without ever leaving it pointing nowhere."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

from pylxd import exceptions as pylxd_exc

from ..errors import LxdkvmError
from .connection import Manager
from .messages import IMAGE_EXISTS, _refused, refusal


def split_image_fingerprint(metadata: Path, rootfs: Path) -> str:
    """The fingerprint the daemon gives a split image: SHA-256 of the metadata tarball, then the rootfs."""
    digest = hashlib.sha256()
    for path in (metadata, rootfs):
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _image(image) -> dict:
    return {"fingerprint": image.fingerprint, "properties": dict(image.properties or {}),
            "size": image.size, "aliases": [a["name"] for a in image.aliases or []]}


class Images(Manager):
    def by_alias(self, alias: str) -> dict | None:
        with _refused(f"cannot read image {alias}"):
            try:
                return _image(self.client.images.get_by_alias(alias))
            except pylxd_exc.NotFound:
                return None

    def with_property(self, key: str, value: str) -> dict | None:
        """An image whose property KEY is VALUE (whatever its aliases), or None."""
        with _refused("cannot list images"):
            images = self.client.images.all()
        return next((_image(i) for i in images if (i.properties or {}).get(key) == value), None)

    def aliases(self) -> set[str]:
        with _refused("cannot list image aliases"):
            response = self.client.api.images.aliases.get(params={"recursion": "1"})
        return {alias["name"] for alias in response.json()["metadata"]}

    def import_split(self, metadata: Path, rootfs: Path, alias: str, description: str = "") -> tuple[str, bool]:
        """Import a split image and point ALIAS at it (see `_replace_alias`). When the daemon already has the
        very same image (under another alias) only the alias is set. Returns (fingerprint, imported)."""
        imported = True

        def upload() -> str:
            nonlocal imported
            try:
                with open(metadata, "rb") as meta, open(rootfs, "rb") as root:
                    return self.client.images.create(root, metadata=meta).fingerprint
            except pylxd_exc.LXDAPIException as exc:
                if not re.search(IMAGE_EXISTS, refusal("", exc).lxd_message):
                    raise
                imported = False
                return split_image_fingerprint(metadata, rootfs)

        return self._replace_alias(alias, description, upload, f"importing image {alias}"), imported

    def point_alias(self, alias: str, fingerprint: str, description: str = "") -> str:
        """Point ALIAS at an image the daemon already has (see `_replace_alias`)."""
        return self._replace_alias(alias, description, lambda: fingerprint, f"pointing {alias} at {fingerprint[:12]}")

    def publish(self, name: str, alias: str, properties: dict[str, str], description: str = "") -> str:
        """Publish a stopped instance (of the default project) as an image and point ALIAS at it."""
        what = f"publishing {name} as {alias}"

        def publish_instance() -> str:
            response = self.client.api.images.post(json={
                "source": {"type": "instance", "name": name}, "properties": properties, "public": False})
            return self.conn.finish(what, response)["fingerprint"]

        return self._replace_alias(alias, description, publish_instance, what)

    def _replace_alias(self, alias: str, description: str, create: Callable[[], str], what: str) -> str:
        """Create (or find) an image, point ALIAS at it and delete the alias's previous image when no
        other alias names it. The alias moves in one request, so it never points nowhere; on any
        failure an image this call created is deleted again, so nothing half-made remains."""
        old = self.by_alias(alias)
        with _refused(f"{what} failed"):
            had = {i.fingerprint for i in self.client.images.all()}
        fingerprint = None
        try:
            with _refused(f"{what} failed"):
                fingerprint = create()
                if old and old["fingerprint"] == fingerprint:
                    return fingerprint
                if old:
                    self.client.api.images.aliases[alias].put(
                        json={"target": fingerprint, "description": description})
                else:
                    self.client.images.get(fingerprint).add_alias(alias, description)
        except (LxdkvmError, OSError) as exc:
            if fingerprint and fingerprint not in had:
                self.delete(fingerprint)
            if isinstance(exc, OSError):
                raise LxdkvmError(f"{what} failed: {exc}") from None
            raise
        if old:
            self._delete_if_unaliased(old["fingerprint"])
        return fingerprint

    def _delete_if_unaliased(self, fingerprint: str) -> None:
        with _refused(f"cannot delete image {fingerprint[:12]}"):
            try:
                image = self.client.images.get(fingerprint)
            except pylxd_exc.NotFound:
                return
            if not image.aliases:
                image.delete(wait=True)

    def delete(self, fingerprint: str) -> None:
        with _refused(f"cannot delete image {fingerprint[:12]}"):
            try:
                self.client.images.get(fingerprint).delete(wait=True)
            except pylxd_exc.NotFound:
                pass
