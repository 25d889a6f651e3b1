#!/usr/bin/env python3
"""How lxdkvm scales with the number of hosts on one machine, measured in one run.

For each N (default 1, 3, 10, 30, 60), in this order:
  (f) the booted floor: N plain containers of the baked KVM-host image, created and started in parallel
      through the daemon's API, until `exec true` answers in each and until `systemctl
      is-system-running --wait` says their boot is done (benchmarks/floor.py's floor)
  (u) `lxdkvm up` of an N-host lab (a NAT network with DHCP and an isolated one with static addresses,
      benchmarks/lab_up.py's shape) until every host is ready; then, the lab idle, each host's memory
      (the daemon's memory usage of its cgroup, and its anonymous memory), `lxdkvm status --json` and
      `lxdkvm verify` as commands, and `lxdkvm down` until nothing of the lab is left.

Prints the table and writes docs/scale-benchmarks.md, with time per host and the targets (issue 23).

Run as root from the repository (nothing else using the daemon):
    python3 benchmarks/scale.py [--hosts 1 3 10 30 60]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from floor import floor
from lab_up import LAB
from measure import anon_bytes, lxdkvm, machine_lines

from lxdkvm.images import bake
from lxdkvm.lab import pipeline as lab_mod
from lxdkvm.labfile import topology as t
from lxdkvm.lxd import setup
from lxdkvm.lxd.session import Session

SESSION = Session()  # the benchmark's one session with the daemon
OUT = Path(__file__).resolve().parent.parent / "docs" / "scale-benchmarks.md"
SUBNET = {1: 250, 3: 251, 10: 252, 30: 250, 60: 251}  # one lab at a time: a subnet is free again after down
SETTLE = 5  # seconds for the previous teardown (btrfs cleanup, dnsmasq) to finish, and hosts to go idle
TARGETS = ("60 hosts come up; time per host at 60 ≤ 1.2× at 10; status of 60 ≤ 3 s; down of 60 ≤ 10 s; "
           "idle memory per host ≤ 64 MiB; up / booted floor ≤ 1.0 for 3 and 10 hosts")


def memory_usage_mib(project: str, host: str) -> float:
    state = SESSION.lab(project).instances.client.api.instances[host].state.get().json()["metadata"]
    return (state.get("memory") or {}).get("usage", 0) / 2**20


def measure(hosts: int, folder: Path, image: str, pool: str) -> dict:
    print(f"{hosts} hosts: the booted floor ...", flush=True)
    f = floor(hosts, image, pool)
    name = f"bench-scale{hosts}"
    path = folder / f"{name}.yaml"
    path.write_text(LAB.format(name=name, n=SUBNET[hosts], hosts=hosts))
    project = t.project_name(name)
    lab_mod.down(SESSION, name, lambda *_: None)  # a leftover from an interrupted run
    time.sleep(SETTLE)
    print(f"{hosts} hosts: up ...", flush=True)
    start = time.monotonic()
    lab_mod.up(SESSION, path, lambda *_: None)
    up = time.monotonic() - start
    try:
        assert all(h.ready for h in lab_mod.status(SESSION, name).hosts)
        time.sleep(SETTLE)
        names = [h.name for h in lab_mod.status(SESSION, name).hosts]
        usage = statistics.median(memory_usage_mib(project, h) for h in names)
        anon = statistics.median(anon_bytes(h, project) / 2**20 for h in names)
        status, done = lxdkvm("status", name, "--json")
        assert done.returncode == 0, done.stderr
        verify, done = lxdkvm("verify", name)
        verified = done.returncode == 0
    finally:
        time.sleep(SETTLE)
        start = time.monotonic()
        lab_mod.down(SESSION, name, lambda *_: None)
        down = time.monotonic() - start
    row = {"hosts": hosts, "floor": f["seconds"], "booted": f["booted_seconds"], "up": up,
           "per_host": up / hosts, "usage_mib": usage, "anon_mib": anon, "status": status, "verify": verify,
           "verified": verified, "down": down}
    print(row, flush=True)
    return row


def table(rows: list[dict]) -> str:
    lines = [("| hosts | floor (exec) | floor, booted | up | up / booted | up per host | idle memory per host "
              "(usage / anon) | status | verify | down |"),
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['hosts']} | {r['floor']:.1f} s | {r['booted']:.1f} s | {r['up']:.1f} s | "
                     f"{r['up'] / r['booted']:.2f} | {r['per_host']:.2f} s | {r['usage_mib']:.0f} / "
                     f"{r['anon_mib']:.0f} MiB | {r['status']:.2f} s | {r['verify']:.1f} s"
                     f"{'' if r['verified'] else ' (FAIL)'} | {r['down']:.1f} s |")
    return "\n".join(lines)


def verdicts(rows: list[dict]) -> list[str]:
    by = {r["hosts"]: r for r in rows}
    out = []
    if 60 in by and 10 in by:
        ratio = by[60]["per_host"] / by[10]["per_host"]
        out.append(f"time per host at 60 / at 10: {ratio:.2f} ({'met' if ratio <= 1.2 else 'not met'}: ≤ 1.2)")
    if 60 in by:
        out.append(f"status of 60: {by[60]['status']:.2f} s ({'met' if by[60]['status'] <= 3 else 'not met'}: ≤ 3 s)")
        out.append(f"down of 60: {by[60]['down']:.1f} s ({'met' if by[60]['down'] <= 10 else 'not met'}: ≤ 10 s)")
    worst = max(r["usage_mib"] for r in rows)
    out.append(f"idle memory per host, the daemon's usage: up to {worst:.0f} MiB "
               f"({'met' if worst <= 64 else 'not met'}: ≤ 64 MiB)")
    for n in (3, 10):
        if n in by:
            ratio = by[n]["up"] / by[n]["booted"]
            out.append(f"up / booted floor at {n}: {ratio:.2f} ({'met' if ratio <= 1.0 else 'not met'}: ≤ 1.0)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 3, 10, 30, 60], choices=sorted(SUBNET))
    args = parser.parse_args()
    setup.ensure_lxd(SESSION, print)  # the kernel limits many hosts share, raised (machine/limits.py)
    pool = setup.ensure_hosts_pool(SESSION, print).name
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(hosts, Path(tmp), bake.DEFAULT_ALIAS, pool) for hosts in args.hosts]
    info = SESSION.server.facts()
    text = f"""# Scale benchmarks: 1 to 60 hosts on one machine

Written by `python3 benchmarks/scale.py`; rerun it to measure your machine.

For each N, in one run: the booted floor (N plain containers of the baked KVM-host image, started in
parallel through the daemon's API, until `exec` answers and until `systemctl is-system-running --wait`
says their boot is done), then `lxdkvm up` of an N-host lab (a NAT network with DHCP and an isolated one
with static addresses) until every host is ready, each idle host's memory (the daemon's memory usage of
its cgroup, and its anonymous memory; medians), `lxdkvm status --json` and `lxdkvm verify` as commands,
and `lxdkvm down`.

{machine_lines(info.version, "host pool " + pool)}

{table(rows)}

Targets (issue 23): {TARGETS}.

{chr(10).join(f"- {v}" for v in verdicts(rows))}
"""
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
