"""The lab file's reference, generated from its schema (`labfile.LabIn`): `docs/lab-file.md` for people and
`schemas/lab.schema.json` for editors. `invoke render-docs` writes both; tests/unit/test_labschema.py fails
when a committed copy drifts from this generator.
"""

from __future__ import annotations

import copy
import json
import types
import typing
from typing import Annotated, Literal

from pydantic import BaseModel

from ..labfile import checks, read
from ..labfile import schema as lab_schema

SCHEMA_PATH = "schemas/lab.schema.json"
DOC_PATH = "docs/lab-file.md"
SCHEMA_ID = "https://lxdkvm.invalid/schemas/lab.schema.json"  # an identifier, not a place to fetch from
IPV4 = r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$"
CIDR = IPV4.removesuffix("$") + r"/([0-9]|[12][0-9]|3[0-2])$"

# Where each model of the schema sits in a lab file, and what a section about it is called.
SECTIONS: dict[type[BaseModel], tuple[str, str]] = {
    lab_schema.LabIn: ("(top level)", "The lab"),
    lab_schema.NetworkIn: ("networks[]", "A network"),
    lab_schema.OpenIn: ("networks[].open[]", "An opening in the lab's firewall"),
    lab_schema.ImpairIn: ("networks[].impair", "Impaired links"),
    lab_schema.ProfileIn: ("profiles[]", "A profile"),
    lab_schema.HostSettingsIn: ("defaults", "Defaults"),
    lab_schema.HostIn: ("hosts[]", "A host"),
    lab_schema.AttachmentIn: ("hosts[].networks[], defaults.networks[], guests[].networks[]", "A NIC"),
    lab_schema.LimitsIn: ("hosts[].limits, defaults.limits", "Limits"),
    lab_schema.GuestIn: ("guests[]", "A guest"),
    lab_schema.GuestDiskIn: ("guests[].disk", "A guest's disk"),
    lab_schema.ReadyIn: ("guests[].ready", "When an imported image has booted"),
}

# One example value per key, as YAML (a test checks that every key of the schema has one).
EXAMPLES: dict[str, str] = {
    "LabIn.name": "demo", "LabIn.image": "lxdkvm/kvm-host", "LabIn.storage": "auto",
    "LabIn.networks": "[{name: mgmt, subnet: 10.200.10.0/24}]", "LabIn.profiles": "[{name: big, config: {}}]",
    "LabIn.defaults": "{limits: {cpu: 1, memory: 2GiB}}", "LabIn.hosts": "[{name: kvm-1, networks: [mgmt]}]",
    "LabIn.guests": "[{name: vm-1, host: kvm-1, networks: [data]}]",
    "NetworkIn.name": "mgmt", "NetworkIn.subnet": "10.200.10.0/24", "NetworkIn.mode": "isolated",
    "NetworkIn.dhcp": "false", "NetworkIn.mtu": "9000", "NetworkIn.open": "[{machine: tcp/8080}]",
    "NetworkIn.impair": "{loss: 30%, hosts: [kvm-2]}",
    "ImpairIn.loss": "30%", "ImpairIn.rate": "2Mbit", "ImpairIn.delay": "20ms", "ImpairIn.jitter": "5ms",
    "ImpairIn.hosts": "[kvm-2]",
    "OpenIn.machine": "tcp/8080", "OpenIn.subnet": "192.168.1.0/24",
    "AttachmentIn.network": "data", "AttachmentIn.ipv4": "10.200.20.11",
    "LimitsIn.cpu": "2", "LimitsIn.memory": "4GiB",
    "HostSettingsIn.networks": "[mgmt, {network: data, ipv4: 10.200.20.11}]",
    "HostSettingsIn.limits": "{cpu: 2, memory: 4GiB}", "HostSettingsIn.idmap": "shared",
    "HostSettingsIn.config": "{user.role: compute}", "HostSettingsIn.profiles": "[big]",
    "HostSettingsIn.groups": "[compute, openstack]", "HostSettingsIn.placement": "m2",
    "HostIn.name": "compute-[1-4]",
    "ProfileIn.name": "big", "ProfileIn.config": '{limits.processes: "2000"}',
    "ProfileIn.devices": "{eth2: {type: nic, network: data}}",
    "GuestIn.name": "vm-[1-2]", "GuestIn.host": "kvm-1",
    "GuestIn.networks": "[{network: data, ipv4: 10.200.20.101}]",
    "GuestIn.vcpus": "2", "GuestIn.memory": "256MiB", "GuestIn.accel": "tcg", "GuestIn.disk": "{size: 64MiB}",
    "GuestDiskIn.image": "debian", "GuestDiskIn.size": "64MiB", "GuestDiskIn.file": "router-v3",
    "GuestIn.ready": '{console: "login:"}', "ReadyIn.console": '"login:"', "ReadyIn.timeout": "600",
    "GuestIn.user_data": "{runcmd: [[touch, /run/hello]], ssh_authorized_keys: [ssh-ed25519 AAAA... me]}",
}

# A lab file that uses most keys; the docs show it and a test loads it (schema and checks).
EXAMPLE_LAB = """\
# yaml-language-server: $schema=../schemas/lab.schema.json
name: demo
networks:
  - name: mgmt
    subnet: 10.200.10.0/24        # nat (the default): this machine is the gateway, DHCP on
  - name: data
    subnet: 10.200.20.0/24
    mode: isolated                # layer 2 only
    mtu: 9000
profiles:
  - name: big
    config: {limits.processes: "2000"}
defaults:
  limits: {cpu: 1, memory: 2GiB}
  networks: [mgmt]
hosts:
  - name: kvm-[1-2]               # kvm-1, kvm-2
    networks:
      - mgmt                      # eth0: a DHCP lease
      - network: data             # eth1: kvm-1 .11, kvm-2 .12
        ipv4: 10.200.20.11
    profiles: [big]
    groups: [compute]
guests:
  - name: vm-1
    host: kvm-1
    networks:
      - network: data
        ipv4: 10.200.20.101
    memory: 128MiB
    disk: {size: 64MiB}
"""


# ---------------------------------------------------------------------------------------- JSON Schema
def _short_forms(node: object) -> object:
    """Where the loader accepts a short form, the schema must too: a NIC as a network's name, a guest's
    disk as an image's name."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref == "#/$defs/AttachmentIn":
            return {"anyOf": [{"type": "string", "description": "A network's name: a NIC with a DHCP lease."},
                              {"$ref": ref}]}
        if ref == "#/$defs/GuestDiskIn" or (node.get("allOf") == [{"$ref": "#/$defs/GuestDiskIn"}]):
            extra = {k: v for k, v in node.items() if k not in ("$ref", "allOf")}
            images = list(typing.get_args(lab_schema.GuestDiskIn.model_fields["image"].annotation))
            return {"anyOf": [{"type": "string", "enum": images}, {"$ref": "#/$defs/GuestDiskIn"}], **extra}
        return {key: _short_forms(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_short_forms(value) for value in node]
    return node


def json_schema() -> dict:
    """`LabIn.model_json_schema()` for editors: short forms allowed, names, subnets and addresses with
    the patterns the checks use, a title and an id."""
    schema = _short_forms(copy.deepcopy(lab_schema.LabIn.model_json_schema()))
    defs = schema["$defs"]
    schema["properties"]["name"]["pattern"] = checks.LAB_NAME.pattern
    defs["NetworkIn"]["properties"]["name"]["pattern"] = checks.NETWORK_NAME.pattern
    defs["NetworkIn"]["properties"]["subnet"]["pattern"] = CIDR
    ipv4 = defs["AttachmentIn"]["properties"]["ipv4"]
    ipv4["anyOf"] = [{"type": "string", "pattern": IPV4}, {"type": "null"}]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "lxdkvm lab file", **{k: v for k, v in schema.items() if k != "title"}}


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------- Markdown
def _anchor(model: type[BaseModel]) -> str:
    title = SECTIONS[model][1].lower()
    return "#" + "".join(c for c in title.replace(" ", "-") if c.isalnum() or c == "-")


def _models(annotation: object) -> list[type[BaseModel]]:
    """The schema models inside ANNOTATION (list[X], X | None, Annotated[X, ...])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def type_name(annotation: object) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        inner = type_name(args[0])
        if args[0] is lab_schema.AttachmentIn:
            return f"network name or {inner}"
        if args[0] is lab_schema.GuestDiskIn:
            images = typing.get_args(lab_schema.GuestDiskIn.model_fields["image"].annotation)
            return f"{' or '.join(f'`{i}`' for i in images)}, or {inner}"
        return inner
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        if set(kept) == {str, int, float, bool}:
            return "scalar"
        return " or ".join(type_name(a) for a in kept)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{SECTIONS[annotation][1]}]({_anchor(annotation)})"
    return {str: "string", int: "integer", bool: "boolean", float: "number"}.get(annotation, str(annotation))


def _default(field) -> str:
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "—"
    if isinstance(value, BaseModel):
        return "see its keys"
    return f"`{json.dumps(value) if not isinstance(value, str) else value}`"


def _limits(field) -> str:
    parts = []
    for item in field.metadata:
        for attr, text in (("ge", "≥ {}"), ("le", "≤ {}"), ("min_length", "at least {}")):
            if getattr(item, attr, None) is not None:
                parts.append(text.format(getattr(item, attr)))
        if getattr(item, "pattern", None):
            parts.append("a size" if "GiB" in item.pattern else f"matches `{item.pattern}`")
    return f" ({', '.join(parts)})" if parts else ""


def _example(model: type[BaseModel], name: str) -> str | None:
    """The example of a key, looked up along the model's bases (a host has every key of `defaults`)."""
    return next((EXAMPLES[f"{base.__name__}.{name}"] for base in model.__mro__
                 if f"{base.__name__}.{name}" in EXAMPLES), None)


def _section(model: type[BaseModel]) -> list[str]:
    where, title = SECTIONS[model]
    lines = [f"## {title}", "", f"Where: `{where}`. {model.__doc__.strip()}", "",
             "| key | type | default | example | what it is |", "| --- | --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        example = _example(model, name) or ""
        description = (field.description or "").replace("|", "\\|") + _limits(field)
        lines.append(f"| `{name}` | {type_name(field.annotation)} | {_default(field)} | "
                     f"`{name}: {example}` | {description} |")
    return [*lines, ""]


def _walk(model: type[BaseModel], seen: list[type[BaseModel]]) -> list[type[BaseModel]]:
    if model in seen:
        return seen
    seen.append(model)
    for field in model.model_fields.values():
        for inner in _models(field.annotation):
            _walk(inner, seen)
    return seen


def keys_without_example() -> list[str]:
    """Keys of the schema (Model.field) that EXAMPLES does not cover."""
    return [f"{m.__name__}.{name}" for m in _walk(lab_schema.LabIn, []) for name in m.model_fields
            if _example(m, name) is None]


INTRO = """\
# Lab file reference

<!-- Generated by lxdkvm/outputs/reference.py from the schema in lxdkvm/labfile/schema.py: run `invoke render-docs`.
     Do not edit by hand; tests/unit/test_labschema.py fails when this file drifts. -->

Every key a lab file may have, with its type, default and an example. What the keys mean together
(overlaps, references, addresses) and what a lab file may not do to this machine are in
[labs.md](labs.md), in particular [A lab file cannot break
confinement](labs.md#a-lab-file-cannot-break-confinement). Unknown keys are refused with a "did you mean".

## Editor support: the JSON Schema

[`{schema}`](../{schema}) is the same schema as JSON Schema (draft 2020-12), with the name, subnet and
address patterns the checks use and the short forms the loader accepts. With VS Code's YAML extension
(redhat.vscode-yaml), or any editor that runs yaml-language-server, make this the first line of a lab
file for completion, hover help and checking as you type (the path is relative to the lab file):

```yaml
# yaml-language-server: $schema=../schemas/lab.schema.json
```

or map lab files to it once, in VS Code's `settings.json`:

```json
"yaml.schemas": {{ "./schemas/lab.schema.json": ["labs/*.yaml", "tests/labs/valid/*.yaml"] }}
```

The schema checks shape and spelling; `lxdkvm plan FILE` checks everything, and prints each problem as
`file:line: key: message`.

## Example

```yaml
{example}
```

"""


def markdown() -> str:
    models = _walk(lab_schema.LabIn, [])
    order = [m for m in SECTIONS if m in models] + [m for m in models if m not in SECTIONS]
    lines = [INTRO.format(schema=SCHEMA_PATH, example=EXAMPLE_LAB.rstrip("\n"))]
    for model in order:
        lines += _section(model)
    return "\n".join(lines).rstrip("\n") + "\n"


def committed() -> dict[str, str]:
    """Path in the repository → the text the generator makes for it."""
    return {SCHEMA_PATH: schema_text(), DOC_PATH: markdown()}


DEFAULT_LAB_SVG = "docs/default-lab.svg"


def default_lab_svg() -> bytes:
    """The README's picture: the embedded default lab drawn from its file by Graphviz (needs `dot`)."""
    from . import graph, graphtext, graphviz

    text, source = read.read(None)
    lab, problems, _ = read.parse(text, source)
    if problems:
        raise read.t.LabInvalid(source, problems)
    return graphviz.render(graphtext.dot(graph.build(lab)), "svg")
