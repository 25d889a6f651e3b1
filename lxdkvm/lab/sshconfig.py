"""An OpenSSH client configuration for a lab, so `ssh`, `scp`, `virsh -c qemu+ssh://…` and virt-manager
reach its hosts by name with the lab's key and its pinned host keys (docs/tools.md).

`render` is pure: a lab's name, its hosts' management addresses, how to reach them (`Access`) and which
hosts also get their bare name → the text of an ssh_config. Every value in it comes from LXD or a lab file
and goes into a file ssh parses, so each must pass an allow-list first (`check`): a newline, a space, a
quote, a `%` or `~` token, a `*` or `!` pattern would add or bend directives; such a value is refused,
never escaped.

Each host gets `Host HOST.LAB`, and its bare `HOST` too when that is unambiguous: no other lab with an
ssh config in the state directory (a `ssh_hosts.json` record, see `sshfiles`) has a host of that name.
StrictHostKeyChecking is on, against the lab's known_hosts only (`GlobalKnownHostsFile /dev/null`), under
`HostKeyAlias HOST`: the name `lab.hostkeys` pins each host's key under, whatever name the user typed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import LxdkvmError
from ..readback import defanged

CONFIG = "ssh_config"  # in the lab's state directory
NAME = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")  # lower case: what ssh matches a typed name with
USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
PATH = re.compile(r"^/[A-Za-z0-9._/-]{1,4000}$")  # no %token, ~, $VAR, space or quote: ssh expands those
LIBVIRT_PATH = "/system"


@dataclass(frozen=True)
class Access:
    """How a lab's hosts are reached: its user, its private key and its known_hosts (absolute paths)."""
    user: str
    private_key: Path
    known_hosts: Path


def check(kind: str, value: object) -> str:
    """VALUE if it is a safe KIND ("lab", "host", "user", "path" or "address") for an ssh_config line;
    raises LxdkvmError naming the rule otherwise (the value described by `readback.defanged`, never
    repeated)."""
    text = value if isinstance(value, str) else None
    if kind in ("lab", "host"):
        ok = text is not None and NAME.fullmatch(text) is not None
        rule = "lower-case letters, digits and hyphens, starting with a letter"
    elif kind == "user":
        ok = text is not None and USER.fullmatch(text) is not None
        rule = "a POSIX user name in lower case"
    elif kind == "path":
        ok = text is not None and PATH.fullmatch(text) is not None and "/../" not in f"{text}/"
        rule = "an absolute path of letters, digits, '.', '_', '-' and '/'"
    elif kind == "address":
        ok = text is not None and _ipv4(text)
        rule = "an IPv4 address in dotted-quad form"
    else:
        raise ValueError(kind)
    if not ok:
        raise LxdkvmError(f"refusing to write {kind} {defanged(value)} into an ssh config: it must be {rule}")
    return text


def _ipv4(text: str) -> bool:
    try:
        return str(ipaddress.IPv4Address(text)) == text
    except ValueError:
        return False


def host_patterns(lab: str, host: str, bare: bool) -> list[str]:
    return [f"{check('host', host)}.{check('lab', lab)}", *([host] if bare else [])]


def render(lab: str, addresses: dict[str, str], access: Access, bare: frozenset[str] = frozenset()) -> str:
    """The ssh_config of lab LAB. ADDRESSES: host → its management address; BARE: the hosts that also get
    their bare name. Raises LxdkvmError, writing nothing, when any value fails its allow-list."""
    user = check("user", access.user)
    key, known = check("path", str(access.private_key)), check("path", str(access.known_hosts))
    lines = [f"# lxdkvm lab {check('lab', lab)}: written by `lxdkvm up`, gone at `lxdkvm down`",
             "# Include it at the top of ~/.ssh/config, before any Host or Match line."]
    for host, address in sorted(addresses.items(), key=lambda item: str(item[0])):
        lines += ["", "Host " + " ".join(host_patterns(lab, host, host in bare)),
                  f"  HostName {check('address', address)}",
                  f"  User {user}",
                  f"  IdentityFile {key}",
                  "  IdentitiesOnly yes",
                  "  PreferredAuthentications publickey",
                  f"  UserKnownHostsFile {known}",
                  "  GlobalKnownHostsFile /dev/null",
                  "  StrictHostKeyChecking yes",
                  f"  HostKeyAlias {host}",
                  "  CheckHostIP no",
                  "  UpdateHostKeys no",
                  "  ForwardAgent no",
                  "  ForwardX11 no"]
    return "\n".join(lines) + "\n"


def bare_names(lab: str, hosts: set[str], others: dict[str, set[str]]) -> frozenset[str]:
    """The hosts of LAB whose bare name no other lab (OTHERS: lab → its host names) also has."""
    taken = {host for other, names in others.items() if other != lab for host in names}
    return frozenset(host for host in hosts if host not in taken)


def uri(lab: str, host: str, user: str) -> str:
    """libvirt's URI for HOST of LAB over ssh, through the lab's ssh config (ssh checks the host key)."""
    return f"qemu+ssh://{check('user', user)}@{check('host', host)}.{check('lab', lab)}{LIBVIRT_PATH}"


def standalone_uri(address: str, access: Access, transport: str = "libssh") -> str:
    """libvirt's URI for a host without any ssh config: libvirt's own ssh client (libssh or libssh2) given
    the lab's key and known_hosts in the URI. A changed key is refused; an unknown one is asked about on
    a terminal (known_hosts_verify=normal), which the lab's known_hosts never leaves unknown."""
    if transport not in ("libssh", "libssh2"):
        raise LxdkvmError(f"transport must be libssh or libssh2, not {transport!r}")
    key, known = check("path", str(access.private_key)), check("path", str(access.known_hosts))
    return (f"qemu+{transport}://{check('user', access.user)}@{check('address', address)}{LIBVIRT_PATH}"
            f"?keyfile={key}&known_hosts={known}&known_hosts_verify=normal&sshauth=privkey")
