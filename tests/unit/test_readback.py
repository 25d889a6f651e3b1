"""What lab hosts report back is checked before it goes anywhere (readback): hostile domain names,
states, specs, boot markers and addresses — templates, markup, escape sequences, tabs and new lines that
would shift columns, NUL, 1 MB values, bytes that are not UTF-8 — are dropped with one warning that names
the host and never repeats the value; valid data passes unchanged."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from lxdkvm import readback
from lxdkvm.guests import accel, runtime
from lxdkvm.guests import spec as spec_mod
from lxdkvm.lab.status import LabStatus
from lxdkvm.labfile import read

LABS = Path(__file__).parent.parent / "labs" / "valid"
BOOT_ID = "1b2c3d4e-0000-4000-8000-000000000001"
PAYLOAD = "{{ lookup('pipe', 'touch /tmp/pwned') }}"
HOSTILE = [
    PAYLOAD, "{{lookup('pipe','id')}}", "{% for x in y %}x{% endfor %}", "{# c #}", "vm-1\n", "vm\n1", "vm\t1",
    "vm-1\x1b[2J", "\x1b]0;title\x07", "[bold]vm[/bold]", "vm\x00", "vm\u202e1-mv", "vm\u2028", "a" * 1_000_000,
    b"vm-\xff\xfe".decode("latin-1"), b"vm-\xff".decode("utf-8", "replace"), b"vm-\xff".decode("utf-8", "surrogateescape"),
    "", " ", "$(id)", "`id`", "vm;id", "../vm",
]
NOT_NAMES = ["-vm", "vm-", "vm_1", "vm.1", "1vm", "a" * 64]
# what no warning may contain: the start of each hostile value that is more than a plain word
FORBIDDEN = ("{{", "{%", "{#", "lookup(", "\x1b", "[bold]", "\x00", "\u202e", "\u2028", "\n", "\t", "$(", "`")


def spec(**changes) -> dict:
    base = {"v": 1, "lab": "my-lab", "host": "kvm-1", "tiny": "0123456789abcdef", "accel": "tcg", "vcpus": 1,
            "memory_mib": 128, "disk_mib": 0,
            "nics": [["br-data", "52:54:00:aa:bb:cc", "10.9.2.51/24", ""], ["br-mgmt", "52:54:00:aa:bb:cd", "dhcp",
                                                                             "10.9.1.1"]]}
    return {**base, **changes}


def metadata(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return f'<lxdkvm:spec xmlns:lxdkvm="https://lxdkvm.invalid/1">{text}</lxdkvm:spec>'


def marker(name="vm-1", boot_id=BOOT_ID, addrs="eth0=10.9.2.51/24,eth1=10.9.1.7/24") -> str:
    return f"LXDKVM-GUEST-BOOTED name={name} boot_id={boot_id} addrs={addrs}"


def row(name="vm-1", state="running", meta=None, mark=None) -> str:
    return "\t".join([name, state, metadata(spec()) if meta is None else meta, marker() if mark is None else mark])


def assert_defanged(text: str) -> None:
    assert not any(bad in text for bad in FORBIDDEN), text
    assert len(text) < 400


# ---------------------------------------------------------------------------------------- values
@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_names_states_and_ids_fail_every_check(value):
    for check in (readback.guest_name, readback.host_name, readback.guest_state, readback.instance_state,
                  readback.interface, readback.boot_id, readback.group, readback.network_name, readback.ifname):
        assert check(value) is None, (check.__name__, value[:40])
    assert_defanged(readback.defanged(value))


@pytest.mark.parametrize("value", NOT_NAMES)
def test_names_follow_the_lab_files_rules(value):
    assert readback.guest_name(value) is None and readback.host_name(value) is None


@pytest.mark.parametrize("check, value", [
    (readback.guest_name, "vm-1"), (readback.host_name, "kvm-1"), (readback.guest_state, "shut off"),
    (readback.guest_state, "in shutdown"), (readback.instance_state, "Running"), (readback.boot_id, BOOT_ID),
    (readback.interface, "10.9.2.51/24"), (readback.group, "compute"), (readback.network_name, "back-end")])
def test_what_lxdkvm_and_libvirt_write_passes(check, value):
    assert check(value) == value


@pytest.mark.parametrize("value", ["10.0.0.1", "10.0.0.256/24", "10.0.0.1/33", "010.0.0.1/24", "::1/128",
                                   "10.0.0.1/24 ", "10.0.0.1/24\n", "10.0.0.1/24,10.0.0.2/24"])
def test_an_address_must_be_one_ipv4_interface(value):
    assert readback.interface(value) is None


def test_inventory_groups_of_its_own_are_refused():
    assert [readback.group(g) for g in ("all", "ungrouped", "lab_x", "net_y", "Nova")] == [None] * 5


def test_defanged_keeps_only_plain_characters_and_says_the_length():
    assert readback.defanged(PAYLOAD) == "'?? lookup??pipe?, ?touch...' (40 characters)"
    assert readback.defanged(None) == "a NoneType, not a string"
    assert readback.safe_text("kvm-1: a guest {{ x }}\x1b[1m") == "kvm-1: a guest ?? x ????1m"


def test_shown_makes_escape_sequences_and_bidi_visible_and_keeps_the_last_lines():
    text = "\n".join(f"line {i}" for i in range(100)) + "\nred \x1b[31mX\r\u202eY"
    out = readback.shown(text + "\r\nend\n", lines=3)  # a lone \r is shown: no overwriting what came before
    assert out == "red \\u001b[31mX\\u000d\\u202eY\nend\n"
    assert len(readback.shown("x" * 1_000_000)) < 2100


# ---------------------------------------------------------------------------------------- specs
def test_every_spec_lxdkvm_writes_passes():
    lab, problems, _ = read.parse((LABS / "guests.yaml").read_text(), "guests.yaml")
    assert problems == []
    specs = spec_mod.desired(lab, "0123456789abcdef", accel.Verdict("unknown"))
    deb, problems, _ = read.parse((LABS / "debian.yaml").read_text(), "debian.yaml")
    specs |= spec_mod.desired(deb, "0123456789abcdef", accel.Verdict("unknown"), debian_key="fedcba9876543210")
    assert len(specs) == 4
    for found in specs.values():
        assert readback.spec_problem(json.loads(found.metadata)) == ""
    assert readback.spec_of(metadata(spec())) == (spec(), "")
    assert readback.spec_of("") == (None, "")


@pytest.mark.parametrize("changes, problem", [
    ({"lab": PAYLOAD}, "a spec whose lab is '?? lookup??pipe?, ?touch...' (40 characters)"),
    ({"vcpus": True}, "a spec whose vcpus is not valid"),
    ({"vcpus": "1"}, "a spec whose vcpus is '1' (1 characters)"),
    ({"extra": 1}, "a spec with unknown field 'extra' (5 characters)"),
    ({"image": "file"}, "a spec with no file"),
    ({"image": ["file"]}, "a spec whose image is not valid"),
    ({"nics": [["br-data\t", "52:54:00:aa:bb:cc", "dhcp", ""]]}, "a spec with NIC bridge 'br-data?' (8 characters)"),
    ({"nics": [["br-data", "52:54:00:AA:bb:cc", "dhcp", ""]]}, "a spec with NIC MAC '52:54:00:AA:bb:cc' (17 characters)"),
    ({"nics": [["br-data", "52:54:00:aa:bb:cc", "1.2.3.4/24;id", ""]]}, "a spec with NIC address '1.2.3.4/24?id' (13 characters)"),
    ({"nics": [["br-data", "52:54:00:aa:bb:cc", "dhcp", "{{x}}"]]}, "a spec with NIC gateway '??x??' (5 characters)"),
    ({"nics": [["br-data"]] * 9}, "a spec whose nics are not a list of at most 8"),
])
def test_a_spec_of_another_shape_is_not_lxdkvms(changes, problem):
    assert readback.spec_problem(spec(**changes)) == problem


@pytest.mark.parametrize("text", ["<a>{not json}</a>", "not xml", "<a>[1]</a>", metadata("1" * 70000),
                                  '<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>'])
def test_metadata_that_is_no_spec(text):
    found, problem = readback.spec_of(text)
    assert found is None and problem


# ---------------------------------------------------------------------------------------- rows and markers
def test_a_valid_row_passes_whole():
    assert readback.domain_row(row()) == (("vm-1", "running", spec(), marker()), "")
    assert readback.domain_row(row(meta="", mark="")) == (("vm-1", "running", None, ""), "")


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_a_row_with_a_hostile_name_or_state_is_dropped(value):
    for line in (row(name=value), row(state=value), row(meta=metadata(spec(lab=value)))):
        found, problem = readback.domain_row(line)
        assert found is None and problem
        assert_defanged(problem)


def test_a_tab_in_a_state_would_shift_the_columns_so_the_row_is_dropped():
    shifted = row(state="running\t" + metadata(spec(lab="other")))
    assert readback.domain_row(shifted) == (None, "a libvirt domain row with 5 columns (not 4): 'vm-1' (4 characters)")
    assert readback.domain_row("x" * 70000)[1] == "a libvirt domain row of 70000 characters"


@pytest.mark.parametrize("line, problem", [
    (marker(boot_id=PAYLOAD.replace(" ", "")), "a boot marker whose boot id is '??lookup??pipe?,?touch/t...' (36 characters)"),
    (marker(name="{{x}}"), "a boot marker whose name is '??x??' (5 characters)"),
    (marker(addrs="eth0={{x}}"), "a boot marker with address '??x??' (5 characters)"),
    (marker(addrs="eth0=10.0.0.1"), "a boot marker with address '10.0.0.1' (8 characters)"),
    (marker(addrs="\x1b[1m=10.0.0.1/24"), "a boot marker with interface '??1m' (4 characters)"),
])
def test_a_hostile_boot_marker_is_not_a_boot(line, problem):
    from lxdkvm.guests import agent

    assert readback.marker_problem(agent.parse_marker(line)) == problem


# ---------------------------------------------------------------------------------------- through a host
class Host:
    """A lab host whose list-guests.sh prints LINES."""

    def __init__(self, *lines: str) -> None:
        self.stdout = "".join(f"{line}\n" for line in lines)

    def execute(self, host, command, timeout=None):
        return SimpleNamespace(exit_code=0, stdout=self.stdout, stderr="")


def test_guest_status_drops_hostile_rows_and_warns_once_naming_the_host():
    hostile = [row(name=PAYLOAD.replace(" ", "")), row(name="vm-2", state=PAYLOAD),
               row(name="vm-3", mark=marker(name="vm-3", boot_id="{{x}}")), row(name="vm-4") + "\textra"]
    warnings = []
    rows = runtime.guest_status(Host(row(), *hostile), "kvm-1", "my-lab", warnings.append)
    assert [(r["name"], r["booted"]) for r in rows] == [("vm-1", True), ("vm-3", False)]
    assert rows[0]["addresses"] == {"eth0": "10.9.2.51/24", "eth1": "10.9.1.7/24"}
    assert warnings == [
        "kvm-1: a libvirt domain whose name is '??lookup??pipe?,?touch/t...' (36 characters) (not passed on)",
        "kvm-1: libvirt domain vm-2: state '?? lookup??pipe?, ?touch...' (40 characters) (not passed on)",
        "kvm-1: a libvirt domain row with 5 columns (not 4): 'vm-4' (4 characters) (not passed on)",
        "kvm-1: guest vm-3: a boot marker whose boot id is '??x??' (5 characters) (taken as not booted)",
    ]


def test_a_flood_of_hostile_rows_is_one_short_warning_list():
    warnings = []
    found = runtime.observe(Host(*(row(name=f"{{{{x{i}}}}}") for i in range(10000))), "kvm-1", warnings.append)
    assert found == {} and len(warnings) == 6 and warnings[-1].startswith("kvm-1: ... and 9995 more")


def test_a_line_separator_cannot_start_a_row_of_its_own():
    warnings = []
    sneaky = row(name="vm-1", mark="x\u2028evil\trunning\t\t")
    assert runtime.observe(Host(sneaky), "kvm-1", warnings.append) == {}
    assert len(warnings) == 1


# ---------------------------------------------------------------------------------------- a lab's status
STATUS = {
    "lab": "my-lab", "project": "lxdkvm-my-lab", "exists": True,
    "networks": [{"name": "mgmt", "bridge": "my-lab-mgmt", "subnet": "10.9.1.0/24", "gateway": "10.9.1.1/24"}],
    "hosts": [{"name": "kvm-1", "state": "Running", "ready": True, "addresses": {"mgmt": ["10.9.1.140/24"]},
               "guests": [{"name": "vm-1", "host": "kvm-1", "state": "running", "booted": True, "boot_id": BOOT_ID,
                           "addresses": {"mgmt": ["10.9.1.7/24"]}}]}],
}


def hostile_status() -> dict:
    data = json.loads(json.dumps(STATUS))
    host = data["hosts"][0]
    host["guests"] += [{"name": PAYLOAD, "state": "running"}, {"name": "vm-2", "state": "[bold]on"},
                       {"name": "vm-3", "state": "running", "boot_id": "\x1b[2J"}]
    host["addresses"]["mgmt"].append("10.9.1.5/24\n{{x}}")
    data["hosts"].append({"name": "kvm-2", "state": "Running\x1b[31m", "ready": True, "addresses": {}})
    data["hosts"].append({"name": "kvm 3", "state": "Running", "ready": True})
    return data


def test_a_valid_status_is_unchanged_and_has_the_same_json():
    assert LabStatus.from_json(STATUS).as_json() == STATUS


def test_a_hostile_status_keeps_only_valid_values_and_says_what_it_left_out():
    status = LabStatus.from_json(hostile_status())
    assert [g.name for g in status.guests] == ["vm-1"]
    assert status.hosts[0].addresses == {"mgmt": ["10.9.1.140/24"]}
    assert (status.hosts[1].state, status.hosts[1].ready) == ("?", False)
    assert [h.name for h in status.hosts] == ["kvm-1", "kvm-2"]
    assert status.warnings == (
        "kvm-1: a guest with name '?? lookup??pipe?, ?touch...' (40 characters) (left out)",
        "kvm-1: a guest with state '?bold?on' (8 characters) (left out)",
        "kvm-1: a guest with boot id '??2J' (4 characters) (left out)",
        "kvm-1: address '10.9.1.5/24???x??' (17 characters) on mgmt (left out)",
        "kvm-2: its state 'Running??31m' (12 characters) (left out)",
        "lab my-lab: an instance with name 'kvm 3' (5 characters) (left out)",
    )
    text = json.dumps(status.as_json())
    assert PAYLOAD not in text and "lookup(" not in text and "\\u001b" not in text and "[bold]" not in text
    assert LabStatus.from_json(status.as_json()) == status  # its warnings are kept


def test_a_status_that_is_no_status_is_an_error():
    from lxdkvm.errors import LxdkvmError

    for data in ({"lab": PAYLOAD}, {"lab": "my-lab", "hosts": [1]}, {"lab": "my-lab", "project": "{{x}}"}):
        with pytest.raises(LxdkvmError, match="not a lab status"):
            LabStatus.from_json(data)
