"""The lab file's schema (pydantic): what keys it has, their types and what each means, and how a schema
error becomes a `topology.Problem` with its line, key path and a hint. The only pydantic user of lxdkvm,
with `read` (which validates against it) and `outputs.reference` (which documents it).
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from . import topology as t
from .yamlread import Positions, key_path

Loc = tuple[str | int, ...]
Scalar = str | int | float | bool
# ASCII digits only ([0-9]: `\d` matches every script's digits): LXD reads limits.memory as a whole
# number and a unit, lxdkvm reads a guest's sizes itself (`values.size_bytes`).
MEMORY = r"^[0-9]{1,20}(B|kB|KiB|MB|MiB|GB|GiB|TB|TiB)$|^[0-9]{1,3}%$"
SIZE = r"^[0-9]{1,20}(\.[0-9]{1,9})?(B|kB|KiB|MB|MiB|GB|GiB|TB|TiB)$"
IMAGE = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$"  # an alias in LXD's image store (`..` refused by `checks`)
POOL = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"  # auto, or a pool's name
PROFILE = r"^[a-z][a-z0-9-]{0,62}$"  # part of LXD's URLs: nothing a URL reads as syntax
PLACEMENT = r"^(spread|group:[A-Za-z0-9][A-Za-z0-9_.-]{0,62}|[A-Za-z0-9][A-Za-z0-9.-]{0,62})$"


# ---------------------------------------------------------------------------------------- schema
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenIn(_Model):
    """One thing a NAT network may reach that lxdkvm's firewall closes by default: a port of this machine,
    or a range through it."""
    machine: str | None = Field(None, pattern=r"^(tcp|udp)/[0-9]{1,5}$",
                                description="A port of this machine, as tcp/PORT or udp/PORT, e.g. tcp/8080.")
    subnet: str | None = Field(None, description="An IPv4 range reached through this machine, e.g. "
                                                 "192.168.1.0/24 (another lab's subnet, your LAN).")


class ImpairIn(_Model):
    """How the network's links to its hosts are impaired: what each link carries towards its host is
    dropped, limited or delayed (docs/workbench.md)."""
    loss: str | int | float | None = Field(None, description="A share of packets dropped: 0.01% to 100%, "
                                                             "e.g. 30%.")
    rate: str | None = Field(None, description="A rate: 8kbit to 100Gbit, e.g. 2Mbit (bit, kbit, Mbit, Gbit).")
    delay: str | None = Field(None, description="A delay: up to 60s, e.g. 20ms (us, ms, s); only where the "
                                                "machine's kernel has netem (`lxdkvm doctor` says).")
    jitter: str | None = Field(None, description="Jitter of the delay, at most the delay, e.g. 5ms.")
    hosts: list[str] | None = Field(None, description="Only these hosts' links (default: every host on the "
                                                      "network).")


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
    open: list[OpenIn] = Field(
        [], description="What hosts and guests on this NAT network may reach beyond the outside through NAT: "
                        "by default nothing of this machine but DHCP and DNS, no other lab, no private, "
                        "link-local or LAN range (docs/security.md). `plan` shows each opening.")
    impair: ImpairIn | None = Field(
        None, description="Loss, a rate or a delay on the links of this network's hosts, set by `up` "
                          "(`lxdkvm impair` changes them while the lab runs).")


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
        None, description="Extra LXD instance options (merged with defaults', the host's win): only the "
                          "options docs/labs.md lists, each with its own value syntax; those that undo "
                          "confinement need --allow-unconfined.")
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
    name: str = Field(pattern=PROFILE, description="The profile's name, as hosts' `profiles:` list it: 1-63 "
                                                   "of a-z 0-9 -, starting with a letter; not default or "
                                                   "kvm-host (lxdkvm's).")
    config: dict[str, Scalar] = Field({}, description="LXD instance options (the same allow-list as a host's).")
    devices: dict[str, dict[str, Scalar]] = Field(
        {}, description="LXD devices: only `none` and NICs on the lab's networks (with the NIC keys and "
                        "values docs/labs.md lists), unless --allow-host-devices.")


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
    image: str = Field(t.DEFAULT_IMAGE, pattern=IMAGE, description="The hosts' LXD image (an alias); the "
                                                                   "default is built and baked on demand.")
    storage: str = Field("auto", pattern=POOL, description="auto: the copy-on-write pool lxdkvm picks (lxdkvm "
                                                           "doctor), or an existing LXD storage pool.")
    networks: list[NetworkIn] = Field([], description="The lab's networks.")
    profiles: list[ProfileIn] = Field([], description="Extra LXD profiles hosts may list.")
    defaults: HostSettingsIn = Field(HostSettingsIn(), description="Settings every host gets unless it sets "
                                                                   "its own.")
    hosts: list[HostIn] = Field(min_length=1, description="The KVM hosts (at least one).")
    guests: list[GuestIn] = Field([], description="Guests inside the hosts.")



# ---------------------------------------------------------------------------------------- errors
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


PATTERNS: dict[Loc, tuple[str, str]] = {  # top-level keys whose pattern says what they are
    ("image",): ("an image alias", "1-128 of letters, digits and . _ / -, starting with a letter or digit, "
                 "such as lxdkvm/kvm-host"),
    ("storage",): ("a storage pool's name", "auto, or 1-63 of letters, digits and _ . -"),
}


def schema_problem(error: dict, positions: Positions) -> t.Problem:
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
    if kind == "string_pattern_mismatch" and loc in PATTERNS:
        return t.Problem(key_path(loc), f"{got!r} is not {PATTERNS[loc][0]}", PATTERNS[loc][1], line)
    if kind == "string_pattern_mismatch" and loc[0] == "profiles" and loc[-1] == "name":
        return t.Problem(key_path(loc), f"{got!r} is not a valid profile name", "use 1-63 lower-case letters, "
                         "digits and hyphens, starting with a letter", line)
    if kind == "string_pattern_mismatch" and loc[0] == "guests" and loc[-1] in ("memory", "size"):
        return t.Problem(key_path(loc), f"{got!r} is not a size", "use a size in ASCII digits such as 128MiB or "
                         "1GiB (B, kB, KiB, MB, MiB, GB, GiB, TB, TiB)", line)
    if kind == "literal_error" and loc[0] == "guests" and loc[-1] == "image":
        return t.Problem(key_path(loc), f"no guest image {got!r}", "lxdkvm builds `tiny` (a kernel and a busybox "
                         "initramfs) and `debian` (Debian 12 with cloud-init and ssh)", line)
    if kind == "string_pattern_mismatch" and loc[-1] == "memory":
        return t.Problem(key_path(loc), f"{got!r} is not a memory size", "use a whole number of B, kB, KiB, "
                         "MB, MiB, GB, GiB, TB or TiB in ASCII digits such as 512MiB, or a share such as 50%",
                         line)
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
