"""The JSON documents the commands print with `--json` (`graph -f json`), as pure functions of plain data.

Each command prints exactly one document on stdout, and each document has `ok`: true exactly when the
command exits 0 (docs/json.md). A command that could not do its work prints the `error` document
instead: what went wrong, and for a lab file that does not pass every problem with its file, line and key.
`schemas/<command>.schema.json` describes each (tests/unit/test_json_documents.py validates these functions'
output against them, tests/integration/test_json.py the real commands'). `inventory --format json` is not
one of these: it is Ansible's inventory-script format (`outputs.inventory.to_json`).

Strings in a document may come from hosts and guests; `json.dumps` (ASCII only) escapes every control and
non-ASCII character, so a document is safe to print; programs reading it still treat them as untrusted.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..doctor import Check as DoctorCheck
    from ..kvmprobe import ProbeResult
    from ..lab.plan import Plan
    from ..lab.status import LabStatus
    from ..lab.verify import Check as VerifyCheck
    from ..labfile.topology import LabInvalid
    from .graph import Graph

# what went wrong → the exit status it ends with (docs/json.md: the table of exit statuses)
ERROR_KINDS = {"invalid": 2, "usage": 2, "failed": 1, "interrupted": 130, "internal": 1}


def status(found: LabStatus) -> dict:
    """`status --json`: the lab as the daemon has it (`LabStatus.as_json`); a lab that is not up is an
    answer too (`exists: false`), so ok."""
    return {"ok": True, **found.as_json()}


def plan(the_plan: Plan) -> dict:
    """`plan --json`: what `up` would do and why; not ok when objects that are not the lab's are in the
    way."""
    out = {"ok": not the_plan.conflicts, "lab": the_plan.lab, "project": the_plan.project,
           "empty": the_plan.empty, "actions": [dataclasses.asdict(a) for a in the_plan.actions],
           "conflicts": list(the_plan.conflicts)}
    return {**out, "warnings": list(the_plan.warnings)} if the_plan.warnings else out


def verify(lab: str, checks: list[VerifyCheck]) -> dict:
    """`verify --json`: every check with its evidence, the count per result; not ok on any FAIL."""
    from ..lab.verify import summary

    counts = summary(checks)
    return {"ok": counts["FAIL"] == 0, "lab": lab, "summary": counts, "checks": [c.as_dict() for c in checks]}


def doctor(checks: list[DoctorCheck]) -> dict:
    """`doctor --json`: one row per check; ok when a lab can run here (warnings allowed)."""
    from ..doctor import verdict

    return {"ok": verdict(checks), "checks": [dataclasses.asdict(c) for c in checks]}


def probe_kvm(result: ProbeResult) -> dict:
    """`probe-kvm --json`: the probe's result as `kvmprobe --json` prints it inside a host."""
    return dataclasses.asdict(result)


def migrate(result: dict) -> dict:
    """`migrate --json`: what `guests.migration.migrate` measured and checked; ok when the guest kept
    running (same boot id; without lxdkvm's agent, running) and its address answers (when it has one)."""
    from ..guests.migration import succeeded

    return {"ok": succeeded(result), **result}


def graph(drawn: Graph) -> dict:
    """`graph -f json`: the graph model (`outputs.graph`): networks, hosts with their guests, one edge per
    NIC; `status` is what a host's colour says ("" when not live)."""
    hosts = [{**dataclasses.asdict(h), "status": h.status,
              "guests": [{**dataclasses.asdict(g), "notes": list(g.notes)} for g in h.guests]}
             for h in drawn.hosts]
    return {"ok": True, "lab": drawn.lab, "live": drawn.live, "note": drawn.note,
            "networks": [dataclasses.asdict(n) for n in drawn.networks], "hosts": hosts,
            "edges": [dataclasses.asdict(e) for e in drawn.edges], "warnings": list(drawn.warnings)}


def sandbox_status(state: dict) -> dict:
    """`cluster sandbox status --json`: the sandbox cluster's members as `cluster.sandbox.status` sees
    them."""
    return {"ok": True, **state}


def error(kind: str, message: str) -> dict:
    """What a command prints instead of its document when it could not do its work. KIND: a key of
    ERROR_KINDS."""
    if kind not in ERROR_KINDS:
        raise ValueError(f"unknown error kind {kind!r}")
    return {"ok": False, "error": {"kind": kind, "message": message}}


def invalid(exc: LabInvalid) -> dict:
    """The error document for a lab file that does not pass: every problem, with its file, line and key."""
    doc = error("invalid", f"{exc.source}: {len(exc.problems)} problem(s), nothing was changed")
    doc["error"]["problems"] = [{"file": exc.source, "line": p.line, "key": p.path, "message": p.message,
                                 "hint": p.hint} for p in exc.problems]
    return doc


def snapshot(summary: dict) -> dict:
    """`snapshot create --json`: the snapshot taken (`snapshots.record.Snapshot.summary`)."""
    return {"ok": True, **summary}


def snapshots(summaries: list[dict]) -> dict:
    """`snapshot list --json`: the lab's snapshots, oldest first."""
    return {"ok": True, "snapshots": summaries}


def restored(lab: str, summary: dict, seconds: float, differences: list[str], deleted: list[str]) -> dict:
    """`restore --json`: the snapshot restored, how long it took, what differed from the lab file in force
    and the hosts made since that were deleted."""
    return {"ok": True, **summary, "lab": lab, "seconds": round(seconds, 3), "differences": differences,
            "deleted": deleted}


def impair(in_force: dict) -> dict:
    """`impair --json`: the impaired links of one network after the command (`lab.links.Impaired.as_json`)."""
    return {"ok": True, **in_force}
