"""What lab hosts and guests report back, checked against allow-lists before anything else sees it.

A lab host is untrusted (docs/security.md): whoever is root in it controls its `virsh`, its files and its
guests' console logs, and a guest controls what it prints. So every string lxdkvm reads back from a host
or a guest — a libvirt domain's name and state, lxdkvm's spec in the domain's metadata, a boot marker's
boot id and addresses — and every string about a host that lands in an output (instance names and
states, the addresses in a container's state, its Ansible groups) passes one of these checks first. A
value either matches the shape lxdkvm itself writes, or it is not passed on: the caller drops it and
reports a warning that names the host and describes the value with `defanged`, which never repeats it
(no template, markup or escape sequence of it reaches a terminal, an inventory or a graph).

Pure and standard library only (plus the lab file's own name rules): every check takes the raw value
and returns the clean one or None (`spec_problem`, `marker_problem`: "" or what is wrong).
"""

from __future__ import annotations

import ipaddress
import json
import re
import xml.etree.ElementTree as ET

from .labfile import checks as c
from .labfile import topology as t
from .labfile.guestchecks import GUEST_NAME, MAX_NICS

UNKNOWN = "?"  # the placeholder people see for a value that did not pass (a host's state)
# libvirt's domain states as `virsh domstate` prints them (virshDomainState, tools/virsh-domain-monitor.c)
GUEST_STATES = ("no state", "running", "idle", "paused", "in shutdown", "shut off", "crashed", "pmsuspended")
# LXD's and Incus's instance statuses (api.StatusCode names an instance can have)
INSTANCE_STATES = ("Running", "Stopped", "Frozen", "Error", "Starting", "Stopping", "Aborting", "Freezing",
                   "Thawed", "Ready", "Pending", "Unknown")
LINE_MAX = 65536  # a row of list-guests.sh longer than this is no row lxdkvm wrote
SHOWN_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._:/,=-")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
KEY = re.compile(r"[0-9a-f]{8,64}")  # build keys and sha256s (guests.domain._check_key)
IFNAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}")  # a Linux interface name lxdkvm or a guest makes
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
IPV4_INTERFACE = re.compile(r"(\d{1,3}\.){3}\d{1,3}/\d{1,2}")
IMAGE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")  # guests.store.NAME_RE
MEMBER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}")  # an LXD cluster member
JOB_KEY = re.compile(r"[A-Za-z][A-Za-z0-9 ()._/-]{0,47}")  # a line's key in `virsh domjobinfo`


# ---------------------------------------------------------------------------------------- showing
def defanged(value: object, limit: int = 24) -> str:
    """VALUE described for a warning without repeating it: its first LIMIT characters with every one
    outside letters, digits and ` ._:/,=-` as '?', and its length. Whatever VALUE holds — a template, rich
    markup, an escape sequence, a new line — none of it survives."""
    if not isinstance(value, str):
        return f"a {type(value).__name__}, not a string"
    excerpt = "".join(c if c in SHOWN_SAFE else "?" for c in value[:limit])
    return f"'{excerpt}{'...' if len(value) > limit else ''}' ({len(value)} characters)"


def safe_text(text: object, limit: int = 500) -> str:
    """TEXT reduced to the characters `defanged` keeps (others as '?') and at most LIMIT of them: for a
    warning read back from a saved status."""
    text = text if isinstance(text, str) else ""
    return "".join(c if c in SHOWN_SAFE or c in "'()?;" else "?" for c in text[:limit])


def shown(text: str, limit: int = 2000, lines: int = 40) -> str:
    """Host output for a terminal: its last LINES lines (ended by \n or \r\n), each with control, format
    (bidi) and line separator characters as visible escapes (`topology.printable`: a lone \r too, so
    nothing overwrites what came before), at most LIMIT characters in all."""
    split = text.replace("\r\n", "\n").split("\n") if text else []
    kept = [t.printable(line, limit) for line in split[-lines:]]
    joined = "\n".join(kept)
    return joined if len(joined) <= limit else "..." + joined[-limit:]


def summarised(host: str, problems: list[str], limit: int = 5) -> list[str]:
    """One warning per problem of HOST, at most LIMIT of them (then how many more there were)."""
    out = [f"{host}: {p}" for p in dict.fromkeys(problems)]
    more = [f"{host}: ... and {len(out) - limit} more values like these"] if len(out) > limit else []
    return out[:limit] + more


# ---------------------------------------------------------------------------------------- values
def _matches(pattern: re.Pattern, value: object) -> str | None:
    return value if isinstance(value, str) and pattern.fullmatch(value) else None


def guest_name(value: object) -> str | None:
    return _matches(GUEST_NAME, value)


def host_name(value: object) -> str | None:
    return _matches(c.HOST_NAME, value)


def network_name(value: object) -> str | None:
    return _matches(c.NETWORK_NAME, value)


def lab_name(value: object) -> str | None:
    return _matches(c.LAB_NAME, value)


def ifname(value: object) -> str | None:
    return _matches(IFNAME, value)


def image_name(value: object) -> str | None:
    return _matches(IMAGE_NAME, value)


def member_name(value: object) -> str | None:
    return _matches(MEMBER_NAME, value)


def group(value: object) -> str | None:
    """An Ansible group of the lab file's (`user.lxdkvm.groups`): its rule, and not one of the inventory's."""
    name = _matches(c.GROUP_NAME, value)
    reserved = name in c.RESERVED_GROUPS or name.startswith(c.RESERVED_GROUP_PREFIXES) if name else True
    return None if reserved else name


def guest_state(value: object) -> str | None:
    return value if isinstance(value, str) and value in GUEST_STATES else None


def instance_state(value: object) -> str | None:
    return value if isinstance(value, str) and value in INSTANCE_STATES else None


def boot_id(value: object) -> str | None:
    return _matches(UUID, value)


def _ipv4(value: object, pattern: str, kind) -> str | None:
    """VALUE written the canonical way when it matches PATTERN and parses as KIND (an ipaddress class)."""
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        return None
    try:
        return str(kind(value))
    except ValueError:
        return None


def interface(value: object) -> str | None:
    """An IPv4 address with its prefix ("10.0.0.5/24"), written the canonical way."""
    return _ipv4(value, IPV4_INTERFACE.pattern, ipaddress.IPv4Interface)


def address(value: object) -> str | None:
    """A bare IPv4 address ("10.0.0.5")."""
    return _ipv4(value, r"(\d{1,3}\.){3}\d{1,3}", ipaddress.IPv4Address)


def subnet(value: object) -> str | None:
    return _ipv4(value, r"(\d{1,3}\.){3}\d{1,3}/\d{1,2}", ipaddress.IPv4Network)


def job_info(job: dict[str, float], limit: int = 40) -> dict[str, float]:
    """`virsh domjobinfo`'s numbers, with only keys of the shape libvirt prints."""
    return {k: v for k, v in list(job.items())[:limit] if _matches(JOB_KEY, k) and isinstance(v, float)}


# ---------------------------------------------------------------------------------------- lxdkvm's spec
def _count(value: object, top: int = 2**20) -> bool:
    return type(value) is int and 0 <= value <= top


SPEC_FIELDS = {  # what guests.spec.guest_spec writes into a domain's metadata: field → its check
    "v": _count, "lab": lab_name, "host": host_name, "tiny": lambda v: _matches(KEY, v),
    "accel": lambda v: v in ("tcg", "kvm"), "vcpus": _count, "memory_mib": _count, "disk_mib": _count,
    "image": lambda v: v in ("debian", "file"), "debian": lambda v: _matches(KEY, v),
    "user_data": lambda v: _matches(KEY, v), "file": image_name, "file_key": lambda v: _matches(KEY, v),
}
SPEC_REQUIRED = ("v", "lab", "host", "tiny", "accel", "vcpus", "memory_mib", "disk_mib", "nics")
SPEC_BY_IMAGE = {"debian": ("debian", "user_data"), "file": ("file", "file_key", "user_data")}


def nic_problem(nic: object) -> str:
    """[bridge, MAC, "ADDR/PFX" or "dhcp", gateway or ""], as guest_spec writes a NIC."""
    if not isinstance(nic, list) or len(nic) != 4:
        return "a NIC that is not [bridge, mac, address, gateway]"
    bridge, mac, where, gateway = nic
    if not ifname(bridge):
        return f"NIC bridge {defanged(bridge)}"
    if not _matches(MAC, mac):
        return f"NIC MAC {defanged(mac)}"
    if where != "dhcp" and interface(where) != where:
        return f"NIC address {defanged(where)}"
    if gateway != "" and address(gateway) != gateway:
        return f"NIC gateway {defanged(gateway)}"
    return ""


def spec_problem(spec: object) -> str:
    """What is wrong with lxdkvm's spec read back from a domain's metadata, or "" when it has the fields
    and shapes lxdkvm writes (and no others)."""
    if not isinstance(spec, dict):
        return "metadata that is not lxdkvm's spec"
    unknown = [k for k in spec if k not in SPEC_FIELDS and k != "nics"]
    image = spec.get("image") if isinstance(spec.get("image"), str) else ""
    missing = [k for k in (*SPEC_REQUIRED, *SPEC_BY_IMAGE.get(image, ())) if k not in spec]
    if unknown or missing:
        return f"a spec with {'unknown field ' + defanged(unknown[0]) if unknown else 'no ' + missing[0]}"
    bad = next((k for k, check in SPEC_FIELDS.items() if k in spec and not check(spec[k])), None)
    if bad:
        return f"a spec whose {bad} is {defanged(spec[bad]) if isinstance(spec[bad], str) else 'not valid'}"
    nics = spec["nics"]
    if not isinstance(nics, list) or len(nics) > MAX_NICS:
        return f"a spec whose nics are not a list of at most {MAX_NICS}"
    return next((f"a spec with {p}" for p in map(nic_problem, nics) if p), "")


def spec_of(metadata_xml: str) -> tuple[dict | None, str]:
    """(lxdkvm's spec, "") from a domain's metadata (`virsh metadata`); (None, "") for a domain without
    it (not lxdkvm's); (None, what is wrong) for metadata that is not a valid spec."""
    if not metadata_xml.strip():
        return None, ""
    try:
        spec = json.loads(ET.fromstring(metadata_xml).text or "")
    except (ET.ParseError, ValueError):
        return None, "metadata that is not lxdkvm's spec"
    problem = spec_problem(spec)
    return (None, problem) if problem else (spec, "")


# ---------------------------------------------------------------------------------------- boot markers
def marker_problem(marker: object) -> str:
    """What is wrong with a parsed boot marker ({name, boot_id, addrs: {iface: "ADDR/PFX" or ""}}), or ""."""
    if not isinstance(marker, dict):
        return "a boot marker that is not an object"
    if not guest_name(marker.get("name")):
        return f"a boot marker whose name is {defanged(marker.get('name'))}"
    if not boot_id(marker.get("boot_id")):
        return f"a boot marker whose boot id is {defanged(marker.get('boot_id'))}"
    addrs = marker.get("addrs")
    if not isinstance(addrs, dict) or len(addrs) > 4 * MAX_NICS:
        return "a boot marker whose addresses are not a short map"
    for iface, found in addrs.items():
        if not ifname(iface):
            return f"a boot marker with interface {defanged(iface)}"
        if found != "" and interface(found) != found:
            return f"a boot marker with address {defanged(found)}"
    return ""


# ---------------------------------------------------------------------------------------- domain rows
def domain_row(line: str) -> tuple[tuple[str, str, dict | None, str] | None, str]:
    """One line of libvirt/list-guests.sh (name TAB state TAB metadata TAB marker line) as (name, state,
    spec or None, marker line), or (None, what is wrong). A row is whole or dropped: a name that is not
    a guest name, a state virsh does not print, metadata that claims to be lxdkvm's but is not valid,
    or more (or fewer) columns than the script writes."""
    if len(line) > LINE_MAX:
        return None, f"a libvirt domain row of {len(line)} characters"
    fields = line.split("\t")
    if len(fields) != 4:
        return None, f"a libvirt domain row with {len(fields)} columns (not 4): {defanged(fields[0])}"
    name, state, metadata, marker = fields
    if not guest_name(name):
        return None, f"a libvirt domain whose name is {defanged(name)}"
    if not guest_state(state.strip()):
        return None, f"libvirt domain {name}: state {defanged(state)}"
    spec, problem = spec_of(metadata)
    if problem:
        return None, f"libvirt domain {name}: {problem}"
    return (name, state.strip(), spec, marker), ""
