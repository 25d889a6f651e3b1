#!/usr/bin/env python3
"""libvirt between lab hosts over TLS (what lxdkvm uses) against libvirt over SSH, measured in one lab.

Issue 19 asked to choose by measurement between TLS with a per-lab CA and libvirt over SSH with per-lab
keys. Over SSH only libvirt's own connection is authenticated: QEMU's migration stream and its NBD disk
copy are connections of their own, and libvirt carries them over the SSH channel only when it tunnels
them through libvirtd (`--p2p --tunnelled`). So the two are compared as a user would run them:

- tls: what `lxdkvm migrate` runs (`--tls`: libvirt, QEMU's stream and the disk copy, each over TLS);
- ssh: `virsh migrate --p2p --tunnelled … qemu+ssh://HOST/system`, with a key pair made for this lab.

One lab (up and down with lxdkvm): two hosts on an isolated network, a 256 MiB tiny guest with no disk
and one with a 256 MiB disk. The memory-only guest moves back and forth ROUNDS times per transport,
the transports in turns; then each transport is asked to move the guest with a disk (its disk copied).
For this measurement only, the hosts' libvirt lets a migration go without TLS (`migrate_tls_force = 0`,
or libvirt refuses the tunnelled one) and the hosts trust each other's SSH key; the lab is deleted at the
end. Writes docs/transport-benchmarks.md.

Run as root from the repository:
    python3 benchmarks/transport.py [--rounds 4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from measure import machine_lines, migration_lab

from lxdkvm.guests import domain, migration
from lxdkvm.lab import pipeline as lab_mod
from lxdkvm.lxd.session import Session

SESSION = Session()  # the benchmark's one session with the daemon
NAME, PROJECT = "bench-transport", "lxdkvm-bench-transport"
OUT = Path(__file__).resolve().parent.parent / "docs" / "transport-benchmarks.md"
BASE = "10.253"
LAB = migration_lab(NAME, "tr", BASE)
ADDRESS = {"tr-1": f"{BASE}.20.11", "tr-2": f"{BASE}.20.12"}  # as LAB gives them
KEY = "/root/.ssh/bench_transport"


def sh(host: str, script: str, timeout: float = 600) -> tuple[int, str]:
    result = SESSION.lab(PROJECT).instances.execute(host, ["sh", "-c", script], timeout=timeout)
    return result.exit_code, (result.stdout + result.stderr).strip()


def must(host: str, script: str) -> str:
    code, output = sh(host, script)
    if code != 0:
        raise SystemExit(f"{host}: `{script}` failed: {output}")
    return output


def command(transport: str, guest: str, target: str, disk: bool) -> str:
    address, copy = ADDRESS[target], "--copy-storage-all " if disk else ""
    if transport == "tls":  # what `lxdkvm migrate` runs
        return migration.migrate_command(guest, address, copy_storage="all" if disk else None)
    # "ssh+nbd": the disk's NBD copy on a TCP connection of its own, outside the tunnel (and unauthenticated)
    nbd = f"--listen-address {address} " if transport == "ssh+nbd" else ""
    # the same downtime budget and auto-converge as lxdkvm's own command, so only the transport differs
    return (f"{migration.budget_command(guest)} && "
            f"virsh migrate --live --auto-converge {copy}{nbd}--p2p --tunnelled --persistent --undefinesource {guest} "
            f"'qemu+ssh://root@{address}/system?keyfile={KEY}&no_tty=1'")


def prepare() -> None:
    """Each host trusts the other's key for root, and lets libvirt migrate without TLS."""
    public = {}
    for host in ADDRESS:
        must(host, f"mkdir -p -m 0700 /root/.ssh && rm -f {KEY} {KEY}.pub && ssh-keygen -q -t ed25519 -N '' -f {KEY}")
        public[host] = must(host, f"cat {KEY}.pub")
    for host in ADDRESS:
        other = next(h for h in ADDRESS if h != host)
        must(other, f"echo '{public[host]}' >> /root/.ssh/authorized_keys")
        must(host, f"ssh-keyscan -t ed25519 {ADDRESS[other]} 2>/dev/null >> /root/.ssh/known_hosts")
        must(host, "sed -i 's/^migrate_tls_force = 1/migrate_tls_force = 0/' /etc/libvirt/qemu.conf && "
                   "systemctl restart libvirtd")
    time.sleep(2)


def move(transport: str, guest: str, source: str, target: str, disk: bool = False) -> dict:
    start = time.monotonic()
    code, output = sh(source, command(transport, guest, target, disk))
    seconds = time.monotonic() - start
    if code != 0:  # what virsh said, and what the two libvirt daemons logged about it
        logs = {h: sh(h, "journalctl -u libvirtd --since -1min -o cat --no-pager | grep -i error | tail -n 3")[1]
                for h in (source, target)}
        return {"ok": False, "error": output.splitlines()[-1] if output else f"exit {code}", "seconds": seconds,
                "logs": logs}
    job = migration.jobinfo(must(target, f"virsh domjobinfo {guest} --completed"))
    return {"ok": True, "seconds": seconds, "libvirt_ms": job.get("Time elapsed", 0.0),
            "downtime_ms": job.get("Total downtime", 0.0)}


def measure(rounds: int) -> dict:
    runs: dict = {"tls": [], "ssh": []}
    where = "tr-1"
    for round_ in range(rounds):
        for transport in ("tls", "ssh"):
            for _ in range(2):  # there and back
                target = "tr-2" if where == "tr-1" else "tr-1"
                moved = move(transport, "mem-only", where, target)
                if not moved["ok"]:
                    raise SystemExit(f"{transport} move failed: {moved['error']}")
                where = target
                runs[transport].append(moved)
                print(f"round {round_ + 1} {transport}: {moved['seconds']:.2f} s, libvirt {moved['libvirt_ms']:.0f} ms, "
                      f"downtime {moved['downtime_ms']:.0f} ms", flush=True)
    disk = {}
    for transport in ("ssh", "ssh+nbd", "tls"):  # tls last: a refused move leaves the guest where it was
        source = "tr-1" if sh("tr-1", "virsh -q domstate with-disk")[1] == "running" else "tr-2"
        target = "tr-2" if source == "tr-1" else "tr-1"
        # the destination needs an image of the same size at the same path (what `lxdkvm migrate` makes)
        image = domain.paths("with-disk").disk
        must(target, f"mkdir -p {Path(image).parent} && rm -f {image} && qemu-img create -q -f qcow2 {image} 256M")
        disk[transport] = move(transport, "with-disk", source, target, disk=True)
        print(f"disk over {transport}: {disk[transport]}", flush=True)
    return {"memory": runs, "disk": disk}


def report(results: dict, rounds: int) -> str:
    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    tls, ssh = results["memory"]["tls"], results["memory"]["ssh"]
    rows = []
    for title, key, unit, digits in (("virsh migrate, whole", "seconds", "s", 2),
                                     ("libvirt time", "libvirt_ms", "ms", 0), ("downtime", "downtime_ms", "ms", 0)):
        a, b = med(tls, key), med(ssh, key)
        rows.append(f"| {title} (median of {len(tls)}) | {a:.{digits}f} {unit} | {b:.{digits}f} {unit} | {b / a:.2f}× |")

    def disk_cell(moved):
        if moved["ok"]:
            return f"moved in {moved['seconds']:.2f} s (downtime {moved['downtime_ms']:.0f} ms)"
        return f"refused: `{moved['error'][:160]}`"

    info = SESSION.server.facts()
    return f"""# libvirt between hosts: TLS or SSH, measured

Written by `python3 benchmarks/transport.py`; the numbers below are what it printed last.

Two lab hosts on an isolated network, a 256 MiB tiny guest (TCG) moved back and forth {rounds} times
per transport, in turns. *tls*: what `lxdkvm migrate` runs (`virsh migrate --tls`: libvirt's connection,
QEMU's migration stream and its disk copy each over TLS with the lab CA's certificates, both ends
checked). *ssh*: libvirt over SSH with a key pair per host (`qemu+ssh://`), QEMU's stream tunnelled
through libvirtd (`--p2p --tunnelled`), the only way its bytes ride the authenticated channel. Times are
`virsh migrate`'s wall time in the source host and libvirt's completed-job statistics.

{machine_lines(info.version, "host pool lxdkvm-cow")}

| memory-only guest | tls | ssh | ssh / tls |
| --- | --- | --- | --- |
{chr(10).join(rows)}

A guest with a 256 MiB disk (`--copy-storage-all`):

- tls: {disk_cell(results['disk']['tls'])};
- ssh, tunnelled: {disk_cell(results['disk']['ssh'])};
- ssh, tunnelled, the disk's NBD copy on its own connection (`--listen-address`, outside SSH):
  {disk_cell(results['disk']['ssh+nbd'])}.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        lab_file = Path(folder) / "lab.yaml"
        lab_file.write_text(LAB)
        try:
            lab_mod.up(SESSION, lab_file, lambda *_: None)
            prepare()
            results = measure(args.rounds)
        finally:
            lab_mod.down(SESSION, NAME, lambda *_: None)
    text = report(results, args.rounds)
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
