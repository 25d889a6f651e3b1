"""Guests inside lab hosts, through LXD exec: what runs where (`observe`, `guest_status`) and removing one.
A host is made ready for guests by `hostprep`; a guest is brought up by `readiness`.

Every step is safe to repeat: a guest that is half made is found by `observe` and completed or remade.
"""

from __future__ import annotations

import json
import shlex
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from ..errors import LxdkvmError
from ..templating import render_template
from . import agent, domain, tiny

if TYPE_CHECKING:
    from ..lxd.instances import Instances

def run(client: Instances, host: str, script: str, timeout: float = 120) -> str:
    result = client.execute(host, ["sh", "-c", script], timeout=timeout)
    if result.exit_code != 0:
        raise LxdkvmError(f"{host}: `{script[:80]}` failed ({result.exit_code}): "
                          f"{(result.stderr or result.stdout).strip()[-600:]}")
    return result.stdout


def _spec_of(metadata_xml: str) -> dict | None:
    if not metadata_xml.strip():
        return None
    try:
        return json.loads(ET.fromstring(metadata_xml).text or "")
    except (ET.ParseError, ValueError):
        return None


def _domains(client: Instances, host: str) -> list[tuple[str, str, dict | None, str]]:
    """(name, state, lxdkvm's spec or None, last boot marker line) of every libvirt domain in HOST."""
    script = render_template("libvirt", "list-guests.sh.j2", metadata_ns=domain.METADATA_NS,
                             marker=tiny.MARKER, serial_log_dir=domain.SERIAL_LOG_DIR)
    rows = []
    for line in run(client, host, script, timeout=60).splitlines():
        name, state, metadata, marker = (line.split("\t") + ["", "", "", ""])[:4]
        if name:
            rows.append((name, state.strip(), _spec_of(metadata), marker))
    return rows


def observe(client: Instances, host: str) -> dict[str, dict]:
    """The libvirt domains of HOST: name → {state, spec (None: not lxdkvm's)}."""
    return {name: {"state": state, "spec": spec} for name, state, spec, _marker in _domains(client, host)}


def guest_status(client: Instances, host: str, lab: str) -> list[dict]:
    """The lab's guests in HOST as status rows: name, state, booted (a boot marker in its serial log
    while it runs), boot id and addresses from that marker."""
    rows = []
    for name, state, spec, marker_line in _domains(client, host):
        if not spec or spec.get("lab") != lab:
            continue
        if spec.get("image") == "file":  # no marker: running is booted; addresses are the static ones and
            rows.append({"name": name, "host": host, "state": state, "booted": state == "running",  # leases
                         "boot_id": "", "addresses": {f"nic{i}": nic[2] for i, nic in enumerate(spec["nics"])
                                                      if nic[2] != "dhcp"},
                         "dhcp_macs": {f"nic{i}": nic[1] for i, nic in enumerate(spec["nics"]) if nic[2] == "dhcp"},
                         "image": spec.get("file", "")})
            continue
        marker = agent.parse_marker(marker_line) if state == "running" else None
        rows.append({"name": name, "host": host, "state": state, "booted": marker is not None,
                     "boot_id": (marker or {}).get("boot_id", ""), "addresses": (marker or {}).get("addrs", {})})
    return rows


# ------------------------------------------------------------------------------------ one guest
def remove(client: Instances, host: str, name: str) -> None:
    paths = domain.paths(name)
    run(client, host, f"virsh -q destroy {name} >/dev/null 2>&1; virsh -q undefine {name} >/dev/null 2>&1; "
                       f"rm -rf {shlex.quote(paths.directory)} {shlex.quote(paths.agent_socket)}; true")


