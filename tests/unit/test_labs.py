"""Lab files → problems (golden files), expansion and defaults, desired objects, plans. No LXD."""

import ipaddress
import json
import os
from pathlib import Path

import pytest

from lxdkvm.lab import objects, plan
from lxdkvm.labfile import checks, read
from lxdkvm.labfile import topology as t

LABS = Path(__file__).parent.parent / "labs"
INVALID = sorted((LABS / "invalid").glob("*.yaml"))
EXAMPLE_LAB = LABS.parent.parent / "examples" / "molecule" / "molecule" / "default" / "lab.yaml"  # Molecule's
# A machine like the CI machine, written down so the expected messages do not depend on where they run.
MACHINE = checks.Machine(
    routes=((ipaddress.IPv4Network("192.0.2.0/24"), "eth0"), (ipaddress.IPv4Network("10.87.0.0/24"), "lxdkvmbr0")),
    cpus=2, isolated_capacity=8, isolated_elsewhere=0,
    images=frozenset({"lxdkvm/base", "lxdkvm/kvm-host"}), pools=frozenset({"default", "lxdkvm-cow"}),
    hardware_virt=False, guest_images={"router": 512},
)


def problems_of(path: Path) -> str:
    lab, problems, _ = read.parse(path.read_text(), path.name)
    if lab is not None:
        problems += checks.check(lab, MACHINE)
    return t.LabInvalid(path.name, problems).report() + "\n" if problems else ""


def test_there_are_at_least_30_invalid_labs():
    assert len(INVALID) >= 30


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_lab_gives_the_expected_problems(path):
    expected = path.with_suffix(".expected")
    got = problems_of(path)
    if os.environ.get("LXDKVM_UPDATE_GOLDEN"):
        expected.write_text(got)
    assert got, f"{path.name} should be rejected"
    assert got == expected.read_text()
    for line in got.splitlines():  # every problem names the file and a line
        assert line.startswith((f"{path.name}:", "    hint: "))


@pytest.mark.parametrize("path", sorted((LABS / "valid").glob("*.yaml")) + [read.default_lab_path(), EXAMPLE_LAB],
                         ids=lambda p: p.stem)
def test_valid_labs_have_no_problems(path):
    assert problems_of(path) == ""


def lab(text: str) -> t.Lab:
    parsed, problems, _ = read.parse(text, "test.yaml")
    assert not problems, [p.render("test.yaml") for p in problems]
    return parsed


def test_ranges_expand_with_width_and_count_addresses_up():
    parsed = lab("""
name: r
networks: [{name: data, subnet: 10.9.0.0/24, mode: isolated}]
hosts:
  - name: node-[08-11]
    networks: [{network: data, ipv4: 10.9.0.20}]
""")
    assert [h.name for h in parsed.hosts] == ["node-08", "node-09", "node-10", "node-11"]
    assert [str(h.attachments[0].ipv4) for h in parsed.hosts] == ["10.9.0.20", "10.9.0.21", "10.9.0.22", "10.9.0.23"]
    assert {h.line for h in parsed.hosts} == {5}


def test_defaults_apply_and_hosts_override_them():
    parsed = lab("""
name: d
networks: [{name: mgmt, subnet: 10.9.0.0/24}]
defaults:
  networks: [mgmt]
  limits: {cpu: 1, memory: 1GiB}
  config: {user.a: x, user.b: y}
  idmap: shared
hosts:
  - name: a
  - name: b
    limits: {cpu: 2}
    config: {user.b: z}
    idmap: isolated
    networks: []
""")
    a, b = parsed.hosts
    assert (a.cpu, a.memory, a.idmap, a.config) == (1, "1GiB", "shared", {"user.a": "x", "user.b": "y"})
    assert [x.network for x in a.attachments] == ["mgmt"]
    assert (b.cpu, b.memory, b.idmap, b.config) == (2, None, "isolated", {"user.a": "x", "user.b": "z"})
    assert b.attachments == ()


def test_network_modes_decide_gateway_nat_and_dhcp():
    parsed = lab("""
name: n
networks:
  - {name: mgmt, subnet: 10.9.0.0/24}
  - {name: data, subnet: 10.9.1.0/24, mode: isolated, mtu: 9000}
hosts: [{name: a, networks: [mgmt, {network: data, ipv4: 10.9.1.5}]}]
""")
    mgmt, data = (objects.network_config(parsed, n) for n in parsed.networks)
    assert mgmt["ipv4.address"] == "10.9.0.1/24" and mgmt["ipv4.nat"] == "true"
    assert mgmt["ipv4.dhcp.ranges"] == "10.9.0.128-10.9.0.254"
    assert data["ipv4.address"] == "none" and "ipv4.nat" not in data and data["bridge.mtu"] == "9000"
    assert mgmt[objects.MARK] == data[objects.MARK] == "n"


def test_bridge_names_fit_an_interface_name_and_stay_unique():
    assert t.bridge_name("default", "mgmt") == "default-mgmt"
    long_a = t.bridge_name("openstack-multinode", "provider")
    long_b = t.bridge_name("openstack-multinode", "provider2")
    assert len(long_a) <= 15 and len(long_b) <= 15 and long_a != long_b


def test_host_network_config_is_dhcp_or_static():
    parsed = lab("""
name: n
networks:
  - {name: mgmt, subnet: 10.9.0.0/24}
  - {name: data, subnet: 10.9.1.0/24, mode: isolated}
hosts: [{name: a, networks: [mgmt, {network: data, ipv4: 10.9.1.5}]}]
""")
    import yaml
    config = yaml.safe_load(objects.host_network_config(parsed, parsed.hosts[0]))
    # each NIC is the only port of its in-host bridge, which holds the address (guests join the bridge)
    assert config["ethernets"] == {"eth0": {"match": {"name": "eth0"}, "dhcp4": False},
                                   "eth1": {"match": {"name": "eth1"}, "dhcp4": False}}
    assert config["bridges"]["br-mgmt"]["interfaces"] == ["eth0"] and config["bridges"]["br-mgmt"]["dhcp4"]
    assert config["bridges"]["br-data"] == {"interfaces": ["eth1"], "parameters": {"stp": False,
                                            "forward-delay": 0}, "dhcp4": False, "addresses": ["10.9.1.5/24"]}


def test_in_host_bridge_names_fit_an_interface_name_and_stay_unique():
    assert t.in_host_bridge("data") == "br-data"
    long_a, long_b = t.in_host_bridge("provider-net-1"), t.in_host_bridge("provider-net-2")
    assert len(long_a) <= 15 and len(long_b) <= 15 and long_a != long_b


# ------------------------------------------------------------------------------------ plans
DEFAULT = read.default_lab_path().read_text()


def desired(text: str = DEFAULT) -> objects.Desired:
    return objects.desired(lab(text), "lxdkvm-cow", {"description": "kvm", "config": {}, "devices": {}})


def observed_from(want: objects.Desired, ready: bool = True) -> plan.Observed:
    """What LXD would hold after a complete `up` of WANT."""
    instances = {}
    for name, spec in want.instances.items():
        config = {**spec.config, "volatile.eth0.hwaddr": "00:16:3e:00:00:01", "image.os": "Debian"}
        if ready:
            config[objects.READY] = "true"
        instances[name] = {"status": "Running", "config": config, "devices": spec.devices,
                           "profiles": list(spec.profiles)}
    networks = {name: {**config, "ipv4.dhcp.gateway": "x"} for name, config in want.networks.items()}
    networks["lxdkvmbr0"] = {"ipv4.address": "10.87.0.1/24"}
    return plan.Observed(dict(want.project_config), networks, dict(want.profiles), instances,
                         fence=want.fence.digest)


def test_fresh_lab_plans_everything_in_order():
    the_plan = plan.make_plan(desired(), plan.Observed(networks={"lxdkvmbr0": {}}))
    assert [(a.verb, a.kind, a.name) for a in the_plan.actions] == [
        ("create", "project", "lxdkvm-default"), ("create", "network", "default-data"),
        ("create", "network", "default-mgmt"), ("create", "firewall", "lxdkvm-default"), ("update", "profile", "default"),
        ("create", "profile", "kvm-host"), ("create", "host", "kvm-1"), ("create", "host", "kvm-2")]


def test_a_complete_lab_plans_nothing():
    want = desired()
    assert plan.make_plan(want, observed_from(want)).empty


def test_edits_converge_with_reasons():
    want = desired()
    have = observed_from(want)
    edited = DEFAULT.replace("cpu: 1", "cpu: 2").replace("kvm-[1-2]", "kvm-[2-3]")
    actions = {(a.verb, a.name): a.reason for a in plan.make_plan(desired(edited), have).actions}
    assert actions[("create", "kvm-3")] == "new host"
    assert actions[("delete", "kvm-1")] == "not in the lab file"
    # kvm-2 is now the first of the range, so it gets kvm-1's old data address: recreated
    assert actions[("recreate", "kvm-2")].startswith("network-config changed; networks changed")


def test_limits_change_in_place():
    want = desired()
    have = observed_from(want)
    actions = plan.make_plan(desired(DEFAULT.replace("memory: 2GiB", "memory: 3GiB")), have).actions
    assert {(a.verb, a.name, a.reason) for a in actions} == {
        ("update", "kvm-1", "limits.memory 2GiB → 3GiB"), ("update", "kvm-2", "limits.memory 2GiB → 3GiB")}


def test_interrupted_hosts_are_started_or_verified():
    want = desired()
    have = observed_from(want, ready=False)
    have.instances["kvm-2"]["status"] = "Stopped"
    actions = {(a.verb, a.name) for a in plan.make_plan(want, have).actions}
    assert actions == {("verify", "kvm-1"), ("start", "kvm-2")}


def test_network_of_someone_else_is_a_conflict_not_a_change():
    want = desired()
    have = observed_from(want)
    have.networks["default-mgmt"][objects.MARK] = "other"
    the_plan = plan.make_plan(want, have)
    assert the_plan.conflicts and "lab other's" in the_plan.conflicts[0]
    assert not the_plan.select("network")


def test_teardown_touches_only_the_lab():
    want = desired()
    have = observed_from(want)
    have.networks["other-mgmt"] = {objects.MARK: "other"}
    the_plan = plan.teardown_plan("default", "lxdkvm-default", have)
    assert {(a.kind, a.name) for a in the_plan.actions} == {
        ("host", "kvm-1"), ("host", "kvm-2"), ("profile", "kvm-host"), ("network", "default-mgmt"),
        ("network", "default-data"), ("project", "lxdkvm-default"), ("firewall", "lxdkvm-default")}


def test_spec_is_recorded_as_json():
    spec = json.loads(desired().instances["kvm-1"].config[objects.SPEC])
    assert spec["networks"] == [["eth0", "mgmt", ""], ["eth1", "data", "10.200.20.11"]]


def test_verify_pings_every_target_at_once_in_valid_shell():
    import subprocess

    from lxdkvm.lab import verify

    class Shell:  # runs the script verify sends to a host, here, with `ping` answering for one address
        def execute(self, _host, command, timeout=0):
            fake = "ping() { case \"$*\" in *192.0.2.1*) return 0;; *) return 1;; esac; }; "
            proc = subprocess.run(["sh", "-c", fake + command[2]], capture_output=True, text=True)
            return type("R", (), {"exit_code": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr})

    assert verify._pings(Shell(), "h", ["192.0.2.1", "192.0.2.2", "192.0.2.3"]) == {
        "192.0.2.1": True, "192.0.2.2": False, "192.0.2.3": False}


def test_accel_auto_is_kvm_only_where_a_guest_kernel_boots_under_it():
    from lxdkvm.guests import accel, kvmboot

    auto, tcg = t.Guest("vm", "h", accel="auto"), t.Guest("vm", "h", accel="tcg")
    assert accel.choose(auto, kvmboot.Verdict(kvmboot.BOOTS)) == ("kvm", "")
    assert accel.choose(auto, kvmboot.Verdict(kvmboot.NO_HARDWARE))[0] == "tcg"
    chosen, why = accel.choose(auto, kvmboot.Verdict(kvmboot.HANGS, "no boot marker within 20 s"))
    assert chosen == "tcg" and "no boot marker within 20 s" in why
    assert accel.choose(auto, kvmboot.Verdict(kvmboot.UNKNOWN))[0] == "kvm"  # until up probes it
    assert accel.choose(tcg, kvmboot.Verdict(kvmboot.BOOTS)) == ("tcg", "")  # what the lab file says wins
    assert kvmboot.cached(False, "0123456789abcdef").kvm == kvmboot.NO_HARDWARE
