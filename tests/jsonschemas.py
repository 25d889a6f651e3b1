"""The JSON Schemas of what the commands print (schemas/*.schema.json), for the unit and integration
tests: one validator per command, with the shared error document (`error.schema.json`) resolvable by the
relative `$ref` each schema makes to it."""

from __future__ import annotations

import json
from pathlib import Path

import click
import jsonschema
from referencing import Registry, Resource

SCHEMAS = Path(__file__).parent.parent / "schemas"
NOT_OUTPUTS = {"lab", "error"}  # the lab file's schema; the error document every command may print


def schemas() -> dict[str, dict]:
    """Schema name ("status", "probe-kvm", …) → the schema."""
    return {p.name.removesuffix(".schema.json"): json.loads(p.read_text())
            for p in sorted(SCHEMAS.glob("*.schema.json"))}


def registry() -> Registry:
    return Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas().values())


def validator(name: str) -> jsonschema.Draft202012Validator:
    """The validator of schemas/NAME.schema.json."""
    return jsonschema.Draft202012Validator(schemas()[name], registry=registry())


def problems(name: str, document: object) -> list[str]:
    """Where DOCUMENT does not match schemas/NAME.schema.json (empty: it matches). The error of a `oneOf`
    says little, so each branch's errors are listed."""
    out = []
    for error in validator(name).iter_errors(document):
        out.append(f"{list(error.absolute_path)}: {error.message}")
        out += [f"  {list(e.absolute_path)}: {e.message}" for e in error.context or []]
    return out


def json_commands(group: click.Group, path: tuple[str, ...] = ()) -> dict[str, tuple[tuple[str, ...], list[str]]]:
    """Every command that prints JSON → (its path, the arguments that ask for JSON): a `--json` flag, or a
    format option (--format/-f) with a `json` choice. The key ("migrate", "snapshot-list") names its schema."""
    found = {}
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found.update(json_commands(command, (*path, name)))
            continue
        for param in command.params:
            if isinstance(param, click.Option) and "--json" in param.opts and param.is_flag:
                found["-".join((*path, name))] = ((*path, name), ["--json"])
            elif isinstance(param, click.Option) and isinstance(param.type, click.Choice) and \
                    "json" in param.type.choices and "--format" in param.opts:
                found["-".join((*path, name))] = ((*path, name), ["--format", "json"])
    return found
