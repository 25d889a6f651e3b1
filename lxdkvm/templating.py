"""Find the template folders (profiles/, cloud-init/, images/, libvirt/) and render Jinja2 from them.

In a source checkout they are the top-level folders of the repository; an installed wheel carries them
under ``lxdkvm/data/``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    for base in (_PACKAGE / "data", _PACKAGE.parent):
        if (base / name).is_dir():
            return base / name
    raise FileNotFoundError(f"lxdkvm template folder {name!r} is missing from the installation")


def _quote(value: object) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(str(value))


@cache
def _environment(folder: str) -> jinja2.Environment:
    import jinja2  # here, not at the top: `lxdkvm --help` and `status` render nothing

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(data_dir(folder)), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
    )
    env.filters["q"] = _quote
    return env


def render_template(folder: str, template: str, /, **values: object) -> str:
    return _environment(folder).get_template(template).render(**values)
