"""The LXD objects a lab needs, as plain data: a project, bridges, profiles and instances.

Pure: a `topology.Lab` plus the decisions made while preparing (pool, KVM-host profile) in, `Desired`
out. Every object is marked as the lab's, so `plan` can tell it from anything else in LXD.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from ..labfile import topology as t
from ..templating import render_template

MARK = "user.lxdkvm.lab"  # on the project, its networks and instances: the lab's name
SPEC = "user.lxdkvm.spec"  # on instances: what cannot change without recreating (JSON)
READY = "user.lxdkvm.ready"  # on instances: set once every readiness stage passed
NETWORK = "user.lxdkvm.network"  # on networks: the network's name in the lab file
GROUPS = "user.lxdkvm.groups"  # on instances: the host's Ansible groups, comma-separated (see inventory)
KVM_PROFILE = "kvm-host"


@dataclass(frozen=True)
class InstanceSpec:
    name: str
    image: str
    profiles: list[str]
    config: dict[str, str]  # includes SPEC
    devices: dict[str, dict[str, str]]
    spec: dict  # the fields that need a new container when they change
    target: str = ""  # on a cluster: the member it is created on ("": a single daemon)
    allowed: tuple[str, ...] = ()  # on a cluster: the members its placement allows (a host elsewhere moves)


@dataclass(frozen=True)
class Desired:
    lab: str
    project: str
    project_config: dict[str, str]
    networks: dict[str, dict[str, str]]  # bridge name → config
    profiles: dict[str, dict]  # name → {description, config, devices}
    instances: dict[str, InstanceSpec] = field(default_factory=dict)
    guests: dict[str, object] = field(default_factory=dict)  # name → guests.spec.GuestSpec
    members: tuple[str, ...] = ()  # on a cluster: every member (networks are defined on each)
    fence: object = None  # fence.Fence: what the lab's networks may reach (None on a cluster)


def network_config(lab: t.Lab, net: t.Network, cluster=None) -> dict[str, str]:
    """CLUSTER (cluster.placement.Cluster): the bridge is stretched over its members (see cluster.stretch)."""
    tunnel = {}
    if cluster is not None:
        from ..cluster import stretch

        tunnel = stretch.tunnel_config(lab.name, net.name, cluster.vnis_taken)
    if net.mode == "nat":
        config = {"ipv4.address": f"{net.gateway}/{net.subnet.prefixlen}", "ipv4.nat": "true",
                  "ipv4.dhcp": str(net.dhcp).lower()}
        if net.dhcp_range:
            config["ipv4.dhcp.ranges"] = f"{net.dhcp_range[0]}-{net.dhcp_range[1]}"
    else:  # no address on this machine: a plain layer-2 segment between the lab's hosts
        config = {"ipv4.address": "none"}
    return {**config, **tunnel, "ipv6.address": "none", "bridge.mtu": str(net.mtu),
            MARK: lab.name, NETWORK: net.name, "user.lxdkvm.subnet": str(net.subnet)}


def host_network_config(lab: t.Lab, host: t.Host) -> str:
    nics, default_route = [], None
    for att in host.attachments:
        net = lab.network(att.network)
        if default_route is None and net.mode == "nat":
            default_route = att.device
        nics.append({
            "device": att.device,
            "bridge": att.bridge,
            "dhcp": net.dhcp and att.ipv4 is None,
            "address": f"{att.ipv4}/{net.subnet.prefixlen}" if att.ipv4 else "",
            "gateway": str(net.gateway) if net.gateway else "",
            "default_route": att.device == default_route,
        })
    return render_template("cloud-init", "lab-network-config.yaml.j2", nics=nics)


def instance(lab: t.Lab, host: t.Host) -> InstanceSpec:
    devices = {att.device: {"type": "nic", "name": att.device, "network": lab.bridge(att.network)}
               for att in host.attachments}
    netconf = host_network_config(lab, host)
    spec = {"image": lab.image, "idmap": host.idmap,
            "networks": [[a.device, a.network, str(a.ipv4 or "")] for a in host.attachments],
            "network-config": netconf}
    config = {
        **host.config,
        "security.idmap.isolated": str(host.idmap == "isolated").lower(),
        "cloud-init.network-config": netconf,
        MARK: lab.name,
        SPEC: json.dumps(spec, sort_keys=True, separators=(",", ":")),
    }
    if host.groups:
        config[GROUPS] = ",".join(host.groups)
    if host.cpu:
        config["limits.cpu"] = str(host.cpu)
    if host.memory:
        config["limits.memory"] = host.memory
    return InstanceSpec(host.name, lab.image, ["default", KVM_PROFILE, *host.profiles], config, devices, spec)


def profile_device(lab: t.Lab, device: dict[str, str]) -> dict[str, str]:
    """A lab profile's device for LXD: a nic names a lab network by its name in the lab file, which is
    the lab's bridge in LXD (anything else is refused by `labconfine` unless --allow-host-devices)."""
    if device.get("type") == "nic" and lab.network(device.get("network", "")):
        return {**device, "network": lab.bridge(device["network"])}
    return dict(device)


def desired(lab: t.Lab, pool: str, kvm_profile: dict, cluster=None,
            located: dict[str, str] | None = None, machine_subnets: list | None = None) -> Desired:
    """Everything `up` makes for LAB: hosts' root disks on POOL, KVM_PROFILE as the kvm-host profile, the
    fence of its networks (MACHINE_SUBNETS: this machine's, closed to the lab). On a CLUSTER
    (cluster.placement.Cluster), each host on a member (LOCATED: where existing hosts are)."""
    from .fence import fence


    profiles = {
        "default": {"description": f"lxdkvm lab {lab.name}: root disk on {pool}", "config": {},
                    "devices": {"root": {"type": "disk", "path": "/", "pool": pool}}},
        KVM_PROFILE: {**kvm_profile, "description": f"lxdkvm lab {lab.name}: {kvm_profile.get('description', '')}"},
        **{p.name: {"description": f"lxdkvm lab {lab.name}: {p.name}", "config": dict(p.config),
                    "devices": {k: profile_device(lab, v) for k, v in p.devices.items()}}
           for p in lab.profiles},
    }
    return Desired(
        lab=lab.name, project=lab.project,
        project_config={"features.images": "false", "features.profiles": "true",
                        "features.storage.volumes": "true", "features.networks": "false", MARK: lab.name},
        networks={lab.bridge(n.name): network_config(lab, n, cluster) for n in lab.networks},
        profiles=profiles,
        instances=_placed(lab, {h.name: instance(lab, h) for h in lab.hosts}, cluster, located or {}),
        members=tuple(cluster.names) if cluster is not None else (),
        fence=fence(lab, machine_subnets or [], lab.openings) if cluster is None else None,
    )


def _placed(lab: t.Lab, instances: dict[str, InstanceSpec], cluster, located: dict[str, str]) -> dict[str, InstanceSpec]:
    if cluster is None:
        return instances
    from ..cluster import placement

    chosen = placement.assign(lab, cluster, located)
    return {name: dataclasses.replace(spec, target=chosen.get(name, ""),
                                      allowed=tuple(cluster.allowed(lab.host(name).placement)))
            for name, spec in instances.items()}
