"""Cluster mode on plain data: placement (checks and the member each host gets), stretched networks (VNI,
group, MTU, fixed addresses on NAT networks), the LXD objects and the plan. No LXD."""

import ipaddress
from pathlib import Path

from lxdkvm.cluster import placement, stretch
from lxdkvm.cluster.placement import Cluster, Member
from lxdkvm.lab import load, objects, plan
from lxdkvm.labfile import checks, read
from lxdkvm.labfile import topology as t

LAB = (Path(__file__).parent.parent / "labs" / "valid" / "cluster.yaml").read_text()
THREE = Cluster((Member("m1", "Online", ("default",)), Member("m2", "Online", ("default", "fast")),
                 Member("m3", "Online", ("default", "fast"))), tunnel_mtu=1450)


def parse(text: str) -> t.Lab:
    lab, problems, _ = read.parse(text, "lab.yaml")
    assert not problems, problems
    return lab


def problems(text: str, cluster: Cluster) -> list[str]:
    lab = parse(text)
    found = checks.check(lab, checks.Machine(cluster=cluster))
    found += load.cluster_problems(lab, cluster) if cluster is not None else []
    return [p.render("lab.yaml") for p in found]


HOSTS = """name: spread
networks: [{name: data, subnet: 10.242.0.0/24, mode: isolated}]
hosts:
  - {name: "a-[1-4]", networks: [data]}
  - {name: pinned, placement: m1}
  - {name: grouped, placement: "group:fast"}
"""


def test_spread_hosts_go_to_the_least_used_online_member_and_pinned_ones_where_told():
    chosen = placement.assign(parse(HOSTS), THREE, {})
    assert chosen["pinned"] == "m1" and chosen["grouped"] == "m2"  # group fast: m2, m3; the emptier first
    # spread hosts go where the fewest hosts are, counting the pinned ones: two hosts on every member
    assert [chosen[f"a-{i}"] for i in range(1, 5)] == ["m3", "m1", "m2", "m3"]


def test_existing_hosts_stay_and_an_offline_member_gets_no_new_host():
    degraded = Cluster((Member("m1", "Online"), Member("m2", "Offline"), Member("m3", "Online")))
    chosen = placement.assign(parse(HOSTS), degraded, {"a-1": "m2"})
    assert chosen["a-1"] == "m2"  # where it is: a spread host is never moved
    assert "m2" not in {chosen[h] for h in ("a-2", "a-3", "a-4")}


def test_placement_names_a_member_or_group_that_can_host_with_file_and_line():
    text = HOSTS.replace("placement: m1", "placement: m9").replace("group:fast", "group:gpu")
    assert problems(text, THREE) == [
        "lab.yaml:5: hosts[1].placement: host pinned: the cluster has no member 'm9'\n    hint: members: m1, m2, m3",
        ("lab.yaml:6: hosts[2].placement: host grouped: the cluster has no group 'gpu'\n"
         "    hint: groups: default, fast (`lxc cluster group list`)")]
    offline = Cluster((Member("m1", "Offline", message="No heartbeat since 30s"), Member("m2", "Online")))
    assert problems(HOSTS.replace("group:fast", "m2"), offline) == [
        ("lab.yaml:5: hosts[1].placement: host pinned: member m1 is offline\n"
         "    hint: No heartbeat since 30s; place the host elsewhere or bring the member back")]


def test_a_single_daemon_ignores_placement():
    assert problems(HOSTS.replace("placement: m1", "placement: m9"), None) == []
    want = objects.desired(parse(HOSTS), "pool", {})
    assert {s.target for s in want.instances.values()} == {""} and want.members == ()
    assert not any(k.startswith("tunnel.") for c in want.networks.values() for k in c)


def test_vni_and_group_per_lab_network_are_stable_distinct_and_skip_taken_ones():
    first = stretch.vni("itcl", "data")
    assert first == stretch.vni("itcl", "data") and stretch.VNI_FIRST <= first <= stretch.VNI_LAST
    assert len({stretch.vni(lab, net) for lab in ("a", "b", "c") for net in ("mgmt", "data", "back")}) == 9
    assert stretch.vni("itcl", "data", frozenset({first})) == first + 1
    group = ipaddress.IPv4Address(stretch.group(first))
    assert group in ipaddress.IPv4Network("239.0.0.0/8") and int(group) & 0xFFFFFF == first
    assert not str(group).startswith(("239.0.", "239.255."))


def test_an_mtu_the_tunnel_cannot_carry_is_a_problem_a_default_one_is_fitted():
    text = LAB.replace("mode: isolated}", "mode: isolated, mtu: 9000}", 1)
    found = problems(text, THREE)
    assert len(found) == 1 and found[0].startswith("lab.yaml:9: networks[1].mtu: network data: MTU 9000 does not "
                                                   "fit the tunnel between the LXD cluster's members (1450")
    lab = stretch.for_cluster(parse(LAB), THREE)
    assert {n.mtu for n in lab.networks} == {1450}
    assert {n.mtu for n in parse(LAB).networks} == {1500}  # a single daemon: unchanged


def test_stretched_nat_networks_have_no_dhcp_and_every_nic_a_fixed_distinct_address():
    lab = stretch.for_cluster(parse(LAB), THREE)
    mgmt = lab.network("mgmt")
    assert not mgmt.dhcp
    nics = [a.ipv4 for item in (*lab.hosts, *lab.guests) for a in item.attachments if a.network == "mgmt"]
    assert None not in nics and len(set(nics)) == len(nics) == 4
    low, high = parse(LAB).network("mgmt").dhcp_range
    assert all(low <= ip <= high for ip in nics)
    config = objects.network_config(lab, mgmt, THREE)
    assert config["ipv4.dhcp"] == "false" and "ipv4.dhcp.ranges" not in config
    assert config["ipv4.address"] == "10.241.10.1/24" and config["ipv4.nat"] == "true"  # the anycast gateway


def test_desired_objects_on_a_cluster_tunnel_every_network_and_place_every_host():
    lab = stretch.for_cluster(parse(LAB), THREE)
    want = objects.desired(lab, "default", {}, THREE, {})
    assert want.members == ("m1", "m2", "m3")
    for bridge, config in want.networks.items():
        assert len(f"{bridge}-{stretch.TUNNEL}") <= t.IFNAME_MAX
        assert config["tunnel.lk.protocol"] == "vxlan" and config["bridge.mtu"] == "1450"
    assert len({c["tunnel.lk.id"] for c in want.networks.values()}) == 3
    assert {n: s.target for n, s in want.instances.items()} == {"node-1": "m1", "node-2": "m2", "node-3": "m3"}


def test_a_host_on_a_member_its_placement_does_not_allow_is_recreated():
    lab = stretch.for_cluster(parse(LAB), THREE)
    want = objects.desired(lab, "default", {}, THREE, {"node-1": "m3"})
    have = plan.Observed(project={objects.MARK: "itcl"}, networks=dict(want.networks),
                         profiles=dict(want.profiles),
                         instances={n: {"status": "Running", "config": {**s.config, objects.READY: "true"},
                                        "devices": s.devices, "profiles": s.profiles,
                                        "location": {"node-1": "m3"}.get(n, s.target)}
                                    for n, s in want.instances.items()})
    actions = plan.make_plan(want, have).select("host")
    assert [(a.verb, a.name) for a in actions] == [("recreate", "node-1")]
    assert "placement: it is on m3, the lab file wants m1" in actions[0].reason


def test_lxd_refusals_of_a_cluster_say_what_to_do():
    from lxdkvm.lxd.messages import hint

    gone = 'Get "https://100.64.40.13:8443/1.0/operations/37d5/wait?project=lxdkvm-itcl": EOF'
    assert hint(gone).startswith("a member of the LXD cluster does not answer")
    assert "lower `mtu:`" in hint("Failed to run: ip link set dev itcl-back-lk mtu 1500: exit status 2")
    assert not hint("Image not found").startswith("a member")
