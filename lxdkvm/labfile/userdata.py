"""A guest's cloud-init user-data, as a lab file gives it: checked before anything is made, and written as
cloud-init takes it."""

from __future__ import annotations

import yaml

from ..errors import LxdkvmError

DEFAULT_USER_DATA = "#cloud-config\n{}\n"


def check_user_data(text: str | None) -> str:
    """User data as cloud-init takes it: a `#cloud-config` YAML mapping, a `#!` script or MIME multipart."""
    if text is None or not text.strip():
        return DEFAULT_USER_DATA
    first = text.lstrip().splitlines()[0]
    if first.startswith("#cloud-config"):
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise LxdkvmError(f"user-data is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise LxdkvmError("user-data: a #cloud-config document must be a mapping")
    elif not first.startswith(("#!", "Content-Type:", "#include", "#cloud-boothook")):
        raise LxdkvmError("user-data must start with #cloud-config, #! (a script) or be MIME multipart")
    return text if text.endswith("\n") else text + "\n"
