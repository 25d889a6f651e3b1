#!/usr/bin/env python3
"""How long until N KVM hosts are ready, three ways, measured in one run on this machine.

  (a) the seed article's method: the base image, cloud-init installs libvirt/QEMU, hosts in parallel
  (b) the baked KVM-host image on a `dir` pool
  (c) the baked KVM-host image on the copy-on-write pool lxdkvm chooses

"Ready" means libvirtd is active and the KVM probe passes as libvirt's qemu user. Images are built,
baked and unpacked before timing starts (the targets are for a warm cache). Prints each time, the ratios
a/b and a/c, and the idle anonymous memory of each ready host (from its memory cgroup); writes the
table to docs/seed-benchmarks.md.

Run as root from the repository:  python3 benchmarks/ready_hosts.py [--hosts 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from pathlib import Path

from measure import anon_bytes, machine_lines

from lxdkvm.hosts import profile as profile_mod
from lxdkvm.hosts import readiness
from lxdkvm.images import bake
from lxdkvm.images import base as image
from lxdkvm.lxd import setup
from lxdkvm.lxd.session import Session
from lxdkvm.machine import hostcaps

SESSION = Session()  # the benchmark's one session with the daemon

READY = [stage for stage in readiness.STAGES if stage.name != "cloud-init finished"]
OUT = Path(__file__).resolve().parent.parent / "docs" / "seed-benchmarks.md"


def run_scenario(label: str, hosts: int, image_alias: str, profile: str, pool: str, tag: str) -> dict:
    names = [f"bench-{tag}-{label}{i}" for i in range(1, hosts + 1)]
    print(f"({label}) {hosts} hosts from {image_alias} on pool {pool} ...", flush=True)
    start = time.monotonic()
    try:
        readiness.launch_many(SESSION.instances, names, image_alias, ["default", profile], pool=pool, stages=READY, poll=0.2,
                            report=lambda host, stage: print(f"    {time.monotonic() - start:6.1f}s {host}: {stage}",
                                                             flush=True))
        seconds = time.monotonic() - start
        time.sleep(10)  # let the hosts settle to idle before reading memory
        memory = [anon_bytes(n) / 2**20 for n in names]
    finally:
        client = SESSION
        for name in names:
            client.instances.delete(name)
    print(f"({label}) ready in {seconds:.1f}s; idle anon memory per host {statistics.mean(memory):.1f} MiB")
    return {"label": label, "seconds": seconds, "memory": statistics.mean(memory), "image": image_alias,
            "pool": pool}


def warm(client: Session, image_alias: str, profile: str, pool: str, tag: str) -> None:
    """Unpack the image into the pool once (LXD keeps it there for later instances)."""
    name = f"bench-{tag}-warm"
    try:
        client.instances.launch(name, image_alias, ["default", profile], pool=pool)
    finally:
        client.instances.delete(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    client = SESSION
    setup.ensure_lxd(client, print)
    base = image.build(SESSION, report=print)
    baked = bake.bake(SESSION, report=print)
    cow = setup.ensure_hosts_pool(client, print)
    dir_pool = next((p["name"] for p in client.server.facts().pools if p["driver"] == "dir"), None)
    if not dir_pool:
        client.pools.ensure("lxdkvm-dir", "dir")
        dir_pool = "lxdkvm-dir"
    tag = uuid.uuid4().hex[:4]
    facts = hostcaps.read_host()
    profiles = {
        "install": profile_mod.for_host(facts, kvm_gid=int(base.properties["lxdkvm.kvm_gid"])),
        "baked": profile_mod.for_host(facts, kvm_gid=int(baked.properties["lxdkvm.kvm_gid"]),
                                      install_packages=False),
    }
    names = {kind: f"bench-{tag}-{kind}" for kind in profiles}
    try:
        for kind, spec in profiles.items():
            client.profiles.apply(names[kind], profile_mod.parse(profile_mod.render(spec)))
        warm(client, baked.alias, names["baked"], cow.name, tag)
        results = [
            run_scenario("a", args.hosts, base.alias, names["install"], dir_pool, tag),
            run_scenario("b", args.hosts, baked.alias, names["baked"], dir_pool, tag),
            run_scenario("c", args.hosts, baked.alias, names["baked"], cow.name, tag),
        ]
    finally:
        for name in names.values():
            client.profiles.delete(name)

    a, b, c = (r["seconds"] for r in results)
    print(f"\na/b = {a / b:.1f}   a/c = {a / c:.1f}   (targets: c <= 6 s for 3 hosts, a/c >= 15)")
    server = client.server.facts()
    what = {"a": "base image + cloud-init installs libvirt/QEMU (seed method)",
            "b": "baked KVM-host image", "c": "baked KVM-host image"}
    rows = "\n".join(
        f"| ({r['label']}) | {what[r['label']]} | {r['pool']} | {r['seconds']:.1f} s | "
        f"{a / r['seconds']:.1f} | {r['memory']:.1f} MiB |" for r in results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"""# Benchmarks: the seed method against the baked image

Written by `python3 benchmarks/ready_hosts.py --hosts {args.hosts}`; rerun it to measure your machine.

## Time until {args.hosts} KVM hosts are ready

Ready = libvirtd active and the KVM probe passing as `libvirt-qemu`, all hosts launched in parallel.
Images built, baked and unpacked into the copy-on-write pool before timing (warm cache).

{machine_lines(server.version, "pools: " + ", ".join(f"{p['name']} ({p['driver']})" for p in server.pools))}

| | hosts from | pool | time to ready | ratio a/x | idle anon memory per host |
| --- | --- | --- | --- | --- | --- |
{rows}

a/b = {a / b:.1f}, a/c = {a / c:.1f}. Targets on a 2-core machine: (c) ≤ 6 s for 3 hosts, a/c ≥ 15.
""")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
