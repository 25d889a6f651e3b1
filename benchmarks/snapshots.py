#!/usr/bin/env python3
"""Lab snapshots against `up` from nothing, measured in one run.

Each round, on a 3-host lab (a NAT network with DHCP, an isolated one with static addresses) with 4
running tiny guests on two of its hosts:
  (u) `lxdkvm up` from nothing until every host and guest is ready;
  (s) `lxdkvm snapshot` (every guest's memory saved, every host snapshotted, the guests resumed);
  (r) `lxdkvm restore` of that snapshot (every host back and running, every guest resumed);
then `lxdkvm down`. Every time is the whole command as a person runs it. Targets (issue 20): snapshot
≤ 5 s, restore ≤ half of `up` from nothing.

Prints the table and writes docs/snapshot-benchmarks.md. Run as root from the repository, nothing else
using the daemon:
    python3 benchmarks/snapshots.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from measure import lxdkvm, machine_lines

from lxdkvm.lxd import setup
from lxdkvm.lxd.session import Session

OUT = Path(__file__).resolve().parent.parent / "docs" / "snapshot-benchmarks.md"
# 10.248.x: floor.py's short warm-up lab takes it too; the benchmarks are run one at a time
LAB = """
name: bench-snap
networks:
  - {name: mgmt, subnet: 10.248.10.0/24}
  - {name: data, subnet: 10.248.20.0/24, mode: isolated}
hosts:
  - name: bs-[1-2]
    networks: [mgmt, {network: data, ipv4: 10.248.20.11}]
  - name: bs-3
    networks: [mgmt]
guests:
  - {name: g-1, host: bs-1, networks: [{network: data, ipv4: 10.248.20.51}, mgmt]}
  - {name: g-2, host: bs-1, networks: [{network: data, ipv4: 10.248.20.52}]}
  - {name: g-3, host: bs-2, networks: [mgmt]}
  - {name: g-4, host: bs-2, networks: [{network: data, ipv4: 10.248.20.54}]}
"""


def _run(*args: str) -> float:
    seconds, done = lxdkvm(*args)
    if done.returncode != 0:
        raise SystemExit(f"lxdkvm {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return seconds


def one_round(path: Path) -> dict[str, float]:
    lxdkvm("down", "bench-snap")
    try:
        up = _run("up", str(path))
        _seconds, listed = lxdkvm("status", "bench-snap", "--json")
        guests = [g for h in json.loads(listed.stdout)["hosts"] for g in h["guests"] if g["state"] == "running"]
        if len(guests) != 4:
            raise SystemExit(f"expected 4 running guests, found {len(guests)}")
        snapshot = _run("snapshot", "bench-snap", "bench")
        restore = _run("restore", "bench-snap", "bench")
        return {"up": up, "snapshot": snapshot, "restore": restore}
    finally:
        lxdkvm("down", "bench-snap")


def table(rounds: list[dict[str, float]]) -> str:
    median = {k: statistics.median(r[k] for r in rounds) for k in ("up", "snapshot", "restore")}
    rows = ["| round | up from nothing | snapshot | restore | restore / up |", "| --- | --- | --- | --- | --- |"]
    rows += [f"| {i} | {r['up']:.2f} s | {r['snapshot']:.2f} s | {r['restore']:.2f} s | "
             f"{r['restore'] / r['up']:.2f}× |" for i, r in enumerate(rounds, 1)]
    rows.append(f"| median | {median['up']:.2f} s | {median['snapshot']:.2f} s | {median['restore']:.2f} s | "
                f"{median['restore'] / median['up']:.2f}× |")
    verdict = (f"Targets: snapshot ≤ 5 s: {'met' if median['snapshot'] <= 5 else 'NOT met'} "
               f"({median['snapshot']:.2f} s); restore ≤ 0.5× up: "
               f"{'met' if median['restore'] <= median['up'] / 2 else 'NOT met'} "
               f"({median['restore'] / median['up']:.2f}×).")
    return "\n".join(rows) + "\n\n" + verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    session = Session()
    pool = setup.ensure_hosts_pool(session, print).name
    info = session.server.facts()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench-snap.yaml"
        path.write_text(LAB)
        rounds = []
        for i in range(args.rounds):
            rounds.append(one_round(path))
            print(f"round {i + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in rounds[-1].items()), flush=True)
    result = table(rounds)
    print(result)
    OUT.write_text(
        "# Lab snapshots: measured\n\n"
        "Written by `python3 benchmarks/snapshots.py` (do not edit by hand). A 3-host lab (NAT and isolated\n"
        "networks) with 4 running tiny guests on two hosts; each time is the whole `lxdkvm` command. `restore`\n"
        "includes every host booting again and its libvirtd answering, and every guest resumed from its saved\n"
        "memory.\n\n" + machine_lines(info.version, "host pool " + pool) + "\n\n" + result + "\n")


if __name__ == "__main__":
    main()
