"""Load a lab file: YAML with line numbers (`yamlread`) → schema (`schema`, pydantic) → a `topology.Lab`.

Every problem is collected as a `topology.Problem` with the line and key path it is about, so a person
sees all their mistakes at once. Between the YAML and the schema, `controls` refuses control characters
in every key and value (they are data, never syntax). Cross-object meaning (overlaps, duplicates, references) is `checks`'.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import yaml
from pydantic import ValidationError

from ..templating import data_dir
from . import controls, impairment, yamlread
from . import topology as t
from .schema import AttachmentIn, GuestIn, LabIn, LimitsIn, NetworkIn, Scalar, schema_problem
from .values import MAX_BYTES, size_bytes
from .yamlread import Positions, key_path

Loc = tuple[str | int, ...]
RANGE = re.compile(r"\[([0-9]{1,9})-([0-9]{1,9})\]")  # ASCII digits: `\d` would read `[١-٤]` as 1-4
MAX_RANGE = 256


# ---------------------------------------------------------------------------------------- resolve
def _text(value: Scalar) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def expand_name(pattern: str) -> list[str] | str:
    """`compute-[1-4]` → compute-1 … compute-4 (`[01-10]` keeps the width). A string is an error."""
    ranges = RANGE.findall(pattern)
    if not ranges:
        return [pattern]
    if len(ranges) > 1:
        return "only one [first-last] range is allowed in a host name"
    first, last = ranges[0]
    start, end = int(first), int(last)
    if end < start:
        return f"range [{first}-{last}] counts down"
    if end - start + 1 > MAX_RANGE:
        return f"range [{first}-{last}] makes {end - start + 1} hosts (at most {MAX_RANGE})"
    width = len(first) if first.startswith("0") else 0
    return [RANGE.sub(str(n).zfill(width), pattern) for n in range(start, end + 1)]


def _openings(i: int, spec: NetworkIn, positions: Positions, problems: list[t.Problem]) -> list[t.Opening]:
    """A network's `open:` list as `topology.Opening`s (one of `machine` or `subnet` each)."""
    found = []
    for j, item in enumerate(spec.open):
        loc: Loc = ("networks", i, "open", j)
        where, line = key_path(loc), positions.line(loc)
        if (item.machine is None) == (item.subnet is None):
            problems.append(t.Problem(where, "give one of `machine` and `subnet`",
                                      "e.g. {machine: tcp/8080} or {subnet: 192.168.1.0/24}", line))
            continue
        if item.machine is not None:
            protocol, port = item.machine.split("/")
            if not 1 <= int(port) <= 65535:
                problems.append(t.Problem(f"{where}.machine", f"port {port} is not a port", "use 1-65535", line))
                continue
            found.append(t.Opening(spec.name, "machine", protocol, int(port), path=where, line=line))
            continue
        try:
            subnet = ipaddress.IPv4Network(item.subnet)
        except ValueError as exc:
            problems.append(t.Problem(f"{where}.subnet", f"{item.subnet!r} is not an IPv4 subnet ({exc})",
                                      "write an IPv4 range in CIDR form, e.g. 192.168.1.0/24", line))
            continue
        found.append(t.Opening(spec.name, "subnet", subnet=subnet, path=where, line=line))
    return found


def _network(i: int, spec: NetworkIn, positions: Positions, problems: list[t.Problem],
             openings: list[t.Opening]) -> t.Network | None:
    loc: Loc = ("networks", i, "subnet")
    try:
        subnet = ipaddress.IPv4Network(spec.subnet)
    except ValueError as exc:
        hint = "use the network address, e.g. 10.10.1.0/24" if "host bits" in str(exc) else \
            "write an IPv4 subnet in CIDR form, e.g. 10.10.1.0/24"
        problems.append(t.Problem(key_path(loc), f"{spec.subnet!r} is not an IPv4 subnet ({exc})", hint,
                                  positions.line(loc)))
        return None
    dhcp = spec.dhcp if spec.dhcp is not None else spec.mode == "nat"
    openings.extend(_openings(i, spec, positions, problems))
    impair = _impairment(i, spec, positions, problems)
    return t.Network(spec.name, subnet, spec.mode, dhcp, spec.mtu, key_path(("networks", i)),
                     positions.line(("networks", i)), mtu_given="mtu" in spec.model_fields_set,
                     impair=impair, impair_hosts=tuple(spec.impair.hosts or ()) if spec.impair else (),
                     impair_line=positions.line(("networks", i, "impair", "hosts")))


def _impairment(i: int, spec: NetworkIn, positions: Positions,
                problems: list[t.Problem]) -> impairment.Impairment | None:
    """A network's `impair:` as an `Impairment` (its values' units and bounds checked)."""
    if spec.impair is None:
        return None
    given = spec.impair
    texts = {k: None if getattr(given, k) is None else str(getattr(given, k))
             for k in ("loss", "rate", "delay", "jitter")}
    try:
        return impairment.parse(texts["loss"], texts["rate"], texts["delay"], texts["jitter"])
    except impairment.ImpairmentError as exc:
        loc: Loc = ("networks", i, "impair", exc.key)
        if not exc.key or texts[exc.key] is None:  # nothing given at all, or jitter without a delay
            loc = ("networks", i, "impair")
        problems.append(t.Problem(key_path(loc), str(exc), exc.hint, positions.line(loc)))
        return None


def range_group(pattern: str) -> list[str]:
    """The Ansible group of a range of hosts: `compute-[1-4]` → compute (none when that is no valid name)."""
    from .checks import GROUP_NAME

    if not RANGE.search(pattern):
        return []
    name = re.sub(r"[-_.]+", "_", RANGE.sub("", pattern)).strip("_").lower()
    return [name] if GROUP_NAME.match(name) else []


def _attachments(items: list[AttachmentIn], base: Loc, offset: int, positions: Positions,
                 problems: list[t.Problem]) -> tuple[t.Attachment, ...]:
    out = []
    for j, item in enumerate(items):
        loc: Loc = (*base, j)
        address = None
        if item.ipv4 is not None:
            try:
                address = ipaddress.IPv4Address(item.ipv4)
            except ValueError:
                problems.append(t.Problem(key_path((*loc, "ipv4")), f"{item.ipv4!r} is not an IPv4 address",
                                          "write a plain address such as 10.10.1.11 (the prefix comes from "
                                          "the network's subnet)", positions.line((*loc, "ipv4"))))
            else:
                # a range of hosts counts up from the address given (checked against the subnet later)
                address = address + offset if int(address) + offset <= 0xFFFFFFFF else None
        out.append(t.Attachment(item.network, f"eth{j}", address, key_path(loc), positions.line(loc)))
    return tuple(out)


def _expanded(pattern: str, loc: Loc, example: str, positions: Positions,
              problems: list[t.Problem]) -> list[str] | None:
    """The names a (range) name stands for, or None with a problem said."""
    names = expand_name(pattern)
    if isinstance(names, str):
        problems.append(t.Problem(key_path(loc), names, f"write a range as [first-last], e.g. {example}",
                                  positions.line(loc)))
        return None
    return names


def _hosts(lab: LabIn, positions: Positions, problems: list[t.Problem]) -> list[t.Host]:
    defaults, hosts = lab.defaults, []
    for i, spec in enumerate(lab.hosts):
        names = _expanded(spec.name, ("hosts", i, "name"), "compute-[1-4]", positions, problems)
        if names is None:
            continue
        from_host = spec.networks is not None
        attach_items = spec.networks if from_host else (defaults.networks or [])
        attach_base: Loc = ("hosts", i, "networks") if from_host else ("defaults", "networks")
        limits = spec.limits or defaults.limits or LimitsIn()
        config_from = {**{k: key_path(("defaults", "config", k)) for k in defaults.config or {}},
                       **{k: key_path(("hosts", i, "config", k)) for k in spec.config or {}}}
        groups = tuple(dict.fromkeys([*range_group(spec.name), *(defaults.groups or []), *(spec.groups or [])]))
        placement_loc: Loc = ("hosts", i, "placement") if spec.placement else ("defaults", "placement")
        for offset, name in enumerate(names):
            attachments = _attachments(attach_items, attach_base, offset, positions,
                                       problems if offset == 0 else [])
            hosts.append(t.Host(
                name=name, attachments=attachments,
                cpu=limits.cpu, memory=limits.memory,
                idmap=spec.idmap or defaults.idmap or "isolated",
                config={k: _text(v) for k, v in {**(defaults.config or {}), **(spec.config or {})}.items()},
                profiles=tuple(spec.profiles if spec.profiles is not None else (defaults.profiles or [])),
                path=key_path(("hosts", i)), line=positions.line(("hosts", i)), config_from=config_from,
                groups=groups, placement=spec.placement or defaults.placement or "spread",
                placement_path=key_path(placement_loc),
            ))
    return hosts


def _guest_sizes(spec: GuestIn, loc: Loc, positions: Positions,
                 problems: list[t.Problem]) -> tuple[int, int] | None:
    """A guest's memory and disk in MiB (ASCII digits, the schema's pattern), or None with a problem said:
    a disk of less than 1 MiB, a size no machine has. The floor of memory is `guestchecks`'."""
    said = len(problems)
    sizes = []
    for where, text, floor in ((("memory",), spec.memory, 0), (("disk", "size"), spec.disk.size, 2**20)):
        size = (size_bytes(text) or 0) if text else 0
        if text and size > MAX_BYTES:
            problems.append(t.Problem(key_path((*loc, *where)), f"{text!r} is larger than any machine has",
                                      "use a size such as 64MiB or 1GiB", positions.line((*loc, *where))))
        elif text and size < floor:
            problems.append(t.Problem(key_path((*loc, *where)), f"{text!r} is less than 1 MiB",
                                      "a disk is at least 1MiB; use a size such as 64MiB",
                                      positions.line((*loc, *where))))
        sizes.append(size // 2**20)
    return None if len(problems) > said else (sizes[0], sizes[1])


def _guests(lab: LabIn, positions: Positions, problems: list[t.Problem]) -> list[t.Guest]:
    guests = []
    for i, spec in enumerate(lab.guests):
        names = _expanded(spec.name, ("guests", i, "name"), "vm-[1-4]", positions, problems)
        if names is None:
            continue
        sizes = _guest_sizes(spec, ("guests", i), positions, problems)
        if sizes is None:
            continue
        memory_mib, disk_mib = sizes
        if spec.disk.file and "image" in spec.disk.model_fields_set:
            problems.append(t.Problem(key_path(("guests", i, "disk")), "both `image` and `file`",
                                      "a guest boots either lxdkvm's image or an imported file: keep one",
                                      positions.line(("guests", i, "disk"))))
            continue
        user_data = spec.user_data
        if isinstance(user_data, dict):  # a mapping is cloud-config
            user_data = "#cloud-config\n" + yaml.safe_dump(user_data, sort_keys=False)
        for offset, name in enumerate(names):
            attachments = _attachments(spec.networks, ("guests", i, "networks"), offset, positions,
                                       problems if offset == 0 else [])
            guests.append(t.Guest(
                name=name, host=spec.host,
                attachments=attachments,
                vcpus=spec.vcpus, memory_mib=memory_mib, accel=spec.accel,
                disk="file" if spec.disk.file else spec.disk.image, disk_file=spec.disk.file,
                disk_mib=disk_mib, user_data=user_data, path=key_path(("guests", i)),
                ready_console=spec.ready.console if spec.ready else None,
                ready_timeout=spec.ready.timeout if spec.ready else None,
                line=positions.line(("guests", i)),
            ))
    return guests


def parse(text: str, source: str) -> tuple[t.Lab | None, list[t.Problem], Positions]:
    """The lab and the problems found on the way (schema and values). No I/O besides `text`."""
    data, positions, problems = yamlread.read_yaml(text)
    if problems:
        return None, problems, positions
    control = controls.problems(data, positions)  # values are data: no control characters
    if not isinstance(data, dict):
        return None, [t.Problem("(top level)", "a lab file is a mapping with name, networks and hosts",
                                "see labs/default.yaml for an example", 1)], positions
    said = {p.path for p in control}
    try:
        spec = LabIn.model_validate(data)
    except ValidationError as exc:
        schema = [p for e in exc.errors() if (p := schema_problem(e, positions)).path not in said]
        return None, control + schema, positions
    if control:  # the schema's problems too, but no meaning is read from a value with control characters
        return None, control, positions
    openings: list[t.Opening] = []
    networks = [n for i, spec_n in enumerate(spec.networks)
                if (n := _network(i, spec_n, positions, problems, openings))]
    lab = t.Lab(
        name=spec.name, source=source, image=spec.image, storage=spec.storage, networks=tuple(networks),
        hosts=tuple(_hosts(spec, positions, problems)),
        profiles=tuple(t.ExtraProfile(p.name, {k: _text(v) for k, v in p.config.items()},
                                      {d: {k: _text(v) for k, v in dev.items()} for d, dev in p.devices.items()},
                                      key_path(("profiles", i)), positions.line(("profiles", i)))
                       for i, p in enumerate(spec.profiles)),
        guests=tuple(_guests(spec, positions, problems)),
        lines={key_path(loc): line for loc, line in positions.items()},
        openings=tuple(openings),
    )
    return lab, problems, positions


DEFAULT_LAB = "default.yaml"


def default_lab_path() -> Path:
    return data_dir("labs") / DEFAULT_LAB


def read(path: str | Path | None) -> tuple[str, str]:
    """(text, source name) of a lab file; None means the embedded default lab. Whatever the path is (a
    directory, a FIFO, /dev/zero, 50 MB, binary, not UTF-8), a problem is a LabInvalid."""
    file = Path(path) if path else default_lab_path()
    source = str(path or file)
    try:
        data = yamlread.read_bytes(file)
    except t.LabInvalid as exc:
        raise t.LabInvalid(source, exc.problems) from None
    return yamlread.decode(data, source), source


def name_of(text: str, source: str) -> tuple[str, int]:
    """The lab's `name` and its line, read the same bounded way as `parse`; raises LabInvalid."""
    data, positions, problems = yamlread.read_yaml(text)
    if problems:
        raise t.LabInvalid(source, problems)
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise t.LabInvalid(source, [t.Problem("name", "the lab file has no readable `name`",
                                              "give the lab's name instead of its file", 1)])
    if problems := controls.problems({"name": data["name"]}, positions):  # it names a project and a file
        raise t.LabInvalid(source, problems)
    return data["name"], positions.line(("name",))


def load(path: str | Path | None) -> tuple[t.Lab | None, list[t.Problem], str]:
    """(the lab or None, the problems found reading and parsing it, its source name): the one way every
    command reads a lab file. The file's meaning is `checks`'."""
    text, source = read(path)
    lab, problems, _ = parse(text, source)
    return lab, problems, source
