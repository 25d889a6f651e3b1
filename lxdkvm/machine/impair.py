"""Impaired links on this machine: load a lab's impairment table (`lab.impair` plans it), set and remove
the veths' root qdiscs with `tc`, read back what is in force, and probe which kinds of impairment the
kernel can do at all (`doctor`, and `impair` before it changes anything).

The probe runs in a throwaway network namespace with a veth pair of its own, so it touches none of the
machine's interfaces: nftables' random numbers in a bridge table (loss), the token bucket `tbf` (rate)
and `netem` (delay: absent where CONFIG_NET_SCH_NETEM is not set).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..errors import LxdkvmError
from . import nftables
from .programs import present

PROBE_NFT = """table bridge lxdkvm-probe {
  chain forward {
    type filter hook forward priority -200; policy accept;
    oifname "p0" numgen random mod 10000 < 5000 counter drop comment "probe"
  }
}
"""
PROBE_QDISCS = {"rate": ["tbf", "rate", "1mbit", "burst", "1600", "limit", "16384"],
                "delay": ["netem", "delay", "10ms"]}
WHY = {"loss": "nftables in the bridge family with `numgen random` (nf_tables, nft_numgen)",
       "rate": "the token-bucket qdisc (sch_tbf)",
       "delay": "the netem qdisc (sch_netem: CONFIG_NET_SCH_NETEM)"}


def _run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(args, 127, "", str(exc))


def _tc(args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    done = _run(["tc", *args])
    if check and done.returncode != 0:
        raise LxdkvmError(f"tc {' '.join(args)} failed: {done.stderr.strip()[-300:]}")
    return done


def probe() -> dict[str, bool]:
    """Which kinds of impairment (`labfile.impairment.KINDS`) this kernel can do: tried in a temporary
    network namespace (root only; without root, or without `ip`, every kind is False)."""
    name = f"lxdkvm-probe-{os.getpid()}"
    found = dict.fromkeys(PROBE_QDISCS | {"loss": []}, False)
    if os.geteuid() != 0 or not present("ip") or _run(["ip", "netns", "add", name]).returncode != 0:
        return found
    try:
        if _run(["ip", "-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1"]).returncode:
            return found
        for kind, args in PROBE_QDISCS.items():
            done = _run(["tc", "-n", name, "qdisc", "add", "dev", "p0", "root", *args])
            found[kind] = done.returncode == 0
            _run(["tc", "-n", name, "qdisc", "del", "dev", "p0", "root"])
        found["loss"] = _run(["ip", "netns", "exec", name, "nft", "-f", "-"], PROBE_NFT).returncode == 0
    finally:
        _run(["ip", "netns", "del", name])
    return found


def refused(kinds: list[str]) -> str:
    """Why KINDS cannot be done on this machine: what the kernel lacks for each."""
    return "; ".join(f"{kind} needs {WHY[kind]}, which this machine's kernel does not have" for kind in kinds)


def table(name: str) -> str | None:
    """`nft -j list table bridge NAME`: the table as nftables' JSON, None when there is none."""
    done = _run(["nft", "-j", "list", "table", "bridge", name])
    return done.stdout if done.returncode == 0 else None


def _exists(device: str) -> bool:
    return Path("/sys/class/net", device).is_dir()


def apply(script: str, qdiscs: list[list[str]]) -> None:
    """Load SCRIPT (one transaction), then run the `tc` argument lists QDISCS: a qdisc removed from a
    device that is gone (with its host) or that has only its default one is no error."""
    nftables.load(script)
    for args in qdiscs:
        if args[1] == "del":
            if _exists(args[3]):
                _tc(args, check=False)
            continue
        _tc(args)


def qdisc_kind(device: str) -> str:
    """The kind of DEVICE's root qdisc ("" when there is none), for tests and `doctor`'s evidence."""
    done = _tc(["qdisc", "show", "dev", device, "root"], check=False)
    words = done.stdout.split()
    return words[1] if len(words) > 1 and words[0] == "qdisc" else ""
