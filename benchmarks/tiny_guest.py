#!/usr/bin/env python3
"""How long lxdkvm's tiny guest takes from `virsh start` to its boot marker inside one lab host, alone
and with N guests started together (one `virsh start` right after the other; N = 1, 2, 4, 8, … until the median doubles against the baseline or
the host's memory runs short).

One lab host from the baked KVM-host image; each guest is TCG, 1 vCPU, 128 MiB, one virtio NIC on an
in-host bridge with a static address. Time is measured inside the host: from just before each guest's
`virsh start` to the moment the agent's `wait-boot` sees the guest's marker line (polled every 0.2 s),
so it includes QEMU start, kernel boot, module loading and network setup. Prints the table and the
ratio to the baseline; writes docs/guests-benchmarks.md.

Run as root from the repository (other LXD users: hold /tmp/lxd-tests.lock):
    python3 benchmarks/tiny_guest.py [--max 32] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import uuid
from pathlib import Path

from measure import machine_lines

from lxdkvm.guests import agent, hostprep, tiny
from lxdkvm.guests import domain as gd
from lxdkvm.hosts import profile as profile_mod
from lxdkvm.hosts import readiness
from lxdkvm.images import bake
from lxdkvm.lxd import setup
from lxdkvm.lxd.session import Session
from lxdkvm.machine import hostcaps

SESSION = Session()  # the benchmark's one session with the daemon

OUT = Path(__file__).resolve().parent.parent / "docs" / "guests-benchmarks.md"
BRIDGE, NET = "br-bench", "192.168.79"
MEMORY_MIB = 128
PER_GUEST_MIB = 256  # a 128 MiB tiny guest's QEMU measured ~220 MiB resident (RAM, TCG, libraries)


def sh(lxd: Session, host: str, script: str, timeout: int = 600) -> str:
    result = lxd.instances.execute(host, ["sh", "-c", script], timeout=timeout)
    if result.exit_code != 0:
        raise RuntimeError(f"{script[:200]}…\n{result.stdout}{result.stderr}")
    return result.stdout


def prepare(lxd: Session, host: str) -> str:
    artifacts = tiny.build()
    hostprep.push_tiny(lxd.instances, host, artifacts)
    agent.push_agent(lxd.instances, host)
    sh(lxd, host, f"ip link add {BRIDGE} type bridge stp_state 0 && ip addr add {NET}.1/24 dev {BRIDGE} && "
                  f"ip link set {BRIDGE} up && {{ [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || "
                  "sysctl -qw net.bridge.bridge-nf-call-iptables=0; }")
    return artifacts.key


def define(lxd: Session, host: str, key: str, count: int) -> list[str]:
    names = [f"bench-{i}" for i in range(1, count + 1)]
    for i, name in enumerate(names, start=1):
        paths = gd.paths(name, key)
        xml = gd.domain_xml(gd.GuestDomain(
            name=name, kernel=paths.kernel, initrd=paths.initrd, memory_mib=MEMORY_MIB, vcpus=1, accel="tcg",
            nics=(gd.GuestNic(BRIDGE, gd.mac_for("bench", name, 0), f"{NET}.{10 + i}/24"),),
            serial_log=paths.serial_log, agent_socket=paths.agent_socket))
        sh(lxd, host, f"mkdir -p {paths.directory} && rm -f {paths.serial_log}")
        lxd.instances.push(host, paths.xml, xml.encode())
        sh(lxd, host, f"virsh -q define {paths.xml} > /dev/null")
    return names


def boot_together(lxd: Session, host: str, names: list[str]) -> tuple[list[float], float]:
    """Start every guest at once; each one's seconds from its `virsh start` to its marker, and the
    median resident memory of their QEMU processes (MiB) once all have booted."""
    # `virsh start` one after the other (each returns once QEMU runs, ~0.2 s), retried: inside an unprivileged
    # host, libvirt 9.0 fails with "Failed to create v1 controller cpuset for group" when starts run in
    # parallel or right after the host's last guest was destroyed (its cgroup slice is being removed)
    one = ("n=0; until t=$(date +%s%N); virsh -q start {g} > /dev/null 2> /tmp/{g}.err; do n=$((n + 1)); "
           "[ $n -lt 10 ] || break; sleep 0.3; done; "
           f"(python3 {agent.AGENT_PATH} wait-boot {gd.SERIAL_LOG_DIR}/{{g}}-serial.log --timeout 300 > /dev/null "
           "2>> /tmp/{g}.err && echo {g} $(( $(date +%s%N) - t )) $n) &")
    out = sh(lxd, host, " ".join(one.format(g=g) for g in names) + " wait")
    times = {line.split()[0]: int(line.split()[1]) / 1e9 for line in out.splitlines() if line.strip()}
    retries = sum(int(line.split()[2]) for line in out.splitlines() if line.strip())
    if retries:
        print(f"    ({retries} `virsh start` retried after libvirt's cgroup race)")
    missing = sorted(set(names) - set(times))
    if missing:
        errors = sh(lxd, host, " ".join(f"echo {g}:; tail -n 5 /tmp/{g}.err;" for g in missing))
        raise RuntimeError(f"no boot marker from {missing}:\n{errors}")
    rss = [int(x) / 1024 for x in sh(lxd, host, "for d in /proc/[0-9]*; do [ \"$(cat $d/comm 2>/dev/null)\" = "
                                              "qemu-system-x86 ] && awk '/VmRSS/ {print $2}' $d/status; done; true").split()]
    return [times[g] for g in names], statistics.median(rss)


def destroy(lxd: Session, host: str, names: list[str]) -> None:
    sh(lxd, host, " ".join(f"virsh -q destroy {g} >/dev/null 2>&1; virsh -q undefine {g} >/dev/null;"
                           for g in names) + " true")


def available_mib(lxd: Session, host: str) -> int:
    return int(sh(lxd, host, "awk '/MemAvailable/ {print $2}' /proc/meminfo")) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max", type=int, default=32, help="most guests at once")
    parser.add_argument("--runs", type=int, default=3, help="baseline runs (1 guest)")
    args = parser.parse_args()

    lxd = SESSION
    setup.ensure_lxd(lxd, lambda _m: None)
    image = lxd.images.by_alias(bake.DEFAULT_ALIAS) or bake.bake(SESSION).__dict__
    host = f"lxdkvm-bench-tiny-{uuid.uuid4().hex[:6]}"
    spec = profile_mod.for_host(hostcaps.read_host(), kvm_gid=int(image["properties"]["lxdkvm.kvm_gid"]),
                                install_packages=False)
    lxd.profiles.apply(host, profile_mod.parse(profile_mod.render(spec)))
    rows: list[tuple[int, list[float], float]] = []
    try:
        pool = setup.ensure_hosts_pool(lxd)
        readiness.launch(lxd.instances, host, bake.DEFAULT_ALIAS, ["default", host], pool=pool.name)
        key = prepare(lxd, host)
        baseline_times = []
        for _ in range(args.runs):
            names = define(lxd, host, key, 1)
            times, _ = boot_together(lxd, host, names)
            destroy(lxd, host, names)
            baseline_times += times
        baseline = statistics.median(baseline_times)
        print(f"baseline (1 guest, {args.runs} runs): {baseline:.2f} s {[round(t, 2) for t in baseline_times]}")
        stop = ""
        count = 1
        while count <= args.max:
            if available_mib(lxd, host) < count * PER_GUEST_MIB + 512:
                stop = f"memory: {count} guests need ~{count * PER_GUEST_MIB} MiB"
                break
            names = define(lxd, host, key, count)
            try:
                times, rss = boot_together(lxd, host, names)
            finally:
                destroy(lxd, host, names)
            rows.append((count, times, rss))
            median = statistics.median(times)
            print(f"{count:3d} together: median {median:.2f} s, max {max(times):.2f} s, "
                  f"×{median / baseline:.2f} baseline, QEMU RSS {rss:.0f} MiB")
            if median >= 2 * baseline:
                stop = f"the median doubled at {count} guests"
                break
            count *= 2
        else:
            stop = f"reached --max {args.max}"
    finally:
        lxd.instances.delete(host)
        lxd.profiles.delete(host)
    write(rows, baseline, baseline_times, stop, lxd.server.facts().version, pool.name)


def write(rows, baseline, baseline_times, stop, lxd_version, pool) -> None:
    table = ["| guests started together | median start → marker | slowest | × baseline | QEMU RSS (median) |",
             "| --- | --- | --- | --- | --- |"]
    for count, times, rss in rows:
        median = statistics.median(times)
        table.append(f"| {count} | {median:.2f} s | {max(times):.2f} s | {median / baseline:.2f} | {rss:.0f} MiB |")
    text = f"""# Tiny guest benchmarks

Written by `python3 benchmarks/tiny_guest.py`; rerun it to measure your machine (hold
`/tmp/lxd-tests.lock` when others use the same LXD).

Inside one lab host (baked KVM-host image), each guest is lxdkvm's tiny guest under TCG: 1 vCPU,
{MEMORY_MIB} MiB, one virtio NIC on an in-host bridge with a static address. Time runs from just before
the guest's `virsh start` to the agent's `wait-boot` seeing its boot marker (polled every 0.2 s): QEMU
start, kernel, modules, addresses. Guests of a row are started back to back (`virsh start`
returns once QEMU runs); a start that hits libvirt's cgroup v1 race in an unprivileged host ("Failed
to create v1 controller cpuset for group") is retried and timed from its successful attempt.

{machine_lines(lxd_version, f"host pool {pool}")}

Baseline, one guest alone: **{baseline:.2f} s** (median of {len(baseline_times)}:
{", ".join(f"{t:.2f}" for t in baseline_times)}).

{chr(10).join(table)}

Stopped: {stop}. TCG runs each vCPU on a host thread, so guests booting together share the
machine's cores: up to the core count the time barely moves, past it it grows with the count. QEMU's
resident memory includes the guest's RAM it touched, TCG's translation cache and its shared libraries.
"""
    OUT.write_text(text)
    print(text)
    print(json.dumps({"baseline": baseline, "rows": [(c, statistics.median(t)) for c, t, _ in rows]}))


if __name__ == "__main__":
    main()
