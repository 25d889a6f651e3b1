"""`lxdkvm verify`: prove a running lab is what it claims, one check per row with its evidence.

Per host: unprivileged (uid_map), /dev/kvm owner and mode, the KVM probe passes as libvirt's qemu user and
is refused for another user, libvirtd answers, virt-host-validate's summary. Per network: every host
reaches every other host on it, and no host outside an isolated network reaches it. Per guest: booted
(boot marker), its addresses, reachable from its host, and reaching a guest on another host over each
network it shares with one. Everything is observed from inside the hosts, over LXD exec.

Evidence is often what a host printed: it is kept short (`EVIDENCE_MAX`) and shown by the CLI with its
control characters escaped; what the lab's status left out as invalid is one WARN check each.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..guests import agent, domain, ops
from ..hosts import readiness
from ..labfile import topology as t
from ..lxd.batch import run_batch

if TYPE_CHECKING:
    from ..lxd.instances import Instances
    from .status import GuestStatus, LabStatus

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
EVIDENCE_MAX = 2000  # characters of a host's output kept as evidence (its end, where the verdict is)
CHECKS_AT_ONCE = 4  # hosts, or guests, checked at the same time by each kind of check


@dataclass(frozen=True)
class Check:
    scope: str  # "host kvm-1", "network data", "guest vm-1"
    name: str
    result: str  # PASS | WARN | FAIL
    evidence: str

    def as_dict(self) -> dict:
        return asdict(self)


def _run(client: Instances, host: str, command: list[str], timeout: float = 120) -> tuple[int, str]:
    result = client.execute(host, command, timeout=timeout)
    return result.exit_code, (result.stdout + result.stderr).strip()[-EVIDENCE_MAX:]


def _sh(client: Instances, host: str, script: str, timeout: float = 120) -> tuple[int, str]:
    return _run(client, host, ["sh", "-c", script], timeout)


def host_checks(client: Instances, host: str) -> list[Check]:
    """Every check of HOST, read in one exec."""
    found = run_batch(client, host, {
        "uid_map": "cat /proc/self/uid_map",
        "kvm": "stat -c '%U:%G %a' /dev/kvm",
        "probe": shlex.join(readiness.probe_command(readiness.QEMU_USER)),
        "refused": shlex.join(readiness.probe_command("nobody")),
        "libvirtd": "systemctl is-active libvirtd.service && virsh -q version --daemon | grep -i 'running hypervisor'",
        "validate": "virt-host-validate qemu",
    }, timeout=300)
    return host_verdicts(host, {name: (code, text.strip()[-EVIDENCE_MAX:]) for name, (code, text) in found.items()})


def host_verdicts(host: str, found: dict[str, tuple[int, str]]) -> list[Check]:
    """The checks of HOST from what it answered (FOUND: name → (exit code, output), `host_checks`)."""
    scope, out = f"host {host}", []
    fields = found["uid_map"][1].split()
    unprivileged = len(fields) >= 3 and fields[0] == "0" and fields[1] != "0"
    out.append(Check(scope, "unprivileged", PASS if unprivileged else FAIL, f"uid_map: {' '.join(fields[:3])}"))
    kvm = found["kvm"][1]
    out.append(Check(scope, "/dev/kvm root:kvm 0660", PASS if kvm == "root:kvm 660" else FAIL, kvm))
    code, probe = found["probe"]
    out.append(Check(scope, f"KVM probe as {readiness.QEMU_USER}", PASS if code == 0 else FAIL, probe))
    code, refused = found["refused"]
    ok = code not in (0, -1) and "EACCES" in refused
    out.append(Check(scope, "KVM refused for nobody", PASS if ok else FAIL, refused.splitlines()[-1:][0]
                     if refused else f"exit {code}"))
    code, version = found["libvirtd"]
    out.append(Check(scope, "libvirtd active", PASS if code == 0 else FAIL, " ".join(version.split())))
    validate = found["validate"][1]
    found_rows = [(m.group(1).strip(), m.group(2)) for m in
                  re.finditer(r"^\s*QEMU: Checking (.*?)\s+: (PASS|WARN|FAIL)", validate, re.MULTILINE)]
    counts = {word: sum(1 for _what, r in found_rows if r == word) for word in (PASS, WARN, FAIL)}
    failing = [what for what, r in found_rows if r == FAIL]
    # no hardware virtualization is this machine kind's normal case (guests use TCG): a warning, not a failure
    result = FAIL if not found_rows or any("hardware virtualization" not in f for f in failing) else \
        (WARN if failing else PASS)
    evidence = f"{counts[PASS]} PASS, {counts[WARN]} WARN, {counts[FAIL]} FAIL" + \
        (f"; FAIL: {'; '.join(failing)}" + (" (guests use TCG)" if result == WARN else "") if failing else "")
    out.append(Check(scope, "virt-host-validate qemu", result, evidence))
    return out


def _ping_script(targets: list[str]) -> str:
    """One shell line that pings every target at once and says which answered."""
    quoted = [shlex.quote(a) for a in targets]
    return " ".join(f"(ping -c 2 -W 1 -i 0.2 {a} >/dev/null 2>&1 && echo {a} ok || echo {a} no) &"
                    for a in quoted) + " wait"


def _ping_answers(output: str, targets: list[str]) -> dict[str, bool]:
    answered = {line.split()[0]: line.split()[1] == "ok" for line in output.splitlines() if len(line.split()) == 2}
    return {a: answered.get(a, False) for a in targets}


def _pings(client: Instances, host: str, targets: list[str]) -> dict[str, bool]:
    """Ping every target from HOST at once (one exec); target → answered."""
    if not targets:
        return {}
    _, output = _sh(client, host, _ping_script(targets))
    return _ping_answers(output, targets)


def network_checks(client: Instances, lab: t.Lab, addresses: dict[str, dict[str, list[str]]],
                   running: set[str]) -> list[Check]:
    """ADDRESSES: host → network → ["ADDR/PFX"] as the lab's status reports them."""
    jobs: dict[str, list[str]] = {}
    plan: list[tuple[str, str, str, str, bool]] = []  # (network, from, to, address, should reach)
    for net in lab.networks:
        on = [h.name for h in lab.hosts if h.name in running and any(a.network == net.name for a in h.attachments)]
        for src in on:
            for dst in on:
                for address in addresses.get(dst, {}).get(net.name, []) if src != dst else []:
                    plan.append((net.name, src, dst, address.split("/")[0], True))
        if net.mode == "isolated":
            for src in (h.name for h in lab.hosts if h.name in running and h.name not in on):
                for dst in on:
                    for address in addresses.get(dst, {}).get(net.name, []):
                        plan.append((net.name, src, dst, address.split("/")[0], False))
    for _net, src, _dst, address, _should in plan:
        jobs.setdefault(src, []).append(address)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = dict(zip(jobs, pool.map(lambda h: _pings(client, h, sorted(set(jobs[h]))), jobs)))
    out = []
    for net in lab.networks:
        rows = [p for p in plan if p[0] == net.name]
        reach = [f"{s}→{d}" for _n, s, d, a, should in rows if should and answers[s][a]]
        missing = [f"{s}→{d} ({a})" for _n, s, d, a, should in rows if should and not answers[s][a]]
        leaks = [f"{s}→{d} ({a})" for _n, s, d, a, should in rows if not should and answers[s][a]]
        if any(should for *_x, should in rows):
            out.append(Check(f"network {net.name}", "hosts reach each other", FAIL if missing else PASS,
                             f"missing: {', '.join(missing)}" if missing else f"{len(reach)} pairs: "
                             f"{', '.join(reach)}"))
        if any(not should for *_x, should in rows):
            out.append(Check(f"network {net.name}", "isolated from hosts not on it", FAIL if leaks else PASS,
                             f"reached: {', '.join(leaks)}" if leaks else
                             f"{sum(1 for *_x, s in rows if not s)} probes from outside, none answered"))
    return out


def guest_checks(client: Instances, lab: t.Lab, guests: list[GuestStatus]) -> list[Check]:
    """GUESTS: as the lab's status has them (name, host, state, booted, boot id, addresses per network).
    Each guest's checks run at once with the others'."""
    declared = {g.name: g for g in lab.guests}
    with ThreadPoolExecutor(max_workers=CHECKS_AT_ONCE) as pool:
        each = list(pool.map(lambda row: _one_guest(client, declared.get(row.name), row), guests))
        across = list(pool.map(lambda row: _across_hosts(client, row, guests), guests))
        isolated = _guest_isolation(client, lab, guests, pool)
    return [c for found in each for c in found] + [c for found in across for c in found] + isolated


def _one_guest(client: Instances, guest: t.Guest | None, row: GuestStatus) -> list[Check]:
    """Booted, its addresses as declared, reachable from its host and filtered (one exec for both)."""
    scope, out = f"guest {row.name}", []
    evidence = (f"running on {row.host} (imported image {row.image}: no boot marker)" if row.image
                else f"boot id {row.boot_id} on {row.host}")
    out.append(Check(scope, "booted", PASS if row.booted else FAIL, evidence if row.booted else f"state {row.state}"))
    wanted = {a.network: a.ipv4 for a in guest.attachments} if guest else {}
    have = row.addresses
    wrong = [f"{net}: {have.get(net) or 'none'} (lab file: {ip or 'DHCP'})" for net, ip in wanted.items()
             if not have.get(net) or (ip and not any(a.split("/")[0] == str(ip) for a in have[net]))]
    out.append(Check(scope, "addresses", FAIL if wrong else PASS,
                     "; ".join(wrong) if wrong else ", ".join(f"{n} {', '.join(a)}" for n, a in have.items())))
    every = [a.split("/")[0] for found in have.values() for a in found]
    commands = {"filter": _filter_script(row.name)}
    if every:
        commands["ping"] = _ping_script(every)
    found = run_batch(client, row.host, commands)
    if every:
        answered = _ping_answers(found["ping"][1], every)
        silent = [a for a in every if not answered[a]]
        out.append(Check(scope, f"reachable from {row.host}", FAIL if silent else PASS,
                         f"no answer from {', '.join(silent)}" if silent else f"ping {', '.join(every)}"))
    out.append(_filtered(row, found["filter"][1]))
    return out


def _filter_script(guest: str) -> str:
    name = shlex.quote(guest)
    return (f"n=$(virsh -q dumpxml {name} | grep -c \"<filterref filter='{domain.GUEST_FILTER}'\"); "
            f"for tap in $(virsh -q domiflist {name} | awk '{{print $1}}'); do "
            "rules=$(ebtables -t nat -L libvirt-I-$tap 2>/dev/null); "
            "echo \"$rules\" | grep -q -- '^-s ! ' && echo \"$rules\" | grep -q -- '--ip-sport 67 -j DROP' "
            "&& echo $tap filtered || echo $tap open; done; echo refs $n")


def _filtered(row: GuestStatus, output: str) -> Check:
    """Every NIC of the guest names lxdkvm's guest filter and its host has the filter's rules on the NIC's
    tap (the drop of frames from another MAC, the drop of a DHCP server's answers): frames only from the
    guest's own MAC and address, no DHCP server (docs/security.md). OUTPUT: what `_filter_script` printed."""
    taps = [line.split() for line in output.splitlines() if line.endswith((" filtered", " open"))]
    refs = next((line.split()[1] for line in output.splitlines() if line.startswith("refs ")), "0")
    ok = bool(taps) and all(state == "filtered" for _tap, state in taps) and refs == str(len(taps))
    evidence = ", ".join(f"{tap} {state}" for tap, state in taps) + f"; {refs} NIC(s) name {domain.GUEST_FILTER}"
    return Check(f"guest {row.name}", "sends only as itself", PASS if ok else FAIL, evidence[:EVIDENCE_MAX])


def _guest_isolation(client: Instances, lab: t.Lab, guests: list[GuestStatus], pool: ThreadPoolExecutor) -> list[Check]:
    """A guest that is not on an isolated network does not reach a guest on it (pinged from inside, every
    outsider at once)."""
    out, booted = [], [g for g in guests if g.booted and not g.image]
    for net in (n for n in lab.networks if n.mode == "isolated"):
        target = next((g for g in booted if g.addresses.get(net.name)), None)
        outsiders = [g for g in booted if not g.addresses.get(net.name)]
        if target is None or not outsiders:
            continue
        address = target.addresses[net.name][0].split("/")[0]
        ping = ["ping", "-c", "1", "-W", "2", address]
        codes = pool.map(lambda g, ping=ping: ops.guest_exec(client, ops.Located(g.name, g.host, {}), ping,
                                                            timeout=30)[2],
                         outsiders)
        reached = [source.name for source, code in zip(outsiders, codes) if code == 0]
        out.append(Check(f"network {net.name}", "isolated from guests not on it", FAIL if reached else PASS,
                         f"reached {target.name} ({address}): {', '.join(reached)}" if reached else
                         f"{len(outsiders)} guest(s) not on it pinged {target.name} ({address}), none answered"))
    return out


def _across_hosts(client: Instances, source: GuestStatus, guests: list[GuestStatus]) -> list[Check]:
    """Booted guest SOURCE pings a guest on another host over each network they share (from inside)."""
    out, booted = [], [g for g in guests if g.booted]
    if not source.booted:
        return out
    for net in source.addresses:
        peer = next((g for g in booted if g.host != source.host and g.addresses.get(net)), None)
        if peer is None:
            continue
        address = peer.addresses[net][0].split("/")[0]
        where = ops.Located(source.name, source.host, {})
        output, err, code = ops.guest_exec(client, where, ["ping", "-c", "2", "-W", "2", address], timeout=30)
        summary = next((line for line in output.splitlines() if "packets transmitted" in line), output[-120:])
        summary, err = summary[-200:], err[-EVIDENCE_MAX:]
        check = f"reaches {peer.name} on {peer.host} over {net}"
        if source.image and code in (agent.TIMED_OUT, agent.UNREACHABLE):  # nothing to run it with
            out.append(Check(f"guest {source.name}", check, WARN, f"not checked from inside: image "
                             f"{source.image} has no lxdkvm agent on its second serial port ({err.strip()})"))
            continue
        out.append(Check(f"guest {source.name}", check, PASS if code == 0 else FAIL, summary.strip()))
    return out


def verify(lxd, lab: t.Lab, status: LabStatus, report: Callable[[str], None] = lambda _m: None) -> list[Check]:
    """Every check of the lab (LXD: its `LabScope`) as STATUS finds it."""
    client = lxd.instances
    hosts = [h for h in status.hosts if h.running]
    checks = [Check("lab", "what hosts report", WARN, warning) for warning in status.warnings]
    missing = sorted({h.name for h in lab.hosts} - {h.name for h in hosts})
    for name in missing:
        checks.append(Check(f"host {name}", "running", FAIL, "not running (or not created): `lxdkvm up`"))
    guests = [g for h in hosts for g in h.guests]
    for name in sorted({g.name for g in lab.guests} - {g.name for g in guests}):
        checks.append(Check(f"guest {name}", "defined", FAIL, "not found in any running host: `lxdkvm up`"))
    report(f"checking {len(hosts)} hosts, their networks and {len(guests)} guests, all at once")
    with ThreadPoolExecutor(max_workers=3) as pool:  # each of the three runs its own checks in parallel
        networks = pool.submit(network_checks, client, lab, {h.name: h.addresses for h in hosts},
                               {h.name for h in hosts})
        in_guests = pool.submit(guest_checks, client, lab, guests) if guests else None
        with ThreadPoolExecutor(max_workers=CHECKS_AT_ONCE) as host_pool:
            for found in host_pool.map(lambda h: host_checks(client, h.name), hosts):
                checks += found
        checks += networks.result()
        checks += in_guests.result() if in_guests else []
    return checks


def summary(checks: list[Check]) -> dict[str, int]:
    return {word: sum(1 for c in checks if c.result == word) for word in (PASS, WARN, FAIL)}
