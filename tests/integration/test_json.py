"""Every command's `--json` (`graph -f json`, `inventory --format json`) against a real lab: two KVM hosts
with a tiny guest each, on 10.238.x. Each command's whole stdout is one JSON document (json.loads of all
of it) that matches its schema in schemas/, including when the command fails (a FAIL in `verify`, a lab
that is not up, a guest that is not there, a bad lab file): then exit non-zero. One guest migrates live
with `--json`. The lab is taken down at the end, also on failure, and nothing of it is left in LXD."""

import json

import pytest

from .. import jsonschemas
from .test_labs import lxc_json, lxdkvm, on

pytestmark = pytest.mark.integration
NAME = "json-lab"
PROJECT = f"lxdkvm-{NAME}"
LAB = f"""\
name: {NAME}
networks:
  - {{name: mgmt, subnet: 10.238.10.0/24}}
  - {{name: data, subnet: 10.238.20.0/24, mode: isolated}}
hosts:
  - name: node-[1-2]
    networks: [mgmt, {{network: data, ipv4: 10.238.20.11}}]
    limits: {{memory: 1GiB}}
guests:
  - {{name: vm-1, host: node-1, networks: [{{network: data, ipv4: 10.238.20.51}}, mgmt]}}
  - {{name: vm-2, host: node-2, networks: [{{network: data, ipv4: 10.238.20.52}}]}}
"""


def document(schema: str, *args: str, code: int = 0, timeout: float = 600) -> dict:
    """`lxdkvm ARGS`: its exit status CODE, and its whole stdout one JSON document matching SCHEMA."""
    proc = lxdkvm(*args, ok=False, timeout=timeout)
    assert proc.returncode == code, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)  # all of stdout: nothing else was printed there
    assert jsonschemas.problems(schema, doc) == []
    assert doc.get("ok", code == 0) is (code == 0) or schema == "inventory"
    return doc


def leftovers() -> list[str]:
    """What of this lab LXD still has: its project, its networks."""
    return [p["name"] for p in lxc_json("project", "list") if p["name"] == PROJECT] + \
        [n["name"] for n in lxc_json("network", "list") if n["name"].startswith(f"{NAME}-")]


@pytest.fixture(scope="module")
def lab(lxd, tmp_path_factory):
    path = tmp_path_factory.mktemp("json") / f"{NAME}.yaml"
    path.write_text(LAB)
    lxdkvm("down", NAME, ok=False)
    try:
        planned = document("plan", "plan", str(path), "--json")
        lxdkvm("up", str(path), timeout=900)
        yield {"file": str(path), "planned": planned}
    finally:
        lxdkvm("down", NAME, ok=False, timeout=300)
        assert leftovers() == [], "down left something behind"


def test_plan_before_and_after_up(lab):
    planned = lab["planned"]
    assert planned["lab"] == NAME and planned["project"] == PROJECT and not planned["empty"]
    made = {(a["verb"], a["kind"], a["name"]) for a in planned["actions"]}
    assert {("create", "host", "node-1"), ("create", "host", "node-2"), ("create", "guest", "vm-1"),
            ("create", "guest", "vm-2"), ("create", "project", PROJECT)} <= made
    again = document("plan", "plan", lab["file"], "--json")
    assert again["empty"] and again["actions"] == [] and again["conflicts"] == []


def test_status(lab):
    status = document("status", "status", NAME, "--json")
    assert status["exists"] and [h["name"] for h in status["hosts"]] == ["node-1", "node-2"]
    assert all(h["state"] == "Running" and h["ready"] for h in status["hosts"])
    guests = {g["name"]: g for h in status["hosts"] for g in h["guests"]}
    assert guests["vm-1"]["host"] == "node-1" and guests["vm-2"]["host"] == "node-2"
    assert guests["vm-1"]["addresses"]["data"] == ["10.238.20.51/24"] and guests["vm-1"]["booted"]
    assert {n["name"]: n["gateway"] for n in status["networks"]} == {"mgmt": "10.238.10.1/24", "data": "none"}
    not_up = document("status", "status", "json-not-up", "--json")  # an answer, not an error
    assert not not_up["exists"] and not_up["hosts"] == []


def test_verify_passes(lab):
    report = document("verify", "verify", NAME, "--json")
    assert report["lab"] == NAME and report["summary"]["FAIL"] == 0
    assert sum(report["summary"].values()) == len(report["checks"])
    assert {("guest vm-1", "booted"), ("guest vm-2", "booted")} <= {(c["scope"], c["name"]) for c in report["checks"]}


def test_graph_from_the_file_and_by_name(lab):
    drawn = document("graph", "graph", lab["file"], "-f", "json")
    assert drawn["live"] and [h["status"] for h in drawn["hosts"]] == ["ready", "ready"]
    assert [g["name"] for g in drawn["hosts"][0]["guests"]] == ["vm-1"]
    assert {"node": "node-2/vm-2", "network": "data", "label": "nic0 10.238.20.52", "guest": True} in drawn["edges"]
    by_name = document("graph", "graph", NAME, "-f", "json")
    assert by_name["live"] and {n["name"] for n in by_name["networks"]} == {"mgmt", "data"}


def test_inventory(lab):
    inventory = document("inventory", "inventory", NAME, "--format", "json")
    assert set(inventory["_meta"]["hostvars"]) == {"node-1", "node-2"}
    assert inventory["net_data"] == {"hosts": ["node-1", "node-2"]}


def test_doctor_and_probe_kvm_on_this_machine(lab):
    proc = lxdkvm("doctor", "--json", ok=False, timeout=300)
    checks = document("doctor", "doctor", "--json", code=proc.returncode, timeout=300)
    assert proc.returncode == 0 and checks["ok"], [c for c in checks["checks"] if c["status"] == "FAIL"]
    assert {"cpu", "kvm probe"} <= {c["name"] for c in checks["checks"]}
    probe = document("probe-kvm", "probe-kvm", "--json")
    assert probe["exits"][-1] == "HLT" and probe["device"] == "/dev/kvm"
    refused = document("probe-kvm", "probe-kvm", "--json", "--device", "/dev/null", code=1)
    assert refused["errno"] is not None and refused["step"] != "done"


def test_sandbox_cluster_status():
    state = document("cluster-sandbox-status", "cluster", "sandbox", "status", "--json")
    assert state["root"].startswith("/")


def test_migrate_a_guest_between_the_hosts(lab):
    moved = document("migrate", "migrate", NAME, "vm-2", "--to", "node-1", "--json")
    assert moved["from"] == "node-2" and moved["to"] == "node-1" and moved["over"] == "10.238.20.11"
    assert moved["same_boot"] and moved["address"] == "10.238.20.52" and moved["address_answers"]
    assert moved["pings_sent"] >= 1 and moved["downtime_budget_ms"] == 50
    status = document("status", "status", NAME, "--json")
    assert [g["name"] for g in status["hosts"][0]["guests"]] == ["vm-1", "vm-2"]
    drawn = document("graph", "graph", lab["file"], "-f", "json")
    assert drawn["hosts"][0]["guests"][1]["notes"] == ["moved from node-2"]


def test_failures_are_one_error_document(lab, tmp_path):
    missing = document("migrate", "migrate", NAME, "vm-9", "--to", "node-1", "--json", code=1)
    assert missing["error"]["kind"] == "failed" and "vm-9" in missing["error"]["message"]
    not_up = document("verify", "verify", "json-not-up", "--json", code=1)
    assert not_up["error"]["kind"] == "failed"
    bad = tmp_path / "bad.yaml"
    bad.write_text(LAB.replace("limits:", "limit:"))
    refused = document("plan", "plan", str(bad), "--json", code=2)
    assert refused["error"]["problems"][0]["file"] == str(bad)
    assert refused["error"]["problems"][0]["key"] == "hosts[0].limit" and refused["error"]["problems"][0]["line"] == 8
    assert document("doctor", "doctor", "--lab", str(bad), "--json", code=2)["error"] == refused["error"]
    usage = document("migrate", "migrate", NAME, "vm-1", "--json", code=2)  # no --to: click's usage error
    assert usage["error"]["kind"] == "usage" and "--to" in usage["error"]["message"]


def test_verify_with_a_fail_is_still_one_document(lab):
    """Last: a guest killed behind lxdkvm's back is a FAIL, and verify says so in its document, exit 1."""
    destroyed = on(PROJECT, "node-1", "virsh", "destroy", "vm-2")
    assert destroyed.returncode == 0, destroyed.stderr
    report = document("verify", "verify", NAME, "--json", code=1)
    assert report["summary"]["FAIL"] >= 1
    failed = {c["scope"] for c in report["checks"] if c["result"] == "FAIL"}
    assert "guest vm-2" in failed, failed
