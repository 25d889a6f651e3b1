#!/usr/bin/env python3
"""`lxdkvm up` against the floor: what the container daemon alone does with the same image, in one run.

  (f) the floor: N plain containers of the baked KVM-host image, on the pool lxdkvm uses for hosts,
      created and started in parallel until `exec true` answers in every one
  (u) `lxdkvm up` of an N-host lab until every host is ready (exec, cloud-init done, libvirtd active,
      the KVM probe as libvirt-qemu, the declared addresses), then `lxdkvm down` of it

for N = 3 and 10, interleaved (f, u, f, u, ...) so both see the same machine. For each: wall time,
CPU-seconds per host inside the container from its start to ready (its cgroup), the daemon's CPU per
host, and the whole machine's busy CPU per host. Prints u/f and writes docs/benchmarks.md; with
--save NAME also benchmarks/results/NAME.json, and the document shows every saved result beside the
run (so a "before" stays comparable with the "after").

Run as root from the repository:  python3 benchmarks/floor.py [--runs 3] [--save NAME]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from lab_up import LAB
from measure import cpu_seconds, daemon_seconds, machine_busy_seconds, machine_lines

from lxdkvm.images import bake
from lxdkvm.lab import pipeline as lab_mod
from lxdkvm.labfile import topology as t
from lxdkvm.lxd import setup
from lxdkvm.lxd.session import Session

SESSION = Session()  # the benchmark's one session with the daemon

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "benchmarks" / "results"
SETTLE = 5  # seconds between runs: the previous teardown (btrfs cleanup, dnsmasq) finishes
SUBNET = {3: 246, 10: 247}  # 10.246.x and 10.247.x; the warm-up lab uses 10.248.x
TARGETS = "u/f ≤ 1.5 for 3 and for 10 hosts; ≤ 1.2 CPU-s per host in the container to ready; down of 10 ≤ 3 s"


class Meter:
    """Wall time, machine busy CPU and daemon CPU over one measured interval."""

    def __init__(self) -> None:
        self.start, self.busy, self.daemon = time.monotonic(), machine_busy_seconds(), daemon_seconds()
        self.client = self._client()

    @staticmethod
    def _client() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def read(self, hosts: int) -> dict:
        return {"seconds": time.monotonic() - self.start,
                "machine_cpu": (machine_busy_seconds() - self.busy) / hosts,
                "daemon_cpu": (daemon_seconds() - self.daemon) / hosts,
                "client_cpu": (self._client() - self.client) / hosts}


def floor(hosts: int, image: str, pool: str) -> dict:
    names = [f"bench-floor-{i}" for i in range(1, hosts + 1)]
    client = SESSION
    for name in names:
        client.instances.delete(name)  # a leftover from an interrupted run
    time.sleep(SETTLE)
    cpu: dict[str, float] = {}
    booted: dict[str, float] = {}
    answered = threading.Semaphore(0)

    def one(name: str) -> None:
        try:
            conn = answer(name)
        finally:
            answered.release()
        # the same container on until its boot is done (systemd's jobs all finished: cloud-init, the
        # network, libvirtd): the least a lab host's boot costs with this image, measured beside the floor
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until systemd's own bus answers (exec answers before it)
            state = conn.instances.execute(name, ["systemctl", "is-system-running", "--wait"], timeout=120).stdout.strip()
            if state in ("running", "degraded"):
                booted[name] = time.monotonic()
                return
            time.sleep(0.05)

    def answer(name: str) -> Session:
        conn = Session()  # a client of its own, as separate programs each have
        # the daemon's own API, as a plain client would call it: not lxdkvm's creation lock, which
        # serialises creations for isolated id maps (LXD 5.0) and would make the floor higher
        conn.connection().client.instances.create({"name": name, "type": "container", "profiles": ["default"],
                                      "source": {"type": "image", "alias": image},
                                      "devices": {"root": {"type": "disk", "path": "/", "pool": pool}}},
                                     wait=True).start(wait=True)
        while True:
            try:
                if conn.instances.execute(name, ["true"], timeout=5).exit_code == 0:
                    break
            except Exception:  # noqa: BLE001 - not answering yet
                time.sleep(0.1)
                continue
            time.sleep(0.1)
        cpu[name] = cpu_seconds(name)
        return conn

    meter = Meter()
    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for _ in names:
        answered.acquire()
    result = meter.read(hosts)  # the floor: every container answers exec
    for thread in threads:
        thread.join()
    try:
        if len(cpu) != hosts or len(booted) != hosts:
            raise RuntimeError(f"floor: {len(cpu)} of {hosts} containers answered, {len(booted)} booted")
        result["container_cpu"] = statistics.mean(cpu.values())
        result["booted_seconds"] = max(booted.values()) - meter.start
    finally:
        for name in names:
            client.instances.delete(name)
    return result


def up(hosts: int, folder: Path) -> dict:
    name = f"bench-u{hosts}"
    path = folder / f"{name}.yaml"
    path.write_text(LAB.format(name=name, n=SUBNET[hosts], hosts=hosts))
    project = t.project_name(name)
    lab_mod.down(SESSION, name, lambda *_: None)
    time.sleep(SETTLE)
    cpu: dict[str, float] = {}

    def report(host: str, message: str) -> None:
        if message == "ready":
            cpu[host] = cpu_seconds(host, project)

    meter = Meter()
    lab_mod.up(SESSION, path, report)
    result = meter.read(hosts)
    assert len(cpu) == hosts and all(h.ready for h in lab_mod.status(SESSION, name).hosts), cpu
    result["container_cpu"] = statistics.mean(cpu.values())
    time.sleep(SETTLE)
    start = time.monotonic()
    lab_mod.down(SESSION, name, lambda *_: None)
    result["down"] = time.monotonic() - start
    return result


def median(runs: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]} | {
        "runs": [round(r["seconds"], 1) for r in runs]}


def summarise(label: str, hosts: int, f: dict, u: dict) -> dict:
    return {"label": label, "hosts": hosts, "floor": f, "up": u, "ratio": u["seconds"] / f["seconds"],
            "ratio_booted": u["seconds"] / f["booted_seconds"]}


def row(r: dict) -> str:
    f, u = r["floor"], r["up"]
    booted = (f"{f['booted_seconds']:.1f} s | {r['ratio_booted']:.2f}" if "booted_seconds" in f else "— | —")
    return (f"| {r['label']} | {r['hosts']} | {f['seconds']:.1f} s ({', '.join(map(str, f['runs']))}) | "
            f"{u['seconds']:.1f} s ({', '.join(map(str, u['runs']))}) | **{r['ratio']:.2f}** | {booted} | "
            f"{f['container_cpu']:.2f} / {u['container_cpu']:.2f} | {f['daemon_cpu']:.2f} / {u['daemon_cpu']:.2f} | "
            f"{f.get('client_cpu', float('nan')):.2f} / {u.get('client_cpu', float('nan')):.2f} | "
            f"{f['machine_cpu']:.2f} / {u['machine_cpu']:.2f} | {u['down']:.1f} s |")


def commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         check=False)
    return out.stdout.strip() or "unknown"


def write(out: Path, machine: str, results: list[dict], runs: int, image: str, save: str | None) -> None:
    """The document: every saved result (benchmarks/results/*.json) and this run's."""
    earlier = []
    for path in sorted(RESULTS.glob("*.json")) if RESULTS.exists() else []:
        if path.stem != save:
            earlier += json.loads(path.read_text())["results"]
    order = {"before": 0, "boot-cuts": 1, "after": 2}  # then any other saved run (another daemon), by name
    rows = "\n".join(row(r) for r in sorted(earlier, key=lambda r: (r["hosts"], order.get(r["label"], 2), r["label"]))
                      + results)
    out.write_text(f"""# Benchmarks: `lxdkvm up` against the floor

Written by `python3 benchmarks/floor.py --runs {runs}`; rerun it to measure your machine.

- **floor (f)**: N plain containers of the baked KVM-host image (`{image}`, default profile, the
  daemon's default id map) on the host pool, created and started in parallel through the daemon's API
  (not lxdkvm's creation lock) until `exec true` answers in every one: what the daemon alone does with
  this image.
- **up (u)**: `lxdkvm up` of an N-host lab (a NAT network with DHCP and an isolated one with static
  addresses) until every host is ready: exec, cloud-init done, libvirtd active, the KVM probe as
  libvirt-qemu, the declared addresses. Then `down`, timed until no object of the lab remains.
- **floor, booted**: the floor's containers, on until `systemctl is-system-running --wait` says their
  boot is done (cloud-init, the network, libvirtd: the image's own boot), in the same run; *u/f booted*
  compares `up` with it. Not a target: it shows how much of `up` is the image's boot and how much
  lxdkvm's own work (networks, id ranges, NICs, readiness checks).
- f and u are interleaved in one run (f, u, f, u, ...); times are medians of {runs} runs (each in
  brackets). CPU columns are CPU-seconds per host, floor / up: *container* = the container's cgroup from
  its start to ready; *daemon* = the container daemon process itself during the interval (the remap
  runs there); *client* = the benchmark's own process (lxdkvm, or the floor's threads);
  *machine* = the whole machine's busy time during the interval, divided by N.

{machine}

| run | hosts | floor | up | u/f | floor, booted | u/f booted | CPU container | CPU daemon | CPU client | CPU machine | down |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

Rows are named by `--save` (a run of this script kept in `benchmarks/results/`), "this run" is the
one that wrote the page; [container-cost.md](container-cost.md) says what each named run was.

Targets on a 2-core machine: {TARGETS}.

Most of the floor is the daemon's, not the containers': LXD 5.0.2 remaps every new container's
filesystem at its first start; Incus does not ([container-cost.md](container-cost.md)).

The script measures the daemon lxdkvm talks to: `LXDKVM_DAEMON=incus python3 benchmarks/floor.py` measures
Incus (the `incus-6.0.4` run was made with `LXD_DIR=/var/lib/incus`, before that setting existed). *CPU
daemon* counts both daemons' processes (`lxd` and `incusd` of /var/lib/lxd and /var/lib/incus): stop the
one not measured (`incus admin shutdown`, after `invoke test` has set Incus up) for clean numbers.
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each; the median is reported")
    parser.add_argument("--hosts", type=int, nargs="+", default=[3, 10], choices=sorted(SUBNET))
    parser.add_argument("--save", help="also keep this run as benchmarks/results/NAME.json")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--render", metavar="NAME", help="measure nothing: rewrite the document from the "
                        "saved results, with NAME's machine line")
    args = parser.parse_args()
    if args.render:
        saved = json.loads((RESULTS / f"{args.render}.json").read_text())
        write(args.out, saved["machine"], [], args.runs, bake.DEFAULT_ALIAS, None)
        print(f"wrote {args.out}")
        return

    client = SESSION
    setup.ensure_lxd(client, print)
    pool = setup.ensure_hosts_pool(client, print).name
    image = bake.DEFAULT_ALIAS
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        warm = folder / "bench-warm.yaml"
        warm.write_text(LAB.format(name="bench-warm", n=248, hosts=1))
        print("warming up: image built and baked, unpacked into the pool ...", flush=True)
        lab_mod.up(SESSION, warm, lambda *_: None)  # bakes the image if its inputs changed
        lab_mod.down(SESSION, "bench-warm", lambda *_: None)
        results = []
        for hosts in args.hosts:
            floors, ups = [], []
            for n in range(args.runs):
                floors.append(floor(hosts, image, pool))
                print(f"[{hosts} hosts, run {n + 1}] floor {floors[-1]['seconds']:.1f}s, booted "
                      f"{floors[-1]['booted_seconds']:.1f}s "
                      f"(container CPU {floors[-1]['container_cpu']:.2f}s/host)", flush=True)
                ups.append(up(hosts, folder))
                print(f"[{hosts} hosts, run {n + 1}] up {ups[-1]['seconds']:.1f}s "
                      f"(container CPU {ups[-1]['container_cpu']:.2f}s/host), down {ups[-1]['down']:.1f}s",
                      flush=True)
            results.append(summarise(f"this run ({commit()})", hosts, median(floors), median(ups)))
    for r in results:
        print(f"{r['hosts']} hosts: floor {r['floor']['seconds']:.1f}s (booted {r['floor']['booted_seconds']:.1f}s), "
              f"up {r['up']['seconds']:.1f}s, u/f = {r['ratio']:.2f} (booted {r['ratio_booted']:.2f}); CPU-s per host in the container {r['up']['container_cpu']:.2f}, "
              f"machine {r['up']['machine_cpu']:.2f}; down {r['up']['down']:.1f}s")
    server = client.server.facts()
    machine = machine_lines(server.version, f"host pool {pool}", server.daemon)
    if args.save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        saved = [{**r, "label": args.save} for r in results]
        (RESULTS / f"{args.save}.json").write_text(json.dumps({"machine": machine, "results": saved}, indent=1) + "\n")
    write(args.out, machine, results, args.runs, image, args.save)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
