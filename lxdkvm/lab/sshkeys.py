"""SSH into a lab with host keys checked: the lab's own key pair and a known_hosts that is never
trust-on-first-use.

`up` makes an ed25519 key pair in the lab's state directory (`state`); its public half goes to every
host through the kvm-host profile's cloud-init user-data (user `lab`, passwordless sudo). Once the hosts
are ready, `up` reads each host's own public host key over LXD exec — a channel that is already
authenticated (LXD's unix socket, root on this machine) — and writes them to the lab's known_hosts, for
the host's management address and its name. SSH clients then run with StrictHostKeyChecking=yes against
that file: a host whose key changed behind lxdkvm's back is refused until `up` reads it again.
"""

from __future__ import annotations

import base64
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import LxdkvmError
from . import state

LAB_USER = "lab"  # the user Ansible logs in as (see cloud-init/kvm-host.user-data.j2)
PRIVATE_KEY = "id_ed25519"
KNOWN_HOSTS = "known_hosts"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"
_PUBLIC_KEY = re.compile(r"^(ssh-ed25519) ([A-Za-z0-9+/]+={0,2})(?: .*)?$")


def private_key_path(lab_name: str) -> Path:
    return state.path(lab_name) / PRIVATE_KEY


def known_hosts_path(lab_name: str) -> Path:
    return state.path(lab_name) / KNOWN_HOSTS


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with MODE from the first byte (a reader never sees a partial or looser file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_keypair(lab_name: str) -> str:
    """The lab's public key (OpenSSH line); the pair is made once, kept until `down`."""
    directory = state.state_dir(lab_name)
    private, public = directory / PRIVATE_KEY, directory / f"{PRIVATE_KEY}.pub"
    if private.is_file() and public.is_file():
        return public_key(lab_name)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    write_atomic(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                      serialization.NoEncryption()), 0o600)
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    write_atomic(public, line + f" lxdkvm-lab-{lab_name}\n".encode(), 0o644)
    return public_key(lab_name)


def public_key(lab_name: str) -> str:
    """The lab's public key line, or "" when the lab has no key pair (yet)."""
    try:
        return (state.path(lab_name) / f"{PRIVATE_KEY}.pub").read_text().strip()
    except FileNotFoundError:
        return ""


def parse_host_key(text: str) -> str:
    """`ssh-ed25519 AAAA…` from the contents of a host's public key file; raises on anything else."""
    match = _PUBLIC_KEY.match(text.strip())
    if not match:
        raise LxdkvmError(f"not an ed25519 public key: {text.strip()[:80]!r}")
    try:
        blob = base64.b64decode(match.group(2), validate=True)
    except ValueError:
        raise LxdkvmError("the host key is not valid base64") from None
    if not blob.startswith(b"\x00\x00\x00\x0bssh-ed25519"):
        raise LxdkvmError("the host key's blob is not an ed25519 key")
    return f"{match.group(1)} {match.group(2)}"


def known_hosts_lines(hosts: dict[str, tuple[list[str], str]]) -> str:
    """known_hosts text: host name → (its addresses, its key). One line per host, all its names on it."""
    lines = []
    for name, (addresses, key) in sorted(hosts.items()):
        patterns = ",".join(dict.fromkeys([name, *addresses]))
        lines.append(f"{patterns} {key}\n")
    return "".join(lines)


def refresh_known_hosts(lab_name: str, hosts: dict[str, list[str]],
                        read_host_key: Callable[[str], str]) -> Path:
    """Read every host's key (READ_HOST_KEY(host) returns the key file's contents, over LXD exec) and
    replace the lab's known_hosts with exactly those: a host that went away leaves no stale entry."""
    entries = {}
    for name, addresses in hosts.items():
        try:
            entries[name] = (addresses, parse_host_key(read_host_key(name)))
        except LxdkvmError as exc:
            raise LxdkvmError(f"{name}: cannot read its SSH host key {HOST_KEY}: {exc}") from None
    path = state.state_dir(lab_name) / KNOWN_HOSTS
    write_atomic(path, known_hosts_lines(entries).encode(), 0o644)
    return path


def ssh_common_args(lab_name: str) -> str:
    """Options that make any ssh client check host keys against the lab's known_hosts only."""
    return (f"-o UserKnownHostsFile={known_hosts_path(lab_name)} -o StrictHostKeyChecking=yes "
            "-o IdentitiesOnly=yes")
