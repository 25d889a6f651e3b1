"""Load a lab file: YAML with line numbers → schema (pydantic) → a `topology.Lab`.

Every problem is collected as a `topology.Problem` with the line and key path it is about, so a person
sees all their mistakes at once. Cross-object meaning (overlaps, duplicates, references) is `labcheck`'s.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from . import labyaml
from . import topology as t
from .templating import data_dir

Loc = tuple[str | int, ...]
Scalar = str | int | float | bool
MEMORY = r"^\d+(\.\d+)?\s*(B|kB|KiB|MB|MiB|GB|GiB|TB|TiB)$|^\d+%$"
SIZE = r"^\d+(\.\d+)?\s*(B|kB|KiB|MB|MiB|GB|GiB|TB|TiB)$"
RANGE = re.compile(r"\[(\d+)-(\d+)\]")
MAX_RANGE = 256
PLACEMENT = r"^(spread|group:[A-Za-z0-9][A-Za-z0-9_.-]{0,62}|[A-Za-z0-9][A-Za-z0-9.-]{0,62})$"


# ---------------------------------------------------------------------------------------- schema
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NetworkIn(_Model):
    """A lab network: an LXD bridge on this machine that the lab's hosts (and their guests) share."""
    name: str = Field(description="1-15 of a-z 0-9 -, starting with a letter; the bridge is `<lab>-<name>`.")
    subnet: str = Field(
        description="IPv4 subnet in CIDR form, inside 10/8, 172.16/12 or 192.168/16, /8 to /29, overlapping "
                    "no other lab network (and, for nat, no route of this machine).")
    mode: Literal["nat", "isolated"] = Field(
        "nat", description="nat: this machine is the gateway (.1) and NATs outwards; isolated: layer 2 "
                           "only, no address on this machine.")
    dhcp: bool | None = Field(
        None, description="Leases from the upper half of the subnet. Default: true for nat, false for "
                          "isolated (which cannot have DHCP).")
    mtu: int = Field(1500, ge=576, le=9000, description="MTU of the bridge and of the hosts' NICs on it.")


def _short_attachment(value: object) -> object:
    return {"network": value} if isinstance(value, str) else value


class AttachmentIn(_Model):
    """A NIC on a lab network; written as the network's name alone when it takes a DHCP lease."""
    network: str = Field(description="The name of one of the lab's networks.")
    ipv4: str | None = Field(
        None, description="A static IPv4 address (no prefix) in the network's subnet, below the DHCP range. "
                          "A range of hosts counts up from it.")


class LimitsIn(_Model):
    """CPU and memory limits of a host (LXD's limits.cpu and limits.memory)."""
    cpu: int | None = Field(None, ge=1, description="CPUs, at most this machine's.")
    memory: str | None = Field(None, pattern=MEMORY, description="A size such as 2GiB, or a share of this "
                                                                  "machine's memory such as 50%.")


class HostSettingsIn(_Model):
    """What a host may set; under `defaults:`, what every host gets when it does not set it."""
    networks: list[Annotated[AttachmentIn, BeforeValidator(_short_attachment)]] | None = Field(
        None, description="NICs eth0, eth1, … in this order: a network's name (DHCP) or {network, ipv4}.")
    limits: LimitsIn | None = Field(None, description="CPU and memory limits.")
    idmap: Literal["isolated", "shared"] | None = Field(
        None, description="isolated (default): the host's own 65536 ids on this machine; shared: LXD's "
                          "common map.")
    config: dict[str, Scalar] | None = Field(
        None, description="Extra LXD instance options (merged with defaults', the host's win); options that "
                          "undo confinement are refused (docs/labs.md).")
    profiles: list[str] | None = Field(None, description="Names of profiles from the lab's `profiles:`.")
    groups: list[str] | None = Field(None, description="Ansible groups, added to `defaults:`' ones (a range "
                                                       "such as compute-[1-4] also joins group compute).")
    placement: str | None = Field(
        None, pattern=PLACEMENT, description="On an LXD cluster, where the host runs: a member's name, "
        "group:<cluster group>, or spread (default: hosts spread over the online members). Ignored by a "
        "single LXD daemon (docs/cluster.md).")


class HostIn(HostSettingsIn):
    """A KVM host: an unprivileged LXD container running libvirt and QEMU."""
    name: str = Field(description="A host name (letters, digits, -), or a range such as compute-[1-4] "
                                  "([01-10] keeps the width).")


class ProfileIn(_Model):
    """An extra LXD profile, created in the lab's project."""
    name: str = Field(description="The profile's name, as hosts' `profiles:` list it.")
    config: dict[str, Scalar] = Field({}, description="LXD instance options (the same refusals as a host's).")
    devices: dict[str, dict[str, Scalar]] = Field(
        {}, description="LXD devices: only `none` and NICs on the lab's networks, unless "
                        "--allow-host-devices.")


class GuestDiskIn(_Model):
    """A guest's disk: the built-in tiny guest, optionally with a data disk; `disk: tiny` for short."""
    image: Literal["tiny", "debian"] = Field(
        "tiny", description="tiny: lxdkvm's built-in guest (a kernel and initramfs); debian: Debian 12 with "
                            "systemd, cloud-init and ssh, built offline (a copy-on-write disk per guest).")
    size: str | None = Field(
        None, pattern=SIZE, description="tiny: a qcow2 data disk (virtio) of this size, e.g. 64MiB; debian: the "
                                        "root disk's size (at least 2GiB, the default); file: the guest's disk "
                                        "(at least the image's own size, the default).")
    file: str | None = Field(
        None, pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$",
        description="A disk image this machine's owner imported with `lxdkvm guest-image import FILE --name "
                    "NAME`, by that NAME (never a path): it boots from its own bootloader, on a copy-on-write "
                    "overlay per guest.")


def _short_disk(value: object) -> object:
    return {"image": value} if isinstance(value, str) else value


class ReadyIn(_Model):
    """When a guest booted from an imported image (`disk: {file: ...}`) counts as booted."""
    console: str | None = Field(
        None, min_length=1, max_length=200, pattern=r"^[ -~]+$",
        description="Text (not a pattern) the guest prints on its serial console once it is up, e.g. `login:`. "
                    "Without it, booted means running; the addresses stage still pings its static addresses.")
    timeout: int = Field(300, ge=10, le=3600, description="Seconds to wait for the text and the addresses.")


class GuestIn(_Model):
    """A QEMU/KVM guest inside one of the lab's hosts, bridged onto the host's lab networks."""
    name: str = Field(description="A guest name, or a range such as vm-[1-4].")
    host: str = Field(description="The lab host it runs in.")
    networks: list[Annotated[AttachmentIn, BeforeValidator(_short_attachment)]] = Field(
        [], description="Its NICs, on networks its host is on: a network's name (DHCP) or {network, ipv4}.")
    vcpus: int = Field(1, ge=1, le=64, description="Virtual CPUs.")
    memory: str = Field("128MiB", pattern=SIZE, description="Guest memory, e.g. 128MiB or 1GiB.")
    accel: Literal["auto", "kvm", "tcg"] = Field("auto", description="auto: kvm where the host has vmx/svm, "
                                                 "else tcg (emulation).")
    disk: Annotated[GuestDiskIn, BeforeValidator(_short_disk)] = Field(
        GuestDiskIn(), description="tiny, debian, {image: tiny|debian, size: SIZE} or {file: NAME, size: SIZE}.")
    ready: ReadyIn | None = Field(
        None, description="For a guest from an imported image: the console text that says it booted, and how "
                          "long to wait (lxdkvm's own guests print a boot marker).")
    user_data: str | dict[str, object] | None = Field(
        None, description="cloud-init user-data for a debian guest: a #cloud-config text, or a mapping "
                          "(written as #cloud-config).")


class LabIn(_Model):
    """A lab: networks, KVM hosts (unprivileged LXD containers) and the guests inside them."""
    name: str = Field(
        description="1-32 of a-z 0-9 -, starting with a letter; the LXD project is lxdkvm-<name>.")
    image: str = Field(t.DEFAULT_IMAGE, description="The hosts' LXD image; the default is built and baked on "
                                                    "demand.")
    storage: str = Field("auto", description="auto: the copy-on-write pool lxdkvm picks (lxdkvm doctor), or "
                                             "an existing LXD storage pool.")
    networks: list[NetworkIn] = Field([], description="The lab's networks.")
    profiles: list[ProfileIn] = Field([], description="Extra LXD profiles hosts may list.")
    defaults: HostSettingsIn = Field(HostSettingsIn(), description="Settings every host gets unless it sets "
                                                                   "its own.")
    hosts: list[HostIn] = Field(min_length=1, description="The KVM hosts (at least one).")
    guests: list[GuestIn] = Field([], description="Guests inside the hosts.")


# ---------------------------------------------------------------------------------------- YAML
_Positions = labyaml.Positions
key_path = labyaml.key_path


def _read_yaml(text: str) -> tuple[object, _Positions, list[t.Problem]]:
    """Plain data plus the line of every key, bounded in time and memory (see `labyaml`)."""
    return labyaml.read_yaml(text)


# ---------------------------------------------------------------------------------------- schema errors
def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The schema model that describes the mapping at `loc` (for "did you mean")."""
    model: object = LabIn
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        model = model.model_fields[part].annotation
        while typing.get_origin(model) in (list, typing.Union, Annotated, types.UnionType):
            model = next((a for a in typing.get_args(model) if a is not type(None)), None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _schema_problem(error: dict, positions: _Positions) -> t.Problem:
    loc: Loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    line = positions.line(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        known = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else (f"known keys: {', '.join(known)}" if known else "")
        return t.Problem(key_path(loc), f"unknown key '{loc[-1]}'", hint, line)
    if kind == "missing":
        return t.Problem(key_path(loc), "is required", f"add `{loc[-1]}:`", line)
    got = error.get("input")
    message = error["msg"][0].lower() + error["msg"][1:]
    if kind == "string_pattern_mismatch" and loc[0] == "guests" and loc[-1] in ("memory", "size"):
        return t.Problem(key_path(loc), f"{got!r} is not a size", "use a size such as 128MiB or 1GiB", line)
    if kind == "literal_error" and loc[0] == "guests" and loc[-1] == "image":
        return t.Problem(key_path(loc), f"no guest image {got!r}", "lxdkvm builds `tiny` (a kernel and a busybox "
                         "initramfs) and `debian` (Debian 12 with cloud-init and ssh)", line)
    if kind == "string_pattern_mismatch" and loc[-1] == "memory":
        return t.Problem(key_path(loc), f"{got!r} is not a memory size", "use a size such as 512MiB or 2GiB, "
                         "or a share such as 50%", line)
    if kind == "string_pattern_mismatch" and loc[-1] == "placement":
        return t.Problem(key_path(loc), f"{got!r} is not a placement", "write a cluster member's name (such as "
                         "m2), group:<cluster group>, or spread", line)
    if kind in ("model_type", "dict_type"):
        hint = "write a network name, or `{network: NAME, ipv4: ADDRESS}`" \
            if len(loc) == 4 and loc[2] == "networks" else ""
        return t.Problem(key_path(loc), f"should be a mapping (got {got!r})", hint, line)
    if kind == "string_pattern_mismatch" and loc[-2:] == ("disk", "file"):
        return t.Problem(key_path(loc), f"{got!r} is not a guest image's name", "a lab file names an image "
                         "root imported on this machine (`lxdkvm guest-image list`), never a path", line)
    if kind == "string_pattern_mismatch" and loc[-2:] == ("ready", "console"):
        return t.Problem(key_path(loc), f"{got!r} is not one line of printable text", "give the text the guest "
                         "prints when it is up, such as `login:`", line)
    if kind == "too_short" and loc == ("hosts",):
        return t.Problem("hosts", "a lab needs at least one host", "add a host under `hosts:`", line)
    shown = f" (got {got!r})" if isinstance(got, (str, int, float, bool)) else ""
    return t.Problem(key_path(loc), message + shown, "", line)


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


def _network(i: int, spec: NetworkIn, positions: _Positions, problems: list[t.Problem]) -> t.Network | None:
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
    return t.Network(spec.name, subnet, spec.mode, dhcp, spec.mtu, key_path(("networks", i)),
                     positions.line(("networks", i)), mtu_given="mtu" in spec.model_fields_set)


def range_group(pattern: str) -> list[str]:
    """The Ansible group of a range of hosts: `compute-[1-4]` → compute (none when that is no valid name)."""
    from .labcheck import GROUP_NAME

    if not RANGE.search(pattern):
        return []
    name = re.sub(r"[-_.]+", "_", RANGE.sub("", pattern)).strip("_").lower()
    return [name] if GROUP_NAME.match(name) else []


def _attachments(items: list[AttachmentIn], base: Loc, offset: int, positions: _Positions,
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


def _expanded(pattern: str, loc: Loc, example: str, positions: _Positions,
              problems: list[t.Problem]) -> list[str] | None:
    """The names a (range) name stands for, or None with a problem said."""
    names = expand_name(pattern)
    if isinstance(names, str):
        problems.append(t.Problem(key_path(loc), names, f"write a range as [first-last], e.g. {example}",
                                  positions.line(loc)))
        return None
    return names


def _hosts(lab: LabIn, positions: _Positions, problems: list[t.Problem]) -> list[t.Host]:
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


def _guests(lab: LabIn, positions: _Positions, problems: list[t.Problem]) -> list[t.Guest]:
    guests = []
    for i, spec in enumerate(lab.guests):
        names = _expanded(spec.name, ("guests", i, "name"), "vm-[1-4]", positions, problems)
        if names is None:
            continue
        memory = t.mebibytes(spec.memory)
        if memory is None:
            problems.append(t.Problem(key_path(("guests", i, "memory")), f"{spec.memory!r} is not a guest "
                                      "memory size", "use a size such as 128MiB or 1GiB",
                                      positions.line(("guests", i, "memory"))))
            continue
        disk_mib = t.mebibytes(spec.disk.size) if spec.disk.size else 0
        if disk_mib is None:
            problems.append(t.Problem(key_path(("guests", i, "disk", "size")), f"{spec.disk.size!r} is "
                                      "not a disk size", "use a size such as 64MiB or 1GiB",
                                      positions.line(("guests", i, "disk", "size"))))
            continue
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
                vcpus=spec.vcpus, memory_mib=memory, accel=spec.accel,
                disk="file" if spec.disk.file else spec.disk.image, disk_file=spec.disk.file,
                disk_mib=disk_mib, user_data=user_data, path=key_path(("guests", i)),
                ready_console=spec.ready.console if spec.ready else None,
                ready_timeout=spec.ready.timeout if spec.ready else None,
                line=positions.line(("guests", i)),
            ))
    return guests


def parse(text: str, source: str) -> tuple[t.Lab | None, list[t.Problem], _Positions]:
    """The lab and the problems found on the way (schema and values). No I/O besides `text`."""
    data, positions, problems = _read_yaml(text)
    if problems:
        return None, problems, positions
    if not isinstance(data, dict):
        return None, [t.Problem("(top level)", "a lab file is a mapping with name, networks and hosts",
                                "see labs/default.yaml for an example", 1)], positions
    try:
        spec = LabIn.model_validate(data)
    except ValidationError as exc:
        return None, [_schema_problem(e, positions) for e in exc.errors()], positions
    networks = [n for i, spec_n in enumerate(spec.networks) if (n := _network(i, spec_n, positions, problems))]
    lab = t.Lab(
        name=spec.name, source=source, image=spec.image, storage=spec.storage, networks=tuple(networks),
        hosts=tuple(_hosts(spec, positions, problems)),
        profiles=tuple(t.ExtraProfile(p.name, {k: _text(v) for k, v in p.config.items()},
                                      {d: {k: _text(v) for k, v in dev.items()} for d, dev in p.devices.items()},
                                      key_path(("profiles", i)), positions.line(("profiles", i)))
                       for i, p in enumerate(spec.profiles)),
        guests=tuple(_guests(spec, positions, problems)),
        lines={key_path(loc): line for loc, line in positions.items()},
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
        data = labyaml.read_bytes(file)
    except t.LabInvalid as exc:
        raise t.LabInvalid(source, exc.problems) from None
    return labyaml.decode(data, source), source


def name_of(text: str, source: str) -> tuple[str, int]:
    """The lab's `name` and its line, read the same bounded way as `parse`; raises LabInvalid."""
    data, positions, problems = _read_yaml(text)
    if problems:
        raise t.LabInvalid(source, problems)
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise t.LabInvalid(source, [t.Problem("name", "the lab file has no readable `name`",
                                              "give the lab's name instead of its file", 1)])
    return data["name"], positions.line(("name",))
