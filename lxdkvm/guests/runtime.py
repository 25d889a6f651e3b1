"""Guests inside lab hosts, through LXD exec: what runs where (`observe`, `guest_status`) and removing one.
A host is made ready for guests by `hostprep`; a guest is brought up by `readiness`.

Every step is safe to repeat: a guest that is half made is found by `observe` and completed or remade.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import readback
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


Warn = Callable[[str], None]  # a warning about a value a host reported that was not passed on


def _domains(client: Instances, host: str, warn: Warn) -> list[tuple[str, str, dict | None, str]]:
    """(name, state, lxdkvm's spec or None, last boot marker line) of every libvirt domain in HOST. What the
    host reports is checked first (`readback.domain_row`): a row that does not pass is dropped and
    WARN is told once, naming the host."""
    script = render_template("libvirt", "list-guests.sh.j2", metadata_ns=domain.METADATA_NS,
                             marker=tiny.MARKER, serial_log_dir=domain.SERIAL_LOG_DIR)
    rows, problems = [], []
    for line in run(client, host, script, timeout=60).split("\n"):
        if not line:
            continue
        row, problem = readback.domain_row(line)
        if row:
            rows.append(row)
        else:
            problems.append(problem)
    for message in readback.summarised(host, problems):
        warn(f"{message} (not passed on)")
    return rows


def observe(client: Instances, host: str, warn: Warn) -> dict[str, dict]:
    """The libvirt domains of HOST: name → {state, spec (None: not lxdkvm's)}."""
    return {name: {"state": state, "spec": spec}
            for name, state, spec, _marker in _domains(client, host, warn)}


def _marker(line: str) -> tuple[dict | None, str]:
    """(the boot marker in LINE, "") when it passes `readback.marker_problem`, else (None, why)."""
    marker = agent.parse_marker(line)
    problem = readback.marker_problem(marker) if marker else ""
    if not marker or problem:
        return None, problem
    return {**marker, "addrs": {k: v for k, v in marker["addrs"].items() if v}}, ""


def guest_status(client: Instances, host: str, lab: str, warn: Warn) -> list[dict]:
    """The lab's guests in HOST as status rows: name, state, booted (a valid boot marker in its serial log
    while it runs), boot id and addresses from that marker."""
    rows, problems = [], []
    for name, state, spec, marker_line in _domains(client, host, warn):
        if not spec or spec.get("lab") != lab:
            continue
        if spec.get("image") == "file":  # no marker: running is booted; addresses are the static ones and
            nics = spec["nics"]  # leases
            rows.append({"name": name, "host": host, "state": state, "booted": state == "running",
                         "boot_id": "", "addresses": {f"nic{i}": nic[2] for i, nic in enumerate(nics)
                                                      if nic[2] != "dhcp"},
                         "dhcp_macs": {f"nic{i}": nic[1] for i, nic in enumerate(nics) if nic[2] == "dhcp"},
                         "image": spec["file"]})
            continue
        marker, problem = _marker(marker_line) if state == "running" else (None, "")
        problems += [f"guest {name}: {problem}"] if problem else []
        marker = marker or {}
        rows.append({"name": name, "host": host, "state": state, "booted": bool(marker),
                     "boot_id": marker.get("boot_id", ""), "addresses": marker.get("addrs", {})})
    for message in readback.summarised(host, problems):
        warn(f"{message} (taken as not booted)")
    return rows


# ------------------------------------------------------------------------------------ one guest
def remove(client: Instances, host: str, name: str) -> None:
    paths, q = domain.paths(name), shlex.quote(domain.check_name(name))
    run(client, host, f"virsh -q destroy {q} >/dev/null 2>&1; virsh -q undefine {q} >/dev/null 2>&1; "
                       f"rm -rf {shlex.quote(paths.directory)} {shlex.quote(paths.agent_socket)}; true")


