"""The JSON documents the commands print (`lxdkvm/outputs/documents.py`), built from plain data and
validated against schemas/*.schema.json; every command that prints JSON has a well-formed schema; a bad
lab file with --json is one error document with file, line and key; every exit status the CLI uses is in
docs/json.md's table. The real commands' output is validated in tests/integration/test_json.py."""

import ast
import json
import re
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from lxdkvm import doctor, kvmprobe, readback
from lxdkvm.cli import common
from lxdkvm.cli.app import main
from lxdkvm.lab.plan import Action, Plan
from lxdkvm.lab.status import LabStatus
from lxdkvm.lab.verify import Check
from lxdkvm.labfile import read
from lxdkvm.labfile.topology import LabInvalid
from lxdkvm.outputs import documents, graph, inventory

from .. import jsonschemas
from ..conftest import load_host
from .test_doctor import BTRFS_OK, PROBE_OK, SERVER
from .test_inventory import ACCESS, GROUPS
from .test_inventory import STATUS as HOSTS_ONLY

REPO = Path(__file__).parent.parent.parent
GUESTS_LAB = REPO / "tests" / "labs" / "valid" / "guests.yaml"
BAD_LAB = REPO / "tests" / "labs" / "invalid" / "05-unknown-host-key.yaml"
BOOT = "0b3c2f7e-8d21-4c1a-9f0e-5a6b7c8d9e0f"
STATUS = {  # as `lxdkvm status --json` prints it for tests/labs/valid/guests.yaml, vm-b moved to node-1
    "lab": "guests", "project": "lxdkvm-guests", "exists": True,
    "networks": [{"name": "mgmt", "bridge": "guests-mgmt", "subnet": "10.213.10.0/24", "gateway": "10.213.10.1/24"},
                 {"name": "data", "bridge": "guests-data", "subnet": "10.213.20.0/24", "gateway": "none"}],
    "hosts": [
        {"name": "node-1", "state": "Running", "ready": True,
         "addresses": {"mgmt": ["10.213.10.140/24"], "data": ["10.213.20.11/24"]},
         "guests": [{"name": "vm-a", "host": "node-1", "state": "running", "booted": True, "boot_id": BOOT,
                     "addresses": {"data": ["10.213.20.51/24"], "mgmt": ["10.213.10.160/24"]}},
                    {"name": "vm-b", "host": "node-1", "state": "running", "booted": True, "boot_id": BOOT,
                     "addresses": {"data": ["10.213.20.52/24"]}}]},
        {"name": "node-2", "state": "Stopped", "ready": False, "addresses": {}, "guests": []},
        {"name": "node-3", "state": "Running", "ready": True, "addresses": {"mgmt": ["10.213.10.141/24"]},
         "guests": []}],
}
MIGRATED = {  # as guests.migration.migrate returns it
    "guest": "vm-b", "from": "node-2", "to": "node-1", "over": "10.213.20.11", "live": True,
    "disk_copied": False, "seconds": 1.42, "libvirt_ms": 812.0, "downtime_ms": 21.0, "downtime_budget_ms": 50,
    "within_budget": True, "throttle_percent": 0.0, "iterations": 3.0, "memory_mib": 41.5, "disk_mib": 0.0,
    "job": {"Time elapsed": 812.0, "Total downtime": 21.0, "Iteration": 3.0, "Memory processed": 41.5},
    "boot_id_before": BOOT, "boot_id_after": BOOT, "same_boot": True, "running": True,
    "address": "10.213.20.52", "address_answers": True, "pings_sent": 7, "pings_lost": 0,
}


def assert_valid(name: str, document: dict) -> dict:
    document = json.loads(json.dumps(document))  # as printed: tuples become lists, keys strings
    assert jsonschemas.problems(name, document) == []
    return document


def assert_refused(name: str, document: dict, why: str) -> None:
    found = jsonschemas.problems(name, json.loads(json.dumps(document)))
    assert any(why in line for line in found), found


def guests_lab():
    lab, problems, _ = read.parse(GUESTS_LAB.read_text(), str(GUESTS_LAB))
    assert problems == []
    return lab


# ---------------------------------------------------------------------------------------- the schemas
def test_every_command_that_prints_json_has_a_schema_and_every_schema_a_command():
    commands = jsonschemas.json_commands(main)
    assert {"status", "plan", "verify", "doctor", "probe-kvm", "migrate", "graph", "inventory"} <= set(commands)
    assert set(commands) == set(jsonschemas.schemas()) - jsonschemas.NOT_OUTPUTS


def closed(schema: object, where: str = "") -> list[str]:
    """Where SCHEMA has an object with properties but says nothing of the others (drift would pass)."""
    if isinstance(schema, list):
        return [w for i, s in enumerate(schema) for w in closed(s, f"{where}[{i}]")]
    if not isinstance(schema, dict):
        return []
    here = [where] if "properties" in schema and "additionalProperties" not in schema else []
    return here + [w for k, v in schema.items() if k != "properties" for w in closed(v, f"{where}/{k}")] + \
        [w for k, v in schema.get("properties", {}).items() for w in closed(v, f"{where}/{k}")]


@pytest.mark.parametrize("name", sorted(jsonschemas.schemas()))
def test_each_schema_is_well_formed_and_closed(name):
    schema = jsonschemas.schemas()[name]
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://lxdkvm.invalid/schemas/{name}.schema.json"
    assert schema["title"] and closed(schema) == []
    path = jsonschemas.SCHEMAS / f"{name}.schema.json"
    assert path.read_text() == json.dumps(schema, indent=2, ensure_ascii=False) + "\n", \
        f"{path}: not as json.dumps(indent=2, ensure_ascii=False) writes it (as schemas/lab.schema.json is)"
    if name not in jsonschemas.NOT_OUTPUTS:  # a command may always print the error document instead
        assert {"$ref": "error.schema.json"} in schema["oneOf"]


def test_states_in_the_status_schema_are_the_ones_readback_lets_through():
    defs = jsonschemas.schemas()["status"]["$defs"]
    assert defs["host"]["properties"]["state"]["enum"] == [*readback.INSTANCE_STATES, readback.UNKNOWN]
    assert defs["guest"]["properties"]["state"]["enum"] == [*readback.GUEST_STATES, readback.UNKNOWN]


# ---------------------------------------------------------------------------------------- the documents
def test_status_with_guests_and_a_lab_that_is_not_up():
    doc = assert_valid("status", documents.status(LabStatus.from_json(STATUS)))
    assert doc["ok"] and [h["name"] for h in doc["hosts"]] == ["node-1", "node-2", "node-3"]
    assert [g["name"] for g in doc["hosts"][0]["guests"]] == ["vm-a", "vm-b"] and "warnings" not in doc
    down = assert_valid("status", documents.status(LabStatus("guests", "lxdkvm-guests", False)))
    assert down["ok"] and not down["exists"] and down["hosts"] == []
    assert_refused("status", {**doc, "hostz": []}, "Additional properties")
    hosts = [{**doc["hosts"][0], "state": "running"}]  # a guest's state where a host's belongs
    assert_refused("status", {**doc, "hosts": hosts}, "is not one of")


def test_a_status_that_left_values_out_says_so():
    lying = {**HOSTS_ONLY, "hosts": [{**HOSTS_ONLY["hosts"][0], "state": "\x1b[2Jpwned"}]}
    doc = assert_valid("status", documents.status(LabStatus.from_json(lying)))
    assert doc["hosts"][0]["state"] == "?" and doc["warnings"]


def test_plan_with_actions_conflicts_and_nothing_to_do():
    the_plan = Plan("guests", "lxdkvm-guests", [Action("create", "host", "node-1", "not in LXD"),
                                                 Action("create", "guest", "vm-a", "not defined")],
                    conflicts=["network guests-mgmt exists and is not the lab's"], warnings=["node-2: its state"])
    doc = assert_valid("plan", documents.plan(the_plan))
    assert not doc["ok"] and not doc["empty"] and doc["actions"][1]["kind"] == "guest"
    empty = assert_valid("plan", documents.plan(Plan("guests", "lxdkvm-guests")))
    assert empty["ok"] and empty["empty"] and "warnings" not in empty
    assert_refused("plan", {**empty, "actions": [{"verb": "explode", "kind": "host", "name": "x", "reason": ""}]},
                   "is not one of")


def test_verify_with_a_fail_is_not_ok():
    checks = [Check("host node-1", "unprivileged", "PASS", "uid 0 is 1000000"),
              Check("network data", "isolation", "FAIL", "node-3 reached 10.213.20.11"),
              Check("guest vm-a", "booted", "WARN", "")]
    doc = assert_valid("verify", documents.verify("guests", checks))
    assert not doc["ok"] and doc["summary"] == {"PASS": 1, "WARN": 1, "FAIL": 1}
    assert assert_valid("verify", documents.verify("guests", checks[:1]))["ok"]
    assert_refused("verify", {**doc, "checks": [{**doc["checks"][0], "scope": "everything"}]}, "does not match")


def test_doctor_on_recorded_machines():
    checks = doctor.diagnose(load_host("pvm-sandbox"), PROBE_OK, SERVER, BTRFS_OK)
    doc = assert_valid("doctor", documents.doctor(checks))
    assert doc["ok"] and [c["name"] for c in doc["checks"]] == [c.name for c in checks]
    failed = kvmprobe.ProbeResult(ok=False, step="open", errno=2, error="no such file")
    doc = assert_valid("doctor", documents.doctor(doctor.diagnose(load_host("pvm-sandbox"), failed, SERVER, BTRFS_OK)))
    assert not doc["ok"] and "FAIL" in {c["status"] for c in doc["checks"]}


def test_probe_kvm_that_fails_for_real_and_that_passes():
    failed = assert_valid("probe-kvm", documents.probe_kvm(kvmprobe.probe("/nonexistent/kvm")))
    assert not failed["ok"] and failed["errno"] == 2 and failed["device"] == "/nonexistent/kvm"
    assert assert_valid("probe-kvm", documents.probe_kvm(PROBE_OK))["exits"][-1] == "HLT"


@pytest.mark.parametrize("change,ok", [
    ({}, True),
    ({"same_boot": False}, False),  # rebooted on the way
    ({"address_answers": False}, False),
    ({"same_boot": None, "boot_id_before": "", "boot_id_after": "", "running": True}, True),  # no agent
    ({"same_boot": None, "running": False}, False),
    ({"address": None, "address_answers": False}, True),  # no address to ping
    ({"live": False, "downtime_budget_ms": None, "within_budget": None, "disk_copied": True, "disk_mib": 64.0}, True),
])
def test_migrate_is_ok_when_the_guest_kept_running_and_answers(change, ok):
    doc = assert_valid("migrate", documents.migrate({**MIGRATED, **change}))
    assert doc["ok"] is ok and doc["to"] == "node-1"


def test_migrate_refuses_a_field_it_does_not_know():
    assert_refused("migrate", {**documents.migrate(MIGRATED), "bandwidth": 3}, "Additional properties")


def test_graph_from_the_file_and_live():
    lab = guests_lab()
    drawn = assert_valid("graph", documents.graph(graph.build(lab)))
    assert not drawn["live"] and [h["name"] for h in drawn["hosts"]] == ["node-1", "node-2", "node-3"]
    assert drawn["hosts"][0]["state"] is None and drawn["hosts"][0]["status"] == ""
    live = assert_valid("graph", documents.graph(graph.build(lab, LabStatus.from_json(STATUS))))
    node1, node2 = live["hosts"][0], live["hosts"][1]
    assert node1["status"] == "ready" and node2["status"] == "stopped"
    assert [g["name"] for g in node1["guests"]] == ["vm-a", "vm-b"]  # vm-b drawn where it runs now
    assert node1["guests"][1]["notes"] == ["moved from node-2"]
    assert {"node": "node-1/vm-b", "network": "data", "label": "nic0 10.213.20.52", "guest": True} in live["edges"]
    assert assert_valid("graph", documents.graph(graph.from_status(LabStatus.from_json(STATUS))))["live"]


def test_inventory_json_matches_its_schema_and_refuses_an_unmarked_string():
    built = inventory.build(LabStatus.from_json(HOSTS_ONLY), GROUPS, ACCESS)
    doc = assert_valid("inventory", inventory.to_json(built))
    assert doc["net_mgmt"] == {"hosts": ["compute-1", "compute-2"]}
    hostvars = doc["_meta"]["hostvars"]
    plain = {**doc, "_meta": {"hostvars": {**hostvars, "store": {**hostvars["store"], "lxdkvm_lab": "my-lab"}}}}
    assert_refused("inventory", plain, "is not valid under any of the given schemas")


def test_sandbox_status_with_and_without_a_cluster():
    member = {"name": "m1", "address": "100.64.40.11", "lxd_dir": "/var/lib/lxdkvm/cluster-sandbox/m1",
              "holder": 4242, "daemon": None, "clustered": True, "state": ""}
    state = {"root": "/var/lib/lxdkvm/cluster-sandbox", "bridge": None, "members": [member]}
    assert assert_valid("cluster-sandbox-status", documents.sandbox_status(state))["members"][0]["holder"] == 4242
    assert_valid("cluster-sandbox-status", documents.sandbox_status({**state, "members": []}))
    assert_refused("cluster-sandbox-status", documents.sandbox_status(
        {**state, "members": [{**member, "state": "BURNING"}]}), "is not one of")


def test_error_documents():
    invalid = LabInvalid("lab.yaml", [read.t.Problem("hosts[0].limit", "unknown key 'limit'", "did you mean?", 4)])
    for name in set(jsonschemas.schemas()) - jsonschemas.NOT_OUTPUTS:
        assert_valid(name, documents.invalid(invalid))
        assert_valid(name, documents.error("failed", "lab guests is not up"))
    assert documents.invalid(invalid)["error"]["problems"] == [
        {"file": "lab.yaml", "line": 4, "key": "hosts[0].limit", "message": "unknown key 'limit'",
         "hint": "did you mean?"}]
    with pytest.raises(ValueError):
        documents.error("oops", "")
    assert_refused("error", {"ok": False, "error": {"kind": "failed"}}, "'message' is a required property")


# ---------------------------------------------------------------------------------------- the commands
def run_json(args: list[str]):
    done = CliRunner().invoke(main, args)
    return done.exit_code, json.loads(done.stdout), done.stderr


@pytest.mark.parametrize("args,schema", [
    (["plan", str(BAD_LAB), "--json"], "plan"),
    (["doctor", "--lab", str(BAD_LAB), "--json"], "doctor"),
    (["graph", str(BAD_LAB), "-f", "json"], "graph"),
    (["verify", str(BAD_LAB), "--json"], "verify"),
])
def test_a_bad_lab_file_is_one_error_document_with_file_line_and_key(args, schema):
    code, doc, stderr = run_json(args)
    assert code == 2 and assert_valid(schema, doc)["error"]["kind"] == "invalid"
    assert doc["error"]["problems"] == [{"file": str(BAD_LAB), "line": 4, "key": "hosts[0].limit",
                                         "message": "unknown key 'limit'", "hint": "did you mean 'limits'?"}]
    assert "unknown key 'limit'" in stderr  # and said to people


def test_a_missing_lab_is_one_error_document():
    code, doc, _ = run_json(["graph", "no-such-lab.yaml", "-f", "json"])
    assert code == 1 and assert_valid("graph", doc)["error"] == {"kind": "failed", "message": "no lab file no-such-lab.yaml"}


def test_probe_kvm_prints_one_document_and_exits_as_it_says():
    code, doc, _ = run_json(["probe-kvm", "--json", "--device", "/nonexistent/kvm"])
    assert code == 1 and not assert_valid("probe-kvm", doc)["ok"] and doc["step"] == "open"


@pytest.mark.parametrize("args,schema,said", [
    (["status", "guests", "--watch", "--json"], "status", "choose one"),
    (["migrate", "guests", "vm-1", "--json"], "migrate", "Missing option '--to'"),
    (["verify", "guests", "--json", "--jsno"], "verify", "No such option '--jsno'"),
    (["graph", "guests", "-f", "json", "--live", "x"], "graph", "unexpected extra argument"),
])
def test_a_usage_error_asked_for_json_is_one_error_document_too(args, schema, said):
    code, doc, stderr = run_json(args)
    assert code == 2 and assert_valid(schema, doc)["error"]["kind"] == "usage"
    assert said in doc["error"]["message"] and said in stderr


def test_a_usage_error_not_asked_for_json_prints_nothing_on_stdout():
    done = CliRunner().invoke(main, ["migrate", "guests", "vm-1"])
    assert done.exit_code == 2 and done.stdout == "" and "Missing option" in done.stderr


@pytest.mark.parametrize("argv,wanted", [
    (["status", "--json"], True), (["graph", "-f", "json"], True), (["inventory", "--format=json"], True),
    (["graph", "-f", "dot"], False), (["guest-exec", "lab", "vm", "--", "tool", "--json"], False),
    (["graph", "-o", "json"], False),
])
def test_what_asks_for_json(argv, wanted):
    assert common.asks_for_json(argv) is wanted


@pytest.mark.parametrize("raised,kind,status", [
    (RuntimeError("a bug"), "internal", 1), (KeyboardInterrupt(), "interrupted", 130),
    (common.LxdkvmError("LXD refused"), "failed", 1),
])
def test_errors_under_json_end_as_one_document_and_their_status(capsys, raised, kind, status):
    with pytest.raises(SystemExit) as ended, common.errors(as_json=True):
        raise raised
    doc = json.loads(capsys.readouterr().out)
    assert ended.value.code == status == documents.ERROR_KINDS[kind]
    assert assert_valid("status", doc)["error"]["kind"] == kind


def test_a_bug_without_json_is_a_traceback_as_before():
    with pytest.raises(RuntimeError), common.errors():
        raise RuntimeError("a bug")


# ---------------------------------------------------------------------------------------- exit statuses
def table_statuses() -> set[int | str]:
    """The first column of docs/json.md's table of exit statuses."""
    section = (REPO / "docs" / "json.md").read_text().split("## Exit statuses", 1)[1]
    return {int(c) if c.isdigit() else c for c in re.findall(r"^\| ([^|]+?) \|", section, re.M)} - {"status", "---"}


EXITS = {"exit", "ctx.exit", "sys.exit", "SystemExit", "click.exceptions.Exit", "Exit"}
PASSED_ON = {("guests.py", "code")}  # guest-exec ends with the status of the command run in the guest
CONSTANTS = {name: value for name, value in vars(common).items() if name.startswith("EXIT_")}


def statuses(path: Path, expr: ast.expr) -> list[int | str]:
    """The statuses EXPR (an exit's argument) may be: literals, EXIT_* constants, the branches of an `if`."""
    if isinstance(expr, ast.IfExp):
        return statuses(path, expr.body) + statuses(path, expr.orelse)
    if isinstance(expr, ast.Constant) and isinstance(expr.value, int):
        return [expr.value]
    if isinstance(expr, ast.Name) and expr.id in CONSTANTS:
        return [CONSTANTS[expr.id]]
    assert (path.name, ast.unparse(expr)) in PASSED_ON, f"{path.name}: exit status {ast.unparse(expr)} is not known"
    return ["the command's own"]


def exits_in(path: Path) -> list[int | str]:
    """The statuses of every exit call in PATH."""
    return [status for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and ast.unparse(node.func) in EXITS
            for arg in node.args for status in statuses(path, arg)]


def test_every_exit_status_the_cli_uses_is_in_the_table():
    table = table_statuses()
    used = {s for path in sorted((REPO / "lxdkvm" / "cli").glob("*.py")) for s in exits_in(path)}
    assert {0, 1, 2, 130, "the command's own"} <= used  # the scan sees them
    assert used | set(documents.ERROR_KINDS.values()) | {1, 2} <= table  # 1, 2: click's own errors
    assert table <= used, "the table lists a status nothing uses"
