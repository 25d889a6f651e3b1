"""Impaired links, planned: which nftables rules and which qdiscs make each host's link on a lab network
lossy, slow or late. Pure: links in, an nft script and `tc` argument lists out; and the other way, the
table's JSON (`nft -j list table`) back to the impairments in force. `machine.impair` runs them,
`lab.links` finds each link's veth.

A lab's impairments live in one nftables table of the `bridge` family, `bridge lxdkvm-<lab>` (beside its
fence, `inet lxdkvm-<lab>`), removed by `down`. For each impaired link it holds one rule, matched on the
machine's end of the host's veth as the frame leaves the bridge towards the host; its comment records the
whole impairment (so `status` reads back what is in force from the kernel itself, not from a file):
- loss: `numgen random mod 10000 < BASIS_POINTS drop` (nftables' random numbers, no netem needed);
- rate: a token bucket (`tbf`) as the veth's root qdisc (the veth's egress is the host's ingress);
- delay (and jitter, and then the rate too): `netem` as the root qdisc, where the kernel has it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ..labfile.impairment import Impairment

TABLE_PREFIX = "lxdkvm-"
IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
# A rule's comment (nftables keeps at most 128 bytes): network, host, loss (basis points), rate (bit/s),
# delay and jitter (us).
COMMENT = re.compile(r"^impair (?P<network>[a-z0-9][a-z0-9-]{0,14}) (?P<host>[A-Za-z0-9][A-Za-z0-9-]{0,62}) "
                     r"(?P<l>[0-9]{1,5}) (?P<r>[0-9]{1,12}) (?P<d>[0-9]{1,8}) (?P<j>[0-9]{1,8})$")
QUEUE_SECONDS = 0.2  # of a token bucket: how much traffic waits (at the rate) before more is dropped


@dataclass(frozen=True)
class Entry:
    """An impairment in force (or wanted) on HOST's link on NETWORK; DEVICE: the machine's end of its veth."""
    network: str
    host: str
    impairment: Impairment
    device: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.network, self.host

    def as_json(self) -> dict:
        return {"network": self.network, "host": self.host, **self.impairment.as_json()}

    @classmethod
    def from_json(cls, data: dict) -> Entry:
        """An entry of a saved status (`as_json`), checked as `read_table` checks a rule (TypeError if not)."""
        numbers = [data.get(k, 0) for k in ("loss_percent", "rate_bit_per_s", "delay_ms", "jitter_ms")]
        if not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers):
            raise TypeError("an impairment's values are not numbers")
        loss, rate, delay, jitter = numbers
        text = (f"impair {data['network']} {data['host']} {round(loss * 100)} {round(rate)} "
                f"{round(delay * 1000)} {round(jitter * 1000)}")
        found = COMMENT.match(text)
        if found is None:
            raise TypeError("not an impaired link")
        return cls(found["network"], found["host"], Impairment(int(found["l"]), int(found["r"]), int(found["d"]),
                                                               int(found["j"])))


def table_name(lab: str) -> str:
    return TABLE_PREFIX + lab


def comment(entry: Entry) -> str:
    i = entry.impairment
    return f"impair {entry.network} {entry.host} {i.loss_bp} {i.rate_bit} {i.delay_us} {i.jitter_us}"


def script(lab: str, entries: list[Entry]) -> str:
    """The nft script that puts LAB's impairment table in place of the one there (in one transaction);
    with no ENTRIES, that removes it."""
    name = table_name(lab)
    head = f"table bridge {name} {{}}\ndelete table bridge {name}\n"
    if not entries:
        return head
    rules = []
    for entry in sorted(entries, key=lambda e: e.key):
        if not IFNAME.match(entry.device) or not COMMENT.match(comment(entry)):
            raise ValueError(f"not an impaired link lxdkvm writes: {entry.device!r}, {comment(entry)!r}")
        drop = (f"numgen random mod 10000 < {entry.impairment.loss_bp} counter drop"
                if entry.impairment.loss_bp else "counter")
        rules.append(f'    oifname "{entry.device}" {drop} comment "{comment(entry)}"')
    return head + "\n".join([
        f"table bridge {name} {{", f'  comment "lxdkvm lab {lab} impairments"',
        "  chain links {", *rules, "  }",
        # frames between hosts cross the bridge (forward); frames from the machine itself leave it (output)
        "  chain forward {", "    type filter hook forward priority -200; policy accept;", "    jump links",
        "  }",
        "  chain output {", "    type filter hook output priority -200; policy accept;", "    jump links", "  }",
        "}"]) + "\n"


def _bytes(value: float) -> str:
    return str(max(int(value), 1600))


def qdisc(entry: Entry) -> list[str] | None:
    """The `tc` arguments that give ENTRY's device its root qdisc, or None when it needs none (loss only)."""
    i, device = entry.impairment, entry.device
    if i.delay_us:
        args = ["qdisc", "replace", "dev", device, "root", "netem", "delay", f"{i.delay_us}us"]
        args += [f"{i.jitter_us}us"] if i.jitter_us else []
        args += ["rate", f"{i.rate_bit}bit"] if i.rate_bit else []
        return args
    if i.rate_bit:
        per_second = i.rate_bit / 8
        # burst: 10 ms at the rate (a whole frame at least); limit: QUEUE_SECONDS of it waiting
        return ["qdisc", "replace", "dev", device, "root", "tbf", "rate", f"{i.rate_bit}bit",
                "burst", _bytes(per_second / 100), "limit", _bytes(max(per_second * QUEUE_SECONDS, 16384))]
    return None


def qdisc_changes(before: list[Entry], after: list[Entry]) -> list[list[str]]:
    """`tc` argument lists that take the devices from BEFORE to AFTER: a root qdisc set where one is
    wanted, removed where one was and no longer is."""
    wanted = {e.device: args for e in after if (args := qdisc(e)) is not None}
    had = {e.device for e in before if qdisc(e) is not None}
    return [*wanted.values(), *(["qdisc", "del", "dev", d, "root"] for d in sorted(had - set(wanted)))]


def merged(current: list[Entry], network: str, hosts: list[str], impairment: Impairment | None) -> list[Entry]:
    """CURRENT with HOSTS' links on NETWORK impaired by IMPAIRMENT (None: cleared). Devices are left
    as they were: `lab.links` finds them again before anything is applied."""
    out = {e.key: e for e in current}
    for host in hosts:
        if impairment is None:
            out.pop((network, host), None)
        else:
            out[(network, host)] = Entry(network, host, impairment)
    return sorted(out.values(), key=lambda e: e.key)


def read_table(text: str) -> list[Entry]:
    """The entries of an impairment table from `nft -j list table bridge …`: its rules' comments (anything
    else in it is ignored; a comment lxdkvm did not write is left out)."""
    found = []
    for item in json.loads(text).get("nftables", []):
        rule = item.get("rule") if isinstance(item, dict) else None
        if not isinstance(rule, dict) or rule.get("chain") != "links":
            continue
        match = COMMENT.match(str(rule.get("comment", "")))
        device = next((x["match"]["right"] for x in rule.get("expr", []) if isinstance(x, dict)
                       and isinstance(x.get("match"), dict) and x["match"].get("left") == {"meta": {"key": "oifname"}}),
                      "")
        if match is None or not isinstance(device, str) or not IFNAME.match(device):
            continue
        impairment = Impairment(int(match["l"]), int(match["r"]), int(match["d"]), int(match["j"]))
        found.append(Entry(match["network"], match["host"], impairment, device))
    return sorted(found, key=lambda e: e.key)


def missing_kinds(entries: list[Entry], kernel: dict[str, bool]) -> list[str]:
    """What ENTRIES need that the kernel (`machine.impair.probe`) does not have."""
    return sorted({kind for e in entries for kind in e.impairment.kinds if not kernel.get(kind)})
