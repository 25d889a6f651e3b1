#!/usr/bin/env python3
"""How long `lxdkvm up` takes to a ready lab, and `lxdkvm down` to nothing, measured in one run.

  - baseline: the 3-host lab provisioned one host at a time (--workers 1)
  - the same 3-host lab on the bounded parallel worker pool (the default)
  - a 10-host lab on the parallel pool
  - `down` of each

Each lab is the default lab's shape (a NAT management network with DHCP and an isolated data network
with static addresses), on its own subnets. Ready means every stage passed on every host: exec,
cloud-init done, libvirtd active, the KVM probe as libvirt-qemu, and the declared addresses. The image
is built, baked and unpacked into the pool before timing starts (warm cache). Prints each time, the
ratio to the baseline and the idle anonymous memory per host; writes docs/lab-benchmarks.md.

Run as root from the repository:  python3 benchmarks/lab_up.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from measure import anon_bytes, machine_lines

from lxdkvm.lab import pipeline as lab_mod
from lxdkvm.lxd import setup
from lxdkvm.lxd.session import Session

SESSION = Session()  # the benchmark's one session with the daemon

SETTLE = 5  # seconds
OUT = Path(__file__).resolve().parent.parent / "docs" / "lab-benchmarks.md"
LAB = """name: {name}
networks:
  - {{name: mgmt, subnet: 10.{n}.10.0/24, mode: nat}}
  - {{name: data, subnet: 10.{n}.20.0/24, mode: isolated}}
defaults:
  limits: {{cpu: 1, memory: 1GiB}}
hosts:
  - name: host-[1-{hosts}]
    networks: [mgmt, {{network: data, ipv4: 10.{n}.20.11}}]
"""


def once(label: str, hosts: int, subnet: int, workers: int, folder: Path) -> tuple[float, float, float]:
    name = f"bench-{label}"
    path = folder / f"{name}.yaml"
    path.write_text(LAB.format(name=name, n=subnet, hosts=hosts))
    lab_mod.down(SESSION, name, lambda *_: None)  # a leftover from an interrupted benchmark
    time.sleep(SETTLE)  # let the previous run's teardown (btrfs cleanup, dnsmasq) finish
    start = time.monotonic()
    result = lab_mod.up(SESSION, path, lambda host, msg: print(f"    {time.monotonic() - start:6.1f}s {host}: {msg}",
                                                     flush=True), workers=workers)
    up = time.monotonic() - start
    assert not result.plan.empty and all(h.ready for h in lab_mod.status(SESSION, name).hosts)
    time.sleep(SETTLE)  # let the hosts settle to idle before reading memory and tearing down
    memory = statistics.mean(anon_bytes(h.name, f"lxdkvm-{name}") / 2**20 for h in result.lab.hosts)
    start = time.monotonic()
    lab_mod.down(SESSION, name, lambda *_: None)
    return up, time.monotonic() - start, memory


def measure(label: str, hosts: int, subnet: int, workers: int, folder: Path, runs: int) -> dict:
    print(f"[{label}] {hosts} hosts, {workers} workers, {runs} runs ...", flush=True)
    ups, downs, memories = zip(*(once(label, hosts, subnet, workers, folder) for _ in range(runs)))
    up, down, memory = statistics.median(ups), statistics.median(downs), statistics.median(memories)
    print(f"[{label}] up {up:.1f}s (runs {', '.join(f'{u:.1f}' for u in ups)}), down {down:.1f}s, "
          f"idle anon memory per host {memory:.1f} MiB", flush=True)
    return {"label": label, "hosts": hosts, "workers": workers, "up": up, "down": down, "memory": memory,
            "ups": ups}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--runs", type=int, default=3, help="runs per lab; the median is reported")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        warm = Path(folder) / "warm.yaml"
        warm.write_text(LAB.format(name="bench-warm", n=252, hosts=1))
        print("warming up: image built and baked, unpacked into the pool ...", flush=True)
        lab_mod.up(SESSION, warm, lambda *_: None)
        lab_mod.down(SESSION, "bench-warm", lambda *_: None)
        results = [measure("serial3", 3, 249, 1, Path(folder), args.runs),
                   measure("lab3", 3, 250, 10, Path(folder), args.runs),
                   measure("lab10", 10, 251, 10, Path(folder), args.runs)]
    base = results[0]["up"]
    server = SESSION.server.facts()
    pool = setup.ensure_hosts_pool(SESSION).name
    rows = "\n".join(f"| {r['label']} | {r['hosts']} | {r['workers']} | {r['up']:.1f} s "
                     f"({', '.join(f'{u:.1f}' for u in r['ups'])}) | {base / r['up']:.2f} | "
                     f"{r['down']:.1f} s | {r['memory']:.1f} MiB |" for r in results)
    summary = (f"3 hosts: {results[1]['up']:.1f} s (target ≤ 8 s); 10 hosts: {results[2]['up']:.1f} s "
               f"(target ≤ 25 s); down of 3 hosts: {results[1]['down']:.1f} s (target ≤ 3 s)")
    print("\n" + summary)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"""# Lab benchmarks

Written by `python3 benchmarks/lab_up.py`; rerun it to measure your machine.

`up` is timed from the call to every host ready (exec, cloud-init done, libvirtd active, KVM probe as
libvirt-qemu, declared addresses); `down` until no object of the lab remains. Each lab has a NAT
management network with DHCP and an isolated data network with static addresses. The image is baked and
unpacked into the pool before timing (warm cache). The baseline is the 3-host lab with one worker.

{machine_lines(server.version, f"host pool {pool}")}

Times are the median of {args.runs} runs (each run's `up` in brackets).

| lab | hosts | workers | up | speed-up vs serial3 | down | idle anon memory per host |
| --- | --- | --- | --- | --- | --- | --- |
{rows}

{summary}.
""")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
