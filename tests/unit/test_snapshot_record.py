"""Lab snapshots as plain data: names, the record written and read back strictly, what differs from the
lab file in force, and `lxdkvm snapshot LAB NAME` meaning `snapshot create`."""

import json
import re

import pytest
from click.testing import CliRunner

from lxdkvm.cli import snapshots as cli
from lxdkvm.errors import LxdkvmError
from lxdkvm.labfile import read
from lxdkvm.snapshots import guests, record

LAB = """
name: lab
networks:
  - {name: mgmt, subnet: 10.9.10.0/24}
hosts:
  - name: h-[1-2]
    networks: [mgmt]
guests:
  - {name: vm, host: h-1, networks: [mgmt]}
"""


def lab(text: str):
    parsed, problems, _ = read.parse(text, "lab.yaml")
    assert not problems, problems
    return parsed


def snapshot(**hosts) -> record.Snapshot:
    return record.Snapshot("one", "lab", 1764790000.0, 2.5, hosts or {
        "h-1": record.Host("Running", {"vm": record.SAVED, "off": "shut off"}),
        "h-2": record.Host("Stopped")}, LAB)


@pytest.mark.parametrize("name", ["one", "s-20261203-101010", "a", "x" * 40])
def test_good_names(name):
    assert record.check_name(name) == name


@pytest.mark.parametrize("name", ["", "One", "-a", "a/b", "../one", "a b", "a;reboot", "x" * 41, "ä", "a\nb"])
def test_bad_names_are_refused_with_the_rule(name):
    with pytest.raises(LxdkvmError, match="is not a snapshot name: a snapshot name is 1-40"):
        record.check_name(name)


def test_the_default_name_is_a_valid_name():
    assert record.check_name(record.default_name(1764790000)) == "s-20251203-192640"


def test_a_record_reads_back_as_it_was_written():
    taken = snapshot()
    again = record.from_json(record.to_json(taken), "one.json")
    assert again == taken
    assert again.hosts["h-1"].saved == ["vm"]
    assert taken.summary() == {"name": "one", "created": "2025-12-03T19:26:40Z", "seconds": 2.5, "hosts": 2,
                               "guests_saved": 1, "guests_off": 1}


@pytest.mark.parametrize("change, field", [
    (lambda d: d.update(version=2), "unknown version"),
    (lambda d: d.update(name="../x"), "name"),
    (lambda d: d.update(lab="Lab;x"), "lab"),
    (lambda d: d.update(created=-1), "created/seconds"),
    (lambda d: d.update(seconds=True), "created/seconds"),
    (lambda d: d.update(hosts=[]), "lab_file/hosts"),
    (lambda d: d["hosts"].update({"h;x": {"status": "Running", "guests": {}}}), "host 'h;x'"),
    (lambda d: d["hosts"]["h-1"].update(status="Frozen"), "host h-1: status/guests"),
    (lambda d: d["hosts"]["h-1"]["guests"].update({"vm;rm": "saved"}), "host h-1: guest 'vm;rm'"),
    (lambda d: d["hosts"]["h-1"]["guests"].update(vm="saved\n"), "host h-1: guest 'vm'"),
])
def test_a_damaged_record_is_refused_naming_the_field(change, field):
    data = snapshot().as_dict()
    change(data)
    with pytest.raises(LxdkvmError, match=re.escape(f"one.json: not a valid lxdkvm snapshot record ({field}")):
        record.from_json(json.dumps(data), "one.json")


def test_not_json_is_refused():
    with pytest.raises(LxdkvmError, match="not JSON"):
        record.from_json("{", "one.json")


def test_differences_say_what_restore_does():
    then = lab(LAB)
    assert record.differences(then, lab(LAB)) == []
    assert record.differences(then, None) == []
    now = lab(LAB.replace("h-[1-2]", "h-[1-3]").replace("guests:\n  - {name: vm, host: h-1, networks: [mgmt]}",
                                                         "guests: []"))
    assert record.differences(then, now) == [
        "host h-3 is in the lab file now, not in the snapshot: restore deletes it",
        "guest vm is in the snapshot, not in the lab file now: restore brings it back",
    ]


def test_only_well_formed_leases_reach_the_host():
    calls = []

    class Host:
        def execute(self, host, command, timeout=None):
            calls.append(command)
            return type("R", (), {"exit_code": 0, "stdout": "", "stderr": ""})()

    guests.pin_leases(Host(), "h-1", "vm", {"52:54:00:aa:bb:cc": "10.9.10.5", "52:54:00:aa:bb:cd": "10.9.10.5;x",
                                            "nope": "10.9.10.6"})
    assert calls[0][0:2] == ["python3", "-c"] and calls[0][3:] == ["vm", "52:54:00:aa:bb:cc=10.9.10.5"]
    calls.clear()
    guests.pin_leases(Host(), "h-1", "vm", {"nope": "x"})
    assert calls == []


def test_snapshot_lab_name_means_snapshot_create():
    seen = []
    create = cli.snapshot.commands["create"]
    original = create.callback
    create.callback = lambda **kw: seen.append(kw)
    try:
        runner = CliRunner()
        assert runner.invoke(cli.snapshot, ["lab", "one"]).exit_code == 0
        assert runner.invoke(cli.snapshot, ["lab"]).exit_code == 0
        assert runner.invoke(cli.snapshot, ["create", "lab", "two", "--json"]).exit_code == 0
    finally:
        create.callback = original
    assert seen == [{"lab": "lab", "name": "one", "as_json": False}, {"lab": "lab", "name": None, "as_json": False},
                    {"lab": "lab", "name": "two", "as_json": True}]
