"""The nftables table that fences a lab's networks (lab/fence.py): what it lets through and what it closes,
as text. That the kernel enforces it is tests/security/test_lab_networks.py's business."""

import ipaddress

from lxdkvm.lab import fence
from lxdkvm.labfile import read

LAN = ipaddress.IPv4Network("192.0.2.0/24")
MGMT_BRIDGE = ipaddress.IPv4Network("10.87.0.0/24")


def default_fence(*openings: fence.Opening) -> fence.Fence:
    lab, problems, _ = read.load(None)
    assert not problems
    return fence.fence(lab, [LAN, MGMT_BRIDGE, ipaddress.IPv4Network("127.0.0.0/8")], openings)


def test_only_dhcp_and_dns_to_the_gateway_reach_the_machine():
    text = default_fence().text
    chain = text.split("chain from_lab {")[1].split("\n  }")[0]
    lines = [line.strip() for line in chain.strip().splitlines()]
    assert lines == ["ct state established,related accept", "meta nfproto ipv6 drop",
                     'iifname "default-mgmt" udp sport 68 udp dport 67 accept',
                     'iifname "default-mgmt" ip daddr 10.200.10.1 meta l4proto { tcp, udp } th dport 53 accept',
                     "counter drop"]
    assert "type filter hook input" in text and "iifname @bridges jump from_lab" in text


def test_through_the_machine_only_the_outside_and_the_lab_itself():
    chain = default_fence().text.split("chain through_lab {")[1].split("\n  }")[0]
    assert 'iifname { "default-data" } counter drop' in chain  # an isolated network routes nowhere
    # bridged between the lab's own ports (br_netfilter), or routed between its own networks: first
    assert chain.strip().splitlines()[0].strip() == "oifname @bridges accept"
    closed = chain.split("ip daddr {")[-1]
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
                "192.0.2.0/24"):  # private, shared, link-local (metadata) and this machine's LAN
        assert net in closed, net
    assert "127.0.0.0/8" in closed and chain.index(" accept") < chain.index(closed)


def test_openings_are_rules_for_their_network_only():
    opened = default_fence(fence.Opening("mgmt", "machine", "tcp", 8080),
                           fence.Opening("mgmt", "subnet", subnet=ipaddress.IPv4Network("192.0.2.0/28")))
    assert 'iifname "default-mgmt" tcp dport 8080 accept' in opened.text
    assert 'iifname "default-mgmt" ip daddr 192.0.2.0/28 accept' in opened.text
    assert opened.digest != default_fence().digest
    assert [o.describe() for o in opened.openings] == ["mgmt → this machine tcp/8080",
                                                      "mgmt → 192.0.2.0/28 through this machine"]


def test_the_script_replaces_the_table_in_one_transaction_and_names_its_digest():
    made = default_fence()
    first = made.text.splitlines()[:3]
    assert first == ["table inet lxdkvm-default {}", "delete table inet lxdkvm-default",
                     "table inet lxdkvm-default {"]
    assert f'comment "lxdkvm lab default {made.digest}"' in made.text
    assert default_fence().digest == made.digest  # the same lab and machine: the same table


def test_a_lab_file_opens_a_port_of_the_machine_and_a_range_and_plan_says_so():
    from lxdkvm.lab import objects, plan

    text = read.default_lab_path().read_text().replace(
        "mode: nat", "mode: nat\n    open: [{machine: tcp/8080}, {subnet: 192.0.2.0/28}]", 1)
    lab, problems, _ = read.parse(text, "lab.yaml")
    assert not problems, problems
    assert [o.describe() for o in lab.openings] == ["mgmt → this machine tcp/8080",
                                                   "mgmt → 192.0.2.0/28 through this machine"]
    want = objects.desired(lab, "pool", {"config": {}, "devices": {}}, machine_subnets=[LAN])
    assert 'iifname "default-mgmt" tcp dport 8080 accept' in want.fence.text
    action = plan.make_plan(want, plan.Observed()).select("firewall")[0]
    assert action.verb == "create" and "opens mgmt → this machine tcp/8080" in action.reason
