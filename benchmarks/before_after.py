#!/usr/bin/env python3
"""What the security work costs, measured in one run against the code before it: `up` of a lab from
nothing, `verify`, and live migrations of a tiny guest with and without a disk, each with its own
release of lxdkvm, interleaved so both see the same machine.

BEFORE is a git ref (default: the last commit before lab networks were fenced and libvirt moved to TLS).
It is checked out into a temporary worktree with its own virtual environment, and its KVM-host image is
baked under its own alias (the two releases bake different images), so nothing of it touches this
checkout's. Each release brings up its own lab (distinct names and subnets), then both are measured in
turns: ROUNDS moves of each guest back and forth per release on a quiet machine, ROUNDS more with every
core kept busy, then `verify`, then `down`; `up` is timed
from nothing for each, twice, in turns. Prints medians and after/before ratios; writes
docs/security-benchmarks.md.

Run as root from the repository while nothing else uses the daemon:
    python3 benchmarks/before_after.py [--before REF] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import busy_cores, machine_lines

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "security-benchmarks.md"
BEFORE_ALIAS = "bench/kvm-host-before"  # the before release's baked image, deleted at the end
DEFAULT_BEFORE = "4402999"  # main before this round (the house by concept moved files, changed nothing)
LAB = """\
name: {name}
image: {image}
networks:
  - {{name: mgmt, subnet: {base}.10.0/24}}
  - {{name: data, subnet: {base}.20.0/24, mode: isolated}}
hosts:
  - name: {prefix}-[1-2]
    networks: [mgmt, {{network: data, ipv4: {base}.20.11}}]
guests:
  - {{name: {prefix}-mem, host: {prefix}-1, memory: 256MiB, networks: [{{network: data, ipv4: {base}.20.51}}]}}
  - {{name: {prefix}-disk, host: {prefix}-1, memory: 256MiB, disk: {{size: 256MiB}},
      networks: [{{network: data, ipv4: {base}.20.52}}]}}
"""


class Release:
    def __init__(self, label: str, python: str, cwd: Path, image: str, name: str, base: str, prefix: str) -> None:
        self.label, self.python, self.cwd, self.image = label, python, cwd, image
        self.name, self.base, self.prefix = name, base, prefix
        self.where = {f"{prefix}-mem": f"{prefix}-1", f"{prefix}-disk": f"{prefix}-1"}

    def run(self, *args: str, timeout: float = 1800) -> tuple[subprocess.CompletedProcess, float]:
        start = time.monotonic()
        done = subprocess.run([self.python, "-m", "lxdkvm", *args], capture_output=True, text=True,
                              timeout=timeout, cwd=self.cwd, check=False)
        seconds = time.monotonic() - start
        if done.returncode not in (0,) and args[0] != "verify":
            raise SystemExit(f"{self.label}: lxdkvm {' '.join(args)} failed:\n{done.stderr[-2000:]}")
        return done, seconds

    def lab_file(self, folder: Path) -> Path:
        path = folder / f"{self.name}.yaml"
        path.write_text(LAB.format(name=self.name, image=self.image, base=self.base, prefix=self.prefix))
        return path

    def move(self, guest: str) -> dict:
        target = f"{self.prefix}-2" if self.where[guest] == f"{self.prefix}-1" else f"{self.prefix}-1"
        done, seconds = self.run("migrate", self.name, guest, "--to", target, "--json")
        self.where[guest] = target
        moved = json.loads(done.stdout)
        return {"command": seconds, "libvirt_ms": moved["libvirt_ms"], "downtime_ms": moved["downtime_ms"],
                "lost": moved["pings_lost"], "sent": moved["pings_sent"]}


def prepare_before(ref: str, work: Path) -> Release:
    tree = work / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "venv", str(tree / ".venv")], check=True)
    subprocess.run([str(tree / ".venv/bin/pip"), "install", "-q", "-e", str(tree)], check=True)
    python = str(tree / ".venv/bin/python")
    alias = BEFORE_ALIAS
    print(f"baking the KVM-host image of {ref} as {alias} …", flush=True)
    subprocess.run([python, "-m", "lxdkvm", "image", "bake", "--alias", alias], check=True, cwd=tree,
                   capture_output=True)
    return Release(f"before ({ref})", python, tree, alias, "bench-before", "10.244", "bb")


def median(rows: list[dict], key: str) -> float:
    return statistics.median(float(r[key] or 0) for r in rows)


def summary(rows: list[dict]) -> dict:
    return {"command": median(rows, "command"), "libvirt_ms": median(rows, "libvirt_ms"),
            "downtime_ms": median(rows, "downtime_ms"), "downtime_max": max(float(r["downtime_ms"] or 0) for r in rows),
            "lost": sum(r["lost"] for r in rows), "sent": sum(r["sent"] for r in rows)}


def measure(releases: list[Release], folder: Path, rounds: int) -> dict:
    results: dict = {r.label: {"up": [], "verify": [], "mem": [], "disk": [], "membusy": [], "diskbusy": []}
                     for r in releases}
    for release in releases:
        release.run("down", release.name)
    for _ in range(2):  # up from nothing, in turns
        for release in releases:
            _done, seconds = release.run("up", str(release.lab_file(folder)))
            results[release.label]["up"].append(seconds)
            print(f"{release.label}: up {seconds:.1f}s", flush=True)
            release.run("down", release.name)
    for release in releases:
        release.run("up", str(release.lab_file(folder)))
    for load in ("", "busy"):  # a quiet machine, then every core kept busy by a spinning process
        with busy_cores(load == "busy"):
            for _ in range(rounds):
                for release in releases:
                    for kind in ("mem", "disk"):
                        moved = release.move(f"{release.prefix}-{kind}")
                        results[release.label][f"{kind}{load}"].append(moved)
                        print(f"{release.label}: {kind} moved{' (busy)' if load else ''} in {moved['command']:.2f}s, "
                              f"downtime {moved['downtime_ms']} ms", flush=True)
    for release in releases:
        done, seconds = release.run("verify", release.name)
        results[release.label]["verify"].append(seconds)
        results[release.label]["verify_fail"] = done.returncode != 0
        release.run("down", release.name)
    return results


def write(results: dict, labels: list[str], rounds: int, machine: str) -> None:
    before, after = labels
    lines = ["# What the security work costs: before and after, in one run", "",
             "Written by `python3 benchmarks/before_after.py`; the numbers below are what it printed last.", "",
             "Both releases on the same machine in turns: `up` of a 2-host lab with two 256 MiB tiny guests "
             "from nothing (twice each), then each guest moved back and forth "
             f"{rounds} times per release (`lxdkvm migrate`: the whole command; libvirt's job time and "
             "downtime), then `verify`. *Before*: libvirt over plain TCP with `auth_tcp = none`, no guest "
             "filter, no firewall table. *After*: mutual TLS with the lab's CA (libvirt, QEMU's stream and the "
             "disk copy), the guest filter on every NIC, the lab's nftables table.", "",
             machine, "",
             "| figure | before | after | after / before |", "| --- | --- | --- | --- |"]
    b, a = results[before], results[after]
    rows = [("up from nothing (median of 2)", statistics.median(b["up"]), statistics.median(a["up"]), "s"),
            ("verify", b["verify"][0], a["verify"][0], "s")]
    for kind, title in (("mem", "memory only"), ("disk", "with a 256 MiB disk"),
                        ("membusy", "memory only, machine busy"), ("diskbusy", "with a disk, machine busy")):
        sb, sa = summary(b[kind]), summary(a[kind])
        rows += [(f"move {title}: whole command", sb["command"], sa["command"], "s"),
                 (f"move {title}: libvirt time", sb["libvirt_ms"], sa["libvirt_ms"], "ms"),
                 (f"move {title}: downtime (median)", sb["downtime_ms"], sa["downtime_ms"], "ms")]
    for title, old, new, unit in rows:
        ratio = f"{new / old:.2f}×" if old else "-"
        lines.append(f"| {title} | {old:.2f} {unit} | {new:.2f} {unit} | {ratio} |")
    lost = {k: summary(r["mem"] + r["disk"]) for k, r in ((before, b), (after, a))}
    busy = {k: summary(r["membusy"] + r["diskbusy"]) for k, r in ((before, b), (after, a))}
    lines += ["", "Busy: one process spinning on every core while the guests move (the releases still in turns).",
              "", (f"Pings lost at 5/s during the moves, quiet: before {lost[before]['lost']} of "
                   f"{lost[before]['sent']}, after {lost[after]['lost']} of {lost[after]['sent']}; busy: before "
                   f"{busy[before]['lost']} of {busy[before]['sent']}, after {busy[after]['lost']} of "
                   f"{busy[after]['sent']}. verify: before {'failed' if b.get('verify_fail') else 'passed'}, "
                   f"after {'failed' if a.get('verify_fail') else 'passed'}.")]
    OUT.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=DEFAULT_BEFORE)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    with tempfile.TemporaryDirectory(prefix="lxdkvm-before-after-") as tmp:
        work = Path(tmp)
        try:
            old = prepare_before(args.before, work)
            new = Release("after (this checkout)", sys.executable, ROOT, "lxdkvm/kvm-host", "bench-after", "10.243", "ba")
            results = measure([old, new], work, args.rounds)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "before")],
                           check=False, capture_output=True)
            subprocess.run(["lxc", "image", "delete", BEFORE_ALIAS], check=False, capture_output=True)
    labels = [f"before ({args.before})", "after (this checkout)"]
    server = subprocess.run(["lxc", "query", "/1.0"], capture_output=True, text=True, check=True).stdout
    version = json.loads(server)["environment"]["server_version"]
    write(results, labels, args.rounds, machine_lines(version, "host pool lxdkvm-cow", "LXD"))
    for label in labels:
        r = results[label]
        print(f"{label}: up {statistics.median(r['up']):.1f}s, verify {r['verify'][0]:.1f}s, "
              f"mem move {summary(r['mem'])['command']:.2f}s ({summary(r['mem'])['downtime_ms']:.0f} ms down), "
              f"disk move {summary(r['disk'])['command']:.2f}s ({summary(r['disk'])['downtime_ms']:.0f} ms down); "
              f"busy: mem {summary(r['membusy'])['command']:.2f}s ({summary(r['membusy'])['downtime_ms']:.0f} ms down), "
              f"disk {summary(r['diskbusy'])['command']:.2f}s ({summary(r['diskbusy'])['downtime_ms']:.0f} ms down)")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
